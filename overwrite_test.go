package ringo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo/internal/waitfor"
)

// finishOverwrite is finish for a ring in overwrite mode: what arrived of
// each producer is a subsequence of what it committed, in order (check saw
// to the order), and the records that did not arrive are exactly as many as
// the ring counted overwritten. (That the newest are kept is
// TestFlightRecorder's.)
func (c *stressChecker) finishOverwrite(t *testing.T, prods []*stressProducer, r *Ring) {
	t.Helper()
	committed, arrived := 0, 0
	for _, p := range prods {
		got, want := c.got[p.id], p.committed
		committed += len(want)
		arrived += len(got)
		i := 0 // index in want of the next seq of got
		for _, seq := range got {
			j, found := slices.BinarySearch(want[i:], seq)
			if !found {
				t.Fatalf("producer %d: seq %d arrived but was never committed", p.id, seq)
			}
			i += j + 1
		}
	}
	lost, lostBytes := r.overwritten()
	if uint64(committed-arrived) != lost {
		t.Errorf("%d records committed, %d arrived, but %d counted overwritten", committed, arrived, lost)
	}
	if lost > 0 && lostBytes < lost*HeaderSize {
		t.Errorf("%d records overwritten in only %d bytes", lost, lostBytes)
	}
	t.Logf("overwrite: %d of %d committed records arrived; %d overwritten (%d bytes)", arrived, committed, lost, lostBytes)
}

// TestOverwriteStress: four producers far faster than a reader that dawdles,
// on a 16 KiB ring in overwrite mode, for thousands of laps; with records up
// to 4 KiB a producer often overwrites the record the reader is copying.
// Every record that arrives must be intact and in order, the lost ones must
// be exactly the count of overwritten ones, the newest must arrive, and no
// wake-up may be lost.
func TestOverwriteStress(t *testing.T) {
	cfg := stressConfig{ringSize: 1 << 14, producers: 4, records: stressRecords(), maxSize: 4096, overwrite: true}
	dawdle := func(i int) {
		if i%64 == 0 {
			time.Sleep(20 * time.Microsecond)
		}
	}
	t.Run("ReadInto", func(t *testing.T) {
		runStress(t, cfg, func(ctx context.Context, rd *Reader, check func(Record) error) error {
			var rec Record
			for i := 0; ; i++ {
				if err := rd.ReadInto(ctx, &rec); err != nil {
					return err
				}
				if err := check(rec); err != nil {
					return err
				}
				if isStressEnd(rec) {
					return nil
				}
				dawdle(i)
			}
		})
	})
	t.Run("ConsumeRead", func(t *testing.T) {
		runStress(t, cfg, func(ctx context.Context, rd *Reader, check func(Record) error) error {
			done, i := false, 0
			for !done {
				n, err := rd.Consume(func(rec Record) error {
					i++
					dawdle(i)
					done = done || isStressEnd(rec)
					return check(rec)
				})
				if err != nil {
					return fmt.Errorf("Consume: %w", err)
				}
				if n == 0 && !done {
					rec, err := rd.Read(ctx)
					if err != nil {
						return err
					}
					done = isStressEnd(rec)
					if err := check(rec); err != nil {
						return err
					}
				}
			}
			return nil
		})
	})
}

