package ringbuf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/ringo-bpf/ringo"
)

// ErrClosed is returned by reads of a closed Reader or RawReader, and by a
// read that Close interrupted. It is os.ErrClosed, as in cilium/ebpf.
var ErrClosed = os.ErrClosed

// Record is a record read from the ring.
type Record struct {
	// RawSample is a copy of the record's payload.
	RawSample []byte

	// Remaining is the minimum number of bytes remaining in the ring buffer
	// after this Record has been read: the producer position as loaded
	// during the read, less the end of this record (headers, padding and
	// discarded records included).
	Remaining int
}

// Reader reads records from a BPF ring buffer map, as cilium/ebpf v0.22.0's
// ringbuf.Reader does. It is safe for concurrent use by multiple
// goroutines: Read and ReadInto take turns, and Close, Flush and
// SetDeadline may be called while a read is blocked.
type Reader struct {
	poller *poller

	mu         sync.Mutex // held by reads; guards the fields below it
	ring       *ringo.KernelRing
	rd         *ringo.Reader
	rec        ringo.Record // ringo's copy of a record, into RawSample's memory
	haveData   bool         // the last wait reported the ring readable, or passed
	deadline   time.Time
	pendingErr error // a wait's deadline or flush, returned once the ring is empty

	bufferSize int
}

// done is a context that is always done: ringo's reads with it take a
// record if one is there and otherwise return at once, without sleeping.
var done = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// NewReader returns a Reader of the ring buffer map m. m stays the caller's:
// the Reader holds a descriptor of its own, and closing m does not stop it.
func NewReader(m *ebpf.Map) (*Reader, error) {
	ring, p, err := open(m)
	if err != nil {
		return nil, err
	}
	rd, err := ringo.NewReader(ring)
	if err != nil {
		p.Close()
		ring.Close()
		return nil, err
	}
	return &Reader{poller: p, ring: ring, rd: rd, bufferSize: ring.Size()}, nil
}

// open checks m as cilium/ebpf does, maps it and makes its poller.
func open(m *ebpf.Map) (*ringo.KernelRing, *poller, error) {
	if m.Type() != ebpf.RingBuf && m.Type() != ebpf.WindowsRingBuf {
		return nil, nil, fmt.Errorf("invalid Map type: %s", m.Type())
	}
	n := int(m.MaxEntries())
	if n == 0 || n&(n-1) != 0 {
		return nil, nil, fmt.Errorf("ringbuffer map size %d is zero or not a power of two", n)
	}
	ring, err := ringo.OpenMap(m)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to create ringbuf ring: %w", err)
	}
	p, err := newPoller(ring.FD())
	if err != nil {
		ring.Close()
		return nil, nil, err
	}
	return ring, p, nil
}

// Close frees the Reader's resources and interrupts a blocked Read or
// ReadInto, which returns an error matching ErrClosed. A read that is
// taking a record from the ring when Close is called finishes first:
// Close waits for it. Calling Close again returns nil.
func (r *Reader) Close() error {
	if err := r.poller.Close(); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return nil
		}
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	if r.ring != nil {
		err = errors.Join(r.rd.Close(), r.ring.Close())
		r.ring, r.rd = nil, nil
	}
	return err
}

// SetDeadline sets when Read and ReadInto stop waiting for records and
// return os.ErrDeadlineExceeded; the zero time (the default) waits for
// ever. The deadline is counted in whole milliseconds from the start of
// each wait: one less than a millisecond away counts as passed.
func (r *Reader) SetDeadline(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deadline = t
}

// Read returns the next record, waiting for one. See ReadInto.
func (r *Reader) Read() (Record, error) {
	var rec Record
	err := r.ReadInto(&rec)
	return rec, err
}

// ReadInto reads the next record into rec, reusing rec.RawSample's memory
// when its capacity suffices, and waits for one when the kernel has not
// signalled any. It returns an error matching ErrClosed once the Reader is
// closed (also when Close interrupts the wait); after Flush, the records
// that were there and then ErrFlushed; once the deadline passed, the
// records there and then an error matching os.ErrDeadlineExceeded.
//
// It waits for the kernel's wake-up rather than looking at the ring first
// (see the package documentation): records written with BPF_RB_NO_WAKEUP
// are read after a wake-up, a deadline or Flush.
func (r *Reader) ReadInto(rec *Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ring == nil {
		return fmt.Errorf("ringbuffer: %w", ErrClosed)
	}
	for {
		if !r.haveData {
			if err := r.pendingErr; err != nil {
				r.pendingErr = nil
				return err
			}
			err := r.poller.Wait(r.deadline)
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrFlushed) {
				// Records may be there all the same (written with
				// BPF_RB_NO_WAKEUP): read them, then return err.
				r.pendingErr = err
			} else if err != nil {
				return err
			}
			r.haveData = true
		}
		got, err := r.take(rec)
		if got || err != nil {
			return err
		}
		r.haveData = false
	}
}

// take reads the record at the head of the ring into rec, if there is one
// (waiting for one that a producer is still writing, as cilium/ebpf does).
// r.mu is held.
func (r *Reader) take(rec *Record) (bool, error) {
	for {
		r.rec.Data = rec.RawSample[:0]
		err := r.rd.ReadInto(done, &r.rec)
		if err == nil {
			n := len(r.rec.Data)
			if cap(r.rec.Data) != cap(rec.RawSample) {
				// ringo grew the buffer; cilium allocates exactly
				// the record's size.
				r.rec.Data = r.rec.Data[:n:n]
			}
			rec.RawSample = r.rec.Data
			prod, _ := r.ring.Query(ringo.ProducerPos)
			rec.Remaining = int(prod - (r.rec.Pos + recordSize(n)))
			r.rec.Data = nil
			return true, nil
		}
		r.rec.Data = nil
		if err != done.Err() {
			return false, readError(err)
		}
		// Nothing to read: the ring is empty, or the record at its head
		// is still being written (the producer has moved producer_pos
		// past it). Wait for the producer, which commits before its
		// program returns.
		if p := r.ring.Positions(); p.Producer == p.Consumer {
			return false, nil
		}
		runtime.Gosched()
	}
}

// readError is the error for a ring ringo found corrupt: as cilium/ebpf's,
// it matches io.ErrUnexpectedEOF, and it matches ringo.ErrCorrupt too.
func readError(err error) error {
	if errors.Is(err, ringo.ErrCorrupt) {
		return &corruptError{err}
	}
	return err
}

type corruptError struct{ err error }

func (e *corruptError) Error() string        { return "read record: " + e.err.Error() }
func (e *corruptError) Unwrap() []error      { return []error{io.ErrUnexpectedEOF, e.err} }
func (e *corruptError) Is(target error) bool { return false }

// BufferSize returns the size in bytes of the ring's data area.
func (r *Reader) BufferSize() int { return r.bufferSize }

// Flush makes a blocked Read or ReadInto (or the next one) return the
// records in the ring, then ErrFlushed.
func (r *Reader) Flush() error { return r.poller.Flush() }

// AvailableBytes returns how many bytes of the ring the producers have
// written and the Reader has not consumed: producer position less consumer
// position, loaded in that order without a lock, as cilium/ebpf does.
func (r *Reader) AvailableBytes() int {
	prod, _ := r.ring.Query(ringo.ProducerPos)
	cons, _ := r.ring.Query(ringo.ConsumerPos)
	return int(prod - cons)
}

// recordSize is the bytes of ring positions a record of n payload bytes
// takes: its header and the payload, rounded up to 8.
func recordSize(n int) uint64 { return uint64(ringo.HeaderSize+n+7) &^ 7 }
