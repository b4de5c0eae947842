package ringo

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"
)

// TestFencedCommitIsForInProcessRings checks which rings let Output commit
// without a locked instruction: in-process ones, whose Reader is always in
// this process and fences for their producers, and never shared ones.
func TestFencedCommitIsForInProcessRings(t *testing.T) {
	r := newRing(t, 4096)
	if !r.mem.fencedByReader {
		t.Skip("no process-wide memory barrier here (membarrier): Output commits with a locked exchange")
	}
	s, err := Create("fenced", 4096, WithDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.mem.fencedByReader {
		t.Fatal("a shared ring, whose Reader may be in another process, commits without a fence")
	}
}

// TestFencedCommitBytesAreTheSame: Output's release store leaves exactly the
// bytes the compare-and-swap leaves, and positions move the same.
func TestFencedCommitBytesAreTheSame(t *testing.T) {
	fenced, plain := newRing(t, 8192), newRing(t, 8192)
	plain.mem.fencedByReader = false
	for i := range 300 {
		payload := bytes.Repeat([]byte{byte(i)}, i%97)
		for _, r := range []*Ring{fenced, plain} {
			if err := r.Output(payload, 0); err != nil {
				drain(t, r)
				if err := r.Output(payload, 0); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if !bytes.Equal(fenced.mapping.Data, plain.mapping.Data) || fenced.Positions() != plain.Positions() {
		t.Fatalf("positions %+v and %+v, or data differ", fenced.Positions(), plain.Positions())
	}
}

// TestOutputWakesReaderGoingToSleep hands records over one at a time, each
// Output landing at a random moment of the Reader's way to sleep: while it
// spins, as it announces its wait, at its last look, or once it sleeps. A
// commit that neither the Reader's last look sees nor wakes the Reader
// would leave Read waiting for the deadline.
func TestOutputWakesReaderGoingToSleep(t *testing.T) {
	r := newRing(t, 1<<16)
	rd := newReader(t, r)
	rounds := 3000
	if testing.Short() {
		rounds = 300
	}
	ack := make(chan struct{})
	go func() {
		rng := rand.New(rand.NewPCG(1, 2))
		var buf [8]byte
		for i := range rounds {
			<-ack
			// Up to ~150 µs: past the Reader's spinning, sometimes.
			end := time.Now().Add(time.Duration(rng.IntN(150_000)))
			for time.Now().Before(end) {
			}
			binary.NativeEndian.PutUint64(buf[:], uint64(i))
			if err := r.Output(buf[:], 0); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := range rounds {
		ack <- struct{}{}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		rec, err := rd.Read(ctx)
		cancel()
		if err != nil {
			t.Fatalf("record %d: %v (positions %+v): its commit did not wake the Reader", i, err, r.Positions())
		}
		if got := binary.NativeEndian.Uint64(rec.Data); got != uint64(i) {
			t.Fatalf("record %d holds %d", i, got)
		}
	}
	t.Logf("%d wake-ups in %d rounds", rd.Wakeups(), rounds)
	if rd.Wakeups() == 0 {
		t.Error("the Reader never slept: the test did not reach the wake-up path")
	}
}
