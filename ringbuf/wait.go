package ringbuf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrFlushed is returned by Read, ReadInto and Lease.ReadSample once the
// records that were in the ring when Flush was called have all been read.
var ErrFlushed = errors.New("data was flushed")

// The errors of a wait, with cilium/ebpf's texts (its epoll poller's):
// callers match them with errors.Is against os.ErrDeadlineExceeded and
// os.ErrClosed.
var (
	errWaitDeadline = fmt.Errorf("epoll wait: %w", os.ErrDeadlineExceeded)
	errWaitClosed   = fmt.Errorf("epoll wait: %w", os.ErrClosed)
	errWakeClosed   = fmt.Errorf("epoll wake: %w", os.ErrClosed)
)

// A waiter turns cilium's SetDeadline and Flush into the context.Context
// the readers' waits (wakeups) end with: the current generation, a waitCtx
// that ends when the deadline passes or Flush is called. Reads pass the
// same generation again and again, so the wait registers it once (it
// keeps the registration of a context passed again), and SetDeadline moves
// the deadline of a generation that has not ended instead of making a new
// one: a program that sets a deadline before every read allocates nothing.
// A new generation is made only once one has ended: after a Flush was
// returned, or for a deadline set after the last one passed.
//
// The deadline a generation ends at is the one set less a millisecond:
// cilium/ebpf counts a wait's timeout in whole milliseconds, rounded down,
// so that a read of an empty ring returns at once when the deadline is less
// than a millisecond away, and otherwise within the millisecond before it.
type waiter struct {
	mu       sync.Mutex
	gen      atomic.Pointer[waitCtx] // stored with mu held; loaded by context without it
	deadline time.Time               // as set, zero for none
	flushed  bool                    // a Flush not yet returned as ErrFlushed
	closed   bool                    // Close was called
	timer    *time.Timer             // ends gen at its deadline; made at the first deadline
}

func newWaiter() *waiter {
	w := &waiter{}
	w.gen.Store(&waitCtx{w: w, done: make(chan struct{})})
	return w
}

// context returns the context for the next wait: an atomic load, not the
// lock, which a read per record cannot afford.
func (w *waiter) context() context.Context { return w.gen.Load() }

// ends is the moment a generation waiting for deadline t ends.
func ends(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Add(-time.Millisecond)
}

// setDeadline sets the deadline of the reads from now on (zero: none).
func (w *waiter) setDeadline(t time.Time) {
	w.mu.Lock()
	w.deadline = t
	if w.closed {
		w.mu.Unlock()
		return
	}
	g, end := w.gen.Load(), ends(t)
	if g.err != nil {
		// Ended: a reported flush comes first (take renews then); a
		// deadline already passed leaves it ended.
		if !w.flushed && (end.IsZero() || time.Now().Before(end)) {
			w.renew(end)
		}
		w.mu.Unlock()
		return
	}
	g.deadline = end
	var fire []func()
	switch {
	case end.IsZero():
		if w.timer != nil {
			w.timer.Stop()
		}
	case !time.Now().Before(end):
		fire = g.end(context.DeadlineExceeded)
	default:
		w.arm(end)
	}
	w.mu.Unlock()
	run(fire)
}

// renew makes a new generation ending at end; w.mu is held.
func (w *waiter) renew(end time.Time) {
	w.gen.Store(&waitCtx{w: w, done: make(chan struct{}), deadline: end})
	if !end.IsZero() {
		w.arm(end)
	}
}

// arm has the timer end the current generation at end; w.mu is held.
func (w *waiter) arm(end time.Time) {
	d := time.Until(end)
	if w.timer == nil {
		w.timer = time.AfterFunc(d, w.fire)
		return
	}
	w.timer.Reset(d)
}

// fire is the timer's: it ends the generation whose deadline passed. A
// deadline moved meanwhile is waited for again, one removed is ignored.
func (w *waiter) fire() {
	w.mu.Lock()
	g := w.gen.Load()
	if g.err != nil || g.deadline.IsZero() || w.closed {
		w.mu.Unlock()
		return
	}
	if d := time.Until(g.deadline); d > 0 {
		w.timer.Reset(d)
		w.mu.Unlock()
		return
	}
	fire := g.end(context.DeadlineExceeded)
	w.mu.Unlock()
	run(fire)
}

