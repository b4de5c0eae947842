package ringo

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
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

// TestReaderFencesAfterManyRecords: a Reader fences for Output before it
// sleeps only when it took fenceWorth records or more since it last slept
// (a barrier a sleep is then cheaper than a locked instruction a record);
// a Reader that sleeps after a few has Output fence itself.
func TestReaderFencesAfterManyRecords(t *testing.T) {
	r := newRing(t, 1<<16)
	if !r.mem.fencedByReader {
		skipUnlessRequired(t, "no process-wide memory barrier (membarrier(2)) here: Output commits with a locked exchange")
	}
	rd := newReader(t, r)
	asleep := watchSleep(rd)
	if !r.mem.readerFences.Load() {
		t.Fatal("a new ring's Output fences itself: a Reader that never sleeps would make every record pay")
	}
	// Each sleep but the first is ended by a record, which the Reader
	// takes before the next: it counts.
	woke := 0
	for _, c := range []struct {
		taken  int // records between the sleeps
		fences bool
	}{{1, false}, {fenceWorth, true}, {fenceWorth - 1, false}, {fenceWorth + 1, true}, {2, false}} {
		for range c.taken - woke {
			if err := r.Output([]byte("x"), 0); err != nil {
				t.Fatal(err)
			}
		}
		n, err := rd.Consume(func(Record) error { return nil })
		if err != nil || n != c.taken-woke {
			t.Fatalf("consumed %d records, %v; want %d", n, err, c.taken-woke)
		}
		done := readAsync(t.Context(), rd)
		asleep.wait(t, "on the empty ring")
		if f := r.mem.readerFences.Load(); f != c.fences {
			t.Errorf("after %d records the Reader fences %v, want %v", c.taken, f, c.fences)
		}
		woke = 1
		if err := r.Output([]byte("y"), 0); err != nil {
			t.Fatal(err)
		}
		if res := waitfor.Recv(t, done, waitfor.Short, "the record to wake the Reader"); res.err != nil {
			t.Fatal(res.err)
		}
		asleep.drain()
	}
	// Left to fence itself, then many records taken with no sleep: the
	// Reader fences again.
	for range fenceWorth {
		if err := r.Output([]byte("x"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := rd.Consume(func(Record) error { return nil }); err != nil || n != fenceWorth {
		t.Fatalf("consumed %d records, %v; want %d", n, err, fenceWorth)
	}
	if !r.mem.readerFences.Load() {
		t.Errorf("%d records taken without a sleep, and Output still fences itself", fenceWorth+1)
	}
}

// TestOutputWakesReaderGoingToSleep hands records over one at a time, each
// Output landing at a random moment of the Reader's way to sleep: as it
// decides who fences, announces its wait, takes its last look, or once it
// sleeps. A commit that neither the Reader's last look sees nor wakes the
// Reader would leave Read waiting for the deadline. Three ways: the Reader
// fencing for Output before each sleep, Output fencing itself (what a
// Reader that sleeps after each record chooses), and the two changing
// places at random sleeps (chooseFence's barrier as it stops).
func TestOutputWakesReaderGoingToSleep(t *testing.T) {
	for _, c := range []struct {
		name string
		from func(*rand.Rand) uint64 // fenceFrom before each Read
	}{
		{"reader fences", func(*rand.Rand) uint64 { return 0 }},
		{"output fences", func(*rand.Rand) uint64 { return math.MaxUint64 }},
		{"switching", func(rng *rand.Rand) uint64 { return uint64(rng.IntN(2)) * math.MaxUint64 }},
	} {
		t.Run(c.name, func(t *testing.T) { testOutputWakesReaderGoingToSleep(t, c.from) })
	}
}

func testOutputWakesReaderGoingToSleep(t *testing.T, from func(*rand.Rand) uint64) {
	r := newRing(t, 1<<16)
	if !r.mem.fencedByReader {
		skipUnlessRequired(t, "no process-wide memory barrier (membarrier(2)) here: Output commits with a locked exchange")
	}
	rd := newReader(t, r)
	pick := rand.New(rand.NewPCG(3, 4))
	rounds := 3000
	if testing.Short() {
		rounds = 300
	}
	asleep := watchSleep(rd)
	// turn is the round the consumer is in: the producer spins on it
	// rather than sleeping on a channel, so that it starts its round
	// within a moment of the Read, not a scheduler's wake-up later (when
	// the Reader is long asleep). over ends it.
	var turn atomic.Int64
	var over atomic.Bool
	produced := make(chan error, 1)
	go func() {
		defer close(produced)
		rng := rand.New(rand.NewPCG(1, 2))
		var buf [8]byte
		for i := range rounds {
			for start := time.Now(); turn.Load() <= int64(i); runtime.Gosched() {
				if over.Load() {
					return // the test failed
				}
				if time.Since(start) > waitfor.Long {
					produced <- fmt.Errorf("record %d: the consumer did not start its round within %v", i, waitfor.Long)
					return
				}
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
				// Mostly within 1.5 µs (half of them 0.4), so that
				// records land while the Reader decides who fences,
				// announces its wait and takes its last look; now and
				// then up to 150 µs, once it sleeps.
				d := time.Duration(rng.IntN(1500 >> (i % 2 * 2)))
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
		over.Store(true)
		waitfor.Recv(t, produced, waitfor.Short, "the producer to stop")
	}()
	for i := range rounds {
		asleep.drain() // earlier sleeps: Read has returned from them
		rd.rings[0].fenceFrom = from(pick)
		// Cancelled, not timed out: a Reader woken by its deadline would
		// find the record and hide the lost wake-up.
		ctx, cancel := context.WithCancel(context.Background())
		stop := time.AfterFunc(waitfor.Short, cancel)
		turn.Store(int64(i + 1)) // the producer's round i
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

// TestOutputFenceLitmus is the store-buffer race of the wake-up protocol,
// run as a litmus test: on two threads started together, a producer
// discards the record at the Reader's position without waking it, then
// Outputs the next record; the Reader, having announced its wait, takes its
// last look (ready), which passes the discarded record, stores consumer_pos
// at the new record and looks at it. If the Reader's look missed the
// record, the producer must have seen that consumer_pos and woken it. With
// neither side's fence (Output's locked instruction after its plain store,
// or the Reader's barrier), both can read the other's old value: with
// Output's locked instruction taken out, this failed within 74-150 rounds
// on an AMD EPYC VM, with the Reader's barrier taken out within 352-2247.
// Three ways: the Reader fencing, Output fencing, and the Reader stopping
// to fence as the producer commits (chooseFence; its barrier taken out
// survived 9,000 rounds: that window is narrower). The race detector
// makes Output's store a locked one: run it without -race to try the
// plain store.
func TestOutputFenceLitmus(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs two threads running at once")
	}
	for _, c := range []struct {
		name         string
		readerFences bool // at the start of each round
		stop         bool // the Reader stops fencing as the round starts
	}{{"reader fences", true, false}, {"output fences", false, false}, {"reader stops fencing", true, true}} {
		t.Run(c.name, func(t *testing.T) { testOutputFenceLitmus(t, c.readerFences, c.stop) })
	}
}

func testOutputFenceLitmus(t *testing.T, readerFences, stop bool) {
	r := newRing(t, 1<<16)
	if !r.mem.fencedByReader {
		skipUnlessRequired(t, "no process-wide memory barrier (membarrier(2)) here: Output commits with a locked exchange")
	}
	rd := newReader(t, r)
	rr := rd.rings[0]
	rounds := 20000
	if readerFences {
		rounds = 5000 // a barrier a round: about 150 µs here
	}
	if testing.Short() {
		rounds /= 10
	}
	rr.fenceFrom = math.MaxUint64 // chooseFence stops the Reader fencing
	var start, done atomic.Int64
	var held Reservation // the record the producer discards, reserved by the Reader's side
	var over atomic.Bool
	defer over.Store(true)
	// spinUntil spins until v reaches i, or the test is over.
	spinUntil := func(v *atomic.Int64, i int64) bool {
		for deadline := time.Now().Add(waitfor.Long); v.Load() < i; {
			if over.Load() || time.Now().After(deadline) {
				return false
			}
		}
		return true
	}
	delay := func(n int) {
		for range n {
			cpuPause(1)
		}
	}
	produced := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		rng := rand.New(rand.NewPCG(5, 6))
		var buf [8]byte
		for i := range int64(rounds) {
			if !spinUntil(&start, i+1) {
				produced <- fmt.Errorf("round %d: the Reader's side did not start it", i)
				return
			}
			delay(rng.IntN(8))
			if err := r.Discard(held, NoWakeup); err != nil {
				produced <- err
				return
			}
			if err := r.Output(buf[:], 0); err != nil {
				produced <- err
				return
			}
			done.Store(i + 1)
		}
		produced <- nil
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rng := rand.New(rand.NewPCG(7, 8))
	passes := 0
	for i := range int64(rounds) {
		r.mem.readerFences.Store(readerFences)
		var err error
		if held, err = r.Reserve(8); err != nil {
			t.Fatal(err)
		}
		next := rr.cur.pos + recordSize(8)
		start.Store(i + 1)
		delay(rng.IntN(8))
		if stop {
			rd.chooseFence()
		}
		rd.announce(true)
		found := rd.ready(true)
		if !spinUntil(&done, i+1) {
			t.Fatalf("round %d: the producer did not finish it (%v)", i, waitfor.Recv(t, produced, waitfor.Short, "the producer's error"))
		}
		woken := false
		select {
		case <-rd.park:
			woken = true
		default:
		}
		if rr.cur.pos == next { // the last look passed the discarded record
			passes++
			if !found && !woken {
				t.Fatalf("round %d: the Reader's last look missed the record at %d and its commit did not wake the Reader", i, next)
			}
		}
		rd.announce(false)
		if n, err := rd.Consume(func(Record) error { return nil }); err != nil || n != 1 {
			t.Fatalf("round %d: consumed %d records, %v; want the one", i, n, err)
		}
	}
	if err := waitfor.Recv(t, produced, waitfor.Short, "the producer to stop"); err != nil {
		t.Fatal(err)
	}
	t.Logf("the last look passed the discarded record in %d of %d rounds", passes, rounds)
}
