package jetstream_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo"
	"github.com/ringo-bpf/ringo/forward"
	"github.com/ringo-bpf/ringo/forward/jetstream"
	"github.com/ringo-bpf/ringo/internal/natstest"
	"github.com/ringo-bpf/ringo/internal/waitfor"
)

// produce writes n records of size bytes for each of producers goroutines
// into r, waiting while the ring is full. Producers stop without a word
// once the ring is closed: the test is over (it failed).
func produce(t testing.TB, r *ringo.Ring, producers, n, size int) {
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, size)
			for s := range n {
				for {
					err := r.Output(record(buf, p, s), 0)
					if err == nil {
						break
					}
					if errors.Is(err, ringo.ErrClosed) {
						return
					}
					if !errors.Is(err, ringo.ErrFull) {
						t.Error(err)
						return
					}
					time.Sleep(50 * time.Microsecond)
				}
			}
		}()
	}
	wg.Wait()
}

// Two rings, four producers each, one forwarder: every record is stored
// once, in ring and producer order, and the rings are left empty.
func TestForwardExactlyOnce(t *testing.T) {
	srv := natstest.Start(t)
	srv.CreateStream("EVENTS", false, 0, "ringo.test.>")
	a, err := ringo.New(1<<16, ringo.WithName("alpha"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	dir := t.TempDir()
	b, err := ringo.Create("beta", 1<<16, ringo.WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { b.Close(); ringo.Remove("beta", ringo.WithDir(dir)) }()

	fw := startForwarder(t, jetstream.Config{URL: srv.URL(), Subject: testSubject(t), Stream: "EVENTS"}, forward.Config{BatchRecords: 500}, a, b)
	const producers, n = 4, 5000
	var wg sync.WaitGroup
	for _, r := range []*ringo.Ring{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); produce(t, r, producers, n, 64) }()
	}
	waitfor.Group(t, &wg, waitfor.Long, "the producers to write their records (the forwarder making room)")
	waitCount(t, srv, "EVENTS", 2*producers*n, waitfor.Long)
	fw.waitForwarded(t, 2*producers*n, waitfor.Long)
	fw.stop(t)

	msgs := srv.Messages("EVENTS")
	per := []int{n, n, n, n}
	checkStream(t, msgs, "testhost", map[string][]int{"alpha": per, "beta": per}, nil)
	for _, m := range msgs[:1] {
		if m.Subject != "ringo.test.testhost.alpha" && m.Subject != "ringo.test.testhost.beta" {
			t.Errorf("subject %q, want ringo.test.testhost.{alpha,beta}", m.Subject)
		}
	}
	for _, r := range []*ringo.Ring{a, b} {
		if p := r.Positions(); p.Consumer != p.Producer {
			t.Errorf("ring %s: consumer_pos %d, producer_pos %d: not everything released", r, p.Consumer, p.Producer)
		}
	}
	st := fw.f.Stats()
	if st.Forwarded != 2*producers*n || st.Failures != 0 || st.Reordered != 0 {
		t.Errorf("stats %+v, want %d forwarded, no failures", st, 2*producers*n)
	}
}

// BenchmarkForward forwards 64-byte records from one producer goroutine
// through a 16 MiB ring to a JetStream stream (5 s duplicate window) of a
// local NATS server, a process of its own, all on this machine's cores:
// with file and memory storage, and with the server's GOGC at its default
// and at 400 (see natstest.WithGOGC).
func BenchmarkForward(b *testing.B) {
	for _, v := range []struct {
		storage string
		gogc    int
	}{{"file", 100}, {"file", 400}, {"memory", 400}} {
		b.Run(fmt.Sprintf("storage=%s/server-gogc=%d", v.storage, v.gogc), func(b *testing.B) {
			srv := natstest.Start(b, natstest.AsProcess(), natstest.WithGOGC(v.gogc))
			srv.CreateStream("BENCH", v.storage == "memory", 5*time.Second, "bench.>")
			r, err := ringo.New(1<<24, ringo.WithName("bench"))
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			fw := startForwarder(b, jetstream.Config{URL: srv.URL(), Subject: "bench.{ring}", Stream: "BENCH"}, forward.Config{}, r)
			b.ReportAllocs()
			b.SetBytes(64)
			b.ResetTimer()
			produce(b, r, 1, b.N, 64)
			deadline := time.Now().Add(5 * time.Minute)
			for fw.f.Stats().Forwarded < uint64(b.N) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			st := fw.f.Stats()
			if st.Forwarded != uint64(b.N) {
				b.Fatalf("forwarded %d of %d", st.Forwarded, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(b.N)/float64(st.Batches), "records/batch")
			fw.stop(b)
		})
	}
}
