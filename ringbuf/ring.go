package ringbuf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// openOwn checks m as cilium/ebpf does, maps it and makes its poller.
func openOwn(m *ebpf.Map) (*ring, *poller, error) {
	if m.Type() != ebpf.RingBuf && m.Type() != ebpf.WindowsRingBuf {
		return nil, nil, fmt.Errorf("invalid Map type: %s", m.Type())
	}
	n := int(m.MaxEntries())
	if n == 0 || n&(n-1) != 0 {
		return nil, nil, fmt.Errorf("ringbuffer map size %d is zero or not a power of two", n)
	}
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

// errEOR is readSample's error for an empty ring.
var errEOR = errors.New("end of ring")

// Bits of a record header's length word, and the header's size.
const (
	busyBit    = 1 << 31
	discardBit = 1 << 30
	headerSize = 8
)

// ring is a BPF ring buffer map mapped for consuming: the consumer page
// (read-write), the producer page and the data area mapped twice in a row
// (read-only), and a consumer position of the reader's own that reaches
// the kernel's consumer_pos only at commit.
type ring struct {
	cons, prod []byte
	consPos    *atomic.Uint64
	prodPos    *atomic.Uint64
	data       []byte
	mask       uint64
	local      uint64 // the consumer position after the last sample read
	closed     bool
	cleanup    runtime.Cleanup // unmaps a ring never closed, as cilium's does
}

func mapRing(fd, size int) (*ring, error) {
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
	r := &ring{
		cons:    cons,
		prod:    prod,
		consPos: (*atomic.Uint64)(unsafe.Pointer(&cons[0])),
		prodPos: (*atomic.Uint64)(unsafe.Pointer(&prod[0])),
		data:    prod[page:],
		mask:    uint64(size - 1),
	}
	r.local = r.consPos.Load()
	r.cleanup = runtime.AddCleanup(r, func(m [2][]byte) {
		unix.Munmap(m[0])
		unix.Munmap(m[1])
	}, [2][]byte{cons, prod})
	return r, nil
}

// readSample reads the sample at the local consumer position and moves past
// it: data is nil for a discarded sample, and otherwise a slice of the
// ring's memory whose capacity runs on to the end of the mapping, as
// cilium's does. remain is what lies past the sample up to the producer
// position, loaded once per call. A sample still being written is waited
// for: its producer commits it before its program returns. It returns
// errEOR when the ring is empty, and an error matching io.ErrUnexpectedEOF
// when the positions or a header are impossible.
func (r *ring) readSample() (data []byte, remain int, err error) {
	// Pairs with the kernel's store-release of producer_pos: the headers
	// below it are visible.
	prod := r.prodPos.Load()
	pos := r.local
	switch avail := prod - pos; {
	case avail == 0:
		return nil, 0, errEOR
	case avail < headerSize:
		return nil, 0, fmt.Errorf("read record header: %w", io.ErrUnexpectedEOF)
	}
	off := pos & r.mask
	word := (*atomic.Uint32)(unsafe.Pointer(&r.data[off]))
	// Pairs with the producer's commit (xchg of the length word): the
	// payload written before it is visible.
	w := word.Load()
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
	return r.data[start : start+n], remain, nil
}

// empty reports whether the producers have published nothing past the
// local consumer position.
func (r *ring) empty() bool { return r.prodPos.Load() == r.local }

// commit stores the local consumer position as the kernel's consumer_pos,
// freeing the space of the samples read for producers, with release
// ordering (the reads of those samples come first), as libbpf does.
func (r *ring) commit() { storeRelease(r.consPos, r.local) }

// available is producer_pos less the committed consumer_pos, loaded in
// that order, as cilium/ebpf does.
func (r *ring) available() int {
	if r.closed {
		panic("ringbuf: AvailableBytes of a closed reader")
	}
	prod := r.prodPos.Load()
	return int(prod - r.consPos.Load())
}

func (r *ring) close() error {
	r.cleanup.Stop()
	r.closed = true
	return errors.Join(unix.Munmap(r.prod), unix.Munmap(r.cons))
}
