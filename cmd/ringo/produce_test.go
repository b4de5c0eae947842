package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo"
	"github.com/ringo-bpf/ringo/internal/waitfor"
)

// The run: a 4 KiB ring nobody reads, 200 records of 64 bytes.
// --no-wait writes what fits and drops the rest, exactly, in its output and
// in the ring's own counter; --timeout gives up saying the ring stayed
// full; the default waits until a consumer makes room, and drops nothing.
func TestProduceWaitsOrDrops(t *testing.T) {
	dir := t.TempDir()
	ok(t, dir, "create", "small", "--size", "4096")
	type produced struct{ Written, Bytes, Dropped uint64 }
	got := decode[produced](t, ok(t, dir, "produce", "small", "--count", "200", "--size", "64", "--no-wait", "--json"))
	fits := uint64(4095 / 72) // records of 64+8 bytes in a ring holding size-1
	if got.Written != fits || got.Dropped != 200-fits || got.Bytes != 64*fits {
		t.Fatalf("--no-wait: %+v, want %d written and %d dropped", got, fits, 200-fits)
	}
	show := decode[ringJSON](t, ok(t, dir, "show", "small", "--json"))
	if show.Dropped == nil || *show.Dropped != 200-fits {
		t.Fatalf("the ring counted %v drops, produce %d", show.Dropped, 200-fits)
	}

	start := time.Now()
	fails(t, dir, 1, "small stayed full for 200ms: record 1 was not written", "produce", "small", "--count", "3", "--size", "64", "--timeout", "200ms")
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Fatalf("--timeout 200ms gave up after %v", waited)
	}
	show = decode[ringJSON](t, ok(t, dir, "show", "small", "--json"))
	if *show.Dropped != 200-fits+1 {
		t.Fatalf("a record given up after --timeout: the ring counts %d drops, want %d", *show.Dropped, 200-fits+1)
	}

	// Waiting: a consumer drains the ring while produce writes 200
	// records into it.
	r, err := ringo.Open("small", ringo.WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rd, err := ringo.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	read := make(chan int, 1)
	go func() {
		n := 0
		for _, err := range rd.Records(ctx) {
			if err != nil {
				break
			}
			if n++; n == int(fits)+200 {
				break
			}
		}
		read <- n
	}()
	out := ok(t, dir, "produce", "small", "--count", "200", "--size", "64")
	if !strings.Contains(out, "wrote 200 records (12800 bytes) into small") || strings.Contains(out, "dropped") {
		t.Fatalf("produce that waits: %q", out)
	}
	if n := waitfor.Recv(t, read, waitfor.Short, "the consumer to read every record"); n != int(fits)+200 {
		t.Fatalf("the consumer read %d records, want %d", n, int(fits)+200)
	}
	if l, _ := r.Loss(); l.Dropped != 200-fits+1 {
		d := l.Dropped
		t.Fatalf("waiting counted drops: %d, want %d", d, 200-fits+1)
	}
	fails(t, dir, 2, "exclude each other", "produce", "small", "--count", "1", "--size", "1", "--no-wait", "--timeout", "1s")
}
