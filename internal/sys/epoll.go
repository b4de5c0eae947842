package sys

import (
	"fmt"
	"os"
	"sync"
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
// Interrupt makes a blocked Wait return early; it is safe to call from any
// goroutine, including concurrently with Wait and Close.
type Poller struct {
	epfd int
	intr *EventFD

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
	intr, err := NewEventFD()
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	p := &Poller{epfd: epfd, intr: intr, events: make([]unix.EpollEvent, 64)}
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
	return unix.Close(p.epfd)
}
