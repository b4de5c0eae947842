package ringo

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// batchRecordsOf writes records of the given payload lengths into r (a
// negative length is a record of -n bytes, discarded) and returns the
// committed ones, as Consume would hand them out.
func batchRecordsOf(t *testing.T, r *Ring, lens []int) []fuzzRecord {
	t.Helper()
	var want []fuzzRecord
	for i, n := range lens {
		discard := n < 0
		if discard {
			n = -n
		}
		data := stressPattern(7, uint64(i), n)
		v, err := r.Reserve(n)
		if err != nil {
			t.Fatal(err)
		}
		copy(v.Bytes(), data)
		if discard {
			err = r.Discard(v, NoWakeup)
		} else {
			err = r.Commit(v, NoWakeup)
			want = append(want, fuzzRecord{v.pos, data})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return want
}

func sameRecords(t *testing.T, how string, got, want []fuzzRecord) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", how, len(got), len(want))
	}
	for i := range got {
		if got[i].pos != want[i].pos || !bytes.Equal(got[i].data, want[i].data) {
			t.Fatalf("%s: record %d is %v, want %v", how, i, got[i], want[i])
		}
	}
}

// TestConsumeBatch: All hands out what Consume does, in order,
// over runs of records alike, changes of length, discarded records and the
// end of the data area, and the Reader's counts and consumer_pos follow.
func TestConsumeBatch(t *testing.T) {
	lens := []int{16, 16, 16, 16, 8, 8, -16, 16, 0, 0, 100, 16, -8, -8, 16, 16, 3, 5, 16}
	{
		how := "All"
		r := newRing(t, 4096)
		rd := newReader(t, r)
		total, bytesWant := 0, 0
		for round := 0; round < 6; round++ { // across the end of the data area
			want := batchRecordsOf(t, r, lens)
			var got []fuzzRecord
			calls := 0
			n, err := rd.ConsumeBatch(func(src Source, b *Batch) error {
				calls++
				if src != r {
					t.Errorf("a batch of %v", src)
				}
				for data := range b.All() {
					got = append(got, fuzzRecord{0, bytes.Clone(data)})
				}
				return nil
			})
			if err != nil || n != len(want) || calls == 0 {
				t.Fatalf("%s round %d: ConsumeBatch = %d, %v after %d calls, want %d", how, round, n, err, calls, len(want))
			}
			for i := range got { // All yields no position: the data is compared
				if i < len(want) {
					got[i].pos = want[i].pos
				}
			}
			sameRecords(t, how, got, want)
			if p := r.Positions(); p.Consumer != p.Producer {
				t.Fatalf("%s: consumer_pos %d after consuming all, producer_pos %d", how, p.Consumer, p.Producer)
			}
			total += len(want)
			for _, w := range want {
				bytesWant += len(w.data)
			}
			st, _ := rd.Stats()
			if st[0].Records != uint64(total) || st[0].Bytes != uint64(bytesWant) {
				t.Fatalf("%s: Stats %d records, %d bytes, want %d, %d", how, st[0].Records, st[0].Bytes, total, bytesWant)
			}
		}
		if n, err := rd.ConsumeBatch(func(Source, *Batch) error { t.Error("a batch of an empty ring"); return nil }); n != 0 || err != nil {
			t.Fatalf("empty ring: %d, %v", n, err)
		}
	}
}

// TestConsumeBatchStops: the record a loop breaks out on stays in the
// ring, as do those after it; an error from fn is returned (Stop is not),
// and the records the loop moved on from are consumed.
func TestConsumeBatchStops(t *testing.T) {
	{
		how := "All"
		for _, ret := range []error{nil, Stop, errors.New("boom")} {
			r := newRing(t, 4096)
			rd := newReader(t, r)
			want := batchRecordsOf(t, r, []int{8, 8, 8, 16, 16, 8})
			var got []fuzzRecord
			for k := 0; len(got) < len(want); k++ {
				take := k%3 + 1
				n, err := rd.ConsumeBatch(func(_ Source, b *Batch) error {
					i := 0
					for data := range b.All() {
						if i == take {
							break
						}
						got = append(got, fuzzRecord{want[len(got)].pos, bytes.Clone(data)})
						i++
					}
					return ret
				})
				wantErr := ret
				if ret == Stop {
					wantErr = nil
				}
				if n != min(take, len(want)-(len(got)-n)) || err != wantErr {
					t.Fatalf("%s, %v: ConsumeBatch taking %d = %d, %v", how, ret, take, n, err)
				}
				if p := r.Positions(); p.Consumer != want[len(got)-1].pos+recordSize(uint64(len(want[len(got)-1].data))) && len(got) < len(want) {
					t.Fatalf("%s: consumer_pos %d after %d records", how, p.Consumer, len(got))
				}
			}
			sameRecords(t, how, got, want)
		}
	}
}

