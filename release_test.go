package ringo

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
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

// outputWaiting outputs data, waiting while the ring is full.
func outputWaiting(r *Ring, data []byte) error {
	for {
		err := r.Output(data, 0)
		if !errors.Is(err, ErrFull) {
			return err
		}
		time.Sleep(10 * time.Microsecond)
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
	rd.SetExplicitRelease(true)
	outputSeq(t, r, 0, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := rd.Read(ctx); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		outputSeq(t, r, 1, 2)
	}()
	rec, err := rd.Read(ctx)
	if err != nil {
		t.Fatalf("blocked read with a held record missed the next record: %v", err)
	}
	if s := binary.LittleEndian.Uint64(rec.Data); s != 1 {
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
func TestExplicitReleaseStress(t *testing.T) {
	const producers, perProducer = 4, 20000
	r := newRing(t, 16384)
	rd := newReader(t, r)
	rd.SetExplicitRelease(true)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(p), 1))
			buf := make([]byte, 512)
			for i := 0; i < perProducer; i++ {
				n := 16 + rng.IntN(len(buf)-16)
				binary.LittleEndian.PutUint64(buf, uint64(p))
				binary.LittleEndian.PutUint64(buf[8:], uint64(i))
				for j := 16; j < n; j++ {
					buf[j] = byte(i + j)
				}
				if err := outputWaiting(r, buf[:n]); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	rng := rand.New(rand.NewPCG(99, 2))
	released := make([]int, producers) // next sequence number to release, per producer
	var pending []Record               // handed out, not released
	var seen []int                     // next sequence number expected on hand-out, per producer
	seen = make([]int, producers)
	total := 0
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for total < producers*perProducer {
		rec, err := rd.Read(ctx)
		if err != nil {
			t.Fatalf("after %d released: %v", total, err)
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
			for _, h := range pending {
				seen[int(binary.LittleEndian.Uint64(h.Data))]--
			}
			pending = pending[:0]
		case x < 20 || len(pending) > 64 || sum(seen) == producers*perProducer:
			k := rng.IntN(len(pending))
			if sum(seen) == producers*perProducer {
				k = len(pending) - 1 // all handed out: release the rest
			}
			if err := rd.Release(pending[k]); err != nil {
				t.Fatal(err)
			}
			for _, h := range pending[:k+1] {
				hp, hi := int(binary.LittleEndian.Uint64(h.Data)), int(binary.LittleEndian.Uint64(h.Data[8:]))
				if hi != released[hp] {
					t.Fatalf("producer %d: released %d, want %d next", hp, hi, released[hp])
				}
				released[hp]++
				total++
			}
			pending = pending[k+1:]
		}
	}
	<-done
	for p, n := range released {
		if n != perProducer {
			t.Errorf("producer %d: %d records released, want %d", p, n, perProducer)
		}
	}
	if p := r.Positions(); p.Consumer != p.Producer {
		t.Errorf("consumer_pos %d, producer_pos %d at the end", p.Consumer, p.Producer)
	}
}

func sum(s []int) int {
	n := 0
	for _, v := range s {
		n += v
	}
	return n
}
