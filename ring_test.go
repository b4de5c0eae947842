package ringo

import (
	"bytes"
	"encoding/binary"
	"errors"
	"syscall"
	"testing"

	"github.com/ringo-bpf/ringo/internal/waitfor"
)

// header reads the header at data offset off from the raw mapping.
func header(r *Ring, off int) (length, pgOff uint32) {
	d := r.mapping.Data
	return binary.NativeEndian.Uint32(d[off:]), binary.NativeEndian.Uint32(d[off+4:])
}

func TestLayoutIsTheKernels(t *testing.T) {
	r := newRing(t, 8192)
	m := r.mapping
	if len(m.Consumer) != 4096 || len(m.Producer) != 4096 || len(m.Data) != 2*8192 {
		t.Fatalf("mapping sizes %d %d %d", len(m.Consumer), len(m.Producer), len(m.Data))
	}
	// The data area is mapped twice: a write through one view shows in the other.
	m.Data[100] = 0xAB
	if m.Data[8192+100] != 0xAB {
		t.Fatal("second view of the data does not alias the first")
	}
	m.Data[8192+200] = 0xCD
	if m.Data[200] != 0xCD {
		t.Fatal("first view of the data does not alias the second")
	}

	if err := r.Output([]byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	// A 5-byte payload takes round_up(5+8, 8) = 16 bytes.
	if l, pg := header(r, 0); l != 5 || pg != 3 {
		t.Errorf("first header: len %#x pg_off %d, want 5 and 3", l, pg)
	}
	if !bytes.Equal(m.Data[8:13], []byte("hello")) {
		t.Errorf("payload %q", m.Data[8:13])
	}
	// producer_pos at producer page offset 0, pending_pos at 8, consumer_pos at consumer page 0.
	if p := binary.NativeEndian.Uint64(m.Producer[0:]); p != 16 {
		t.Errorf("producer_pos = %d, want 16", p)
	}
	if c := binary.NativeEndian.Uint64(m.Consumer[0:]); c != 0 {
		t.Errorf("consumer_pos = %d, want 0", c)
	}

	// Fill up to the second page: a record whose header starts in it has pg_off 4.
	big, err := r.Reserve(4096 - 16 - 8) // 16+4080 = 4096: next header at 4096
	if err != nil {
		t.Fatal(err)
	}
	if l, pg := header(r, 16); l != uint32(4072)|busyBit || pg != 3 {
		t.Errorf("reserved header: len %#x pg_off %d, want busy 4072 and 3", l, pg)
	}
	if err := r.Commit(big, 0); err != nil {
		t.Fatal(err)
	}
	if l, _ := header(r, 16); l != 4072 {
		t.Errorf("committed header len %#x, want 4072", l)
	}
	if err := r.Output(nil, 0); err != nil {
		t.Fatal(err)
	}
	if l, pg := header(r, 4096); l != 0 || pg != 4 {
		t.Errorf("header in second data page: len %d pg_off %d, want 0 and 4", l, pg)
	}
	// The pending walk runs at reservation time: after the Output above,
	// the walk stopped at the record before it.
	if p := binary.NativeEndian.Uint64(m.Producer[8:]); p != 4096 {
		t.Errorf("pending_pos = %d, want 4096", p)
	}
	if got := r.Positions(); got != (Positions{Consumer: 0, Producer: 4104, Pending: 4096}) {
		t.Errorf("Positions() = %+v", got)
	}
}

func TestWrapAroundRecordIsContiguous(t *testing.T) {
	r := newRing(t, 4096)
	rd, err := NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	// Move the positions near the end of the data area.
	for i := 0; i < 3; i++ {
		if err := r.Output(make([]byte, 1000), 0); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := rd.Consume(func(Record) error { return nil }); n != 3 || err != nil {
		t.Fatalf("Consume = %d, %v", n, err)
	}
	// Position 3024: a 2000-byte record runs past 4096 and wraps.
	payload := make([]byte, 2000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	v, err := r.Reserve(len(payload))
	if err != nil {
		t.Fatal(err)
	}
	if b := v.Bytes(); len(b) != 2000 || cap(b) != 2000 {
		t.Fatalf("view len %d cap %d", len(b), cap(b))
	}
	copy(v.Bytes(), payload)
	if err := r.Commit(v, 0); err != nil {
		t.Fatal(err)
	}
	// The bytes past the end landed at the start of the data area.
	tail := 3024 + 8 + 2000 - 4096
	if !bytes.Equal(r.mapping.Data[:tail], payload[2000-tail:]) {
		t.Fatal("wrapped part of the record is not at the start of the data area")
	}
	var got []byte
	if n, err := rd.Consume(func(rec Record) error { got = bytes.Clone(rec.Data); return nil }); n != 1 || err != nil {
		t.Fatalf("Consume = %d, %v", n, err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("wrapped record read back differently")
	}
}

func TestFullRing(t *testing.T) {
	r := newRing(t, 8192)
	// 24-byte payloads take 32 bytes: the ring holds at most size-1 bytes,
	// so 255 of them (8160 bytes), then a 16-byte record fits (8176), as
	// seen on a kernel ring, and nothing more.
	n := 0
	for ; ; n++ {
		err := r.Output(make([]byte, 24), 0)
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n != 255 {
		t.Fatalf("%d 32-byte records fit, want 255", n)
	}
	if err := r.Output(make([]byte, 8), 0); err != nil {
		t.Fatalf("16-byte record into 31 free bytes: %v", err)
	}
	if avail, _ := r.Query(AvailData); avail != 8176 {
		t.Fatalf("avail %d, want 8176", avail)
	}
	// 15 bytes free but at most size-1 may be used: a 16-byte record fails.
	err := r.Output(make([]byte, 8), 0)
	if !errors.Is(err, ErrFull) || !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("Output into a full ring: %v, want ErrFull matching EAGAIN", err)
	}
	if _, err := r.Reserve(1); !errors.Is(err, ErrFull) {
		t.Fatalf("Reserve in a full ring: %v", err)
	}
	// An empty record takes 8 bytes: 8184 <= 8191. Then nothing fits.
	if err := r.Output(nil, 0); err != nil {
		t.Fatalf("8-byte record into 15 free bytes: %v", err)
	}
	if _, err := r.Reserve(0); !errors.Is(err, ErrFull) {
		t.Fatalf("Reserve(0) with 7 usable bytes: %v", err)
	}
	// Consuming frees space.
	if got := drain(t, r); len(got) != 257 {
		t.Fatalf("drained %d records", len(got))
	}
	if err := r.Output(make([]byte, 24), 0); err != nil {
		t.Fatalf("after draining: %v", err)
	}
}

func TestRecordSizeLimits(t *testing.T) {
	r := newRing(t, 4096)
	// The largest payload is size-16: round_up(n+8, 8) must stay below size.
	for _, n := range []int{4096 - 15, 4096 - 8, 4096, 1 << 20} {
		if _, err := r.Reserve(n); !errors.Is(err, ErrTooLarge) || !errors.Is(err, syscall.E2BIG) {
			t.Errorf("Reserve(%d) = %v, want ErrTooLarge", n, err)
		}
		if err := r.Output(make([]byte, n), 0); !errors.Is(err, ErrTooLarge) {
			t.Errorf("Output(%d bytes) = %v, want ErrTooLarge", n, err)
		}
	}
	if _, err := r.Reserve(-1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Reserve(-1) = %v", err)
	}
	v, err := r.Reserve(4096 - 16)
	if err != nil {
		t.Fatalf("Reserve(size-16) on an empty ring: %v", err)
	}
	if err := r.Commit(v, 0); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, r); len(got) != 1 || len(got[0]) != 4080 {
		t.Fatalf("drained %d records", len(got))
	}
	if err := r.Output(make([]byte, 0), 0); err != nil {
		t.Fatalf("empty record: %v", err)
	}
	if got := drain(t, r); len(got) != 1 || len(got[0]) != 0 {
		t.Fatalf("empty record read back as %v", got)
	}
}

func TestFlags(t *testing.T) {
	r := newRing(t, 4096)
	for _, f := range []uint64{4, 1 << 40, NoWakeup | 8} {
		if err := r.Output([]byte("x"), f); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("Output flags %#x: %v, want EINVAL", f, err)
		}
	}
	if p, _ := r.Query(ProducerPos); p != 0 {
		t.Fatalf("a refused Output moved producer_pos to %d", p)
	}
	v, err := r.Reserve(3)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(v, 16); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Commit flags 16: %v", err)
	}
	if err := r.Discard(v, 16); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Discard flags 16: %v", err)
	}
	// The refused commit left the reservation open.
	if l, _ := header(r, 0); l&busyBit == 0 {
		t.Fatal("refused commit cleared the busy bit")
	}
	if err := r.Commit(v, NoWakeup|ForceWakeup); err != nil {
		t.Fatalf("commit with both wake-up flags: %v", err)
	}
}

