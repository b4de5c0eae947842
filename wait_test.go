package ringo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo/internal/waitfor"
)

// A producer blocked on a full ring sleeps until the consumer frees space,
// then writes its record; a record that can never fit is refused at once;
// one whose context ends is dropped, counted once; Close ends the wait.
func TestOutputWait(t *testing.T) {
	for _, kind := range []string{"in-process", "shared"} {
		t.Run(kind, func(t *testing.T) {
			var r *Ring
			if kind == "shared" {
				var err error
				if r, err = Create("wait", 4096, WithDir(t.TempDir())); err != nil {
					t.Fatal(err)
				}
				defer r.Close()
			} else {
				r = newRing(t, 4096)
			}
			rd := newReader(t, r)
			fill(t, r)
			dropped := r.dropped()
			if dropped != 2 {
				t.Fatalf("Dropped() = %d after two refused Outputs", dropped)
			}
			done := make(chan error, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			go func() { done <- r.OutputWait(ctx, []byte("waited"), 0) }()
			waitfor.Until(t, waitfor.Short, "the producer to announce it waits", func() bool { return r.mem.space.wanted.Load() != 0 })
			got := drainAll(t, rd) // (may include the waited record already)
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("OutputWait: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the waiting producer was not woken in 20s")
			}
			got = append(got, drainAll(t, rd)...)
			if len(got) != 1 || got[0] != "waited" {
				t.Fatalf("after the wait: %q", got)
			}
			if r.dropped() != dropped {
				t.Fatalf("a wait that succeeded counted a drop: %d", r.dropped())
			}

			// Too large: at once, not a wait.
			if err := r.OutputWait(ctx, make([]byte, 4096), 0); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("OutputWait of a record that never fits: %v", err)
			}
			if _, err := r.ReserveWait(ctx, -1); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("ReserveWait(-1): %v", err)
			}
			// A context that ends: its error, and one drop.
			fill(t, r)
			dropped = r.dropped()
			short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancelShort()
			if err := r.OutputWait(short, []byte("late"), 0); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("OutputWait past its deadline: %v", err)
			}
			// Cancelled without a deadline, while asleep.
			cctx, cancelNow := context.WithCancel(context.Background())
			go func() { _, err := r.ReserveWait(cctx, 8); done <- err }()
			waitfor.Until(t, waitfor.Short, "the producer to announce it waits", func() bool { return r.mem.space.wanted.Load() != 0 })
			cancelNow()
			if err := waitfor.Recv(t, done, waitfor.Short, "the cancelled ReserveWait to return"); !errors.Is(err, context.Canceled) {
				t.Fatalf("ReserveWait cancelled: %v", err)
			}
			if d := r.dropped() - dropped; d != 2 {
				t.Fatalf("two waits given up counted %d drops", d)
			}
			// Close ends the wait of the handle's producers.
			if kind == "shared" {
				p, err := Open("wait", WithDir(r.path[:len(r.path)-len("/wait")]))
				if err != nil {
					t.Fatal(err)
				}
				go func() { done <- p.OutputWait(context.Background(), []byte("x"), 0) }()
				waitfor.Until(t, waitfor.Short, "the producer to announce it waits", func() bool { return p.mem.space.wanted.Load() != 0 })
				p.Close()
				if err := waitfor.Recv(t, done, waitfor.Short, "OutputWait to return after Close"); !errors.Is(err, ErrClosed) {
					t.Fatalf("OutputWait through a closed handle: %v", err)
				}
			}
		})
	}
}

