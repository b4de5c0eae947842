package ringo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo/internal/sys"
	"github.com/ringo-bpf/ringo/internal/waitfor"
)

func requireBarrier(t *testing.T) {
	t.Helper()
	if !sys.ProcessBarrierAvailable() {
		skipUnlessRequired(t, "no membarrier(2) here: WithSingleProducer falls back to the lock")
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
	asleep := watchSleep(rd)
	pauses := 0
	produce, quit := context.WithCancel(context.Background())
	produced := make(chan error, 1)
	// On the way out, stop the producer before the cleanups close the
	// ring under it.
	defer func() {
		quit()
		waitfor.Recv(t, produced, waitfor.Short, "the producer to stop")
	}()
	go func() {
		defer close(produced)
		rng := rand.New(rand.NewPCG(6, 6))
		buf := make([]byte, 600)
		for i := range n {
			pause := rng.IntN(2000) == 0 && i < n-1
			if pause {
				// Earlier sleeps do not count: the one after this
				// record (or before it, if it wakes the Reader).
				asleep.drain()
			}
			size := 8 + rng.IntN(len(buf)-8)
			binary.LittleEndian.PutUint64(buf, uint64(i))
			for j := 8; j < size; j++ {
				buf[j] = byte(i + j)
			}
			if err := r.OutputWait(produce, buf[:size], 0); err != nil {
				if produce.Err() == nil {
					produced <- fmt.Errorf("record %d: %w", i, err)
				}
				return
			}
			if pause {
				// Let the reader fall asleep: the next record must
				// wake it.
				select {
				case <-asleep:
				case <-time.After(waitfor.Short):
					produced <- fmt.Errorf("record %d: the reader did not go to sleep within %v", i, waitfor.Short)
					return
				}
				pauses++
			}
		}
	}()
	// Cancelled, not timed out: a Reader woken by its deadline would find
	// the records a lost wake-up left behind.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var arrived atomic.Uint64
	defer waitfor.Watchdog(waitfor.Short, arrived.Load, cancel)()
	next := 0
	for rec, err := range rd.Records(ctx) {
		if err != nil {
			select {
			case perr := <-produced:
				t.Fatalf("after %d records: %v (the producer: %v)", next, err, perr)
			default:
			}
			t.Fatalf("after %d records: %v (none for %v: a lost wake-up?)", next, err, waitfor.Short)
		}
		arrived.Add(1)
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
	waitfor.Recv(t, produced, waitfor.Short, "the producer to return")
	if w := rd.Wakeups(); w < uint64(pauses) || pauses == 0 {
		t.Errorf("%d reader wake-ups, but it fell asleep on %d records (want at least one)", w, pauses)
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
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond) // close at a random moment
		waitfor.Until(t, waitfor.Short, "Close to find no reservation open", func() bool {
			err := r.Close()
			if err != nil && !strings.Contains(err.Error(), "reservations are still open") {
				t.Fatal(err)
			}
			return err == nil
		})
		waitfor.Group(t, &wg, waitfor.Short, "the producer to see the ring closed")
	}
}