func TestCommitMistakesAreCaught(t *testing.T) {
	r := newRing(t, 4096)
	other := newRing(t, 4096)

	v, err := r.Reserve(16)
	if err != nil {
		t.Fatal(err)
	}
	w, err := other.Reserve(16)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]Reservation{
		"zero Reservation":            {},
		"reservation of another ring": w,
	} {
		if err := r.Commit(bad, 0); !errors.Is(err, ErrNotReserved) {
			t.Errorf("Commit(%s) = %v, want ErrNotReserved", name, err)
		}
		if err := r.Discard(bad, 0); !errors.Is(err, ErrNotReserved) {
			t.Errorf("Discard(%s) = %v, want ErrNotReserved", name, err)
		}
	}
	copyOfV := v
	if err := r.Commit(v, 0); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(v, 0); !errors.Is(err, ErrNotReserved) {
		t.Errorf("second Commit = %v", err)
	}
	if err := r.Commit(copyOfV, 0); !errors.Is(err, ErrNotReserved) {
		t.Errorf("Commit of a copy = %v", err)
	}
	if err := r.Discard(v, 0); !errors.Is(err, ErrNotReserved) {
		t.Errorf("Discard after Commit = %v", err)
	}
	if err := other.Discard(w, 0); err != nil {
		t.Fatal(err)
	}
	if err := other.Discard(w, 0); !errors.Is(err, ErrNotReserved) {
		t.Errorf("second Discard = %v", err)
	}
	// Nothing of this disturbed the records.
	if got := drain(t, r); len(got) != 1 {
		t.Errorf("%d records after the mistakes, want 1", len(got))
	}
	if got := drain(t, other); len(got) != 0 {
		t.Errorf("%d records in the other ring, want 0", len(got))
	}
}