// Many producers, waiting, against a slow consumer: every record arrives
// exactly once and in per-producer order, and none is dropped.
func TestWaitingProducersStress(t *testing.T) {
	for _, kind := range []string{"in-process", "shared"} {
		t.Run(kind, func(t *testing.T) {
			var r *Ring
			if kind == "shared" {
				var err error
				if r, err = Create("waitstress", 8192, WithDir(t.TempDir())); err != nil {
					t.Fatal(err)
				}
				defer r.Close()
			} else {
				r = newRing(t, 8192)
			}
			const producers, each = 8, 2000
			rd := newReader(t, r)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			errs := make(chan error, producers)
			for p := 0; p < producers; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var b [64]byte
					for seq := 0; seq < each; seq++ {
						binary.LittleEndian.PutUint32(b[:], uint32(p))
						binary.LittleEndian.PutUint32(b[4:], uint32(seq))
						n := 8 + (p*7+seq)%56
						var err error
						if seq%2 == 0 {
							err = r.OutputWait(ctx, b[:n], 0)
						} else {
							var res Reservation
							if res, err = r.ReserveWait(ctx, n); err == nil {
								copy(res.Bytes(), b[:n])
								err = r.Commit(res, 0)
							}
						}
						if err != nil {
							errs <- fmt.Errorf("producer %d record %d: %w", p, seq, err)
							return
						}
					}
				}()
			}
			next := make([]int, producers)
			got := 0
			for got < producers*each {
				if ctx.Err() != nil {
					t.Fatalf("after %d records: %v", got, ctx.Err())
				}
				select {
				case err := <-errs:
					t.Fatal(err)
				default:
				}
				// A slow consumer: a few records at a time.
				k := 0
				_, err := rd.Consume(func(rec Record) error {
					if k == 5 {
						return errStopPeek
					}
					k++
					p := binary.LittleEndian.Uint32(rec.Data)
					seq := int(binary.LittleEndian.Uint32(rec.Data[4:]))
					if seq != next[p] {
						return fmt.Errorf("producer %d: record %d after %d", p, seq, next[p]-1)
					}
					next[p]++
					got++
					return nil
				})
				if err != nil && err != errStopPeek {
					t.Fatal(err)
				}
				if k == 0 {
					time.Sleep(50 * time.Microsecond)
				}
			}
			waitfor.Group(t, &wg, waitfor.Long, "the producers to finish")
			if r.dropped() != 0 {
				t.Fatalf("waiting producers dropped %d records", r.dropped())
			}
		})
	}
}

// A producer process waiting on a full shared ring is woken by a consumer in
// another process; one killed while waiting leaves nothing stuck.
func TestWaitingProducerProcesses(t *testing.T) {
	dir := t.TempDir()
	r, err := Create("waitproc", 4096, WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rd := newReader(t, r)
	fill(t, r)

	killed := startHolder(t, dir, "waitproc", "output-wait", false)
	waitfor.Until(t, waitfor.Short, "the child to announce it waits", func() bool { return r.mem.space.wanted.Load() != 0 })
	killed.Process.Kill()
	waitfor.Process(t, killed, waitfor.Short, "the killed child to exit")

	woken := startHolder(t, dir, "waitproc", "output-wait", false)
	waitfor.Until(t, waitfor.Short, "the second child to announce it waits", func() bool { return r.mem.space.wanted.Load() != 0 })
	got := drainAll(t, rd) // (may include the woken child's record already)
	exited := make(chan error, 1)
	go func() { exited <- woken.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the waiting child: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting child was not woken in 20s")
	}
	got = append(got, drainAll(t, rd)...)
	if len(got) != 1 || got[0] != "waited" {
		t.Fatalf("records from the children: %q", got)
	}
	if r.mem.space.wanted.Load() != 0 {
		t.Fatal("the killed waiter's announcement is still there after the consumer freed space")
	}
}

// The backpressure case: producers faster than the consumer, as when a ring
// stands in for a channel whose reader is the bottleneck. 64-byte records
// from 1 or 4 producer goroutines through a ring of 64 KiB with waiting
// producers (OutputWait), and side by side through a channel of [64]byte of
// the same capacity in records; the consumer spends about half a
// microsecond on each record. Reports records/s and the producers' CPU per
// record (process CPU minus the consumer thread's): what writing a record
// costs, and no more, when waiting producers sleep; ring-retry is the
// sleep-and-retry loop producers needed before, for comparison.
func BenchmarkBackpressure(b *testing.B) {
	for _, producers := range []int{1, 4} {
		b.Run(fmt.Sprintf("chan-array/producers=%d", producers), func(b *testing.B) {
			ch := make(chan [64]byte, backpressureRing/int(recordSize(64)))
			benchBackpressure(b, producers,
				func(ctx context.Context, v [64]byte) error { ch <- v; return nil },
				func(n int) uint64 {
					var sum uint64
					for i := 0; i < n; i++ {
						v := <-ch
						sum += uint64(v[0]) + consumerWork()
					}
					return sum
				})
		})
		for _, kind := range []string{"ring", "shared-ring", "ring-retry"} {
			b.Run(fmt.Sprintf("%s/producers=%d", kind, producers), func(b *testing.B) {
				var r *Ring
				if kind == "shared-ring" {
					var err error
					if r, err = Create("backpressure", backpressureRing, WithDir(b.TempDir())); err != nil {
						b.Fatal(err)
					}
					defer r.Close()
				} else {
					r = newRing(b, backpressureRing)
				}
				rd := newReader(b, r)
				send := func(ctx context.Context, v [64]byte) error { return r.OutputWait(ctx, v[:], 0) }
				if kind == "ring-retry" {
					// What a producer had to do without waiting:
					// try again, yielding, and count a drop each time.
					send = func(ctx context.Context, v [64]byte) error {
						for errors.Is(r.Output(v[:], 0), ErrFull) {
							runtime.Gosched()
						}
						return nil
					}
				}
				benchBackpressure(b, producers, send,
					func(n int) uint64 {
						var sum uint64
						got := 0
						for rec, err := range rd.Records(context.Background()) {
							if err != nil {
								panic(err)
							}
							sum += uint64(rec.Data[0]) + consumerWork()
							if got++; got == n {
								break
							}
						}
						return sum
					})
				if kind != "ring-retry" && r.dropped() != 0 {
					b.Fatalf("%d records dropped", r.dropped())
				}
			})
		}
	}
}

const backpressureRing = 64 << 10

// consumerWork is the consumer's work on a record, about half a
// microsecond.
func consumerWork() uint64 {
	x := uint64(1)
	for i := 0; i < 300; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x >> 63
}

func benchBackpressure(b *testing.B, producers int, send func(context.Context, [64]byte) error, receive func(n int) uint64) {
	n := b.N - b.N%producers
	if n == 0 {
		n = producers
	}
	done := make(chan uint64)
	var consumerCPU time.Duration
	go func() {
		runtime.LockOSThread() // so that its thread's CPU is the consumer's
		defer runtime.UnlockOSThread()
		before := threadCPU()
		sum := receive(n)
		consumerCPU = time.Duration(threadCPU() - before)
		done <- sum
	}()
	b.ReportAllocs()
	b.ResetTimer()
	start := processCPU()
	var wg sync.WaitGroup
	ctx := context.Background()
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var v [64]byte
			for i := 0; i < n/producers; i++ {
				v[0] = byte(i)
				if err := send(ctx, v); err != nil {
					panic(err)
				}
			}
		}()
	}
	wg.Wait()
	var want uint64
	for i := 0; i < n/producers; i++ {
		want += uint64(byte(i)) * uint64(producers)
	}
	sum := <-done
	total := processCPU() - start
	b.StopTimer()
	if sum-uint64(n)*consumerWork() != want {
		b.Fatalf("checksum %d, want %d", sum-uint64(n)*consumerWork(), want)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(total-consumerCPU)/float64(n), "producer-cpu-ns/rec")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWakeLatency measures how long a producer blocked on a full ring
