package ringbuf

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/ringo-bpf/ringo/internal/look"
)

// RawReader reads the samples of a BPF ring buffer map without copying
// them, as the RawReader of cilium/ebpf's main branch (after v0.22.0) does:
// samples are slices of the ring's shared memory, handed out inside a Lease
// (WithLease), that stay in the ring, valid, until Lease.Commit releases
// them. The consumer position the kernel sees moves only at Commit, so a
// lease can read a batch of samples and free their space at once.
//
// A RawReader must not be used by several goroutines at once, except that
// Close and Flush may be called from another goroutine to interrupt a
// blocked read. Use Reader for a reader that is safe for concurrent use.
type RawReader struct {
	*base

	drainErr error // a wait's deadline or flush, returned once the ring is empty
	held     bool  // ReadSample returned samples that Commit has not freed

	inflight atomic.Bool
	// lease is held by a running lease: Close waits for it.
	lease sync.Mutex

	cleanup runtime.Cleanup
}

// errConcurrent is the error of WithLease while another lease is running.
var errConcurrent = errors.New("concurrent use of RawReader")

// NewRawReader returns a RawReader of the ring buffer map m. m stays the
// caller's: the RawReader holds a descriptor of its own.
func NewRawReader(m *ebpf.Map) (*RawReader, error) {
	b, err := open(m, true)
	if err != nil {
		return nil, err
	}
	rr := &RawReader{base: b}
	rr.cleanup = freeOnCollect(rr, b)
	return rr, nil
}

// WithLease calls fn with a Lease of rr, which is valid only while fn runs.
// fn may call Lease.ReadSample several times before Lease.Commit, to free
// the space of a batch of samples at once. It returns fn's error, or an
// error without calling fn: ErrClosed (wrapped) once rr is closed, and one
// saying so while another lease is running. fn must not call rr.Close
// (Close waits for the lease to end).
func (rr *RawReader) WithLease(fn func(Lease) error) error {
	if !rr.inflight.CompareAndSwap(false, true) {
		return errConcurrent
	}
	defer rr.inflight.Store(false)
	rr.lease.Lock()
	defer rr.lease.Unlock()
	if rr.closed.Load() {
		return fmt.Errorf("ringbuf: %w", ErrClosed)
	}
	return fn(Lease{rr: rr})
}

// Close frees rr's resources, interrupting a blocked Lease.ReadSample (which
// returns an error matching ErrClosed), and waits for a running lease to
// end. Samples read and not committed stay in the ring, for the next
// reader. Calling it again returns nil.
func (rr *RawReader) Close() error {
	if !rr.closed.CompareAndSwap(false, true) {
		return nil
	}
	rr.cleanup.Stop()
	return rr.free(func() { rr.lease.Lock(); rr.lease.Unlock() })
}

// SetDeadline sets when Lease.ReadSample stops waiting for samples and
// returns os.ErrDeadlineExceeded; the zero time waits for ever. Like every
// method but Close and Flush, it must not be called while a read runs.
func (rr *RawReader) SetDeadline(t time.Time) { rr.w.setDeadline(t) }

// BufferSize returns the size in bytes of the ring's data area.
func (rr *RawReader) BufferSize() int { return rr.size }

// Flush makes a blocked Lease.ReadSample (or the next one) return the
// samples in the ring, then ErrFlushed.
func (rr *RawReader) Flush() error { return rr.w.flush() }

// AvailableBytes returns the bytes between the consumer position last
// committed and the producer position: samples read but not committed
// count as available. It panics after Close.
func (rr *RawReader) AvailableBytes() int { return rr.available("RawReader") }

// Lease is a RawReader's exclusive access for the length of a
// RawReader.WithLease callback, and must not be used after it returns.
type Lease struct {
	rr *RawReader
}

// ReadSample returns the next sample, waiting for one when the ring is
// empty. data is a slice of the ring's shared, read-only memory, valid
// until the next Commit; its capacity runs on to the end of the ring's
// mapping, as cilium/ebpf's does (do not append to it). A sample the
// producer discarded is returned as nil data, as cilium/ebpf's main
// returns it: Commit frees its space with the others. remain is the number
// of bytes after this sample, up to the producer position loaded by this
// call.
//
// Once the ring is empty it returns an error matching
// os.ErrDeadlineExceeded when the deadline passed, ErrFlushed after Flush,
// and one matching ErrClosed after Close. As cilium's, it looks at the ring
// before it waits, and waits for the kernel's wake-up of the ring; while
// samples it returned are not committed, it looks again every millisecond
// instead (the kernel then reports the ring ready all the time, and
// cilium's spins: see the package documentation).
func (s Lease) ReadSample() (data []byte, remain int, err error) {
	rr := s.rr
	for {
		data, remain, err := rr.look.Next()
		switch err {
		case nil:
			rr.held = true
			return data, remain, nil
		case look.ErrEmpty:
		case look.ErrBusy:
			// See Reader.ReadInto.
			if err := waitBusy(&rr.closed); err != nil {
				return nil, 0, err
			}
			continue
		default:
			return nil, 0, fail(err)
		}
		if err := rr.drainErr; err != nil {
			rr.drainErr = nil
			return nil, 0, err
		}
		pending, err := rr.waited(rr.wait())
		if err != nil {
			return nil, 0, err
		}
		rr.drainErr = pending
	}
}

// wait waits for the kernel's wake-up of the ring, or while samples are
// held naps, until the current generation of rr.w ends.
func (rr *RawReader) wait() error {
	if rr.held {
		return rr.wake.nap(rr.w.context())
	}
	return rr.wake.wait(rr.w.context())
}

// Commit releases the samples ReadSample returned so far: the kernel's
// consumer position moves past them, their space is free for producers
// again, and their data must not be used any more.
func (s Lease) Commit() {
	s.rr.look.Store()
	s.rr.held = false
}
