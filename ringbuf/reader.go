package ringbuf

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
)

// ErrClosed is returned by reads of a closed Reader or RawReader, and by a
// read that Close interrupted. It is os.ErrClosed, as in cilium/ebpf.
var ErrClosed = os.ErrClosed

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
// ringbuf.Reader does. It is safe for concurrent use by multiple
// goroutines: reads take turns, and Close, Flush and SetDeadline may be
// called while a read is blocked.
type Reader struct {
	poller *poller

	mu         sync.Mutex // held by reads; guards the fields below it
	ring       *ring      // nil once closed
	haveData   bool       // the last wait returned: read before waiting again
	deadline   time.Time
	pendingErr error // a wait's deadline or flush, returned once the ring is empty

	bufferSize int
}

// NewReader returns a Reader of the ring buffer map m, which must be of type
// ebpf.RingBuf (or ebpf.WindowsRingBuf) with a power-of-two size. m stays
// the caller's: the Reader's mapping keeps the ring alive.
func NewReader(m *ebpf.Map) (*Reader, error) {
	ring, p, err := open(m)
	if err != nil {
		return nil, err
	}
	return &Reader{poller: p, ring: ring, bufferSize: int(m.MaxEntries())}, nil
}

// open checks m as cilium/ebpf does, maps it and makes its poller.
func open(m *ebpf.Map) (*ring, *poller, error) {
	if m.Type() != ebpf.RingBuf && m.Type() != ebpf.WindowsRingBuf {
		return nil, nil, fmt.Errorf("invalid Map type: %s", m.Type())
	}
	n := int(m.MaxEntries())
	if n == 0 || n&(n-1) != 0 {
		return nil, nil, fmt.Errorf("ringbuffer map size %d is zero or not a power of two", n)
	}
	// The poller first, then the mapping, as cilium/ebpf: the same error
	// for a map whose descriptor is closed.
	p, err := newPoller(m.FD())
	if err != nil {
		return nil, nil, err
	}
	r, err := mapRing(m.FD(), n)
	if err != nil {
		p.Close()
		return nil, nil, fmt.Errorf("failed to create ringbuf ring: %w", err)
	}
	return r, p, nil
}

// Close frees the Reader's resources and interrupts a blocked Read or
// ReadInto, which returns an error matching ErrClosed. A read that is
// taking a record when Close is called finishes first: Close waits for
// it. Calling Close again returns nil.
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
		err = r.ring.close()
		r.ring = nil
	}
	return err
}

// SetDeadline sets when Read and ReadInto stop waiting for records and
// return os.ErrDeadlineExceeded; the zero time (the default) waits for
// ever. It is counted in whole milliseconds from the start of each wait:
// a deadline less than a millisecond away counts as passed.
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
// signalled any. Once the Reader is closed (also when Close interrupts the
// wait) it returns an error matching ErrClosed; after Flush, the records
// that are there and then ErrFlushed; once the deadline passed, the records
// there and then an error matching os.ErrDeadlineExceeded.
//
// Records written with BPF_RB_NO_WAKEUP may wait for a later wake-up, the
// deadline or Flush, as with cilium/ebpf (see the package documentation).
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
			if !r.poller.spin(r.ring) {
				err := r.poller.Wait(r.deadline)
				if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrFlushed) {
					// Records may be there all the same (written
					// with BPF_RB_NO_WAKEUP): read them first.
					r.pendingErr = err
				} else if err != nil {
					return err
				}
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

// take reads the next record into rec, skipping discarded ones, and
// stores the consumer position past it. It reports false at the end of
// the ring. r.mu is held.
func (r *Reader) take(rec *Record) (bool, error) {
	for {
		data, remain, err := r.ring.readSample()
		if err != nil {
			r.ring.commit() // past the discarded records read
			if err == errEOR {
				return false, nil
			}
			return false, err
		}
		if data == nil {
			continue // discarded
		}
		if n := len(data); cap(rec.RawSample) < n {
			rec.RawSample = make([]byte, n)
		} else {
			rec.RawSample = rec.RawSample[:n]
		}
		copy(rec.RawSample, data)
		rec.Remaining = remain
		r.ring.commit()
		return true, nil
	}
}

// BufferSize returns the size in bytes of the ring's data area.
func (r *Reader) BufferSize() int { return r.bufferSize }

// Flush makes a blocked Read or ReadInto (or the next one) return the
// records in the ring, then ErrFlushed.
func (r *Reader) Flush() error { return r.poller.Flush() }

// AvailableBytes returns how many bytes of the ring the producers have
// written and the Reader has not consumed: producer position less consumer
// position, loaded in that order without a lock, as cilium/ebpf does. It
// must not be called after Close (see the package documentation).
func (r *Reader) AvailableBytes() int { return r.ring.available() }