// TestConsumeBatchExplicitRelease: in explicit release mode ConsumeBatch
// refuses, saying what to use instead, and takes nothing; turned off, it
// consumes.
func TestConsumeBatchExplicitRelease(t *testing.T) {
	r := newRing(t, 4096)
	rd := newReader(t, r)
	if err := rd.SetExplicitRelease(true); err != nil {
		t.Fatal(err)
	}
	want := batchRecordsOf(t, r, []int{8, 8, 16})
	n, err := rd.ConsumeBatch(func(Source, *Batch) error { t.Error("a batch in explicit release mode"); return nil })
	if n != 0 || err == nil || !strings.Contains(err.Error(), "use Consume") {
		t.Fatalf("ConsumeBatch in explicit release mode = %d, %v", n, err)
	}
	if rd.Held() != 0 || r.Positions().Consumer != want[0].pos {
		t.Fatalf("refused, yet %d held, consumer_pos %d", rd.Held(), r.Positions().Consumer)
	}
	if err := rd.SetExplicitRelease(false); err != nil {
		t.Fatal(err)
	}
	n, err = rd.ConsumeBatch(func(_ Source, b *Batch) error {
		for range b.All() {
		}
		return nil
	})
	if n != len(want) || err != nil {
		t.Fatalf("explicit release off: %d, %v", n, err)
	}
}

// TestConsumeBatchOverwrite: a ring in overwrite mode hands out copies, one
// per batch walk, and skips what producers overwrote, as Consume does.
func TestConsumeBatchOverwrite(t *testing.T) {
	r := newRing(t, 4096, WithOverwrite())
	rd := newReader(t, r)
	var all []fuzzRecord
	for i := 0; i < 200; i++ {
		all = append(all, batchRecordsOf(t, r, []int{40 + i%3*8})...)
	}
	var got []fuzzRecord
	n, err := rd.ConsumeBatch(func(_ Source, b *Batch) error {
		for data := range b.All() {
			got = append(got, fuzzRecord{0, bytes.Clone(data)})
		}
		return nil
	})
	if err != nil || n != len(got) || n == 0 || n >= len(all) {
		t.Fatalf("ConsumeBatch = %d, %v (%d records)", n, err, len(got))
	}
	for i := range got {
		if !bytes.Equal(got[i].data, all[len(all)-n+i].data) {
			t.Fatalf("record %d differs", i)
		}
	}
	if l, _ := r.Loss(); l.Overwritten != uint64(len(all)-n) {
		t.Fatalf("Overwritten = %d, want %d", l.Overwritten, len(all)-n)
	}
}

