package bench

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"github.com/ringo-bpf/ringo"
	"golang.org/x/sys/unix"
)

// The floor is not a reader anyone should use: it says what the drain's
// figures for Consume are made of. It is the least a reader can do that
// hands each record to a Go func(ringo.Record) error, as Consume does: one
// load of the header, one call, consumer_pos stored once at the end, no
// check against corrupt memory. Consume's CPU per record less the floor's
// is what Consume's checks and bookkeeping add; the floor's against
// libbpf's is what Go's call costs against C's.
type floorReader struct {
	cons, data []byte // the consumer page; the producer page and the doubled data
	mask       uint64
	fn         func(ringo.Record) error
	s          *sink
}

func newFloorReader(fd, ringBytes int) (*floorReader, error) {
	pg := os.Getpagesize()
	cons, err := unix.Mmap(fd, 0, pg, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("bench: map the ring's consumer page: %w", err)
	}
	data, err := unix.Mmap(fd, int64(pg), pg+2*ringBytes, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		unix.Munmap(cons)
		return nil, fmt.Errorf("bench: map the ring's data: %w", err)
	}
	f := &floorReader{cons: cons, data: data, mask: uint64(ringBytes - 1)}
	f.fn = func(r ringo.Record) error { f.s.add(r.Data); return nil }
	return f, nil
}

// read drains what is there, once.
func (f *floorReader) read(s *sink) error {
	f.s = s
	// consumer_pos and producer_pos open their pages; the data follows
	// the producer page, mapped twice in a row by the kernel so that a
	// record that wraps reads on. Every offset below is masked into the
	// first copy, and a record (at most a ring's size) ends within the
	// second.
	cp := (*uint64)(unsafe.Pointer(&f.cons[0]))
	pp := (*uint64)(unsafe.Pointer(&f.data[0]))
	base := unsafe.Pointer(&f.data[os.Getpagesize()])
	cons := floorCall(base, f.mask, atomic.LoadUint64(cp), atomic.LoadUint64(pp), f.fn)
	atomic.StoreUint64(cp, cons)
	return nil
}

// floorCall walks the records from cons to prod, calling fn with each
// committed one's payload.
func floorCall(base unsafe.Pointer, mask, cons, prod uint64, fn func(ringo.Record) error) uint64 {
	for cons < prod {
		off := cons & mask
		// The length word: its load-acquire pairs with the producer's
		// commit. The payload follows the 8-byte header.
		w := atomic.LoadUint32((*uint32)(unsafe.Add(base, off)))
		if w&(1<<31) != 0 { // busy
			break
		}
		n := uint64(w &^ (3 << 30))
		if w&(1<<30) == 0 { // not discarded
			fn(ringo.Record{Data: unsafe.Slice((*byte)(unsafe.Add(base, off+8)), n)})
		}
		cons += (n + 8 + 7) &^ 7
	}
	return cons
}

func (f *floorReader) wakeups() float64 { return -1 }

func (f *floorReader) Close() error {
	return errors.Join(unix.Munmap(f.cons), unix.Munmap(f.data))
}
