package ringo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"github.com/ringo-bpf/ringo/internal/bpfmap"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo/internal/waitfor"
)

func TestPeekLeavesRecordsAndStopsAtBusy(t *testing.T) {
	r := newRing(t, 4096)
	for i := range 3 {
		if err := r.Output([]byte{byte(i), 1, 2}, 0); err != nil {
			t.Fatal(err)
		}
	}
	d, _ := r.Reserve(5)
	r.Discard(d, 0)
	busy, _ := r.Reserve(4) // still being written: Peek stops here
	r.Output([]byte{9}, 0)

	var got [][]byte
	var pos []uint64
	n, err := Peek(r, func(rec Record) error {
		got = append(got, rec.Data) // a copy: safe to keep
		pos = append(pos, rec.Pos)
		if rec.Source != r {
			t.Errorf("Source = %v, want the ring", rec.Source)
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("Peek = %d, %v; want 3 records", n, err)
	}
	if !slices.Equal(pos, []uint64{0, 16, 32}) || got[2][0] != 2 {
		t.Fatalf("positions %v, data %v", pos, got)
	}
	if p := r.Positions(); p.Consumer != 0 {
		t.Fatalf("Peek moved the consumer to %d", p.Consumer)
	}
	r.Commit(busy, 0)
	n, _ = Peek(r, func(Record) error { return nil })
	if n != 5 {
		t.Fatalf("after the commit Peek saw %d records, want 5", n)
	}
	// fn's error ends the walk and comes back.
	stop := errors.New("enough")
	n, err = Peek(r, func(Record) error { return stop })
	if n != 1 || err != stop {
		t.Fatalf("Peek = %d, %v; want 1, the callback's error", n, err)
	}
	// Consume, then nothing is left to peek.
	rd := newReader(t, r)
	if c, _ := rd.Consume(func(Record) error { return nil }); c != 5 {
		t.Fatalf("consumed %d", c)
	}
	if n, _ := Peek(r, func(Record) error { return nil }); n != 0 {
		t.Fatalf("Peek after Consume saw %d", n)
	}
}

// Peek beside a running consumer and producers: every record it hands out
// is intact (its checksum holds) even though the consumer frees and the
// producers overwrite the space behind it.
func TestPeekBesideConsumer(t *testing.T) {
	r := newRing(t, 8192)
	rd := newReader(t, r)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// Stop the producer and the consumer before the cleanups close the
	// ring and the Reader under them.
	defer func() {
		cancel()
		waitfor.Group(t, &wg, waitfor.Short, "the producer and the consumer to stop")
	}()
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 200)
		for i := uint64(0); ctx.Err() == nil; i++ {
			n := 16 + int(i%180)
			for j := 8; j < n; j++ {
				buf[j] = byte(i) + byte(j)
			}
			binary.LittleEndian.PutUint64(buf, i)
			if r.Output(buf[:n], 0) != nil {
				continue
			}
		}
	}()
	go func() {
		defer wg.Done()
		// A consumer that lags, so that Peek has records to look at
		// while they are being consumed and overwritten.
		for ctx.Err() == nil {
			rd.Consume(func(Record) error { return nil })
			time.Sleep(20 * time.Microsecond)
		}
	}()
	seen := 0
	for deadline := time.Now().Add(5 * time.Second); seen < 20000 && time.Now().Before(deadline); {
		_, err := Peek(r, func(rec Record) error {
			i := binary.LittleEndian.Uint64(rec.Data)
			for j := 8; j < len(rec.Data); j++ {
				if rec.Data[j] != byte(i)+byte(j) {
					t.Fatalf("record %d at %d torn at byte %d", i, rec.Pos, j)
				}
			}
			seen++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if seen == 0 {
		t.Fatal("Peek saw no records: the test checked nothing")
	}
	t.Logf("peeked %d intact records", seen)
}

func TestMeterCounts(t *testing.T) {
	r := newRing(t, 4096)
	r.Output(make([]byte, 100), 0) // before the meter: not counted
	m := NewMeter(r)
	if tr := m.Sample(); tr.Records != 0 || tr.Bytes != 0 {
		t.Fatalf("empty sample %+v", tr)
	}
	for range 10 {
		r.Output(make([]byte, 20), 0)
	}
	d, _ := r.Reserve(30)
	r.Discard(d, 0)
	busy, _ := r.Reserve(7)
	tr := m.Sample()
	if tr.Records != 10 || tr.Bytes != 200 || tr.Estimated {
		t.Fatalf("sample %+v, want 10 records of 200 bytes", tr)
	}
	r.Commit(busy, 0)
	if tr := m.Sample(); tr.Records != 1 || tr.Bytes != 7 {
		t.Fatalf("sample %+v, want the record that was busy", tr)
	}
	// Consumed records still count: the meter follows producers.
	rd := newReader(t, r)
	for range 3 {
		r.Output(make([]byte, 8), 0)
	}
	rd.Consume(func(Record) error { return nil })
	if tr := m.Sample(); tr.Records != 3 || tr.Positions.Consumer != tr.Positions.Producer {
		t.Fatalf("sample %+v", tr)
	}
}

func TestMeterLapped(t *testing.T) {
	r := newRing(t, 4096)
	rd := newReader(t, r)
	m := NewMeter(r)
	// Three laps of 56-byte records, consumed as they go: the headers the
	// meter would read are overwritten.
	for range 3 * 4096 / 64 {
		if err := r.Output(make([]byte, 56), 0); err != nil {
			t.Fatal(err)
		}
		rd.Consume(func(Record) error { return nil })
	}
	tr := m.Sample()
	if !tr.Estimated || tr.Records < 150 || tr.Records > 200 {
		t.Fatalf("sample %+v, want an estimate of 192 records", tr)
	}
}

func TestListKernelAndPinned(t *testing.T) {
	requireKernel(t)
	dir := bpffsDir(t)
	k, err := CreateKernelRing("ringo_list", 1<<14)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	u, err := CreateUserRing("ringo_ulist", 1<<13)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := k.Pin(filepath.Join(dir, "k")); err != nil {
		t.Fatal(err)
	}
	rings, err := bpfmap.Rings()
	if err != nil {
		t.Fatal(err)
	}
	var sawK, sawU bool
	for _, mi := range rings {
		switch mi.ID {
		case k.ID():
			sawK = MapType(mi.Type) == RingBuf && mi.MaxEntries == 1<<14 && mi.Name == "ringo_list"
		case u.ID():
			sawU = MapType(mi.Type) == UserRingBuf && mi.MaxEntries == 1<<13 && mi.Name == "ringo_ulist"
		}
		if mt := MapType(mi.Type); mt != RingBuf && mt != UserRingBuf {
			t.Errorf("listed a %v map", mt)
		}
	}
	if !sawK || !sawU {
		t.Fatalf("bpfmap.Rings = %+v; want maps %d and %d described right", rings, k.ID(), u.ID())
	}
	pins, err := bpfmap.PinnedMaps(dir)
	if err != nil {
		t.Fatal(err)
	}
	if pins[k.ID()] != filepath.Join(dir, "k") || len(pins) != 1 {
		t.Fatalf("PinnedMaps = %v", pins)
	}
	if mi, err := bpfmap.Describe(u.ID(), ""); err != nil || MapType(mi.Type) != UserRingBuf || MapType(mi.Type).String() != "user_ringbuf" || u.Name() != "ringo_ulist" {
		t.Fatalf("Describe(user ring) = %+v, %v", mi, err)
	}
	if mi, err := bpfmap.Describe(0, filepath.Join(dir, "k")); err != nil || mi.ID != k.ID() || MapType(mi.Type) != RingBuf {
		t.Fatalf("Describe(pin) = %+v, %v", mi, err)
	}
	if _, err := bpfmap.Describe(0x7fffffff, ""); err == nil || !strings.Contains(err.Error(), "no map with id") {
		t.Fatalf("Describe of a missing ID: %v", err)
	}
	if MapType(1).String() != "hash" {
		t.Fatalf("MapType(1) = %q", MapType(1))
	}
	if p, err := bpfmap.PinnedMaps(filepath.Join(dir, "none")); err != nil || len(p) != 0 {
		t.Fatalf("PinnedMaps of a missing dir = %v, %v", p, err)
	}
	// Peek works on a user ring: what user space submitted and the kernel
	// has not drained.
	rec, _ := u.Reserve(3)
	copy(rec.Bytes(), "abc")
	u.Commit(rec)
	var got []byte
	if n, err := Peek(u, func(r Record) error { got = r.Data; return nil }); n != 1 || err != nil || !bytes.Equal(got, []byte("abc")) || len(got) != 3 {
		t.Fatalf("Peek(user ring) = %d, %v, %q", n, err, got)
	}
}

func TestSharedRingsList(t *testing.T) {
	dir := t.TempDir()
	if names, err := SharedRings(WithDir(filepath.Join(dir, "missing"))); err != nil || names != nil {
		t.Fatalf("missing dir: %v, %v", names, err)
	}
	for _, n := range []string{"b", "a"} {
		r, err := Create(n, 4096, WithDir(dir))
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
	names, err := SharedRings(WithDir(dir))
	if err != nil || !slices.Equal(names, []string{"a", "b"}) {
		t.Fatalf("SharedRings = %v, %v", names, err)
	}
	t.Setenv("RINGO_DIR", dir)
	if SharedDir() != dir || SharedDir(WithDir("/x")) != "/x" {
		t.Fatalf("SharedDir = %q", SharedDir())
	}
}
