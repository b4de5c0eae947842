package ringo

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringo-bpf/ringo/internal/sys"
)

// Producers that wait for room, like a channel send. OutputWait and
// ReserveWait try to reserve; on a full ring they announce that they wait,
// try once more, and sleep until the consumer frees space, their context
// ends or the ring is closed. It is the Reader's wake-up protocol turned
// around:
//
//   - A waiting producer stores 1 in the ring's wanted word, then tries to
//     reserve again (which loads consumer_pos), then sleeps on the seq word
//     unless seq changed since it read it before announcing.
//   - The consumer stores consumer_pos, then loads wanted (readerRing.storePos);
//     if it is set, it clears it, increments seq and wakes every sleeper.
//
// Both sides are sequentially consistent, so either the consumer sees the
// announcement, or the producer's second try sees the space. The consumer
// pays one load of a word no one writes while no producer waits. All
// waiters are woken at once and race for the space: a producer that loses
// announces again; new producers do not pass them (they wait too while
// wanted is set), so none starves in practice. A producer that dies while
// waiting leaves wanted set: the consumer's next store of consumer_pos
// clears it, waking no one, and nothing stays stuck.
//
// The two words are in the consumer page of user-space rings (nil for
// kernel rings). Producers of a shared ring sleep on seq with a futex,
// across processes; those of an in-process ring park on a channel instead,
// so that a thousand waiting goroutines hold no thread each.

// spaceWait is where a ring's waiting producers sleep.
type spaceWait struct {
	wanted *atomic.Uint32 // consumer page: 1 while a producer waits
	seq    *atomic.Uint32 // consumer page: counted up at each wake-up

	// In-process rings: closed and replaced at each wake-up.
	mu sync.Mutex
	ch chan struct{}
	// shared is set for shared rings: sleep on seq with a futex.
	shared bool
}

// waitPoll bounds one sleep of a waiting producer where no one may wake it
// for the space it waits for: in a ring in overwrite mode (space frees when
// a record being written is committed, not when the consumer moves), and as
// a safety net everywhere.
const (
	waitPoll          = 100 * time.Millisecond
	waitPollOverwrite = 200 * time.Microsecond
)

// OutputWait is Output that waits for room while the ring is full, as a
// channel send does: until the consumer frees space (it wakes waiting
// producers then), ctx ends (it returns ctx's error and counts the record
// as dropped) or the ring is closed (ErrClosed). A record that can never
// fit returns ErrTooLarge at once. Waiting costs no CPU: the producer
// sleeps.
func (r *Ring) OutputWait(ctx context.Context, data []byte, flags uint64) (err error) {
	if flags&^wakeupFlags != 0 {
		return badFlags("output", flags)
	}
	if r.guarded {
		defer r.catchFault(guardFaults(), &err)
	}
	pos, slot, err := r.reserveWait(ctx, uint64(len(data)))
	if err != nil {
		return err
	}
	off := pos & r.mem.mask
	copy(r.mem.data[off+HeaderSize:], data)
	r.finish(off, uint32(len(data))|busyBit, flags, false, slot, true)
	return nil
}

// ReserveWait is Reserve that waits for room like OutputWait.
func (r *Ring) ReserveWait(ctx context.Context, n int) (res Reservation, err error) {
	if n < 0 {
		return Reservation{}, negativeSize(n)
	}
	if r.guarded {
		defer r.catchFault(guardFaults(), &err)
	}
	pos, slot, err := r.reserveWait(ctx, uint64(n))
	if err != nil {
		return Reservation{}, err
	}
	return r.reservation(pos, slot, n), nil
}

// reserveWait reserves n bytes, waiting for room (see OutputWait). A wait
// that ctx ends counts the record as dropped, once.
func (r *Ring) reserveWait(ctx context.Context, n uint64) (uint64, int, error) {
	w := r.mem.space
	for {
		// Others waiting are ahead of us: join them rather than take
		// the space the consumer freed for them.
		if w.wanted.Load() == 0 {
			pos, slot, err := r.reserve(n, ctx, false)
			if !errors.Is(err, ErrFull) {
				return pos, slot, r.gaveUp(ctx, n, err)
			}
		}
		seq := w.seq.Load()
		w.wanted.Store(1)
		pos, slot, err := r.reserve(n, ctx, false)
		if !errors.Is(err, ErrFull) {
			return pos, slot, r.gaveUp(ctx, n, err)
		}
		if r.closed.Load() {
			return 0, -1, ErrClosed
		}
		limit := waitPoll
		if r.mem.overwritePos != nil {
			limit = waitPollOverwrite
		}
		if err := w.sleep(ctx, seq, limit); err != nil {
			return 0, -1, r.gaveUp(ctx, n, err)
		}
	}
}

// gaveUp counts a waiting call's record of n bytes as dropped if err is
// its ctx's end, and returns err.
func (r *Ring) gaveUp(ctx context.Context, n uint64, err error) error {
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		r.mem.countDrop(n)
	}
	return err
}

// sleep waits until seq moves on from seq0, ctx ends or limit passes.
func (w *spaceWait) sleep(ctx context.Context, seq0 uint32, limit time.Duration) error {
	if dl, ok := ctx.Deadline(); ok {
		limit = min(limit, time.Until(dl))
	}
	if w.shared {
		// A futex cannot wait for ctx: have ctx's end wake it.
		stop := context.AfterFunc(ctx, func() { sys.FutexWake(w.seq) })
		sys.FutexWait(w.seq, seq0, max(limit, 0))
		stop()
		return ctx.Err()
	}
	w.mu.Lock()
	ch := w.ch
	w.mu.Unlock()
	if w.seq.Load() != seq0 {
		return nil // woken meanwhile (wake bumps seq before it closes ch)
	}
	t := time.NewTimer(max(limit, 0))
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// wake wakes every waiting producer; called by the consumer once it saw
// wanted set, after storing consumer_pos, and by Close.
func (w *spaceWait) wake() {
	w.wanted.Store(0)
	w.seq.Add(1)
	if w.shared {
		sys.FutexWake(w.seq)
		return
	}
	w.mu.Lock()
	close(w.ch)
	w.ch = make(chan struct{})
	w.mu.Unlock()
}