// A stale view whose slot a later lap reserved again, with the same length,
// must not commit the new reservation.
func TestStaleViewAfterLap(t *testing.T) {
	r := newRing(t, 4096)
	rd, err := NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	old, err := r.Reserve(2040) // 2048 bytes: two records fill half the ring each
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(old, 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := r.Output(make([]byte, 1016), 0); err != nil { // 1024 bytes
			t.Fatal(err)
		}
		rd.Consume(func(Record) error { return nil })
	}
	// Position 4096: offset 0 again, where old's record was.
	fresh, err := r.Reserve(2040)
	if err != nil {
		t.Fatal(err)
	}
	if &fresh.Bytes()[0] != &old.Bytes()[0] {
		t.Fatal("test setup: the new reservation is not in the old slot")
	}
	if err := r.Commit(old, 0); !errors.Is(err, ErrNotReserved) {
		t.Fatalf("stale Commit = %v, want ErrNotReserved", err)
	}
	if l, _ := header(r, 0); l&busyBit == 0 {
		t.Fatal("stale commit committed the new reservation")
	}
	if err := r.Commit(fresh, 0); err != nil {
		t.Fatal(err)
	}
}

func TestDiscardedRecordsAreSkipped(t *testing.T) {
	r := newRing(t, 4096)
	for i := 0; i < 6; i++ {
		v, err := r.Reserve(10)
		if err != nil {
			t.Fatal(err)
		}
		v.Bytes()[0] = byte(i)
		if i%2 == 1 {
			err = r.Discard(v, 0)
		} else {
			err = r.Commit(v, 0)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if l, _ := header(r, 24); l != 10|discardBit {
		t.Fatalf("discarded header len %#x, want %#x", l, 10|discardBit)
	}
	got := drain(t, r)
	if len(got) != 3 || got[0][0] != 0 || got[1][0] != 2 || got[2][0] != 4 {
		t.Fatalf("got %v, want records 0, 2, 4", got)
	}
	// The consumer moved past the discarded records too.
	if p := r.Positions(); p.Consumer != 6*24 || p.Producer != 6*24 {
		t.Fatalf("positions %+v", p)
	}
}

func TestOutOfOrderCommits(t *testing.T) {
	r := newRing(t, 4096)
	rd, err := NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	a, _ := r.Reserve(1)
	b, _ := r.Reserve(1)
	a.Bytes()[0], b.Bytes()[0] = 'a', 'b'
	if err := r.Commit(b, 0); err != nil {
		t.Fatal(err)
	}
	// b is committed, but the busy a at the head holds it back.
	if n, _ := rd.Consume(func(Record) error { return nil }); n != 0 {
		t.Fatalf("consumed %d records past a busy one", n)
	}
	if err := r.Commit(a, 0); err != nil {
		t.Fatal(err)
	}
	var got []byte
	rd.Consume(func(rec Record) error { got = append(got, rec.Data...); return nil })
	if string(got) != "ab" {
		t.Fatalf("got %q, want ab", got)
	}
}

// The pending position bounds producers even when consumer_pos runs ahead
// of a busy record (a buggy or hostile consumer): the busy record is never
// overwritten.
func TestPendingPositionProtectsBusyRecords(t *testing.T) {
	r := newRing(t, 4096)
	busy, err := r.Reserve(100) // 112 bytes at position 0
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if err := r.Output(make([]byte, 200), 0); err != nil { // 208 bytes each
			t.Fatal(err)
		}
	}
	// A consumer that jumps over everything, busy record included.
	prod := r.mem.producerPos.Load()
	r.mem.consumerPos.Store(prod)
	// 2192 bytes in flight from pending_pos 0; 1904 more would cross size-1.
	if _, err := r.Reserve(1900); !errors.Is(err, ErrFull) {
		t.Fatalf("reservation over a busy record: %v, want ErrFull", err)
	}
	if p := r.Positions(); p.Pending != 0 {
		t.Fatalf("pending_pos = %d, want 0 (the busy record)", p.Pending)
	}
	small, err := r.Reserve(1800)
	if err != nil {
		t.Fatalf("reservation that stays clear of the busy record: %v", err)
	}
	r.Discard(small, 0)
	r.Commit(busy, 0)
	r.mem.consumerPos.Store(r.mem.producerPos.Load())
	v, err := r.Reserve(1900)
	if err != nil {
		t.Fatalf("after the busy record was committed: %v", err)
	}
	if p := r.Positions(); p.Pending != 2192+1808 {
		t.Fatalf("pending_pos = %d after the walk, want %d", p.Pending, 2192+1808)
	}
	r.Commit(v, 0)
}

func TestQuery(t *testing.T) {
	r := newRing(t, 16384)
	for i := 0; i < 3; i++ {
		r.Output(make([]byte, 100), 0) // 112 bytes each
	}
	want := map[Prop]uint64{AvailData: 336, RingSize: 16384, ConsumerPos: 0, ProducerPos: 336}
	for p, v := range want {
		if got, err := r.Query(p); err != nil || got != v {
			t.Errorf("Query(%v) = %d, %v; want %d", p, got, err, v)
		}
	}
	rd, _ := NewReader(r)
	defer rd.Close()
	rd.Consume(func(Record) error { return nil })
	want = map[Prop]uint64{AvailData: 0, ConsumerPos: 336, ProducerPos: 336}
	for p, v := range want {
		if got, _ := r.Query(p); got != v {
			t.Errorf("after consuming, Query(%v) = %d; want %d", p, got, v)
		}
	}
	if v, err := r.Query(OverwritePos); v != 0 || err != nil {
		t.Errorf("Query(OverwritePos) of a ring not in overwrite mode = %d, %v; want 0", v, err)
	}
	if _, err := r.Query(5); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("Query(5) = %v, want EINVAL", err)
	}
}

