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
	"github.com/ringo-bpf/ringo/internal/look"
	"golang.org/x/sys/unix"
)

// base is what Reader and RawReader are built on: the ring buffer map mapped
// by ringo (OpenMap), the ringo Reader that consumes it and the look at the
// ring the reads go through (one record per call, with the Reader's checks,
// without its lock: internal/look), the wait for the kernel's wake-ups, and
// the waiter that turns deadlines and flushes into the contexts the wait
// ends with.
type base struct {
	ring *ringo.KernelRing
	rd   *ringo.Reader
	look look.Ring
	w    *waiter
	wake *wakeups
	size int

	closed atomic.Bool
	// unmap is held for writing while Close unmaps the ring, and for
	// reading by AvailableBytes, which does not wait for reads.
	unmap sync.RWMutex
}

// open checks m as cilium/ebpf does, with its errors, and opens it with
// ringo; raw says for a RawReader (see look.Open).
func open(m *ebpf.Map, raw bool) (*base, error) {
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
	b := &base{ring: ring, rd: rd, w: newWaiter(), size: ring.Size()}
	if b.look, err = look.Open(rd, raw); err == nil {
		b.wake, err = newWakeups(m.FD())
	}
	if err != nil {
		b.free()
		return nil, err
	}
	return b, nil
}

// freeOnCollect closes b's ring and reader once owner, which holds b, is
// collected without Close, as cilium/ebpf's readers unmap theirs: b itself
// must not reach owner.
func freeOnCollect[T any](owner *T, b *base) runtime.Cleanup {
	return runtime.AddCleanup(owner, func(b *base) { b.free() }, b)
}

// free closes the waiter, which interrupts a blocked read, then (once
// wait has waited for the read or lease to end: the look is used by reads
// only) the reader, the wait and the ring, unmapped after its last use.
func (b *base) free(wait ...func()) error {
	b.w.close()
	for _, w := range wait {
		w()
	}
	b.rd.Close()
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

// waited returns what a read does after its wait returned err (nil: look
// again): fail with the error the read returns (Close, or the wait
// failed), or look again, returning pending once the ring is empty (a
// deadline or a flush ended the wait: the records written meanwhile without
// a wake-up come first).
func (b *base) waited(err error) (pending, fail error) {
	switch {
	case err == nil:
		return nil, nil
	case b.closed.Load():
		return nil, errWaitClosed
	case !waitEnded(err):
		return nil, err
	}
	return b.w.take(), nil
}

// fail turns an error of the look into cilium/ebpf's: a corrupt ring's
// matches io.ErrUnexpectedEOF as cilium's does (and ringo.ErrCorrupt).
func fail(err error) error {
	if errors.Is(err, ringo.ErrCorrupt) {
		return fmt.Errorf("read record: %w: %w", io.ErrUnexpectedEOF, err)
	}
	return err
}
