package ringo

import (
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/ringo-bpf/ringo/internal/sys"
)

// singleWriter is the reservation gate of a ring made or opened
// WithSingleProducer (Ring, UserRing), where the system has
// sys.ProcessBarrier: a reservation takes no lock, and reserving is 1 while
// one is under way, so that Close can wait for it. The producer's side has
// no fence (a store, then a load of closed); Close pays for both sides with
// the process-wide barrier (waitIdle).
type singleWriter struct {
	single    bool
	reserving atomic.Uint32
}

// beginSingle marks a reservation under way; it fails, marking nothing,
// once closed is set. Two at once are the caller's bug: it panics, naming
// the ring (its name, if it has one).
func (s *singleWriter) beginSingle(closed *atomic.Bool, name string) error {
	if s.reserving.Load() != 0 {
		if name == "" {
			panic("ringo: two goroutines reserve at once in a user ring opened WithSingleProducer")
		}
		panic(fmt.Sprintf("ringo: two goroutines reserve at once in ring %q, made WithSingleProducer", name))
	}
	// Before the load of closed: see waitIdle.
	storeRelease32(&s.reserving, 1)
	if closed.Load() {
		storeRelease32(&s.reserving, 0)
		return ErrClosed
	}
	return nil
}

// endSingle ends what beginSingle started.
func (s *singleWriter) endSingle() { storeRelease32(&s.reserving, 0) }

// waitIdle waits, after closed is set, until no reservation that saw the
// ring open is under way. The producer stores reserving, then loads closed;
// we stored closed and now load reserving. Its side has no fence: the
// process-wide barrier orders its store before its load for it, so either
// it saw closed, or we see it reserving and wait.
func (s *singleWriter) waitIdle() {
	sys.ProcessBarrier()
	for s.reserving.Load() != 0 {
		runtime.Gosched()
	}
}
