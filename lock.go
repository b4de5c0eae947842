package ringo

import (
	"context"
	"fmt"
	"runtime"
	"time"
)

// The reservation lock of a user-space ring: a spin lock, like the kernel
// ring's, held only for the few loads and stores of a reservation. It lives
// in the ring's memory rather than in a sync.Mutex so that rings shared
// between processes can use it too, and its release is a plain store
// (storeRelease), where sync.Mutex pays a second locked instruction. The
// word holds the token of the holder's handle (liveness.go).
//
// A holder is a goroutine in the middle of a reservation, which lets go
// within a microsecond unless it is preempted; or, for a shared ring,
// another process, which may also have died (the lock is then taken over)
// or be stopped (SIGSTOP, a frozen cgroup: it keeps the lock for as long as
// it stays stopped). So a waiter spins a little, then yields, then sleeps
// with a growing interval, and gives up: at once when ctx ends, or after
// lockPatience when it has no ctx (Output and Reserve, which never wait
// for room either), with an error wrapping ErrBusy.

// lock takes the reservation lock, writing this handle's token into it.
func (m *memory) lock(ctx context.Context) error {
	if m.lockWord.CompareAndSwap(0, m.self) {
		return nil
	}
	return m.lockSlow(ctx)
}

func (m *memory) lockSlow(ctx context.Context) error {
	me := m.self
	start := time.Now()
	var checked time.Time // when the holder's liveness was last checked
	nap := lockNapMin
	for i := 0; ; i++ {
		// Wait for the word to read free before trying again, so that
		// waiters share its cache line instead of bouncing it.
		owner := m.lockWord.Load()
		if owner == 0 && m.lockWord.CompareAndSwap(0, me) {
			return nil
		}
		if i < lockSpins {
			continue
		}
		if owner == 0 {
			runtime.Gosched() // free a moment ago
			continue
		}
		// Held by a goroutine of this handle, which cannot stop
		// without this process (it was preempted: let it run), or
		// by another handle, in this process or another. A process
		// that died holding the lock is found every deadOwnerCheck,
		// and its lock taken over: a holder only updates positions in
		// an order that leaves the ring consistent wherever it stops
		// (see Ring.reserve). Either way the wait is bounded as
		// below: a word holding this handle's token that none of its
		// goroutines holds is a value someone else wrote into the
		// ring (a replay), and spun on for ever it hung the producer.
		now := time.Now()
		if owner != me && now.Sub(checked) >= deadOwnerCheck {
			checked = now
			// Handed straight from the dead holder to this handle,
			// so that no one else reserves before the dead one's
			// unpublished claim is forgotten.
			if !m.alive(owner) && m.lockWord.CompareAndSwap(owner, me) {
				m.forgetReserver(owner)
				m.mendOverwriteMark()
				return nil
			}
		}
		if ctx != nil {
			if err := ctx.Err(); err != nil {
				return err
			}
		} else if waited := now.Sub(start); waited >= lockPatience {
			return &lockHeldError{pid: m.pidOf(owner), waited: waited}
		}
		if now.Sub(start) < lockYieldFor {
			runtime.Gosched() // most likely a holder preempted for a moment
			continue
		}
		time.Sleep(nap)
		nap = min(2*nap, lockNapMax)
	}
}

// lockHeldError is lockSlow giving up without a ctx: it wraps ErrBusy.
type lockHeldError struct {
	ring   string // set by the Ring
	pid    int
	waited time.Duration
}

func (e *lockHeldError) Error() string {
	return fmt.Sprintf("ringo: ring %q is busy: its reservation lock has been held by process %d for %v (is it stopped?)", e.ring, e.pid, e.waited.Round(time.Millisecond))
}
func (e *lockHeldError) Unwrap() error { return ErrBusy }

// deadOwnerCheck is how long a waiter lets a lock holder or the owner of a
// busy record be between checks that the owner's handle is still open.
const deadOwnerCheck = 10 * time.Millisecond

// lockSpins is how many times a producer looks at a held lock before it
// starts yielding between looks; lockYieldFor how long it goes on yielding
// before it sleeps, from lockNapMin doubling up to lockNapMax between looks;
// lockPatience how long Output and Reserve wait before they give up.
const (
	lockSpins    = 64
	lockYieldFor = time.Millisecond
	lockNapMin   = 50 * time.Microsecond
	lockNapMax   = 5 * time.Millisecond
	lockPatience = time.Second
)

// unlock releases the reservation lock. Stores made while holding it are
// visible to the next holder.
func (m *memory) unlock() { storeRelease(m.lockWord, 0) }
