package forward

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo"
	"github.com/ringo-bpf/ringo/internal/waitfor"
)

// fakeSink is an engine that stores messages, de-duplicates them by ID,
// and fails as told: a batch fails at a random message, and with
// storeAfter the messages after the failed one are stored anyway (an
// engine refusing one message and taking the next). Without it, nothing
// sent after a failure is stored until the batches in flight are over (a
// lost connection).
type fakeSink struct {
	mu         sync.Mutex
	rng        *rand.Rand
	failEvery  int // one batch in failEvery fails (0: never)
	storeAfter bool
	stored     []Message
	ids        map[string]bool
	sends      int
	inflight   int
	maxFlight  int
	broken     bool
}

type fakeBatch struct {
	res Result
	err error
	s   *fakeSink
}

func (s *fakeSink) Send(_ context.Context, msgs []Message) Batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sends++
	s.inflight++
	s.maxFlight = max(s.maxFlight, s.inflight)
	fail := -1
	if s.failEvery > 0 && s.rng.IntN(s.failEvery) == 0 {
		fail = s.rng.IntN(len(msgs))
	}
	b := &fakeBatch{s: s}
	if s.broken && !s.storeAfter {
		b.err = errors.New("connection lost before")
		return b
	}
	if fail >= 0 {
		s.broken = true
	}
	for i, m := range msgs {
		switch {
		case i == fail:
			b.err = errors.New("refused")
			continue
		case fail >= 0 && i > fail && !s.storeAfter:
			continue
		}
		dup := s.ids[m.ID]
		if !dup {
			s.ids[m.ID] = true
			s.stored = append(s.stored, Message{ID: m.ID, Host: m.Host, Ring: m.Ring, Pos: m.Pos, Data: append([]byte(nil), m.Data...)})
		}
		if fail < 0 || i < fail {
			b.res.Acked++
			if dup {
				b.res.Duplicates++
			}
		} else if !dup {
			b.res.Reordered++
		}
	}
	return b
}

func (b *fakeBatch) Wait(context.Context) (Result, error) {
	b.s.mu.Lock()
	if b.s.inflight--; b.s.inflight == 0 {
		b.s.broken = false
	}
	b.s.mu.Unlock()
	return b.res, b.err
}

func (s *fakeSink) Close() error { return nil }

// forwardAll runs a Forwarder from ring to sink while producers write
// n records each, and returns it once everything was acknowledged.
func forwardAll(t *testing.T, sink *fakeSink, rings []*ringo.Ring, producers, n int) *Forwarder {
	t.Helper()
	srcs := make([]ringo.Source, len(rings))
	for i, r := range rings {
		srcs[i] = r
	}
	rd, err := ringo.NewReader(srcs...)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	f, err := New(rd, sink, Config{Host: "h", BatchRecords: 64, MinBackoff: time.Microsecond, MaxBackoff: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var wg sync.WaitGroup
	for ri, r := range rings {
		for p := range producers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(ri), uint64(p)))
				buf := make([]byte, 300)
				for s := range n {
					size := 16 + rng.IntN(len(buf)-16)
					binary.LittleEndian.PutUint64(buf, uint64(p))
					binary.LittleEndian.PutUint64(buf[8:], uint64(s))
					for errors.Is(r.Output(buf[:size], 0), ringo.ErrFull) {
						time.Sleep(20 * time.Microsecond)
					}
				}
			}()
		}
	}
	waitfor.Group(t, &wg, waitfor.Long, "the producers to write their records (the forwarder making room)")
	// Done when every ring is released to its end.
	waitfor.Until(t, waitfor.Long, "the forwarder to have every record acknowledged and released", func() bool {
		for _, r := range rings {
			if p := r.Positions(); p.Consumer != p.Producer {
				return false
			}
		}
		return true
	})
	cancel()
	if err := waitfor.Recv(t, done, waitfor.Short, "Run to return once cancelled"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	return f
}