// takes to return once the consumer frees space: from just before the
// Consume that frees a record to the producer's return from OutputWait
// (ns/op), and the same for a goroutine blocked sending on a full channel
// once another receives.
func BenchmarkWakeLatency(b *testing.B) {
	b.Run("chan", func(b *testing.B) {
		ch := make(chan [64]byte, 16)
		for len(ch) < cap(ch) {
			ch <- [64]byte{}
		}
		benchWakeLatency(b, func() { ch <- [64]byte{} }, func() bool { return len(ch) == cap(ch) }, func() { <-ch })
	})
	for _, kind := range []string{"ring", "shared-ring"} {
		b.Run(kind, func(b *testing.B) {
			var r *Ring
			if kind == "shared-ring" {
				var err error
				if r, err = Create("latency", 4096, WithDir(b.TempDir())); err != nil {
					b.Fatal(err)
				}
				defer r.Close()
			} else {
				r = newRing(b, 4096)
			}
			rd := newReader(b, r)
			rec := make([]byte, 56) // 64 bytes in the ring
			for r.Output(rec, 0) == nil {
			}
			benchWakeLatency(b,
				func() {
					if err := r.OutputWait(context.Background(), rec, 0); err != nil {
						panic(err)
					}
				},
				func() bool { return r.mem.space.wanted.Load() != 0 },
				func() {
					k := 0
					rd.Consume(func(Record) error {
						if k++; k > 1 {
							return errStopPeek // one record: 64 bytes freed
						}
						return nil
					})
				})
		})
	}
}

// benchWakeLatency runs b.N rounds of: the producer blocks in send (blocked
// says it is), the consumer frees space with free, the producer returns.
func benchWakeLatency(b *testing.B, send func(), blocked func() bool, free func()) {
	var lat time.Duration
	returned := make(chan time.Time)
	go func() {
		for i := 0; i < b.N; i++ {
			send()
			returned <- time.Now()
		}
	}()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for !blocked() {
			runtime.Gosched()
		}
		// (A producer that has announced may not be asleep yet; the
		// latency then is only shorter.)
		t0 := time.Now()
		free()
		lat += (<-returned).Sub(t0)
	}
	b.StopTimer()
	b.ReportMetric(float64(lat)/float64(b.N), "wake-ns")
}