// flush ends the current generation, for the blocked read (or the next
// one) to return what the ring holds, then ErrFlushed. Two Flushes before
// that count once, as two writes to cilium's eventfd do.
func (w *waiter) flush() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return errWakeClosed
	}
	w.flushed = true
	var fire []func()
	if g := w.gen.Load(); g.err == nil {
		fire = g.end(context.Canceled)
	}
	w.mu.Unlock()
	run(fire)
	return nil
}

// take is called by a read whose wait the current generation ended: it
// returns the error the read returns once the ring is empty, ErrFlushed
// for a flush (spent by this: reads wait again, in a new generation, unless
// the deadline has passed too) or the deadline's.
func (w *waiter) take() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.flushed {
		return errWaitDeadline
	}
	w.flushed = false
	if end := ends(w.deadline); !w.closed && (end.IsZero() || time.Now().Before(end)) {
		w.renew(end)
	}
	return ErrFlushed
}

// close stops the timer and ends the current generation, which interrupts
// a blocked read (the wait has no timeout of its own: it ends with the
// generation, which the stopped timer would no longer end). Later Flushes
// fail.
func (w *waiter) close() {
	w.mu.Lock()
	w.closed = true
	if w.timer != nil {
		w.timer.Stop()
	}
	var fire []func()
	if g := w.gen.Load(); g.err == nil {
		fire = g.end(context.Canceled)
	}
	w.mu.Unlock()
	run(fire)
}

func run(fns []func()) {
	for _, f := range fns {
		f()
	}
}

// waitCtx is one generation of a waiter: a context.Context whose Done
// closes when the deadline passes or Flush is called. Its deadline may
// move (setDeadline) while it has not ended. It implements AfterFunc, so
// that context.AfterFunc (which the wait registers its interruption with)
// starts no goroutine.
type waitCtx struct {
	w        *waiter
	done     chan struct{}
	deadline time.Time // the end; guarded by w.mu
	err      error     // nil until done is closed; guarded by w.mu
	afters   []*func() // functions to call at the end; guarded by w.mu
}

func (c *waitCtx) Deadline() (time.Time, bool) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	return c.deadline, !c.deadline.IsZero()
}

func (c *waitCtx) Done() <-chan struct{} { return c.done }

func (c *waitCtx) Err() error {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	return c.err
}

func (c *waitCtx) Value(any) any { return nil }

// AfterFunc calls f once c ends (at once, in a goroutine, if it has), as
// context.AfterFunc does; stop unregisters it.
func (c *waitCtx) AfterFunc(f func()) (stop func() bool) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	p := &f
	c.afters = append(c.afters, p)
	return func() bool {
		c.w.mu.Lock()
		defer c.w.mu.Unlock()
		i := slices.Index(c.afters, p)
		if i < 0 {
			return false
		}
		c.afters = slices.Delete(c.afters, i, i+1)
		return true
	}
}

// end ends c with err and returns the functions to call, once w.mu is
// released (they call Err); w.mu is held.
func (c *waitCtx) end(err error) []func() {
	c.err = err
	close(c.done)
	fns := make([]func(), len(c.afters))
	for i, p := range c.afters {
		fns[i] = *p
	}
	c.afters = nil
	return fns
}

// waitBusy is a read's wait while the record at the consumer position is
// being written: a BPF program commits or discards every record it
// reserves before it returns (the verifier sees to it), so cilium/ebpf's
// readers spin; this yields the processor, then fails once the reader is
// closed.
func waitBusy(closed *atomic.Bool) error {
	runtime.Gosched()
	if closed.Load() {
		return errWaitClosed
	}
	return nil
}

// waitEnded reports whether err is the end of a waiter's generation, as
// the wait returns it (ctx.Err(), unwrapped).
func waitEnded(err error) bool {
	return err == context.Canceled || err == context.DeadlineExceeded
}
