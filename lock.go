package ringo

import "runtime"

// The reservation lock of a user-space ring: a spin lock, like the kernel
// ring's, held only for the few loads and stores of a reservation. It lives
// in the ring's memory rather than in a sync.Mutex so that rings shared
// between processes can use it too, and its release is a plain store
// (storeRelease), where sync.Mutex pays a second locked instruction.

// lock takes the reservation lock.
func (m *memory) lock() {
	if !m.lockWord.CompareAndSwap(0, 1) {
		m.lockSlow()
	}
}

func (m *memory) lockSlow() {
	for i := 0; ; i++ {
		// Wait for the word to read free before trying again, so that
		// waiters share its cache line instead of bouncing it.
		if m.lockWord.Load() == 0 && m.lockWord.CompareAndSwap(0, 1) {
			return
		}
		if i >= lockSpins {
			// The holder may have been preempted: let it run.
			runtime.Gosched()
		}
	}
}

// lockSpins is how many times a producer looks at a held lock before it
// starts yielding between looks.
const lockSpins = 64

// unlock releases the reservation lock. Stores made while holding it are
// visible to the next holder.
func (m *memory) unlock() { storeRelease32(m.lockWord, 0) }
