package ringo

import (
	"errors"
	"testing"

	"github.com/ringo-bpf/ringo/internal/look"
)

// The drop-in's look (look.go) on a kernel ring written by BPF programs:
// what the ringbuf drop-in's suite checks through cilium/ebpf's API, here
// at the look itself, with the corner cases the suite cannot reach.

func TestLookOpen(t *testing.T) {
	k := newKernelRing(t, 4096)
	if _, err := look.Open(k, false); err == nil {
		t.Error("a look at a KernelRing, not a Reader: no error")
	}
	two := newReader(t, k, newKernelRing(t, 4096))
	if _, err := look.Open(two, false); err == nil {
		t.Error("a look at a Reader of two rings: no error")
	}
	inproc := newReader(t, newRing(t, 4096))
	if _, err := look.Open(inproc, false); err == nil {
		t.Error("a look at an in-process ring: no error")
	}
	explicit := newReader(t, newKernelRing(t, 4096))
	if err := explicit.SetExplicitRelease(true); err != nil {
		t.Fatal(err)
	}
	if _, err := look.Open(explicit, false); err == nil {
		t.Error("a look at a Reader in explicit release mode: no error")
	}
}

// lookAtThree opens a look (a RawReader's with raw) at a 4 KiB kernel ring
// holding an 8-byte record, a discarded 16-byte one and a 24-byte one, each
// holding the producer position after its reservation.
func lookAtThree(t *testing.T, raw bool) (*KernelRing, *Reader, look.Ring) {
	k := newKernelRing(t, 4096)
	rd := newReader(t, k)
	l, err := look.Open(rd, raw)
	if err != nil {
		t.Fatal(err)
	}
	loadProg(t, reserveProgram(k.FD(), 8, false, 0)).run()
	loadProg(t, reserveProgram(k.FD(), 16, true, 0)).run()
	loadProg(t, reserveProgram(k.FD(), 24, false, 0)).run()
	return k, rd, l
}

// TestLookTake: a Reader's look copies each record into the buffer given
// when it is large enough and into one of exactly its size otherwise,
// skips discarded records, stores consumer_pos after each record, and
// pays its fence (a full store) before it reports the ring empty.
func TestLookTake(t *testing.T) {
	k, rd, l := lookAtThree(t, false)

	buf := make([]byte, 0, 8)
	got, remain, err := l.Take(buf)
	if err != nil || len(got) != 8 || &got[:1][0] != &buf[:1][0] || remain != 2*HeaderSize+16+24 {
		t.Fatalf("Take into an 8-byte buffer: %d bytes (its memory: %v), remain %d, %v", len(got), err == nil && &got[:1][0] == &buf[:1][0], remain, err)
	}
	if c := k.mem.consumerPos.Load(); c != HeaderSize+8 {
		t.Errorf("consumer_pos after a Take: %d, want %d", c, HeaderSize+8)
	}
	got, remain, err = l.Take(buf)
	if err != nil || len(got) != 24 || cap(got) != 24 || remain != 0 || le64(got) != 3*HeaderSize+8+16+24 {
		t.Fatalf("Take past a discarded record into a small buffer: %d bytes, cap %d, remain %d, %v", len(got), cap(got), remain, err)
	}
	if _, _, err := l.Take(buf); err != look.ErrEmpty {
		t.Fatalf("Take of an empty ring: %v, want look.ErrEmpty", err)
	}
	rr := rd.rings[0]
	if rr.fenceOwed || k.mem.consumerPos.Load() != 3*HeaderSize+8+16+24 {
		t.Errorf("after the empty look: fence owed %v, consumer_pos %d", rr.fenceOwed, k.mem.consumerPos.Load())
	}
	// Discarded records after the fence was paid: the empty look stores
	// past them, as cilium's stores past each; left unstored, the kernel
	// would count them as data (keeping the map ready) and their space
	// taken.
	loadProg(t, reserveProgram(k.FD(), 16, true, 0)).run()
	if _, _, err := l.Take(buf); err != look.ErrEmpty {
		t.Fatalf("Take of a ring of one discarded record: %v, want look.ErrEmpty", err)
	}
	if c, p := k.mem.consumerPos.Load(), k.mem.producerPos.Load(); c != p {
		t.Errorf("after a look past a discarded record: consumer_pos %d, producer_pos %d", c, p)
	}
	// A record discarded between the empty look's store and its look
	// again: the look stores past it too, or no later commit would find
	// consumer_pos at its own record and wake the ring's waiters.
	discard := loadProg(t, reserveProgram(k.FD(), 16, true, 0))
	once := true
	l.(*aLook).stored = func() {
		if once {
			once = false
			discard.run()
		}
	}
	loadProg(t, reserveProgram(k.FD(), 8, false, 0)).run()
	if _, _, err := l.Take(buf); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Take(buf); err != look.ErrEmpty || once {
		t.Fatalf("Take of an empty ring: %v (the discard ran: %v)", err, !once)
	}
	if c, p := k.mem.consumerPos.Load(), k.mem.producerPos.Load(); c != p {
		t.Errorf("after a record discarded between the store and the look again: consumer_pos %d, producer_pos %d", c, p)
	}
}

// TestLookRaw: a RawReader's look hands out discarded records as nil
// data and views whose capacity runs to the end of the doubled data area,
// moves consumer_pos only at Store, and leaves the Reader's cursor where
// the last Store left it, so that the Reader's Close stores nothing more.
func TestLookRaw(t *testing.T) {
	k, rd, l := lookAtThree(t, true)
	data, _, err := l.Next()
	if err != nil || len(data) != 8 || cap(data) != 2*4096-HeaderSize {
		t.Fatalf("first sample: %d bytes, cap %d, %v", len(data), cap(data), err)
	}
	l.Store()
	data, remain, err := l.Next()
	if err != nil || data != nil || remain != HeaderSize+24 {
		t.Fatalf("discarded sample: %v, remain %d, %v; want nil data, remain %d", data, remain, err, HeaderSize+24)
	}
	if data, _, err = l.Next(); err != nil || len(data) != 24 {
		t.Fatalf("third sample: %d bytes, %v", len(data), err)
	}
	if _, _, err := l.Next(); err != look.ErrEmpty {
		t.Fatalf("Next past the end: %v", err)
	}
	if c := k.mem.consumerPos.Load(); c != HeaderSize+8 {
		t.Errorf("consumer_pos before Store: %d, want %d (the first Store's)", c, HeaderSize+8)
	}
	rd.Close()
	if c := k.mem.consumerPos.Load(); c != HeaderSize+8 {
		t.Errorf("consumer_pos after the Reader's Close: %d, want %d: Close stored samples not stored", c, HeaderSize+8)
	}
}

// TestLookCorrupt: a consumer position no consumer stores is reported as
// corrupt by both looks, as the Reader's cursor reports it.
func TestLookCorrupt(t *testing.T) {
	for _, raw := range []bool{false, true} {
		k := newKernelRing(t, 4096)
		loadProg(t, reserveProgram(k.FD(), 8, false, 0)).run()
		k.mem.consumerPos.Store(4) // not 8-byte aligned
		rd := newReader(t, k)
		l, err := look.Open(rd, raw)
		if err != nil {
			t.Fatal(err)
		}
		var lookErr error
		if raw {
			_, _, lookErr = l.Next()
		} else {
			_, _, lookErr = l.Take(nil)
		}
		if !errors.Is(lookErr, ErrCorrupt) {
			t.Errorf("raw %v: a misaligned consumer_pos: %v, want ErrCorrupt", raw, lookErr)
		}
	}
}
