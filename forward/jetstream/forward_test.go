package jetstream_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo"
	"github.com/ringo-bpf/ringo/forward"
	"github.com/ringo-bpf/ringo/forward/jetstream"
	"github.com/ringo-bpf/ringo/internal/natstest"
	"github.com/ringo-bpf/ringo/internal/waitfor"
)

// record is the payload the tests produce: producer, sequence number, and
// filler derived from both, so that a torn or mixed-up record shows.
func record(buf []byte, producer, seq int) []byte {
	binary.LittleEndian.PutUint64(buf, uint64(producer))
	binary.LittleEndian.PutUint64(buf[8:], uint64(seq))
	for i := 16; i < len(buf); i++ {
		buf[i] = byte(producer*31 + seq + i)
	}
	return buf
}

// parse checks a payload and returns its producer and sequence number.
func parse(t testing.TB, data []byte) (int, int) {
	t.Helper()
	if len(data) < 16 {
		t.Fatalf("payload of %d bytes", len(data))
	}
	p, s := int(binary.LittleEndian.Uint64(data)), int(binary.LittleEndian.Uint64(data[8:]))
	want := record(make([]byte, len(data)), p, s)
	if !bytes.Equal(data, want) {
		t.Fatalf("producer %d record %d: payload corrupt", p, s)
	}
	return p, s
}

// running is a forwarder running in the background.
type running struct {
	f      *forward.Forwarder
	sink   *jetstream.Sink
	rd     *ringo.Reader
	cancel context.CancelFunc
	done   chan error
}

// waitForwarded waits until the forwarder has had n records acknowledged.
func (r *running) waitForwarded(t testing.TB, n uint64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for r.f.Stats().Forwarded+r.f.Stats().Duplicates < n {
		if time.Now().After(deadline) {
			t.Fatalf("forwarder: %+v after %v, want %d records acknowledged", r.f.Stats(), within, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	if err := waitfor.Recv(t, r.done, waitfor.Short, "the forwarder to return once cancelled"); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("forwarder: %v", err)
	}
	r.rd.Close()
	r.sink.Close()
}

func startForwarder(t testing.TB, cfg jetstream.Config, fcfg forward.Config, rings ...ringo.Source) *running {
	t.Helper()
	ctx := context.Background()
	sink, err := jetstream.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := ringo.NewReader(rings...)
	if err != nil {
		t.Fatal(err)
	}
	if fcfg.Host == "" {
		fcfg.Host = "testhost"
	}
	f, err := forward.New(rd, sink, fcfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &running{f: f, sink: sink, rd: rd, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- f.Run(ctx) }()
	return r
}

// waitCount waits until the stream holds n messages.
func waitCount(t testing.TB, srv *natstest.Server, stream string, n uint64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := srv.Count(stream)
		if got == n {
			return
		}
		if got > n {
			t.Fatalf("stream %s holds %d messages, more than the %d records produced", stream, got, n)
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s holds %d messages after %v, want %d", stream, got, within, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkStream checks that the stream holds, for every ring, exactly the
// records of each producer in want (sequence numbers 0..want-1 minus those
// in skipped), once each, in ring order and in per-producer order, with
// the headers the package documents.
func checkStream(t testing.TB, msgs []natstest.Message, host string, want map[string][]int, skipped map[string]map[[2]int]bool) {
	t.Helper()
	type key struct {
		ring     string
		producer int
	}
	next := map[key]int{}
	lastPos := map[string]int64{}
	count := map[string]int{}
	ids := map[string]bool{}
	keys := map[string]string{}
	for _, m := range msgs {
		ring := m.Header.Get("Ringo-Ring")
		if m.Header.Get("Ringo-Host") != host {
			t.Fatalf("message %d: Ringo-Host %q, want %q", m.Seq, m.Header.Get("Ringo-Host"), host)
		}
		pos, err := strconv.ParseInt(m.Header.Get("Ringo-Pos"), 10, 64)
		if err != nil {
			t.Fatalf("message %d: Ringo-Pos %q", m.Seq, m.Header.Get("Ringo-Pos"))
		}
		if last, seen := lastPos[ring]; seen && pos <= last {
			t.Fatalf("message %d: ring %s position %d after position %d: out of ring order", m.Seq, ring, pos, last)
		}
		lastPos[ring] = pos
		id := m.Header.Get("Nats-Msg-Id")
		rk, p36, found := strings.Cut(id, ".")
		if !found || len(rk) != 11 || p36 != strconv.FormatInt(pos, 36) {
			t.Fatalf("message %d: Nats-Msg-Id %q is not an 11-character ring key, a dot and position %d in base 36", m.Seq, id, pos)
		}
		if k, seen := keys[ring]; seen && k != rk {
			t.Fatalf("message %d: ring %s has ring key %s, and %s before", m.Seq, ring, rk, k)
		}
		keys[ring] = rk
		if ids[id] {
			t.Fatalf("message %d: Nats-Msg-Id %q stored twice", m.Seq, id)
		}
		ids[id] = true
		p, s := parse(t, m.Data)
		k := key{ring, p}
		for skipped[ring][[2]int{p, next[k]}] {
			next[k]++
		}
		if s != next[k] {
			t.Fatalf("ring %s producer %d: record %d stored where %d was due (a loss, a duplicate or a reordering)", ring, p, s, next[k])
		}
		next[k]++
		count[ring]++
	}
	for ring, per := range want {
		for p, n := range per {
			k := key{ring, p}
			for skipped[ring][[2]int{p, next[k]}] {
				next[k]++
			}
			if next[k] != n {
				t.Errorf("ring %s producer %d: stream ends at record %d of %d", ring, p, next[k], n)
			}
		}
	}
}

func testSubject(t testing.TB) string { return "ringo.test.{host}.{ring}" }
