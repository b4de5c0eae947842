package ringo

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A shared ring's lock word holding this handle's own token while none of
// its goroutines holds the lock: a value another process wrote (a replay
// of the word as it was a moment before). Producers spun on it for ever,
// at full speed, ignoring their context, and so did Close. Now the wait is
// bounded like any other: ErrBusy after a second, the context's error when
// it ends, and Close goes on.
func TestLockWordWithOwnToken(t *testing.T) {
	r, err := Create("selflock", 4096, WithDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	r.mem.lockWord.Store(r.mem.self)
	bounded := func(what string, limit time.Duration, f func() error) error {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			return err
		case <-time.After(limit):
			t.Fatalf("%s still waiting after %v on a lock word holding its own token", what, limit)
			return nil
		}
	}
	if err := bounded("Output", 10*time.Second, func() error { return r.Output([]byte("x"), 0) }); !errors.Is(err, ErrBusy) {
		t.Errorf("Output: %v, want ErrBusy", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := bounded("OutputWait", 10*time.Second, func() error { return r.OutputWait(ctx, []byte("x"), 0) }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("OutputWait: %v, want the context's deadline", err)
	}
	if err := bounded("Close", 10*time.Second, r.Close); err != nil {
		t.Errorf("Close: %v", err)
	}
}
