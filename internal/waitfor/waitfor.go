// Package waitfor bounds the blocking waits of ringo's tests: a channel
// receive, a WaitGroup, a condition to become true, a child process to
// exit. Each wait names what it waits for; past its bound it fails the
// test at once with that name and the stacks of every goroutine, instead
// of hanging until the test binary's timeout says nothing useful.
//
// The functions that fail call t.Fatalf, so they belong in the test's own
// goroutine. Bounds are generous (the suite runs under the race detector on
// busy 2-CPU machines): they catch a hang, not a slow run.
package waitfor

import (
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Long is the bound for waits on work that may take a while under the race
// detector on a loaded machine (producers finishing a stress run, a child
// process doing its job); Short for waits on something that is already
// under way (a goroutine returning, a state about to be reached).
const (
	Long  = 2 * time.Minute
	Short = 30 * time.Second
)

// Recv receives from ch, failing t if nothing arrives within d.
func Recv[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		fail(t, d, what)
		panic("unreachable")
	}
}

// Closed waits until ch is closed (or delivers), failing t after d.
func Closed[T any](t testing.TB, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	Recv(t, ch, d, what)
}

// Group waits for wg, failing t if it has not finished within d.
func Group(t testing.TB, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	Closed(t, done, d, what)
}

// Until polls cond until it reports true, failing t after d. It yields
// between looks, so that the goroutine it waits for runs even on one CPU.
func Until(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for i := 0; !cond(); i++ {
		if time.Now().After(deadline) {
			fail(t, d, what)
		}
		if i < 1000 {
			runtime.Gosched()
		} else {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// Process waits for a started command to exit and returns Wait's error.
// If it has not exited within d it is killed, and t fails.
func Process(t testing.TB, cmd *exec.Cmd, d time.Duration, what string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		cmd.Process.Kill()
		<-done
		fail(t, d, what+" (killed)")
		panic("unreachable")
	}
}

// fail fails t: waited d for what, with every goroutine's stack.
func fail(t testing.TB, d time.Duration, what string) {
	t.Helper()
	t.Fatalf("waited %v for %s; goroutines:\n%s", d, what, Stacks())
}

// Stacks returns the stacks of every goroutine (the first 256 KiB).
func Stacks() string {
	buf := make([]byte, 256<<10)
	return string(buf[:runtime.Stack(buf, true)])
}

// Watchdog calls stalled, once, when progress has reported the same value
// for d (it looks every d/20): a bound on a long run that fails only when
// the run stops moving, not when a busy machine makes it slow. Call stop
// when the run is over.
func Watchdog(d time.Duration, progress func() uint64, stalled func()) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(d / 20)
		defer tick.Stop()
		last, since := progress(), time.Now()
		for {
			select {
			case <-quit:
				return
			case now := <-tick.C:
				if p := progress(); p != last {
					last, since = p, now
				} else if now.Sub(since) >= d {
					stalled()
					return
				}
			}
		}
	}()
	return func() { close(quit); <-done }
}