// TestConsumeBatchRingsAndClose: rings take turns, and Close in fn ends
// ConsumeBatch.
func TestConsumeBatchRingsAndClose(t *testing.T) {
	a, b := newRing(t, 1<<16), newRing(t, 1<<16)
	rd := newReader(t, a, b)
	batchRecordsOf(t, a, []int{8, 8, 8})
	batchRecordsOf(t, b, []int{8, 8})
	var order []Source
	n, err := rd.ConsumeBatch(func(src Source, bt *Batch) error {
		for range bt.All() {
			order = append(order, src)
		}
		return nil
	})
	if n != 5 || err != nil || fmt.Sprint(order) != fmt.Sprint([]Source{a, a, a, b, b}) {
		t.Fatalf("ConsumeBatch = %d, %v, %v", n, err, order)
	}
	batchRecordsOf(t, a, []int{8, 8, 8})
	n, err = rd.ConsumeBatch(func(_ Source, bt *Batch) error {
		for range bt.All() {
			rd.Close()
		}
		return nil
	})
	if n == 0 || err != nil {
		t.Fatalf("Close in fn: %d, %v", n, err)
	}
	rd2 := newReader(t, a) // freed on the way out
	rd2.Close()
	if _, err := rd.ConsumeBatch(func(Source, *Batch) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// TestConsumeBatchZeroAllocations: no allocation per batch or record.
func TestConsumeBatchZeroAllocations(t *testing.T) {
	r := newRing(t, 1<<20)
	rd := newReader(t, r)
	payload := make([]byte, 64)
	var sum int
	fn := func(_ Source, b *Batch) error {
		for data := range b.All() {
			sum += len(data)
		}
		return nil
	}
	allocs := testing.AllocsPerRun(100, func() {
		for i := 0; i < 1000; i++ {
			r.Output(payload, NoWakeup)
		}
		if n, err := rd.ConsumeBatch(fn); n != 1000 || err != nil {
			t.Fatal(n, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per 1000 records", allocs)
	}
}

// TestConsumePanics: a panic in Consume's callback leaves its record
// consumed (it was passed before the callback got it); one in a loop over
// a batch may leave the batch's records in the ring, to be handed out
// again, never lost. The Reader goes on from there.
func TestConsumePanics(t *testing.T) {
	r := newRing(t, 4096)
	rd := newReader(t, r)
	want := batchRecordsOf(t, r, []int{8, 8, 8, 8, 8, 8})
	panics := func(f func()) {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		f()
	}
	seen := 0
	panics(func() {
		rd.Consume(func(rec Record) error {
			if seen++; seen == 2 {
				panic("boom")
			}
			return nil
		})
	})
	if c := r.Positions().Consumer; c != want[2].pos {
		t.Fatalf("after a panic on the second record, consumer_pos %d, want %d", c, want[2].pos)
	}
	seen = 0
	panics(func() {
		rd.ConsumeBatch(func(_ Source, b *Batch) error {
			for range b.All() {
				if seen++; seen == 2 {
					panic("boom")
				}
			}
			return nil
		})
	})
	// The batch's records may be handed out again, never lost.
	c := r.Positions().Consumer
	if c != want[2].pos && c != want[3].pos {
		t.Fatalf("after a panic in a batch loop on its second record, consumer_pos %d, want %d or %d", c, want[2].pos, want[3].pos)
	}
	from := 2
	if c == want[3].pos {
		from = 3
	}
	var got []fuzzRecord
	n, err := rd.Consume(func(rec Record) error { got = append(got, fuzzRecord{rec.Pos, bytes.Clone(rec.Data)}); return nil })
	if n != len(want)-from || err != nil {
		t.Fatalf("Consume after the panics = %d, %v", n, err)
	}
	sameRecords(t, "after the panics", got, want[from:])
}

// TestConsumeBatchBusyTailTakesTurns: a ring whose walk ends at a busy
// record (the usual state of a ring a producer is writing) does not end
// ConsumeBatch's turns: the other rings are read too. (A walk that ended
// there once looked cut short, as if fn had broken out: ring b starved.)
func TestConsumeBatchBusyTailTakesTurns(t *testing.T) {
	a, b := newRing(t, 4096), newRing(t, 4096)
	rd := newReader(t, a, b)
	pending, err := a.Reserve(16)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Discard(pending, NoWakeup) })
	fromB := 0
	for i := 0; i < 20; i++ {
		// Ring b: a record each round. Ring a: the reservation made
		// last round commits, one more record, and a new reservation
		// stays busy behind them.
		if err := b.Output(make([]byte, 16), NoWakeup); err != nil {
			t.Fatal(err)
		}
		if err := a.Commit(pending, NoWakeup); err != nil {
			t.Fatal(err)
		}
		if err := a.Output(make([]byte, 16), NoWakeup); err != nil {
			t.Fatal(err)
		}
		if pending, err = a.Reserve(16); err != nil {
			t.Fatal(err)
		}
		n, err := rd.ConsumeBatch(func(src Source, bt *Batch) error {
			for range bt.All() {
				if src == b {
					fromB++
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != 3 { // ring a's two committed records, ring b's one
			t.Fatalf("round %d: ConsumeBatch took %d records, want 3: ring a's two and ring b's one (from b so far %d)", i, n, fromB)
		}
	}
	if fromB != 20 {
		t.Errorf("ring b handed out %d records in 20 calls, want 20", fromB)
	}
}

// TestConsumeBatchBusyTailSingleCall: one call, two rings, each with a
// committed record; ring a's record is followed by a busy one. One
// ConsumeBatch call should take both records (Consume does).
func TestConsumeBatchBusyTailSingleCall(t *testing.T) {
	for _, how := range []string{"Consume", "ConsumeBatch"} {
		a, b := newRing(t, 4096), newRing(t, 4096)
		rd := newReader(t, a, b)
		if err := a.Output(make([]byte, 16), NoWakeup); err != nil {
			t.Fatal(err)
		}
		v, err := a.Reserve(16) // stays busy
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Discard(v, NoWakeup) })
		if err := b.Output(make([]byte, 16), NoWakeup); err != nil {
			t.Fatal(err)
		}
		var n int
		if how == "Consume" {
			n, err = rd.Consume(func(Record) error { return nil })
		} else {
			n, err = rd.ConsumeBatch(func(_ Source, bt *Batch) error {
				for range bt.All() {
				}
				return nil
			})
		}
		if err != nil || n != 2 {
			t.Errorf("%s = %d, %v; want 2 (one record of each ring)", how, n, err)
		}
	}
}