func TestWakeupRules(t *testing.T) {
	r := newRing(t, 4096)
	rd, _ := NewReader(r)
	defer rd.Close()
	consume := func() { rd.Consume(func(Record) error { return nil }) }
	check := func(step string, want uint64) {
		t.Helper()
		if got := r.wakeups.Load(); got != want {
			t.Fatalf("%s: %d wake-ups, want %d", step, got, want)
		}
	}
	r.Output([]byte("a"), 0)
	check("adaptive, consumer caught up", 1)
	r.Output([]byte("b"), 0)
	check("adaptive, consumer behind", 1)
	r.Output([]byte("c"), ForceWakeup)
	check("forced, consumer behind", 2)
	consume()
	r.Output([]byte("d"), NoWakeup)
	check("suppressed, consumer caught up", 2)
	consume()
	r.Output([]byte("e"), NoWakeup|ForceWakeup)
	check("forced wins over suppressed", 3)
	consume()
	v, _ := r.Reserve(1)
	r.Discard(v, 0)
	check("adaptive discard, consumer caught up", 4)
	// The discarded record stays until consumed, so the next adaptive
	// commit finds the consumer behind and does not wake it.
	r.Output([]byte("f"), 0)
	check("adaptive after an unconsumed discard", 4)
	consume()
	// Out of order: only the commit of the record the consumer waits at wakes.
	a, _ := r.Reserve(1)
	b, _ := r.Reserve(1)
	r.Commit(b, 0)
	check("commit behind a busy record", 4)
	r.Commit(a, 0)
	check("commit of the record the consumer waits at", 5)
}

