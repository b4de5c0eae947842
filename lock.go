package ringo

import (
	"runtime"
	"time"
)

// The reservation lock of a user-space ring: a spin lock, like the kernel
// ring's, held only for the few loads and stores of a reservation. It lives
// in the ring's memory rather than in a sync.Mutex so that rings shared
// between processes can use it too, and its release is a plain store
// (storeRelease), where sync.Mutex pays a second locked instruction.

// lock takes the reservation lock, writing this handle's token into it.
func (m *memory) lock() {
	if !m.lockWord.CompareAndSwap(0, m.self) {
		m.lockSlow()
	}
}

func (m *memory) lockSlow() {
	me := m.self
	var since time.Time
	for i := 0; ; i++ {
		// Wait for the word to read free before trying again, so that
		// waiters share its cache line instead of bouncing it.
		owner := m.lockWord.Load()
		if owner == 0 && m.lockWord.CompareAndSwap(0, me) {
			return
		}
		if i < lockSpins {
			continue
		}
		// The holder may have been preempted: let it run.
		runtime.Gosched()
		// Or it may be a process that died holding the lock (a shared
		// ring): look every few milliseconds. A lock holder only
		// updates positions in an order that leaves the ring
		// consistent wherever it stops (see Ring.reserve), so taking
		// the lock over is safe.
		if i%256 == 0 && owner != 0 && owner != me {
			if since.IsZero() {
				since = time.Now()
			} else if time.Since(since) >= deadOwnerCheck {
				since = time.Now()
				// Handed straight from the dead holder to this
				// process, so that no one else reserves before the
				// dead one's unpublished claim is forgotten.
				if !m.alive(owner) && m.lockWord.CompareAndSwap(owner, me) {
					m.forgetReserver(owner)
					return
				}
			}
		}
	}
}

// deadOwnerCheck is how long a waiter lets a lock holder or the owner of a
// busy record be before it checks that the owner's process still runs.
const deadOwnerCheck = 10 * time.Millisecond

// lockSpins is how many times a producer looks at a held lock before it
// starts yielding between looks.
const lockSpins = 64

// unlock releases the reservation lock. Stores made while holding it are
// visible to the next holder.
func (m *memory) unlock() { storeRelease(m.lockWord, 0) }
