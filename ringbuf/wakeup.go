package ringbuf

import (
	"context"
	"fmt"
	"time"

	"github.com/ringo-bpf/ringo/internal/sys"
	"golang.org/x/sys/unix"
)

// wakeups is how the readers wait as cilium/ebpf's do once a read found the
// ring empty: for the kernel's next wake-up of the ring (a Reader without
// looking at the ring first, as v0.22.0's: see doc.go). It is a poller of
// its own holding a descriptor of the map, level-triggered as cilium's
// epoll instance is: the kernel puts the map on its ready list only when it
// wakes the ring's waiters, so records committed without a wake-up
// (BPF_RB_NO_WAKEUP) leave a wait asleep, as in cilium/ebpf. The end of a
// waiter's generation (a deadline, Flush, Close) interrupts it.
type wakeups struct {
	p     *sys.Poller
	mapfd int
	keys  []int
	timer *time.Timer // nap's, made at the first

	// The generation whose end interrupts the poller, registered once per
	// generation (reads pass the same one again and again), and its stop.
	armed context.Context
	stop  func() bool
}

func newWakeups(mapFD int) (*wakeups, error) {
	fd, err := unix.FcntlInt(uintptr(mapFD), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate the map's fd: %w", err)
	}
	p, err := sys.NewPoller()
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := p.AddLevel(fd, 0); err != nil {
		p.Close()
		unix.Close(fd)
		return nil, fmt.Errorf("add fd to epoll: %w", err)
	}
	return &wakeups{p: p, mapfd: fd, keys: make([]int, 0, 1)}, nil
}

// wait sleeps until the kernel wakes the ring or ctx (a waiter's
// generation) ends, and returns ctx.Err() if it has ended, else nil.
func (w *wakeups) wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ctx != w.armed {
		if w.stop != nil {
			w.stop()
		}
		w.armed, w.stop = ctx, context.AfterFunc(ctx, w.p.Interrupt)
	}
	for {
		keys, interrupted, err := w.p.Wait(w.keys[:0], -1)
		if err != nil {
			return fmt.Errorf("epoll wait: %w", err)
		}
		if len(keys) != 0 || interrupted {
			// (An interruption by a generation that ended before this
			// one began looks like a wake-up: the read looks again.)
			return ctx.Err()
		}
		// EINTR: wait again.
	}
}

// heldNap is how long a RawReader holding samples it has not committed
// sleeps between two looks at the ring (see nap).
const heldNap = time.Millisecond

// nap sleeps for heldNap or until ctx ends, and returns ctx.Err() if it
// has ended, else nil. It is a RawReader's wait while it holds samples it
// has not committed: the kernel reports the map ready for as long as
// bytes lie past the committed consumer position, so the poller would
// return at once, again and again (cilium/ebpf main's ReadSample spins so,
// and never sees its deadline: see doc.go).
func (w *wakeups) nap(ctx context.Context) error {
	if w.timer == nil {
		w.timer = time.NewTimer(heldNap)
	} else {
		w.timer.Reset(heldNap)
	}
	select {
	case <-ctx.Done():
		w.timer.Stop()
		return ctx.Err()
	case <-w.timer.C:
		return nil
	}
}

// close releases the poller and the descriptor; no wait may be running.
func (w *wakeups) close() {
	if w.stop != nil {
		w.stop()
	}
	w.p.Close()
	unix.Close(w.mapfd)
}