// check verifies the engine holds every record once, and, if ordered, in
// ring and per-producer order.
func check(t *testing.T, sink *fakeSink, rings, producers, n int, ordered bool) {
	t.Helper()
	type key struct {
		ring string
		p    int
	}
	seen := map[key]map[int]bool{}
	next := map[key]int{}
	last := map[string]uint64{}
	for _, m := range sink.stored {
		p, s := int(binary.LittleEndian.Uint64(m.Data)), int(binary.LittleEndian.Uint64(m.Data[8:]))
		k := key{m.Ring.Name, p}
		if seen[k] == nil {
			seen[k] = map[int]bool{}
		}
		if seen[k][s] {
			t.Fatalf("ring %s producer %d record %d stored twice", k.ring, p, s)
		}
		seen[k][s] = true
		if ordered {
			if s != next[k] {
				t.Fatalf("ring %s producer %d: record %d stored where %d was due", k.ring, p, s, next[k])
			}
			if l, ok := last[m.Ring.Name]; ok && m.Pos <= l {
				t.Fatalf("ring %s: position %d after %d", m.Ring.Name, m.Pos, l)
			}
			next[k]++
			last[m.Ring.Name] = m.Pos
		}
	}
	if len(sink.stored) != rings*producers*n {
		t.Fatalf("%d records stored, want %d", len(sink.stored), rings*producers*n)
	}
}

// Batches fail at random: what was acknowledged is released, the rest is
// handed out again and sent again; the engine ends up with every record
// once, in order, and the rings empty.
func TestForwardRetries(t *testing.T) {
	const rings, producers, n = 2, 3, 3000
	var rs []*ringo.Ring
	for i := range rings {
		r, err := ringo.New(8192, ringo.WithName(string(rune('a'+i))))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rs = append(rs, r)
	}
	sink := &fakeSink{rng: rand.New(rand.NewPCG(1, 2)), failEvery: 5, ids: map[string]bool{}}
	f := forwardAll(t, sink, rs, producers, n)
	check(t, sink, rings, producers, n, true)
	st := f.Stats()
	if st.Failures == 0 || st.Reordered != 0 || st.Forwarded != rings*producers*n {
		t.Fatalf("stats %+v: want failures, no reordering, %d forwarded", st, rings*producers*n)
	}
	if sink.maxFlight != 2 {
		t.Errorf("at most %d batches in flight, want 2 (pipelined)", sink.maxFlight)
	}
	for _, r := range rs {
		if p := r.Positions(); p.Consumer != p.Producer {
			t.Errorf("ring %s: consumer_pos %d, producer_pos %d", r, p.Consumer, p.Producer)
		}
	}
}

// An engine that stores messages after one it refused breaks the order;
// the Forwarder counts what it stored out of order, and still every record
// is stored once.
func TestForwardCountsReordering(t *testing.T) {
	r, err := ringo.New(8192, ringo.WithName("r"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sink := &fakeSink{rng: rand.New(rand.NewPCG(3, 4)), failEvery: 4, storeAfter: true, ids: map[string]bool{}}
	f := forwardAll(t, sink, []*ringo.Ring{r}, 2, 3000)
	check(t, sink, 1, 2, 3000, false)
	out := 0
	var last uint64
	for i, m := range sink.stored {
		if i > 0 && m.Pos < last {
			out++
		}
		last = max(last, m.Pos)
	}
	st := f.Stats()
	if st.Reordered == 0 || out == 0 {
		t.Fatalf("Reordered %d, %d records stored behind a later one: the test did not reorder", st.Reordered, out)
	}
	if st.Forwarded+st.Duplicates < 6000 {
		t.Fatalf("stats %+v: fewer acknowledged than produced", st)
	}
}

func TestRingKey(t *testing.T) {
	a := ringo.Identity{Kind: "kernel", Name: "events", Incarnation: "1234abcd-7"}
	b := a
	b.Incarnation = "1234abcd-8"
	ka, kb, kh := RingKey("h1", a), RingKey("h1", b), RingKey("h2", a)
	if len(ka) != 11 || ka == kb || ka == kh || RingKey("h1", a) != ka {
		t.Fatalf("ring keys %q %q %q: want 11 characters, stable, different for another ring or host", ka, kb, kh)
	}
}
