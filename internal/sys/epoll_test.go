package sys

import (
	"testing"
	"time"
)

// TestPollerWaitInRuntime: WaitInRuntime reports a descriptor signalled before it was called
// and one signalled while it waits, returns at its timeout with nothing,
// and Interrupt ends it, as Wait does.
func TestPollerWaitInRuntime(t *testing.T) {
	p, err := NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if !p.inRuntime {
		t.Fatal("the epoll descriptor is not in the runtime's poller: WaitInRuntime would block its thread")
	}
	ev, err := NewEventFD()
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	if err := p.Add(ev.FD(), 7); err != nil {
		t.Fatal(err)
	}
	ev.Signal()
	if keys, intr, err := p.WaitInRuntime(nil, time.Second); err != nil || intr || len(keys) != 1 || keys[0] != 7 {
		t.Fatalf("WaitInRuntime after a signal: %v, interrupted %v, %v; want [7]", keys, intr, err)
	}
	ev.Drain()

	start := time.Now()
	const timeout = 20 * time.Millisecond
	if keys, intr, err := p.WaitInRuntime(nil, timeout); err != nil || intr || len(keys) != 0 {
		t.Fatalf("WaitInRuntime with nothing signalled: %v, interrupted %v, %v; want nothing", keys, intr, err)
	}
	if d := time.Since(start); d < timeout {
		t.Fatalf("WaitInRuntime returned after %v, before its timeout of %v", d, timeout)
	}

	type result struct {
		keys []int
		intr bool
		err  error
	}
	for _, wake := range []func(){func() { ev.Signal() }, p.Interrupt} {
		done := make(chan result, 1)
		go func() {
			keys, intr, err := p.WaitInRuntime(nil, -1)
			done <- result{keys, intr, err}
		}()
		wake() // before or after it waits: either way it must return
		select {
		case r := <-done:
			if r.err != nil || (len(r.keys) != 1 || r.keys[0] != 7) == !r.intr {
				t.Fatalf("WaitInRuntime woken: %v, interrupted %v, %v", r.keys, r.intr, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("WaitInRuntime was not woken")
		}
		ev.Drain()
	}
}
