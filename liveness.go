package ringo

import (
	"fmt"
	"math/rand/v2"
	"os"

	"github.com/ringo-bpf/ringo/internal/sys"
)

// Which handles of a shared ring are alive. Every Ring opened on a shared
// ring (by Create or Open, in any process) is a handle with a token, the
// name ringo writes into the words that say who holds something: the
// reservation lock, the owner slots of open reservations, the consumer
// claim. A token is alive while its handle is open and its process runs.
//
// The kernel keeps that fact, not ringo: a handle holds an open file
// description lock (F_OFD_SETLK) on one byte of the ring file, at
// presenceLockBase plus its index in the presence table, for as long as it
// is open. The kernel drops the lock when the file description goes: when
// the handle is closed, or once every thread of a dying process has exited
// and its mappings of the file are torn down, so a process that can still
// touch the ring never looks dead. It works across PID namespaces (the lock
// is the file's, not a PID's) and needs no /proc.
//
// The presence table, in the consumer page, has an entry per index: a
// generation in the high 32 bits, counted up by each handle that takes the
// index, and its process ID in the low 32 bits (for messages only; it is a
// PID as the handle's own namespace numbers it). A token is the index plus
// one in the high 32 bits and the generation in the low ones, so a token
// left behind by a dead handle never names the handle that took its index
// next.

// inProcessToken is the token of an in-process ring's only handle, which
// nobody needs to check: its goroutines cannot die without the process.
const inProcessToken = 1<<32 | 1

// register makes this handle of a shared ring present: it takes a free
// index of the presence table with a lock on the ring file fd, and draws
// its token.
func (m *memory) register(fd int) error {
	n := len(m.presence)
	start := rand.IntN(n)
	for k := range n {
		i := (start + k) % n
		ok, err := sys.TryLockByte(fd, presenceLockBase+int64(i))
		if err != nil {
			return fmt.Errorf("lock the ring file: %w", err)
		}
		if !ok {
			continue // another handle's
		}
		e := &m.presence[i]
		gen := uint32(e.Load()>>32) + 1
		if gen == 0 {
			gen = 1
		}
		e.Store(uint64(gen)<<32 | uint64(uint32(os.Getpid())))
		m.self = uint64(i+1)<<32 | uint64(gen)
		m.file = fd
		return nil
	}
	return fmt.Errorf("%d handles have the ring open already, as many as a shared ring tracks: close some", n)
}

// alive reports whether the handle named by token is still open. A token
// that names no handle (0, or garbage) is dead; if the kernel cannot be
// asked, the handle is taken to be alive, so that nothing is recovered from
// under a live owner.
func (m *memory) alive(token uint64) bool {
	if token == m.self {
		return true
	}
	if m.presence == nil {
		return true // an in-process ring: nothing to recover
	}
	i := token>>32 - 1
	if token == 0 || i >= uint64(len(m.presence)) {
		return false
	}
	if uint32(m.presence[i].Load()>>32) != uint32(token) {
		return false // its index was taken since: it was free, so the handle is gone
	}
	locked, err := sys.ByteLocked(m.file, presenceLockBase+int64(i))
	return locked || err != nil
}

// pidOf returns the process ID the handle named by token recorded, for
// messages, or 0.
func (m *memory) pidOf(token uint64) int {
	i := token>>32 - 1
	if token == 0 || i >= uint64(len(m.presence)) {
		return 0
	}
	return int(uint32(m.presence[i].Load()))
}
