package ringbuf

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/ringo-bpf/ringo"
	"golang.org/x/sys/unix"
)

// base is what Reader and RawReader are built on: the ring buffer map mapped
// by ringo (OpenMap), the ringo Reader that consumes it, and the waiter
// that turns deadlines and flushes into the contexts ringo's Reader waits
// with.
type base struct {
	ring *ringo.KernelRing
	rd   *ringo.Reader
	w    *waiter
	wake *wakeups // the Reader's (nil for a RawReader): see wakeups
	size int

	closed atomic.Bool
	// unmap is held for writing while Close unmaps the ring, and for
	// reading by AvailableBytes, which does not wait for reads.
	unmap sync.RWMutex
}

// open checks m as cilium/ebpf does, with its errors, and opens it with
// ringo.
func open(m *ebpf.Map) (*base, error) {
	if m.Type() != ebpf.RingBuf && m.Type() != ebpf.WindowsRingBuf {
		return nil, fmt.Errorf("invalid Map type: %s", m.Type())
	}
	n := int(m.MaxEntries())
	if n == 0 || n&(n-1) != 0 {
		return nil, fmt.Errorf("ringbuffer map size %d is zero or not a power of two", n)
	}
	if m.FD() < 0 {
		// A closed map: cilium/ebpf's reader fails adding the descriptor
		// to its epoll instance, the first thing it does.
		return nil, fmt.Errorf("add fd to epoll: %v", unix.EBADF)
	}
	ring, err := ringo.OpenMap(m)
	if err != nil {
		return nil, fmt.Errorf("failed to create ringbuf ring: %w", err)
	}
	rd, err := ringo.NewReader(ring)
	if err != nil {
		ring.Close()
		return nil, err
	}
	return &base{ring: ring, rd: rd, w: newWaiter(), size: ring.Size()}, nil
}

// freeOnCollect closes b's ring and reader once owner, which holds b, is
// collected without Close, as cilium/ebpf's readers unmap theirs: b itself
// must not reach owner.
func freeOnCollect[T any](owner *T, b *base) runtime.Cleanup {
	return runtime.AddCleanup(owner, func(b *base) { b.free() }, b)
}

// free closes the waiter, the reader and the ring; the reader first, which
// interrupts a blocked read. wait, run between the two, waits for the read
// (or lease) to end, so that the ring is unmapped after its last use.
func (b *base) free(wait ...func()) error {
	b.w.close()
	b.rd.Close()
	for _, w := range wait {
		w()
	}
	if b.wake != nil {
		b.wake.close()
	}
	b.unmap.Lock()
	defer b.unmap.Unlock()
	return b.ring.Close()
}

// available is producer position less consumer position, in the order the
// kernel's bpf_ringbuf_query(BPF_RB_AVAIL_DATA) loads them (consumer
// first), so that it is never negative. It panics after Close, as
// cilium/ebpf's does.
func (b *base) available(what string) int {
	b.unmap.RLock()
	defer b.unmap.RUnlock()
	if b.closed.Load() {
		panic("ringbuf: AvailableBytes of a closed " + what)
	}
	n, _ := b.ring.Query(ringo.AvailData)
	return int(n)
}

// remaining is the bytes the producers have published past rec: cilium's
// Record.Remaining and ReadSample's remain.
func (b *base) remaining(rec *ringo.Record) int {
	prod, _ := b.ring.Query(ringo.ProducerPos)
	return int(prod - rec.Pos - uint64(ringo.HeaderSize+(len(rec.Data)+7)&^7))
}

// fail turns an error of ringo's Reader into cilium/ebpf's: a closed
// reader's wait error, and a corrupt ring's, which matches
// io.ErrUnexpectedEOF as cilium's does (and ringo.ErrCorrupt).
func fail(err error) error {
	switch {
	case errors.Is(err, ringo.ErrClosed):
		return errWaitClosed
	case errors.Is(err, ringo.ErrCorrupt):
		return fmt.Errorf("read record: %w: %w", io.ErrUnexpectedEOF, err)
	}
	return err
}
