package ringo

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo/internal/waitfor"
)

// TestDropsExactUnderStress: four producers hammer a small ring that a slow
// reader drains; every Output refused with ErrFull is counted, in records
// and payload bytes, exactly, for an in-process ring and a shared one, and
// LossOf and Reader.Losses report it.
func TestDropsExactUnderStress(t *testing.T) {
	rings := map[string]func(t *testing.T) *Ring{
		"in-process": func(t *testing.T) *Ring { return newRing(t, 1<<14) },
		"shared": func(t *testing.T) *Ring {
			r, err := Create("drops", 1<<14, WithDir(t.TempDir()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			return r
		},
	}
	for name, mk := range rings {
		t.Run(name, func(t *testing.T) {
			r := mk(t)
			rd := newReader(t, r)
			const producers, attempts = 4, 20000
			var wg sync.WaitGroup
			var full atomic.Bool // a producer was refused: the reader may start
			refused := make([]uint64, producers)
			refusedBytes := make([]uint64, producers)
			for p := range producers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 512)
					for i := range attempts {
						n := 8 + (i*7+p*13)%500
						if err := r.Output(buf[:n], 0); err != nil {
							if !errors.Is(err, ErrFull) {
								t.Error(err)
								return
							}
							refused[p]++
							refusedBytes[p] += uint64(n)
							full.Store(true)
						}
					}
				}()
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			delivered := 0
			deadline := time.Now().Add(waitfor.Long)
			for {
				// The reader starts once the ring has been full, so
				// that drops are certain, however the producers are
				// scheduled; then it drains slowly.
				if full.Load() {
					n, err := rd.Consume(func(Record) error { return nil })
					if err != nil {
						t.Fatal(err)
					}
					delivered += n
				}
				if time.Now().After(deadline) {
					t.Fatalf("waited %v for the producers to make %d attempts each; goroutines:\n%s", waitfor.Long, attempts, waitfor.Stacks())
				}
				select {
				case <-done:
					n, _ := rd.Consume(func(Record) error { return nil })
					delivered += n
					var drops, bytes uint64
					for p := range producers {
						drops += refused[p]
						bytes += refusedBytes[p]
					}
					l, err := r.Loss()
					if err != nil {
						t.Fatal(err)
					}
					if !l.Counted || l.Dropped != drops || l.DroppedBytes != bytes || l.Overwritten != 0 || l.Abandoned != 0 {
						t.Fatalf("Loss() = %+v; producers saw %d refusals of %d bytes", l, drops, bytes)
					}
					if uint64(delivered)+drops != producers*attempts {
						t.Fatalf("%d delivered + %d dropped != %d attempts", delivered, drops, producers*attempts)
					}
					ls, err := rd.Stats()
					if err != nil || len(ls) != 1 || ls[0].Ring != Source(r) || ls[0].Dropped != drops {
						t.Fatalf("Stats() = %+v, %v", ls, err)
					}
					if drops == 0 {
						t.Fatal("the reader kept up: nothing was dropped, so nothing was tested")
					}
					t.Logf("%d delivered, %d dropped (%d bytes)", delivered, drops, bytes)
					return
				default:
				}
				time.Sleep(50 * time.Microsecond)
			}
		})
	}
}

// TestLossOfKernelRingWithoutCounter: a kernel ring whose programs declare
// no RINGO_DROP_COUNTER reports Counted false, and SetDropCounter refuses
// a map of the wrong shape, saying what it should be.
func TestLossOfKernelRingWithoutCounter(t *testing.T) {
	requireKernel(t)
	k, err := CreateKernelRing("ringo_nocount", 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	l, err := k.Loss()
	if err != nil || l.Counted {
		t.Fatalf("LossOf = %+v, %v; want Counted false", l, err)
	}
	other, err := CreateKernelRing("ringo_other", 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	err = k.SetDropCounter(other)
	if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "percpu_array with key size 4 and value size 16") {
		t.Fatalf("SetDropCounter(a ring) = %v", err)
	}
}
