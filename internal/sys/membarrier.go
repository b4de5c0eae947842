package sys

import (
	"sync"

	"golang.org/x/sys/unix"
)

// membarrier(2) commands (include/uapi/linux/membarrier.h).
const (
	membarrierPrivateExpedited         = 1 << 3
	membarrierRegisterPrivateExpedited = 1 << 4
)

var barrier struct {
	once sync.Once
	ok   bool
}

// ProcessBarrierAvailable registers this process for ProcessBarrier, once,
// and reports whether it can use it (Linux 4.14 or later, and no seccomp
// filter refusing the system call).
func ProcessBarrierAvailable() bool {
	barrier.once.Do(func() {
		_, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierRegisterPrivateExpedited, 0, 0)
		barrier.ok = errno == 0
	})
	return barrier.ok
}

// ProcessBarrier executes a full memory barrier on every thread of this
// process (membarrier MEMBARRIER_CMD_PRIVATE_EXPEDITED): when it returns,
// each thread has either been interrupted to execute one or passed through
// the scheduler, which executes one too. It lets fast paths in other threads
// order a store before a later load without a fence of their own: the
// thread that calls ProcessBarrier between its own store and load sees their
// store, or they see its store. Call ProcessBarrierAvailable first; it
// returns false if the barrier failed.
func ProcessBarrier() bool {
	_, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierPrivateExpedited, 0, 0)
	return errno == 0
}
