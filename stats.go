package ringo

import (
	"errors"
	"slices"
)

// RingStats is what a Reader has taken from one ring, with the ring's state
// and losses: what a metrics exporter reports per ring.
type RingStats struct {
	Ring Source
	// Records and Bytes (payload) the Reader consumed from the ring, as
	// of its last store of the consumer position (at least every quarter
	// ring, and whenever a Consume or Read call returns).
	Records, Bytes uint64
	// AvailData and Size are the ring's fill level: bytes of positions
	// not yet consumed, of Size.
	AvailData uint64
	Size      int
	Loss
}

// Stats returns, for each ring the Reader consumes, what it took and
// lost. It does not wait for a blocked Read: it may be called from any
// goroutine at any time.
func (r *Reader) Stats() ([]RingStats, error) {
	r.ringsMu.Lock()
	rings := slices.Clone(r.statRings)
	r.ringsMu.Unlock()
	out := make([]RingStats, 0, len(rings))
	var errs []error
	for _, rr := range rings {
		st := RingStats{Ring: rr.src, Records: rr.consumed.Load(), Bytes: rr.consumedBytes.Load(),
			AvailData: rr.src.Positions().avail(), Size: rr.src.ringView().Size()}
		l, err := rr.src.Loss()
		if err != nil {
			errs = append(errs, err)
		}
		st.Loss = l
		out = append(out, st)
	}
	return out, errors.Join(errs...)
}
