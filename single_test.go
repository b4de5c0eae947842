package ringo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo/internal/sys"
)

func requireBarrier(t *testing.T) {
	t.Helper()
	if !sys.ProcessBarrierAvailable() {
		t.Skip("no membarrier(2): WithSingleProducer falls back to the lock")
	}
}

// A single-producer ring holds, byte for byte, what a multi-producer ring
// holds after the same operations.
func TestSingleProducerSameMemory(t *testing.T) {
	requireBarrier(t)
	a := newRing(t, 4096)
	b := newRing(t, 4096, WithSingleProducer())
	if !b.single || a.single {
		t.Fatalf("single: %v and %v", a.single, b.single)
	}
	ra, rb := newReader(t, a), newReader(t, b)
	rng := rand.New(rand.NewPCG(5, 5))
	for step := range 3000 {
		n := rng.IntN(300)
		payload := bytes.Repeat([]byte{byte(step)}, n)
		switch rng.IntN(4) {
		case 0, 1:
			ea, eb := a.Output(payload, 0), b.Output(payload, 0)
			if (ea == nil) != (eb == nil) {
				t.Fatalf("step %d: Output %v and %v", step, ea, eb)
			}
		case 2:
			va, ea := a.Reserve(n)
			vb, eb := b.Reserve(n)
			if (ea == nil) != (eb == nil) {
				t.Fatalf("step %d: Reserve %v and %v", step, ea, eb)
			}
			if ea == nil {
				copy(va.Bytes(), payload)
				copy(vb.Bytes(), payload)
				if rng.IntN(3) == 0 {
					a.Discard(va, 0)
					b.Discard(vb, 0)
				} else {
					a.Commit(va, 0)
					b.Commit(vb, 0)
				}
			}
		case 3:
			drainInline(ra)
			drainInline(rb)
		}
		if !bytes.Equal(a.mem.data[:a.Size()], b.mem.data[:b.Size()]) || a.Positions() != b.Positions() {
			t.Fatalf("step %d: memory or positions differ: %+v and %+v", step, a.Positions(), b.Positions())
		}
	}
}

// One producer goroutine, one consumer goroutine: every record arrives
// once, intact and in order, and wake-ups are never lost (the producer
// pauses now and then so that the reader sleeps).
func TestSingleProducerTransfer(t *testing.T) {
	requireBarrier(t)
	const n = 100000
	r := newRing(t, 16384, WithSingleProducer())
	rd := newReader(t, r)
	go func() {
		rng := rand.New(rand.NewPCG(6, 6))
		buf := make([]byte, 600)
		for i := range n {
			size := 8 + rng.IntN(len(buf)-8)
			binary.LittleEndian.PutUint64(buf, uint64(i))
			for j := 8; j < size; j++ {
				buf[j] = byte(i + j)
			}
			if err := outputWaiting(r, buf[:size]); err != nil {
				panic(err)
			}
			if rng.IntN(2000) == 0 {
				time.Sleep(time.Millisecond) // let the reader fall asleep
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	next := 0
	for rec, err := range rd.Records(ctx) {
		if err != nil {
			t.Fatalf("after %d records: %v (a lost wake-up?)", next, err)
		}
		if got := int(binary.LittleEndian.Uint64(rec.Data)); got != next {
			t.Fatalf("record %d arrived where %d was due", got, next)
		}
		for j := 8; j < len(rec.Data); j++ {
			if rec.Data[j] != byte(next+j) {
				t.Fatalf("record %d torn at byte %d", next, j)
			}
		}
		if next++; next == n {
			break
		}
	}
	if rd.Wakeups() == 0 {
		t.Error("the reader never slept: wake-ups not exercised")
	}
}

// Two goroutines reserving at once are caught when ringo sees them.
func TestSingleProducerMisuse(t *testing.T) {
	requireBarrier(t)
	r := newRing(t, 4096, WithSingleProducer())
	r.reserving.Store(1) // another goroutine is in the middle of a reservation
	defer func() {
		v := recover()
		if s, ok := v.(string); !ok || !strings.Contains(s, "two goroutines reserve at once") {
			t.Fatalf("panic %v, want the misuse named", v)
		}
		r.reserving.Store(0)
	}()
	r.Output([]byte("x"), 0)
	t.Fatal("no panic")
}

// Close while the single producer runs: the producer gets ErrClosed, never
// touches freed memory, and Close never sees a reservation half made.
func TestSingleProducerClose(t *testing.T) {
	requireBarrier(t)
	for range 50 {
		r, err := New(4096, WithSingleProducer())
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				v, err := r.Reserve(8)
				if errors.Is(err, ErrClosed) {
					return
				}
				if errors.Is(err, ErrFull) {
					r.mem.consumerPos.Store(r.mem.producerPos.Load()) // consume it all
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				r.Commit(v, NoWakeup)
			}
		}()
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		for {
			err := r.Close()
			if err == nil {
				break
			}
			if !strings.Contains(err.Error(), "reservations are still open") {
				t.Fatal(err)
			}
		}
		wg.Wait()
	}
}
