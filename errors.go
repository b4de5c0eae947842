package ringo

import (
	"errors"
	"syscall"
)

// ringError is a sentinel error that also matches an errno, so that callers
// used to the BPF helpers' return codes can test for those.
//
// The sentinels that are mostly wrapped (ErrFull, ErrCorrupt, ...) carry no
// "ringo: " prefix: the error that wraps them has it, once.
type ringError struct {
	msg   string
	errno syscall.Errno
	also  syscall.Errno // a second errno it matches, or 0
}

func (e *ringError) Error() string { return e.msg }
func (e *ringError) Is(target error) bool {
	return target == e.errno || e.also != 0 && target == e.also
}

var (
	// ErrFull means the ring has no room for the record: bpf_ringbuf_reserve
	// would return NULL and bpf_ringbuf_output -EAGAIN, libbpf's
	// user_ring_buffer__reserve ENOSPC. It matches syscall.EAGAIN and
	// syscall.ENOSPC. Try again once the consumer has caught up, or wait
	// (OutputWait, ReserveWait).
	ErrFull error = &ringError{"ring is full", syscall.EAGAIN, syscall.ENOSPC}

	// ErrTooLarge means the record can never fit in the ring, however empty:
	// its size plus the 8-byte header, rounded up to 8, must be below the ring
	// size. The kernel reports this as a full ring; ringo tells the two
	// apart because retrying cannot help. It matches syscall.E2BIG.
	ErrTooLarge error = &ringError{msg: "record too large for the ring", errno: syscall.E2BIG}

	// ErrNotReserved means Commit or Discard was given a Reservation that is
	// not outstanding in this ring: committed or discarded already (even
	// through a copy of it), the zero Reservation, or one of another ring.
	// It matches syscall.EINVAL.
	ErrNotReserved error = &ringError{msg: "not an outstanding reservation of this ring", errno: syscall.EINVAL}

	// ErrBusy means a shared ring's reservation lock stayed held by another
	// process for so long (a second) that Output or Reserve gave up: a
	// process stopped (SIGSTOP, a frozen cgroup) in the middle of a
	// reservation. The record was not written. It matches syscall.EBUSY.
	ErrBusy error = &ringError{msg: "ring is busy", errno: syscall.EBUSY}

	// ErrClosed means the ring or reader was closed.
	ErrClosed = errors.New("ringo: closed")

	// ErrCorrupt means a ring's memory breaks the format: a position or
	// header that no correct producer writes. The error that wraps it names
	// the position. Consuming stops there; nothing past it is delivered.
	ErrCorrupt = errors.New("corrupt ring")
)
