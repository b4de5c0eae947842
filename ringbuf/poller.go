package ringbuf

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// poller is what a reader sleeps on: one epoll instance watching the ring's
// map descriptor (readable while the kernel's ring holds unconsumed data,
// reported when the kernel wakes its waiters) and two eventfds, one written
// by Close and one by Flush. It is cilium/ebpf's arrangement, so that a
// wait returns in exactly the cases cilium's does: level-triggered, one
// event per wait, a flush consumed by the wait that reports it, a close
// that stays reported until the poller is gone.
type poller struct {
	waitMu sync.Mutex // held by Wait, and by Close while it tears down
	epfd   int
	events [1]unix.EpollEvent // one event per wait, as cilium's

	eventMu sync.Mutex // guards the two eventfds below
	closeFD int        // -1 once closed
	flushFD int

	// ready is set when the last wait reported the ring: the kernel then
	// keeps its entry on epoll's ready list (level-triggered), so the
	// next wait returns as soon as the ring holds data, whatever wake-up
	// flags the producers used. Only the waiting goroutine uses it.
	ready bool
	// flushes counts Flush calls, each counted after its eventfd write;
	// flushesSeen is the count loaded before the wait that last read the
	// flush eventfd. While they differ a flush may be pending, which a
	// wait would report: no spinning then. (Counting after the write
	// errs only on the side of a flush thought pending.)
	flushes     atomic.Uint64
	flushesSeen uint64
	closing     atomic.Bool
	budget      int // looks spin takes at most, 1 to spinRounds

	cleanup runtime.Cleanup // closes the descriptors of a poller never closed
}

// spinRounds is the most times spin looks at the ring, yielding in
// between, before the reader sleeps in epoll_wait: a few microseconds.
const spinRounds = 50

// spin is what a reader does before it waits once the ring is empty: while
// the kernel keeps the ring on epoll's ready list (see ready), a wait
// would return as soon as data arrives, so looking at the ring for a
// moment first is the same wait without the system calls, and with no
// sleep and wake-up when records arrive within microseconds. It reports
// whether data arrived. (Where the ring is off the list, data written
// with BPF_RB_NO_WAKEUP does not end a wait, and spin returns false at
// once: only epoll_wait can tell.)
//
// How long it looks adapts: the budget doubles (up to spinRounds) when
// data came within it and halves (down to one look, no yield) when it did
// not, so a reader of sparse events, which would spin and then sleep
// anyway, stops spending CPU on spinning.
func (p *poller) spin(r *ring) bool {
	for i := range p.budget {
		if !p.ready || p.flushes.Load() != p.flushesSeen || p.closing.Load() {
			return false
		}
		if !r.empty() {
			p.budget = min(2*p.budget, spinRounds)
			return true
		}
		if i+1 < p.budget {
			runtime.Gosched()
		}
	}
	p.budget = max(p.budget/2, 1)
	return false
}

// newPoller watches the ring behind mapFD. Until its first wait reports
// the ring, it does not spin (whether epoll listed the ring as ready when
// it joined depends on data that may have come just before).
func newPoller(mapFD int) (_ *poller, err error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create epoll fd: %w", err)
	}
	p := &poller{epfd: epfd, closeFD: -1, flushFD: -1, budget: 1}
	defer func() {
		if err != nil {
			p.release()
		}
	}()
	for _, fd := range []*int{&p.closeFD, &p.flushFD} {
		if *fd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
			return nil, err
		}
		if err = p.add(*fd); err != nil {
			return nil, err
		}
	}
	if err = p.add(mapFD); err != nil {
		return nil, err
	}
	p.cleanup = runtime.AddCleanup(p, func(fds [3]int) {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}, [3]int{p.epfd, p.closeFD, p.flushFD})
	return p, nil
}

func (p *poller) add(fd int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("add fd to epoll: %v", err)
	}
	return nil
}

// release closes every descriptor the poller still has.
func (p *poller) release() {
	for _, fd := range []*int{&p.epfd, &p.closeFD, &p.flushFD} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// Wait sleeps until the kernel reports the ring readable, Flush or Close is
// called, or deadline passes (a zero deadline never does). It returns nil
// for the ring, ErrFlushed for a flush (consuming it), an error matching
// os.ErrClosed once Close was called and one matching
// os.ErrDeadlineExceeded when the deadline passed first. The timeout is
// counted in whole milliseconds, rounded down, as cilium counts it.
func (p *poller) Wait(deadline time.Time) error {
	p.waitMu.Lock()
	defer p.waitMu.Unlock()
	if p.epfd < 0 {
		return errWaitClosed
	}
	for {
		timeout := -1
		if !deadline.IsZero() {
			timeout = int(min(max(time.Until(deadline).Milliseconds(), 0), math.MaxInt32))
		}
		n, err := unix.EpollWait(p.epfd, p.events[:], timeout)
		if err == unix.EINTR {
			continue
		}
		p.ready = false
		if err != nil {
			return err
		}
		if n == 0 {
			return errWaitDeadline
		}
		switch int(p.events[0].Fd) {
		case p.closeFD:
			// Never read: it stays reported until Close is done.
			return errWaitClosed
		case p.flushFD:
			p.flushesSeen = p.flushes.Load()
			var buf [8]byte
			unix.Read(p.flushFD, buf[:])
			return ErrFlushed
		}
		p.ready = true
		return nil
	}
}

// Flush makes the current or next Wait return ErrFlushed.
func (p *poller) Flush() error {
	err := p.signal(&p.flushFD)
	p.flushes.Add(1)
	return err
}

// signal adds one to the eventfd at *fd.
func (p *poller) signal(fd *int) error {
	p.eventMu.Lock()
	defer p.eventMu.Unlock()
	if *fd < 0 {
		return errWakeClosed
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, err := unix.Write(*fd, one[:])
	return err
}

// Close interrupts a Wait, waits for it to return and closes the poller.
// Calls after the first return an error matching os.ErrClosed.
func (p *poller) Close() error {
	p.closing.Store(true)
	if err := p.signal(&p.closeFD); err != nil {
		return err
	}
	p.waitMu.Lock()
	defer p.waitMu.Unlock()
	p.eventMu.Lock()
	defer p.eventMu.Unlock()
	p.cleanup.Stop()
	p.release()
	return nil
}
