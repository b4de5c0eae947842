package main

import (
	"bufio"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo"
	"github.com/ringo-bpf/ringo/internal/waitfor"
)

// dump without --follow prints what the ring held when it started, and
// exits, however fast producers add more: it went on for as long as they
// kept up.
func TestDumpEndsAtStart(t *testing.T) {
	dir := t.TempDir()
	okWithin(t, dir, "create", "busy", "--size", "64K")
	r, err := ringo.Open("busy", ringo.WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // keeps the ring full: far faster than dump prints
		defer wg.Done()
		buf := make([]byte, 16)
		for !stop.Load() {
			if r.Output(buf, 0) != nil {
				time.Sleep(10 * time.Microsecond)
			}
		}
	}()
	defer func() { stop.Store(true); wg.Wait() }()
	waitfor.Until(t, waitfor.Short, "the producer to write 32 KiB", func() bool { return r.Positions().Producer >= 32<<10 })
	cmd := ringoCmd(dir, "dump", "busy", "--json")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var mid uint64 // the producer position once dump has printed: past the one dump started at
	var last recJSON
	count := 0
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if count == 0 {
				mid = r.Positions().Producer
			}
			if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
				break // (the count and position then fail the test)
			}
			count++
			if last.Pos >= mid {
				break
			}
		}
		for sc.Scan() {
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dump: %v: %s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("dump without --follow still running after 20 s (%d records printed) while producers keep up", count)
	}
	if count == 0 || last.Pos >= mid {
		t.Fatalf("dump printed %d records, the last at %d; the producer was at %d when it printed the first", count, last.Pos, mid)
	}
	t.Logf("dump printed %d records up to position %d, and ended", count, last.Pos)
}
