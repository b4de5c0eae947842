package ringo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo/internal/sys"
	"github.com/ringo-bpf/ringo/internal/waitfor"
)

// The core stress test on a set: producers, each keeping ring id%shards
// (two share one), random sizes up to 4 KiB and random discards; one
// Reader over the set gets every committed record exactly once, intact, in
// per-producer order, from the ring its producer wrote to.
func TestShardsStress(t *testing.T) {
	const producers, shards = 5, 3
	records := stressRecords()
	set, err := NewShards(shards, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	rd, err := NewReader()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if err := rd.AddSet(set); err != nil {
		t.Fatal(err)
	}
	committed := make([][]uint64, producers)
	ringOf := make([]*Ring, producers)
	var wg sync.WaitGroup
	var quit atomic.Bool
	// On the way out, stop the producers before the set is closed under
	// them.
	defer func() {
		quit.Store(true)
		waitfor.Group(t, &wg, waitfor.Short, "the producers to stop")
	}()
	for id := range producers {
		ring := set.Ring(uint32(id % shards))
		ringOf[id] = ring
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(id), 9))
			for seq := uint64(0); seq < uint64(records); seq++ {
				n := stressHeader + rng.IntN(4096-stressHeader)
				var res Reservation
				var err error
				for {
					res, err = ring.Reserve(n)
					if err == nil {
						break
					}
					if !errors.Is(err, ErrFull) {
						t.Error(err)
						return
					}
					if quit.Load() {
						return
					}
					time.Sleep(time.Microsecond)
				}
				stressFill(res.Bytes(), uint32(id), seq)
				if rng.IntN(10) == 0 {
					ring.Discard(res, 0)
					continue
				}
				ring.Commit(res, 0)
				committed[id] = append(committed[id], seq)
			}
		}()
	}
	got := make([][]uint64, producers)
	lastPos := map[Source]uint64{}
	// The run fails if no record arrives for stressWait.
	var arrived, stalled atomic.Uint64
	defer waitfor.Watchdog(stressWait, arrived.Load, func() { stalled.Store(1) })()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	finished := false
	for !finished {
		select {
		case <-done:
			finished = true // one more pass takes what is left
		default:
		}
		_, err := rd.Consume(func(rec Record) error {
			if p, ok := lastPos[rec.Source]; ok && rec.Pos <= p {
				return fmt.Errorf("ring %d: record at %d after %d", shardIndex(set, rec.Source), rec.Pos, p)
			}
			lastPos[rec.Source] = rec.Pos
			id := binary.LittleEndian.Uint32(rec.Data)
			seq := binary.LittleEndian.Uint64(rec.Data[4:])
			if int(id) >= producers || rec.Source != Source(ringOf[id]) {
				return fmt.Errorf("record of producer %d from ring %d", id, shardIndex(set, rec.Source))
			}
			if !bytes.Equal(rec.Data[stressHeader:], stressPattern(id, seq, len(rec.Data)-stressHeader)) {
				return fmt.Errorf("producer %d record %d corrupt", id, seq)
			}
			got[id] = append(got[id], seq)
			arrived.Add(1)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if stalled.Load() != 0 {
			t.Fatalf("stress on a set: no record arrived for %v, with %d of %d producers' records in", stressWait, arrived.Load(), producers*records)
		}
		if !finished {
			time.Sleep(100 * time.Microsecond)
		}
	}
	total := 0
	for id := range producers {
		if fmt.Sprint(got[id]) != fmt.Sprint(committed[id]) {
			t.Fatalf("producer %d: %d records arrived, %d committed, or out of order", id, len(got[id]), len(committed[id]))
		}
		total += len(got[id])
	}
	t.Logf("%d records from %d producers over %d shards", total, producers, shards)
}

func TestShardsChoose(t *testing.T) {
	set, err := NewShards(4, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	seen := map[*Ring]int{}
	for k := range uint64(4000) {
		r := set.ForKey(k)
		if set.ForKey(k) != r {
			t.Fatal("ForKey is not stable")
		}
		seen[r]++
	}
	for r, n := range seen {
		if n < 700 || n > 1300 {
			k, _ := set.Key(r)
			t.Errorf("ring %d got %d of 4000 keys", k, n)
		}
	}
	if k, ok := set.Key(set.Ring(2)); len(seen) != 4 || !ok || k != 2 || len(set.Keys()) != 4 || set.Ring(4) != nil {
		t.Fatal("Keys, Key or Ring")
	}
	var zero Shards
	if zero.ForKey(7) != nil || len(zero.Keys()) != 0 || zero.Ring(0) != nil {
		t.Fatal("the zero Shards")
	}
	if _, err := NewShards(0, 4096); err == nil {
		t.Fatal("NewShards(0) succeeded")
	}
}

func TestSharedShards(t *testing.T) {
	dir := t.TempDir()
	set, err := CreateShards("flows", 3, 4096, WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	prod, err := OpenShards("flows", WithDir(dir))
	if err != nil || len(prod.Keys()) != 3 {
		t.Fatalf("OpenShards = %v, %v", prod, err)
	}
	for k := range uint64(30) {
		if err := prod.ForKey(k).Output(binary.LittleEndian.AppendUint64(nil, k), 0); err != nil {
			t.Fatal(err)
		}
	}
	prod.Close()
	rd, _ := NewReader()
	defer rd.Close()
	if err := rd.AddSet(set); err != nil {
		t.Fatal(err)
	}
	n, _ := rd.Consume(func(rec Record) error {
		k := binary.LittleEndian.Uint64(rec.Data)
		if shardIndex(set, rec.Source) != shardIndex(set, set.ForKey(k)) {
			t.Errorf("key %d arrived from ring %d", k, shardIndex(set, rec.Source))
		}
		return nil
	})
	if n != 30 {
		t.Fatalf("consumed %d", n)
	}
	if err := RemoveShards("flows", WithDir(dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenShards("flows", WithDir(dir)); err == nil {
		t.Fatal("OpenShards after RemoveShards")
	}
}

// Reader.Remove drains a ring, then lets it go.
func TestReaderRemoveDrains(t *testing.T) {
	a, b := newRing(t, 4096), newRing(t, 4096)
	rd := newReader(t, a, b)
	a.Output([]byte("a1"), 0)
	a.Output([]byte("a2"), 0)
	if err := rd.Remove(a); err != nil {
		t.Fatal(err)
	}
	var got []string
	rd.Consume(func(rec Record) error { got = append(got, string(rec.Data)); return nil })
	if fmt.Sprint(got) != "[a1 a2]" {
		t.Fatalf("after Remove: %v", got)
	}
	rd.Consume(func(Record) error { return nil }) // drained: dropped now
	a.Output([]byte("a3"), 0)
	b.Output([]byte("b1"), 0)
	got = nil
	rd.Consume(func(rec Record) error { got = append(got, string(rec.Data)); return nil })
	if fmt.Sprint(got) != "[b1]" {
		t.Fatalf("a removed ring still read: %v", got)
	}
	// Let go: another Reader may take it.
	rd2 := newReader(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Short)
	defer cancel()
	if rec, err := rd2.Read(ctx); err != nil || string(rec.Data) != "a3" {
		t.Fatalf("second reader: %q %v", rec.Data, err)
	}
	if err := rd.Remove(a); err == nil {
		t.Fatal("Remove of a ring not in the reader succeeded")
	}
	if err := rd.Add(b); err == nil {
		t.Fatal("Add of a ring twice succeeded")
	}
}

// outputToProgram writes one record of 8 bytes, value, into ring: a
// program run with BPF_PROG_TEST_RUN.
func outputValueProgram(t *testing.T, mapFD int, value int32) *prog {
	return loadProg(t, join(
		[]sys.Instruction{
			insn(opMovImm, 1, 0, 0, value),
			insn(opStxDW, 10, 1, -8, 0),
		},
		ldMap(1, mapFD),
		[]sys.Instruction{
			insn(opMovReg, 2, 10, 0, 0),
			insn(opAddImm, 2, 0, 0, -8),
			insn(opMovImm, 3, 0, 0, 8),
			insn(opMovImm, 4, 0, 0, 0),
			insn(opCall, 0, 0, 0, helperRingbufOutput),
			insn(opExit, 0, 0, 0, 0),
		},
	))
}

func TestKernelRingSets(t *testing.T) {
	requireKernel(t)
	// An array set with a ring per shard, of different sizes.
	set, err := CreateRingSet(RingSetSpec{Name: "shards", Shards: 3, Size: 4096, Sizes: []int{4096, 8192, 0}})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if keys := set.Keys(); fmt.Sprint(keys) != "[0 1 2]" || set.Ring(1).Size() != 8192 || set.Ring(2).Size() != 4096 {
		t.Fatalf("keys %v, sizes", keys)
	}
	rd, _ := NewReader()
	defer rd.Close()
	if err := rd.AddSet(set); err != nil {
		t.Fatal(err)
	}
	// Programs write to each ring (the set's rings are ordinary maps).
	for key := range uint32(3) {
		p := outputValueProgram(t, set.Ring(key).FD(), int32(100+key))
		for range 2 {
			p.run()
		}
	}
	counts := map[uint32]int{}
	rd.Consume(func(rec Record) error {
		key, ok := set.Key(rec.Source)
		if !ok || binary.LittleEndian.Uint64(rec.Data) != uint64(100+key) {
			t.Errorf("record %x from key %d (%v)", rec.Data, key, ok)
		}
		counts[key]++
		return nil
	})
	if fmt.Sprint(counts) != "map[0:2 1:2 2:2]" {
		t.Fatalf("records per shard: %v", counts)
	}
	if _, err := CreateRingSet(RingSetSpec{Name: "bad", Shards: 2, Size: 4096, Sizes: []int{4096}}); err == nil {
		t.Fatal("Sizes of the wrong length accepted")
	}

	// A per-CPU set: one ring per possible CPU.
	cpus, _ := sys.PossibleCPUs()
	pc, err := CreateRingSet(RingSetSpec{Name: "percpu", Size: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if len(pc.Keys()) != cpus {
		t.Fatalf("per-CPU set has %d rings, %d possible CPUs", len(pc.Keys()), cpus)
	}
	pc.Close()
}

func TestKernelKeyedSetFollowsChanges(t *testing.T) {
	requireKernel(t)
	dir := bpffsDir(t)
	set, err := CreateRingSet(RingSetSpec{Name: "bykey", Keyed: true, MaxKeys: 8, Size: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if err := set.Pin(filepath.Join(dir, "set")); err != nil {
		t.Fatal(err)
	}
	r7, err := set.Add(7, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.Add(7, 4096); err == nil {
		t.Fatal("a second ring at key 7 accepted")
	}
	rd, _ := NewReader()
	defer rd.Close()
	if err := rd.AddSet(set); err != nil {
		t.Fatal(err)
	}
	asleep := watchSleep(rd)
	// read takes what the rings hold now (every record was written
	// before: nothing is waited for).
	read := func() map[uint32][]uint64 {
		t.Helper()
		out := map[uint32][]uint64{}
		if _, err := rd.Consume(func(rec Record) error {
			key, ok := set.Key(rec.Source)
			if !ok {
				t.Errorf("record from a ring the set does not know")
			}
			out[key] = append(out[key], binary.LittleEndian.Uint64(rec.Data))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	outputValueProgram(t, r7.FD(), 70).run()
	if got := read(); fmt.Sprint(got) != "map[7:[70]]" {
		t.Fatalf("records by key: %v", got)
	}
	// A ring added while the Reader blocks is picked up, and its record
	// read, at once.
	asleep.drain()
	done := readAsync(t.Context(), rd)
	asleep.wait(t, "on the set's one empty ring")
	r9, err := set.Add(9, 8192)
	if err != nil {
		t.Fatal(err)
	}
	outputValueProgram(t, r9.FD(), 90).run()
	res := waitfor.Recv(t, done, waitfor.Short, "the blocked Reader to pick up the ring added to its set, and read its record")
	if res.err != nil {
		t.Fatal(res.err)
	}
	if key, _ := set.Key(res.rec.Source); key != 9 || binary.LittleEndian.Uint64(res.rec.Data) != 90 {
		t.Fatalf("read %x from key %d, want 90 from key 9", res.rec.Data, key)
	}
	if got := read(); len(got) != 0 {
		t.Fatalf("records by key after the one added: %v", got)
	}
	// A removed ring is drained first: its last records still arrive.
	p9 := outputValueProgram(t, r9.FD(), 91)
	p9.run()
	if err := set.Remove(9); err != nil {
		t.Fatal(err)
	}
	if got := read(); fmt.Sprint(got) != "map[9:[91]]" {
		t.Fatalf("after Remove(9): %v", got)
	}
	if set.Ring(9) != nil || fmt.Sprint(set.Keys()) != "[7]" {
		t.Fatalf("keys after Remove: %v", set.Keys())
	}

	// Another process's change to the pinned outer map (here: a second
	// handle) is followed by a Reader on a set opened with FollowEvery.
	other, err := OpenRingSetPinned(filepath.Join(dir, "set"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if fmt.Sprint(other.Keys()) != "[7]" {
		t.Fatalf("opened set has keys %v", other.Keys())
	}
	follower, err := OpenRingSetPinned(filepath.Join(dir, "set"), 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer follower.Close()
	rd.Close()
	frd, _ := NewReader()
	defer frd.Close()
	if err := frd.AddSet(follower); err != nil {
		t.Fatal(err)
	}
	r3, err := other.Add(3, 4096)
	if err != nil {
		t.Fatal(err)
	}
	outputValueProgram(t, r3.FD(), 30).run()
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Short)
	defer cancel()
	rec, err := frd.Read(ctx)
	if err != nil || binary.LittleEndian.Uint64(rec.Data) != 30 {
		t.Fatalf("follower, waiting for the record of the ring another handle added (refreshed every 10 ms): %v %v", rec.Data, err)
	}
	if key, _ := follower.Key(rec.Source); key != 3 {
		t.Fatalf("follower says key %d", key)
	}
	if err := other.Remove(3); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, waitfor.Short, "the follower to let go of key 3, which another handle removed", func() bool {
		frd.Consume(func(Record) error { return nil })
		return follower.Ring(3) == nil
	})
}

// shardIndex is the key of src in set, or -1.
func shardIndex(set *Shards, src Source) int {
	if k, ok := set.Key(src); ok {
		return int(k)
	}
	return -1
}
