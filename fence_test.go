package ringo

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo/internal/waitfor"
)

// TestFencedCommitIsForInProcessRings checks which rings let Output commit
// without a locked instruction: in-process ones, whose Reader is always in
// this process and fences for their producers, and never shared ones.
func TestFencedCommitIsForInProcessRings(t *testing.T) {
	r := newRing(t, 4096)
	if !r.mem.fencedByReader {
		skipUnlessRequired(t, "no process-wide memory barrier (membarrier(2)) here: Output commits with a locked exchange")
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
	asleep := watchSleep(rd)
	ack := make(chan struct{}, 1)
	produced := make(chan error, 1)
	go func() {
		defer close(produced)
		rng := rand.New(rand.NewPCG(1, 2))
		var buf [8]byte
		for i := range rounds {
			if _, ok := <-ack; !ok {
				return // the test failed
			}
			if i%64 == 63 {
				// Once the Reader is about to sleep, surely, now and
				// then: so the wake-up path is always taken.
				select {
				case <-asleep:
				case <-time.After(waitfor.Short):
					produced <- fmt.Errorf("record %d: the Reader did not go to sleep on the empty ring within %v", i, waitfor.Short)
					return
				}
			} else {
				// Mostly within twice the Reader's spin (spinFor), so
				// that records land while it spins, announces its wait
				// and takes its last look; now and then up to 150 µs,
				// past its spinning.
				d := time.Duration(rng.IntN(int(2 * spinFor)))
				if i%8 == 7 {
					d = time.Duration(rng.IntN(150_000))
				}
				for end := time.Now().Add(d); time.Now().Before(end); {
				}
			}
			binary.NativeEndian.PutUint64(buf[:], uint64(i))
			if err := r.Output(buf[:], 0); err != nil {
				produced <- fmt.Errorf("record %d: %w", i, err)
				return
			}
		}
	}()
	defer func() {
		close(ack)
		waitfor.Recv(t, produced, waitfor.Short, "the producer to stop")
	}()
	for i := range rounds {
		asleep.drain()    // earlier sleeps: Read has returned from them
		ack <- struct{}{} // room for one: the producer takes it before the next
		// Cancelled, not timed out: a Reader woken by its deadline would
		// find the record and hide the lost wake-up.
		ctx, cancel := context.WithCancel(context.Background())
		stop := time.AfterFunc(waitfor.Short, cancel)
		rec, err := rd.Read(ctx)
		stop.Stop()
		cancel()
		if err != nil {
			select {
			case perr := <-produced:
				t.Fatalf("record %d: %v (the producer: %v)", i, err, perr)
			default:
			}
			t.Fatalf("record %d: %v after %v (positions %+v): its commit did not wake the Reader", i, err, waitfor.Short, r.Positions())
		}
		if got := binary.NativeEndian.Uint64(rec.Data); got != uint64(i) {
			t.Fatalf("record %d holds %d", i, got)
		}
	}
	t.Logf("%d wake-ups in %d rounds", rd.Wakeups(), rounds)
	if w := rd.Wakeups(); w < uint64(rounds/64) {
		t.Errorf("%d wake-ups, but the Reader slept for %d records at least", w, rounds/64)
	}
}
