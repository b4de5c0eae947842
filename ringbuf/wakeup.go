package ringbuf

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"
)

// wakeups is how the Reader waits as cilium/ebpf v0.22.0's does once a read
// found the ring empty: for the kernel's next wake-up of the ring, without
// looking at it first (see doc.go). It is an epoll instance of its own,
// holding a descriptor of the map, level-triggered as cilium's, and an
// eventfd that the end of a waiter's generation (a deadline, Flush, Close)
// writes to. The kernel puts the map on the epoll instance's ready list
// only when it wakes the ring's waiters: records committed without a
// wake-up (BPF_RB_NO_WAKEUP) leave a wait asleep, as in cilium/ebpf.
type wakeups struct {
	epfd, mapfd, efd int
}

func newWakeups(mapFD int) (*wakeups, error) {
	w := &wakeups{epfd: -1, mapfd: -1, efd: -1}
	var err error
	if w.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("create epoll fd: %w", err)
	}
	if w.mapfd, err = unix.FcntlInt(uintptr(mapFD), unix.F_DUPFD_CLOEXEC, 0); err != nil {
		w.close()
		return nil, fmt.Errorf("duplicate the map's fd: %w", err)
	}
	if w.efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		w.close()
		return nil, fmt.Errorf("create eventfd: %w", err)
	}
	for _, fd := range []int{w.mapfd, w.efd} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			w.close()
			return nil, fmt.Errorf("add fd to epoll: %w", err)
		}
	}
	return w, nil
}

// wait sleeps until the kernel wakes the ring or ctx (a waiter's
// generation) ends, and returns ctx.Err() if it has ended, else nil.
func (w *wakeups) wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, w.poke)
	defer stop()
	var events [2]unix.EpollEvent
	for {
		n, err := unix.EpollWait(w.epfd, events[:], -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll wait: %w", err)
		}
		for _, ev := range events[:n] {
			if int(ev.Fd) == w.efd {
				var buf [8]byte
				unix.Read(w.efd, buf[:]) // drain: level-triggered
			}
		}
		return ctx.Err()
	}
}

// poke wakes a wait.
func (w *wakeups) poke() {
	one := [8]byte{1}
	unix.Write(w.efd, one[:])
}

// close closes the descriptors; no wait may be running.
func (w *wakeups) close() {
	for _, fd := range []int{w.epfd, w.mapfd, w.efd} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}