// TestFlightRecorder: with nobody reading, a ring in overwrite mode keeps
// the newest records: after many laps a reader gets exactly the last ones
// written, in order, filling the ring but for less than one record, and
// the overwritten count is the rest.
func TestFlightRecorder(t *testing.T) {
	const size = 1 << 14
	r := newRing(t, size, WithOverwrite())
	if !r.Overwrite() {
		t.Fatal("Overwrite() = false for a ring made WithOverwrite")
	}
	const n = 10000
	var ends []uint64 // producer position after each record
	for seq := range n {
		b := make([]byte, 8+seq%300)
		binary.LittleEndian.PutUint64(b, uint64(seq))
		if err := r.Output(b, 0); err != nil {
			t.Fatalf("Output %d on an overwrite ring: %v", seq, err)
		}
		ends = append(ends, r.Positions().Producer)
	}
	p := r.Positions()
	if over, _ := r.Query(OverwritePos); over != p.Overwrite || p.Producer-p.Overwrite > size || p.Overwrite == 0 {
		t.Fatalf("positions %+v, OverwritePos %d after %d laps", p, over, p.Producer/size)
	}
	if avail, _ := r.Query(AvailData); avail != p.Producer-p.Overwrite {
		t.Errorf("AvailData = %d, want producer - overwrite = %d", avail, p.Producer-p.Overwrite)
	}
	// The first record kept is the one after the record that ends at
	// overwrite_pos.
	first, found := slices.BinarySearch(ends, p.Overwrite)
	if !found {
		t.Fatalf("overwrite_pos %d is not a record boundary", p.Overwrite)
	}
	first++

	if lost, _ := r.overwritten(); lost != uint64(first) {
		t.Errorf("before any reader: Overwritten() = %d, want %d", lost, first)
	}
	rd := newReader(t, r)
	var got []uint64
	if _, err := rd.Consume(func(rec Record) error {
		seq := binary.LittleEndian.Uint64(rec.Data)
		if len(rec.Data) != 8+int(seq)%300 {
			return fmt.Errorf("record %d is %d bytes", seq, len(rec.Data))
		}
		got = append(got, seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[0] != uint64(first) || got[len(got)-1] != n-1 || len(got) != n-first {
		t.Fatalf("reader got %d records, from %v to %v; want %d..%d", len(got), got[:min(1, len(got))], got[max(0, len(got)-1):], first, n-1)
	}
	for i := range got {
		if got[i] != uint64(first+i) {
			t.Fatalf("record %d is seq %d, want %d", i, got[i], first+i)
		}
	}
	if kept := p.Producer - p.Overwrite; kept < size-recordSize(8+299) {
		t.Errorf("only %d of %d bytes hold records", kept, size)
	}
	if lost, _ := r.overwritten(); lost != uint64(first) {
		t.Errorf("Overwritten() = %d, want %d", lost, first)
	}
}

// TestOverwriteNeverPassesBusy: a ring in overwrite mode does not overwrite
// a record still being written; the reservation that would is refused as
// full, and counted dropped.
func TestOverwriteNeverPassesBusy(t *testing.T) {
	r := newRing(t, 4096, WithOverwrite())
	v, err := r.Reserve(100)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if err := r.Output(make([]byte, 500), 0); err != nil {
			if !errors.Is(err, ErrFull) {
				t.Fatal(err)
			}
			break
		}
	}
	if r.dropped() != 1 {
		t.Errorf("Dropped() = %d, want 1", r.dropped())
	}
	if over := r.Positions().Overwrite; over != 0 {
		t.Errorf("overwrite_pos = %d: moved past the busy record at 0", over)
	}
	if err := r.Commit(v, 0); err != nil {
		t.Fatal(err)
	}
	if err := r.Output(make([]byte, 500), 0); err != nil {
		t.Fatalf("Output after the commit: %v", err)
	}
	if over := r.Positions().Overwrite; over == 0 {
		t.Error("overwrite_pos did not move past the committed record")
	}
}

// TestSharedOverwrite: the mode is recorded in the shared ring's file, so a
// process that opens the ring follows it, and the overwritten counts are
// shared.
func TestSharedOverwrite(t *testing.T) {
	dir := t.TempDir()
	w, err := Create("recorder", 1<<14, WithDir(dir), WithOverwrite())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	o, err := Open("recorder", WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if !o.Overwrite() {
		t.Fatal("the opened ring is not in overwrite mode")
	}
	for i := range 2000 {
		if err := w.Output(make([]byte, 8+i%100), 0); err != nil {
			t.Fatal(err)
		}
	}
	rd := newReader(t, o)
	n, err := rd.Consume(func(Record) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	lost, _ := w.overwritten()
	if lost == 0 || uint64(n)+lost != 2000 {
		t.Errorf("%d records read, %d overwritten; want 2000 in all", n, lost)
	}
}

// BenchmarkOverwrite: the cost of a flight recorder. Output into a ring in
// overwrite mode that nobody reads (every reservation overwrites the
// oldest record), against Output into a plain ring drained inline; and a
// reader following a ring in overwrite mode, which copies each record.
func BenchmarkOverwrite(b *testing.B) {
	for _, size := range []int{64, 512} {
		payload := make([]byte, size)
		b.Run(fmt.Sprintf("recorder/size=%d", size), func(b *testing.B) {
			r := newRing(b, 1<<20, WithOverwrite())
			b.ReportAllocs()
			for b.Loop() {
				if err := r.Output(payload, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("plain-drained/size=%d", size), func(b *testing.B) {
			r := newRing(b, 1<<20)
			rd := newReader(b, r)
			b.ReportAllocs()
			for b.Loop() {
				for r.Output(payload, 0) != nil {
					drainInline(rd)
				}
			}
		})
		b.Run(fmt.Sprintf("overwrite-drained/size=%d", size), func(b *testing.B) {
			r := newRing(b, 1<<20, WithOverwrite())
			rd := newReader(b, r)
			b.ReportAllocs()
			i, every := 0, (1<<20)/2/(size+HeaderSize) // drain at half full
			for b.Loop() {
				if err := r.Output(payload, 0); err != nil {
					b.Fatal(err)
				}
				if i++; i%every == 0 {
					drainInline(rd)
				}
			}
			if lost, _ := r.overwritten(); lost != 0 {
				b.Fatalf("%d records overwritten", lost)
			}
		})
	}
}

// TestOverwriteMarkWaitsForWriter: a reader of overwrite_pos and its count
// that finds a producer in the middle of updating them (preempted there,
// as happens on a loaded host) waits for it to finish rather than taking
// one word new and the other old, which would count records lost that
// arrived (TestOverwriteStress's miscount, once in a few hundred runs):
// a producer holding the reservation lock, and the one producer of a ring
// made WithSingleProducer, which takes no lock. The producer here stays in
// the middle for 20 ms, far longer than any spin.
func TestOverwriteMarkWaitsForWriter(t *testing.T) {
	// However late the writer below finishes (a loaded host), a reader that
	// waits must still be waiting: no sleep decides the outcome.
	defer func(p time.Duration) { markPatience = p }(markPatience)
	markPatience = waitfor.Long
	for _, single := range []bool{false, true} {
		opts := []Option{WithOverwrite()}
		if single {
			opts = append(opts, WithSingleProducer())
		}
		r := newRing(t, 1<<12, opts...)
		m := r.mem
		if !single {
			if err := m.lock(nil); err != nil {
				t.Fatal(err)
			}
		}
		// setOverwriteMark's stores, the last two held back.
		seq := m.overSeq.Load()
		m.overSeq.Store(seq | 1)
		m.overwritePos.Store(4096)
		got := make(chan [2]uint64, 1)
		go func() {
			pos, count := m.overwriteMark()
			got <- [2]uint64{pos, count}
		}()
		// (Not an ordering the test depends on: a reader that waits
		// passes however the two goroutines are scheduled; this gives
		// one that does not the time to give up.)
		time.Sleep(20 * time.Millisecond)
		m.overCount.Store(9)
		m.overSeq.Store(seq + 2)
		if !single {
			m.unlock()
		}
		if v := waitfor.Recv(t, got, waitfor.Short, "overwriteMark"); v != [2]uint64{4096, 9} {
			t.Errorf("single producer %v: overwriteMark = %d, %d while a writer moved it from 0, 0 to 4096, 9", single, v[0], v[1])
		}
	}
}

// TestOverwriteMarkWriterGone: a shared ring's sequence word left odd by a
// writer that no longer holds the lock (a process that died mid-update) is
// taken as it is, and so is one whose writer holds the lock and never
// finishes (a stopped process), after markPatience: neither hangs the
// reader. The next writer makes the word a new odd value, then even, so
// that a reader that took the dead writer's words sees it change; a process
// that takes the dead writer's lock over makes it even at once.
func TestOverwriteMarkWriterGone(t *testing.T) {
	r, err := Create("gone", 1<<12, WithDir(t.TempDir()), WithOverwrite())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m := r.mem
	defer m.lockWord.Store(0) // before Close, which waits for the lock
	m.overSeq.Store(7)
	m.overwritePos.Store(64)
	m.overCount.Store(2)
	const dead = 1<<63 | 1 // names no handle of the presence table
	for _, tc := range []struct {
		what  string
		owner uint64
	}{
		{"no holder", 0},
		{"a dead holder", dead},
		{"a live holder that stays", m.self},
	} {
		m.lockWord.Store(tc.owner)
		got := make(chan [2]uint64, 1)
		go func() {
			pos, count := m.overwriteMark()
			got <- [2]uint64{pos, count}
		}()
		if v := waitfor.Recv(t, got, waitfor.Short, "overwriteMark with "+tc.what); v != [2]uint64{64, 2} {
			t.Errorf("%s: overwriteMark = %d, %d, want 64, 2", tc.what, v[0], v[1])
		}
	}

	m.lockWord.Store(m.self)
	m.setOverwriteMark(128, 3)
	if seq := m.overSeq.Load(); seq != 10 {
		t.Errorf("setOverwriteMark from the odd word 7 left it %d, want 10 (odd 9 while writing)", seq)
	}
	m.overSeq.Store(11)
	m.lockWord.Store(dead)
	if err := m.lock(nil); err != nil {
		t.Fatalf("taking the dead holder's lock over: %v", err)
	}
	if seq := m.overSeq.Load(); seq != 12 {
		t.Errorf("taking the lock over from a holder that left the word at 11: %d, want 12", seq)
	}
	if pos, count := m.overwriteMark(); pos != 128 || count != 3 {
		t.Errorf("overwriteMark = %d, %d after the takeover, want 128, 3", pos, count)
	}
	m.unlock()
}