func TestClose(t *testing.T) {
	r, err := New(4096)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := r.Reserve(8)
	if err := r.Close(); err == nil {
		t.Fatal("Close with an open reservation succeeded")
	}
	if _, err := r.Reserve(8); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reserve after Close: %v", err)
	}
	if err := r.Output(nil, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Output after Close: %v", err)
	}
	if err := r.Commit(v, 0); err != nil {
		t.Fatalf("Commit of an open reservation after a failed Close: %v", err)
	}
	rd, err := NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err == nil {
		t.Fatal("Close with a Reader attached succeeded")
	}
	rd.Close()
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := NewReader(r); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewReader on a closed ring: %v", err)
	}
}

// Closing a ring while producers still call Output must not crash them:
// they get ErrClosed, and a late access lands in blank memory.
func TestCloseWhileProducing(t *testing.T) {
	for round := 0; round < 20; round++ {
		r, err := New(4096)
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		done := make(chan error, 4)
		for p := 0; p < 4; p++ {
			go func() {
				for {
					err := r.Output(make([]byte, 40), 0)
					if errors.Is(err, ErrClosed) {
						done <- nil
						return
					}
					if err != nil && !errors.Is(err, ErrFull) {
						done <- err
						return
					}
					select {
					case <-stop:
						done <- nil
						return
					default:
					}
					// Keep the ring from staying full: consume by hand.
					r.mem.consumerPos.Store(r.mem.producerPos.Load())
				}
			}()
		}
		waitfor.Until(t, waitfor.Short, "Close to find no reservation open", func() bool { return r.Close() == nil })
		close(stop)
		for p := 0; p < 4; p++ {
			if err := waitfor.Recv(t, done, waitfor.Short, "the producers to stop on the closed ring"); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Output(nil, 0); !errors.Is(err, ErrClosed) {
			t.Fatalf("Output after Close: %v", err)
		}
	}
}
