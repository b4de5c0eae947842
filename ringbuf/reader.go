package ringbuf

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/ringo-bpf/ringo/internal/look"
)

// ErrClosed is returned by reads of a closed Reader or RawReader, and by a
// read that Close interrupted. It is os.ErrClosed, as in cilium/ebpf.
var ErrClosed = os.ErrClosed

// errReadClosed is a read's error once the Reader is closed, with
// cilium/ebpf's text.
var errReadClosed = fmt.Errorf("ringbuffer: %w", ErrClosed)

// Record is a record read from the ring.
type Record struct {
	// RawSample is a copy of the record's payload.
	RawSample []byte

	// Remaining is the minimum number of bytes remaining in the ring buffer
	// after this Record has been read: the producer position loaded by the
	// read, less the end of this record (headers, padding and discarded
	// records count).
	Remaining int
}

// Reader reads records from a BPF ring buffer map as cilium/ebpf v0.22.0's
// ringbuf.Reader does, with ringo's Reader underneath. It is safe for
// concurrent use by multiple goroutines: reads take turns, and Close, Flush
// and SetDeadline may be called while a read is blocked.
type Reader struct {
	*base

	mu       sync.Mutex // held by reads and SetDeadline, as cilium's
	pending  error      // a wait's deadline or flush, returned once the ring is empty
	haveData bool       // the last look found a record, or the kernel woke the ring since: look

	cleanup runtime.Cleanup
}

// NewReader returns a Reader of the ring buffer map m, which must be of type
// ebpf.RingBuf (or ebpf.WindowsRingBuf) with a power-of-two size. m stays
// the caller's: the Reader holds a descriptor of its own.
func NewReader(m *ebpf.Map) (*Reader, error) {
	b, err := open(m, false)
	if err != nil {
		return nil, err
	}
	r := &Reader{base: b}
	r.cleanup = freeOnCollect(r, b)
	return r, nil
}

// Close frees the Reader's resources and interrupts a blocked Read or
// ReadInto, which returns an error matching ErrClosed. A read that is
// taking a record when Close is called finishes first: Close waits for
// it. Calling Close again returns nil.
func (r *Reader) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	r.cleanup.Stop()
	return r.free(func() { r.mu.Lock(); r.mu.Unlock() })
}

// SetDeadline sets when Read and ReadInto stop waiting for records and
// return os.ErrDeadlineExceeded; the zero time (the default) waits for
// ever. A deadline less than a millisecond away counts as passed, as with
// cilium/ebpf, whose wait counts whole milliseconds. Like cilium's, it
// waits for a blocked read to return.
func (r *Reader) SetDeadline(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.w.setDeadline(t)
}

// Read returns the next record, waiting for one. See ReadInto.
func (r *Reader) Read() (Record, error) {
	var rec Record
	err := r.ReadInto(&rec)
	return rec, err
}

// ReadInto reads the next record into rec, reusing rec.RawSample's memory
// when its capacity suffices (and allocating exactly the record's size when
// it does not), waiting for one when the ring is empty. Once the Reader is
// closed (also when Close interrupts the wait) it returns an error matching
// ErrClosed; after Flush, the records that are there and then ErrFlushed;
// once the deadline passed, the records there and then an error matching
// os.ErrDeadlineExceeded. The record's space in the ring is free for
// producers when it returns.
func (r *Reader) ReadInto(rec *Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return errReadClosed
	}
	for {
		if !r.haveData {
			// As cilium/ebpf v0.22.0: once a look found the ring empty
			// (and before the first), wait for the kernel's wake-up, a
			// deadline, a flush or Close, without looking first.
			if err := r.pending; err != nil {
				r.pending = nil
				return err
			}
			pending, err := r.waited(r.wake.wait(r.w.context()))
			if err != nil {
				return err
			}
			r.pending, r.haveData = pending, true
		}
		data, remain, err := r.look.Take(rec.RawSample)
		switch err {
		case nil:
			rec.RawSample, rec.Remaining = data, remain
			return nil
		case look.ErrEmpty:
			// (The look made its last store a full barrier and looked
			// again first: a record committed meanwhile wakes the wait.)
			r.haveData = false
		case look.ErrBusy:
			// Being written by a BPF program, which cannot stop before it
			// commits: cilium's spins, as this does, yielding.
			if err := waitBusy(&r.closed); err != nil {
				return err
			}
		default:
			return fail(err)
		}
	}
}

// BufferSize returns the size in bytes of the ring's data area.
func (r *Reader) BufferSize() int { return r.size }

// Flush makes a blocked Read or ReadInto (or the next one) return the
// records in the ring, then ErrFlushed.
func (r *Reader) Flush() error { return r.w.flush() }

// AvailableBytes returns how many bytes of the ring the producers have
// written and the Reader has not consumed. It panics after Close, as
// cilium/ebpf's does.
func (r *Reader) AvailableBytes() int { return r.available("Reader") }
