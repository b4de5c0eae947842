package sys

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Poller waits on many descriptors with one epoll instance. Descriptors are
// registered edge-triggered: Wait reports a descriptor once per wake-up its
// owner signals, not for as long as it stays readable. That is what lets a
// reader sleep while a record at the head of a ring is still being written
// (a kernel ring's fd stays readable then) and still never miss the producer's
// commit, which signals again.
//
// Interrupt makes a blocked Wait or WaitInRuntime return early; it is safe to call from any
// goroutine, including concurrently with Wait and Close.
type Poller struct {
	epfd int
	// file is epfd in the Go runtime's poller (an epoll instance polls
	// readable while it has events), for WaitInRuntime; it owns epfd.
	file      *os.File
	conn      syscall.RawConn
	deadline  bool // a read deadline is set on file
	inRuntime bool // file is in the runtime's poller: WaitInRuntime can wait there
	intr      *EventFD

	mu     sync.Mutex
	closed bool
	events []unix.EpollEvent
}

// interruptKey is the key Wait never reports: it marks the interrupt eventfd.
const interruptKey = -1

// NewPoller creates an epoll instance with its own interrupt eventfd.
func NewPoller() (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll: set non-blocking: %w", err)
	}
	// Non-blocking so that os.NewFile puts it in the runtime's poller
	// (epoll_wait itself blocks for its timeout regardless).
	file := os.NewFile(uintptr(epfd), "epoll")
	conn, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("epoll: %w", err)
	}
	intr, err := NewEventFD()
	if err != nil {
		file.Close()
		return nil, err
	}
	p := &Poller{epfd: epfd, file: file, conn: conn, intr: intr, events: make([]unix.EpollEvent, 64)}
	// Deadlines work only for descriptors in the runtime's poller.
	p.inRuntime = file.SetReadDeadline(time.Time{}) == nil
	if err := p.add(intr.FD(), interruptKey, unix.EPOLLIN); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Add registers fd, reported by Wait as key, for readability (edge-triggered).
func (p *Poller) Add(fd int, key int) error {
	return p.add(fd, key, unix.EPOLLIN|unix.EPOLLET)
}

// AddLevel registers fd, reported by Wait as key, for readability,
// level-triggered: Wait reports it while it polls readable. (For a kernel
// ring the kernel re-checks it only on a wake-up: cilium/ebpf's wait, which
// the ringbuf drop-in copies.)
func (p *Poller) AddLevel(fd int, key int) error {
	return p.add(fd, key, unix.EPOLLIN)
}

// AddWritable registers fd, reported by Wait as key, for writability
// (edge-triggered): a user ring's fd polls writable when it has free space.
func (p *Poller) AddWritable(fd int, key int) error {
	return p.add(fd, key, unix.EPOLLOUT|unix.EPOLLET)
}

func (p *Poller) add(fd int, key int, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(key)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl add fd %d: %w", fd, err)
	}
	return nil
}

// Remove unregisters fd.
func (p *Poller) Remove(fd int) error {
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil); err != nil {
		return fmt.Errorf("epoll_ctl del fd %d: %w", fd, err)
	}
	return nil
}

// Wait blocks until a registered descriptor is signalled, Interrupt is
// called or the timeout passes (a negative timeout waits forever). It
// appends the keys of the signalled descriptors to keys and reports whether
// it was interrupted. Only one goroutine may Wait at a time.
func (p *Poller) Wait(keys []int, timeout time.Duration) (_ []int, interrupted bool, err error) {
	ms := -1
	if timeout >= 0 {
		// Round up so that a deadline 0.5 ms away is not a busy loop.
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	n, err := unix.EpollWait(p.epfd, p.events, ms)
	if err == unix.EINTR {
		return keys, false, nil
	}
	if err != nil {
		return keys, false, os.NewSyscallError("epoll_wait", err)
	}
	return p.collect(keys, n)
}

// WaitInRuntime is Wait in the Go runtime's poller: the calling goroutine
// is parked there instead of blocking its thread in epoll_wait. A blocking
// system call costs the runtime more the longer it lasts (entering one
// wakes the runtime's monitor thread, sysmon, from its deep sleep, and it
// then looks every 20 µs for a millisecond before backing off: runtime/
// proc.go, entersyscallWakeSysmon), a wait in the runtime's poller more
// the more often it wakes: callers choose by how long they expect to
// sleep.
func (p *Poller) WaitInRuntime(keys []int, timeout time.Duration) (_ []int, interrupted bool, err error) {
	if !p.inRuntime {
		return p.Wait(keys, timeout)
	}
	if timeout >= 0 {
		p.file.SetReadDeadline(time.Now().Add(timeout))
		p.deadline = true
	} else if p.deadline {
		p.file.SetReadDeadline(time.Time{})
		p.deadline = false
	}
	n := 0
	var werr error
	err = p.conn.Read(func(fd uintptr) bool {
		n, werr = unix.EpollWait(int(fd), p.events, 0)
		return n > 0 || (werr != nil && werr != unix.EINTR)
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return keys, false, nil
	}
	if err == nil {
		err = werr
	}
	if err != nil {
		return keys, false, os.NewSyscallError("epoll_wait", err)
	}
	return p.collect(keys, n)
}

// collect appends the keys of the first n events to keys, drains the
// interrupt eventfd if it is among them, and reports whether it was.
func (p *Poller) collect(keys []int, n int) (_ []int, interrupted bool, err error) {
	for _, ev := range p.events[:n] {
		if ev.Fd == interruptKey {
			interrupted = true
			p.intr.Drain()
			continue
		}
		keys = append(keys, int(ev.Fd))
	}
	return keys, interrupted, nil
}

// Interrupt wakes a blocked Wait, or the next one if none is blocked.
func (p *Poller) Interrupt() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.intr.Signal()
	}
}

// Close releases the epoll instance. It must not race with Wait: interrupt
// the waiter and let it return first.
func (p *Poller) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.intr.Close()
	return p.file.Close()
}
