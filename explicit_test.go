package ringo

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo/internal/waitfor"
)

// outputSeq writes records carrying the sequence numbers from..to-1.
func outputSeq(t testing.TB, r *Ring, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(i))
		if err := r.Output(b[:], 0); err != nil {
			t.Fatalf("output %d: %v", i, err)
		}
	}
}

// consumeSeq consumes what is there and returns the records and their
// sequence numbers.
func consumeSeq(t testing.TB, rd *Reader) ([]Record, []int) {
	t.Helper()
	var recs []Record
	var seqs []int
	if _, err := rd.Consume(func(rec Record) error {
		recs = append(recs, Record{Source: rec.Source, Pos: rec.Pos, Data: append([]byte(nil), rec.Data...)})
		seqs = append(seqs, int(binary.LittleEndian.Uint64(rec.Data)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return recs, seqs
}

func wantSeqs(t testing.TB, got []int, from, to int) {
	t.Helper()
	if len(got) != to-from {
		t.Fatalf("got %d records %v, want %d..%d", len(got), got, from, to-1)
	}
	for i, s := range got {
		if s != from+i {
			t.Fatalf("record %d is %d, want %d (all: %v)", i, s, from+i, got)
		}
	}
}

func TestExplicitRelease(t *testing.T) {
	r := newRing(t, 4096)
	rd := newReader(t, r)
	if err := rd.SetExplicitRelease(true); err != nil {
		t.Fatal(err)
	}
	outputSeq(t, r, 0, 10)
	recs, seqs := consumeSeq(t, rd)
	wantSeqs(t, seqs, 0, 10)
	if c := r.Positions().Consumer; c != 0 {
		t.Fatalf("consumer_pos %d after consuming held records, want 0", c)
	}
	if n := rd.Held(); n != 10 {
		t.Fatalf("Held = %d, want 10", n)
	}
	if err := rd.Release(recs[4]); err != nil {
		t.Fatal(err)
	}
	if c, want := r.Positions().Consumer, recs[5].Pos; c != want {
		t.Fatalf("consumer_pos %d after releasing record 4, want %d (the start of record 5)", c, want)
	}
	st, _ := rd.Stats()
	if st[0].Records != 5 || st[0].Bytes != 40 {
		t.Fatalf("Stats counts %d records, %d bytes consumed; want the 5 released, 40 bytes", st[0].Records, st[0].Bytes)
	}
	// Releasing an earlier record again does nothing.
	if err := rd.Release(recs[2]); err != nil {
		t.Fatal(err)
	}
	if err := rd.Rewind(); err != nil {
		t.Fatal(err)
	}
	outputSeq(t, r, 10, 12)
	recs, seqs = consumeSeq(t, rd)
	wantSeqs(t, seqs, 5, 12)
	if err := rd.Release(recs[len(recs)-1]); err != nil {
		t.Fatal(err)
	}
	if p := r.Positions(); p.Consumer != p.Producer {
		t.Fatalf("consumer_pos %d, producer_pos %d after releasing everything", p.Consumer, p.Producer)
	}
	st, _ = rd.Stats()
	if st[0].Records != 12 {
		t.Fatalf("Stats counts %d records consumed, want 12 (each once, though 7 were handed out twice)", st[0].Records)
	}
	if err := rd.SetExplicitRelease(false); err != nil {
		t.Fatal(err)
	}
	outputSeq(t, r, 12, 13)
	_, seqs = consumeSeq(t, rd)
	wantSeqs(t, seqs, 12, 13)
	if p := r.Positions(); p.Consumer != p.Producer {
		t.Fatalf("explicit release off: consumer_pos %d, producer_pos %d after Consume", p.Consumer, p.Producer)
	}
}

func TestExplicitReleaseErrors(t *testing.T) {
	r := newRing(t, 4096)
	other := newRing(t, 4096)
	rd := newReader(t, r)
	outputSeq(t, r, 0, 3)
	recs, _ := consumeSeq(t, rd)
	if err := rd.Release(recs[0]); err == nil || !strings.Contains(err.Error(), "explicit release is off") {
		t.Fatalf("Release with explicit release off: %v", err)
	}
	if err := rd.SetExplicitRelease(true); err != nil {
		t.Fatal(err)
	}
	outputSeq(t, r, 3, 6)
	recs, _ = consumeSeq(t, rd)
	if err := rd.SetExplicitRelease(false); err == nil || !strings.Contains(err.Error(), "release or rewind them first") {
		t.Fatalf("SetExplicitRelease(false) while holding: %v", err)
	}
	if err := rd.Release(Record{Source: other, Pos: 0, Data: make([]byte, 8)}); err == nil || !strings.Contains(err.Error(), "not in this reader") {
		t.Fatalf("Release of a record of another ring: %v", err)
	}
	bad := recs[1]
	bad.Pos += 8 // not where a record starts: its end is no record's
	if err := rd.Release(bad); err == nil || !strings.Contains(err.Error(), "did not hand it out") {
		t.Fatalf("Release of a record with the wrong length: %v", err)
	}
	outputSeq(t, r, 6, 7)
	if err := rd.Release(Record{Source: r, Pos: recs[2].Pos + 16, Data: make([]byte, 8)}); err == nil || !strings.Contains(err.Error(), "did not hand it out") {
		t.Fatalf("Release of a record not handed out yet: %v", err)
	}
	if c := r.Positions().Consumer; c != recs[0].Pos {
		t.Fatalf("failed releases moved consumer_pos to %d", c)
	}
}

// Records held when the Reader closes stay in the ring: the next consumer
// gets them again, and only them.
func TestExplicitReleaseClose(t *testing.T) {
	r := newRing(t, 4096)
	rd, err := NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	rd.SetExplicitRelease(true)
	outputSeq(t, r, 0, 8)
	recs, _ := consumeSeq(t, rd)
	rd.Release(recs[2])
	rd.Close()
	rd2 := newReader(t, r)
	_, seqs := consumeSeq(t, rd2)
	wantSeqs(t, seqs, 3, 8)
}

// A blocked read with records held still sees new records, though the
// producers' wake-up test fails while consumer_pos lags.
func TestExplicitReleaseBlockingRead(t *testing.T) {
	r := newRing(t, 4096)
	rd := newReader(t, r)
	asleep := watchSleep(rd)
	rd.SetExplicitRelease(true)
	outputSeq(t, r, 0, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Short)
	defer cancel()
	if _, err := rd.Read(ctx); err != nil {
		t.Fatal(err)
	}
	asleep.drain()
	done := readAsync(t.Context(), rd)
	asleep.wait(t, "with a record held, on the empty ring")
	outputSeq(t, r, 1, 2)
	res := waitfor.Recv(t, done, waitfor.Short, "the blocked Read, holding a record, to see the next one")
	if res.err != nil {
		t.Fatalf("blocked read with a held record missed the next record: %v", res.err)
	}
	if s := binary.LittleEndian.Uint64(res.rec.Data); s != 1 {
		t.Fatalf("read %d, want 1", s)
	}
	if c := r.Positions().Consumer; c != 0 {
		t.Fatalf("ReadInto in explicit mode stored consumer_pos %d", c)
	}
}

// Several producers fill a small ring while the consumer releases records
// in random batches and rewinds at random, as a forwarder does when the far
// side fails: every record is released exactly once, in per-producer order,
// and producers always find room again.
//
// The consumer never holds so much that the largest record no longer fits
// beside what it holds: then, with every record handed out, Read would
// wait for a record no producer has room to write, and neither side could
// move. So before each Read it releases, at random, enough to leave room
// for one more record. It goes through spells of releasing often and of
// releasing only when it must, which keeps the ring full of held records
// (producers refused, Read polling for what they write once room is made).
func TestExplicitReleaseStress(t *testing.T) {
	const producers, perProducer = 4, 20000
	const ringSize, maxPayload = 16384, 511
	r := newRing(t, ringSize)
	rd := newReader(t, r)
	rd.SetExplicitRelease(true)
	var wg sync.WaitGroup
	produce, quit := context.WithCancel(context.Background())
	errs := make(chan error, producers)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(p), 1))
			buf := make([]byte, maxPayload+1)
			for i := 0; i < perProducer; i++ {
				n := 16 + rng.IntN(len(buf)-16)
				binary.LittleEndian.PutUint64(buf, uint64(p))
				binary.LittleEndian.PutUint64(buf[8:], uint64(i))
				for j := 16; j < n; j++ {
					buf[j] = byte(i + j)
				}
				if err := r.OutputWait(produce, buf[:n], 0); err != nil {
					if produce.Err() == nil {
						errs <- fmt.Errorf("producer %d, record %d: %w", p, i, err)
					}
					return
				}
			}
		}()
	}
	// On the way out, stop the producers before the cleanups close the
	// ring under them.
	defer func() {
		quit()
		waitfor.Group(t, &wg, waitfor.Short, "the producers to stop")
	}()

	rng := rand.New(rand.NewPCG(99, 2))
	released := make([]int, producers) // next sequence number to release, per producer
	var pending []Record               // handed out, not released
	seen := make([]int, producers)     // next sequence number expected on hand-out, per producer
	// span is the bytes of ring positions the pending records take.
	span := func(recs []Record) uint64 {
		if len(recs) == 0 {
			return 0
		}
		last := recs[len(recs)-1]
		return last.Pos + recordSize(uint64(len(last.Data))) - recs[0].Pos
	}
	// room is how much the pending records may take before Read: what
	// leaves the largest record room beside them (a ring holds size-1
	// bytes of records).
	const room = ringSize - 1 - (HeaderSize+maxPayload+7)&^7
	release := func(k int) {
		t.Helper()
		if err := rd.Release(pending[k]); err != nil {
			t.Fatal(err)
		}
		for _, h := range pending[:k+1] {
			hp, hi := int(binary.LittleEndian.Uint64(h.Data)), int(binary.LittleEndian.Uint64(h.Data[8:]))
			if hi != released[hp] {
				t.Fatalf("producer %d: released %d, want %d next", hp, hi, released[hp])
			}
			released[hp]++
		}
		end := pending[k].Pos + recordSize(uint64(len(pending[k].Data)))
		pending = pending[k+1:]
		if c := r.Positions().Consumer; c != end {
			t.Fatalf("consumer_pos %d after releasing the record that ends at %d", c, end)
		}
	}
	total := func() int { return sum(released) }
	releaseOdds, forced, rewinds := 20, 0, 0
	// Cancelled, not timed out: a Read woken by its deadline would find
	// records and hide a wake-up it missed.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer time.AfterFunc(waitfor.Long, cancel).Stop()
	for n := 0; total() < producers*perProducer; n++ {
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
		if n%1000 == 0 {
			releaseOdds = []int{1, 20, 60}[rng.IntN(3)] // percent: a spell of holding on, or of letting go
		}
		if sum(seen) == producers*perProducer {
			release(len(pending) - 1) // all handed out: release the rest
			continue
		}
		if s := span(pending); s > room {
			// The ring could be full of held records: make room.
			k := 0
			for span(pending[k+1:]) > room {
				k++
			}
			release(k + rng.IntN(len(pending)-k))
			forced++
		}
		rec, err := rd.Read(ctx)
		if err != nil {
			t.Fatalf("Read after %d released, %d held (%d bytes of %d; positions %+v): %v",
				total(), len(pending), span(pending), ringSize, r.Positions(), err)
		}
		p, i := int(binary.LittleEndian.Uint64(rec.Data)), int(binary.LittleEndian.Uint64(rec.Data[8:]))
		if p >= producers || i != seen[p] {
			t.Fatalf("producer %d record %d handed out, want record %d", p, i, seen[p])
		}
		for j := 16; j < len(rec.Data); j++ {
			if rec.Data[j] != byte(i+j) {
				t.Fatalf("producer %d record %d: byte %d torn", p, i, j)
			}
		}
		seen[p]++
		pending = append(pending, rec)
		switch x := rng.IntN(100); {
		case x < 3: // the far side failed: hand them out again
			rd.Rewind()
			rewinds++
			for _, h := range pending {
				seen[int(binary.LittleEndian.Uint64(h.Data))]--
			}
			pending = pending[:0]
		case x < 3+releaseOdds:
			release(rng.IntN(len(pending)))
		}
	}
	for p, n := range released {
		if n != perProducer {
			t.Errorf("producer %d: %d records released, want %d", p, n, perProducer)
		}
	}
	if p := r.Positions(); p.Consumer != p.Producer {
		t.Errorf("consumer_pos %d, producer_pos %d at the end", p.Consumer, p.Producer)
	}
	t.Logf("%d records released; %d rewinds, %d releases forced by a ring full of held records; %d reader wake-ups",
		total(), rewinds, forced, rd.Wakeups())
}

func sum(s []int) int {
	n := 0
	for _, v := range s {
		n += v
	}
	return n
}
