package ringbuf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
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
	ring   *rawRing

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
	if m.Type() != ebpf.RingBuf && m.Type() != ebpf.WindowsRingBuf {
		return nil, fmt.Errorf("invalid Map type: %s", m.Type())
	}
	n := int(m.MaxEntries())
	if n == 0 || n&(n-1) != 0 {
		return nil, fmt.Errorf("ringbuffer map size %d is zero or not a power of two", n)
	}
	p, err := newPoller(m.FD())
	if err != nil {
		return nil, err
	}
	ring, err := mapRing(m.FD(), n)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("failed to create ringbuf ring: %w", err)
	}
	return &RawReader{poller: p, ring: ring, bufferSize: n}, nil
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

// errEOR is readSample's error for an empty ring.
var errEOR = errors.New("end of ring")

// Bits of a record header's length word.
const (
	busyBit    = 1 << 31
	discardBit = 1 << 30
	headerSize = 8
)

// rawRing is a ring buffer map mapped for consuming, with a consumer
// position of its own that reaches the kernel only at commit.
type rawRing struct {
	cons, prod []byte // the consumer page; the producer page and data area
	consPos    *atomic.Uint64
	prodPos    *atomic.Uint64
	data       []byte // the data area, mapped twice in a row
	mask       uint64
	local      uint64 // the consumer position after the last sample read
	closed     bool
}

func mapRing(fd, size int) (*rawRing, error) {
	page := os.Getpagesize()
	cons, err := unix.Mmap(fd, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap consumer page: %w", err)
	}
	prod, err := unix.Mmap(fd, int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		unix.Munmap(cons)
		return nil, fmt.Errorf("mmap data pages: %w", err)
	}
	r := &rawRing{
		cons:    cons,
		prod:    prod,
		consPos: (*atomic.Uint64)(unsafe.Pointer(&cons[0])),
		prodPos: (*atomic.Uint64)(unsafe.Pointer(&prod[0])),
		data:    prod[page:],
		mask:    uint64(size - 1),
	}
	r.local = r.consPos.Load()
	return r, nil
}

// readSample reads the sample at the local consumer position and moves past
// it: data is nil for a discarded sample. A sample still being written is
// waited for (the producer commits before its program returns). It returns
// errEOR when the ring is empty, an error matching io.ErrUnexpectedEOF when
// the positions or a header are impossible.
func (r *rawRing) readSample() (data []byte, remain int, err error) {
	prod := r.prodPos.Load() // once per sample: the remain it reports
	pos := r.local
	switch avail := prod - pos; {
	case avail == 0:
		return nil, 0, errEOR
	case avail < headerSize:
		return nil, 0, fmt.Errorf("read record header: %w", io.ErrUnexpectedEOF)
	}
	off := pos & r.mask
	word := (*atomic.Uint32)(unsafe.Pointer(&r.data[off]))
	w := word.Load() // pairs with the producer's commit (xchg)
	for w&busyBit != 0 {
		runtime.Gosched()
		w = word.Load()
	}
	n := uint64(w &^ (busyBit | discardBit))
	pos += headerSize
	aligned := (n + 7) &^ 7
	if prod-pos < aligned {
		return nil, 0, fmt.Errorf("read sample data: %w", io.ErrUnexpectedEOF)
	}
	start := pos & r.mask
	pos += aligned
	r.local = pos
	remain = int(prod - pos)
	if w&discardBit != 0 {
		return nil, remain, nil
	}
	// The capacity runs on to the end of the mapping, as cilium's does.
	return r.data[start : start+n], remain, nil
}

func (r *rawRing) commit() { r.consPos.Store(r.local) }

func (r *rawRing) available() int {
	if r.closed {
		panic("ringbuf: AvailableBytes of a closed RawReader")
	}
	return int(r.prodPos.Load() - r.consPos.Load())
}

func (r *rawRing) close() error {
	r.closed = true
	return errors.Join(unix.Munmap(r.prod), unix.Munmap(r.cons))
}
