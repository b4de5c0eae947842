package ringbuf

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
)

// RawReader reads the samples of a BPF ring buffer map without copying
// them, as the RawReader of cilium/ebpf's main branch (after v0.22.0) does:
// samples are slices of the ring's shared memory, handed out inside a
// Lease (WithLease), valid until the next Lease.Commit or the end of the
// lease. The consumer position the kernel sees moves only at Commit, so a
// lease can read a batch of samples and free their space at once.
//
// A RawReader must not be used by several goroutines at once, except that
// Close and Flush may be called from another goroutine to interrupt a
// blocked read. Use Reader for a reader that is safe for concurrent use.
type RawReader struct {
	poller *poller
	ring   *ring

	deadline   time.Time
	bufferSize int
	drainErr   error // a wait's deadline or flush, returned once the ring is empty

	inflight, closed atomic.Bool
}

// errConcurrent is the error of WithLease while another lease is running.
var errConcurrent = errors.New("concurrent use of RawReader")

// NewRawReader returns a RawReader of the ring buffer map m. m stays the
// caller's: the mapping the RawReader makes keeps the ring alive.
func NewRawReader(m *ebpf.Map) (*RawReader, error) {
	ring, p, err := openOwn(m)
	if err != nil {
		return nil, err
	}
	return &RawReader{poller: p, ring: ring, bufferSize: int(m.MaxEntries())}, nil
}

// WithLease calls fn with a Lease of rr, which is valid only while fn runs.
// fn may call Lease.ReadSample several times before Lease.Commit, to free
// the space of a batch of samples at once. It returns fn's error, or an
// error without calling fn: ErrClosed (wrapped) once rr is closed, and one
// saying so while another lease is running. fn must not call rr.Close.
func (rr *RawReader) WithLease(fn func(Lease) error) error {
	if !rr.inflight.CompareAndSwap(false, true) {
		return errConcurrent
	}
	defer rr.inflight.Store(false)
	if rr.closed.Load() {
		return fmt.Errorf("ringbuf: %w", ErrClosed)
	}
	return fn(Lease{rr: rr})
}

// Close frees rr's resources, interrupting a blocked Lease.ReadSample (which
// returns an error matching ErrClosed), and waits for a running lease to
// end. Calling it again returns nil.
func (rr *RawReader) Close() error {
	if !rr.closed.CompareAndSwap(false, true) {
		return nil
	}
	if err := rr.poller.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("close poller: %w", err)
	}
	for rr.inflight.Load() {
		runtime.Gosched()
	}
	return rr.ring.close()
}

// SetDeadline sets when Lease.ReadSample stops waiting for samples and
// returns os.ErrDeadlineExceeded; the zero time waits for ever. Like every
// method but Close and Flush, it must not be called while a read runs.
func (rr *RawReader) SetDeadline(t time.Time) { rr.deadline = t }

// BufferSize returns the size in bytes of the ring's data area.
func (rr *RawReader) BufferSize() int { return rr.bufferSize }

// Flush makes a blocked Lease.ReadSample (or the next one) return the
// samples in the ring, then ErrFlushed.
func (rr *RawReader) Flush() error { return rr.poller.Flush() }

// AvailableBytes returns the bytes between the consumer position last
// committed and the producer position: samples read but not committed
// count as available. It must not be called after Close.
func (rr *RawReader) AvailableBytes() int { return rr.ring.available() }

// Lease is a RawReader's exclusive access for the length of a
// RawReader.WithLease callback, and must not be used after it returns.
type Lease struct {
	rr *RawReader
}

// ReadSample returns the next sample, waiting for one when the ring is
// empty. data is a slice of the ring's shared, read-only memory, valid
// until the next Commit or the end of the lease; it is nil for a sample
// the producer discarded (whose space must be committed all the same).
// remain is the number of bytes after this sample, up to the producer
// position loaded by this call.
//
// After each sample, nil or not, the RawReader's own consumer position has
// moved on; Commit hands it to the kernel. Once the ring is empty it
// returns an error matching os.ErrDeadlineExceeded when the deadline
// passed, ErrFlushed after Flush, and one matching ErrClosed after Close.
func (s Lease) ReadSample() (data []byte, remain int, err error) {
	rr := s.rr
	for {
		data, remain, err := rr.ring.readSample()
		if err == nil {
			return data, remain, nil
		}
		if err != errEOR {
			return nil, 0, err
		}
		if err := rr.drainErr; err != nil {
			rr.drainErr = nil
			return nil, 0, err
		}
		if rr.poller.spin(rr.ring) {
			continue // as a wait that reported the ring
		}
		err = rr.poller.Wait(rr.deadline)
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrFlushed) {
			// Samples written with BPF_RB_NO_WAKEUP may be there:
			// read them, then return err.
			rr.drainErr = err
			continue
		}
		if err != nil {
			return nil, 0, err
		}
	}
}

// Commit stores the RawReader's consumer position, after the last sample
// ReadSample returned, for the kernel: the space of the samples read so
// far is free for producers again, and their data must not be used any
// more.
func (s Lease) Commit() { s.rr.ring.commit() }
