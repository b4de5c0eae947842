package ringo

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ringo-bpf/ringo/internal/bpfmap"
	"github.com/ringo-bpf/ringo/internal/sys"
	"github.com/ringo-bpf/ringo/internal/waitfor"
)

func TestKernelRingOutputAndConsume(t *testing.T) {
	k := newKernelRing(t, 4096)
	out := loadProg(t, outputProgram(k.FD(), 0))
	for i := 0; i < 5; i++ {
		if ret := out.run(); ret != 0 {
			t.Fatalf("bpf_ringbuf_output returned %d", ret)
		}
	}
	// Five 8-byte records of 16 bytes each; headers len 8, pg_off 3.
	if p := k.Positions(); p != (Positions{Consumer: 0, Producer: 80, Pending: 64}) {
		t.Fatalf("positions %+v", p)
	}
	if l, pg := binary.NativeEndian.Uint32(k.mapping.Data), binary.NativeEndian.Uint32(k.mapping.Data[4:]); l != 8 || pg != 3 {
		t.Fatalf("kernel header len %d pg_off %d", l, pg)
	}
	rd := newReader(t, k)
	var got []uint64
	n, err := rd.peek(func(rec Record) error { got = append(got, le64(rec.Data)); return nil })
	if err != nil || n != 5 || k.Positions().Consumer != 0 {
		t.Fatalf("Peek: %d, %v", n, err)
	}
	got = got[:0]
	n, err = rd.Consume(func(rec Record) error {
		if rec.Source != k {
			t.Errorf("record from %v", rec.Source)
		}
		got = append(got, le64(rec.Data))
		return nil
	})
	if err != nil || n != 5 {
		t.Fatalf("Consume: %d, %v", n, err)
	}
	for i, v := range got {
		if v != uint64(16*i) {
			t.Fatalf("record %d carries %d, want %d", i, v, 16*i)
		}
	}
	if avail, _ := k.Query(AvailData); avail != 0 {
		t.Fatalf("avail after consuming: %d", avail)
	}
}

func TestKernelRingOpenEveryWay(t *testing.T) {
	k := newKernelRing(t, 8192)
	out := loadProg(t, outputProgram(k.FD(), 0))
	out.run()

	check := func(name string, r *KernelRing, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer r.Close()
		if r.Size() != 8192 || r.ID() != k.ID() || r.info.Name != "ringo_test" || r.String() != fmt.Sprintf("ringbuf %d (ringo_test)", k.ID()) {
			t.Fatalf("%s: size %d id %d %s", name, r.Size(), r.ID(), r)
		}
		if p := r.Positions(); p.Producer != 16 {
			t.Fatalf("%s: positions %+v", name, p)
		}
	}
	r, err := OpenMap(bpfmap.FD(k.FD()))
	check("fd", r, err)
	r, err = OpenMap(k)
	check("FD()", r, err)
	r, err = openMapID(k.ID())
	check("id", r, err)

	dir := bpffsDir(t)
	pin := filepath.Join(dir, "ring")
	if err := k.Pin(pin); err != nil {
		t.Fatal(err)
	}
	r, err = OpenPinned(pin)
	check("pinned", r, err)
}

func TestKernelRingErrors(t *testing.T) {
	requireKernel(t)
	fd, err := sys.MapCreate(2, 4, 8, 16, 0, "not_a_ring") // BPF_MAP_TYPE_ARRAY
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD(fd)
	_, err = OpenMap(bpfmap.FD(fd))
	if err == nil || !strings.Contains(err.Error(), "is a array map, not a ringbuf") {
		t.Fatalf("array map: %v", err)
	}
	ufd, err := sys.MapCreate(uint32(UserRingBuf), 0, 0, 4096, 0, "user_ring")
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD(ufd)
	if _, err := OpenMap(bpfmap.FD(ufd)); err == nil || !strings.Contains(err.Error(), "user_ringbuf") {
		t.Fatalf("user ring: %v", err)
	}
	if _, err := openMapID(0xfffffff0); err == nil || !strings.Contains(err.Error(), "no map with id") {
		t.Fatalf("missing id: %v", err)
	}
	if _, err := OpenPinned("/sys/fs/bpf/ringo-no-such-pin"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("missing pin: %v", err)
	}
	if _, err := CreateKernelRing("bad", 5000); !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "power of two") {
		t.Fatalf("bad size: %v", err)
	}
	// The kernel's own answer to a bad size, and the message ringo adds to EPERM.
	if _, err := sys.MapCreate(uint32(RingBuf), 0, 0, 5000, 0, "bad"); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("kernel accepted size 5000: %v", err)
	}
	if e := bpfmap.Err(syscall.EPERM); !strings.Contains(e.Error(), "CAP_BPF") {
		t.Fatalf("EPERM explained as %q", e)
	}
}

// A Reader blocked on an empty kernel ring is woken by a BPF program's
// commit, with kernel and user-space rings in one epoll.
func TestKernelRingWakesReaderWithUserRing(t *testing.T) {
	k := newKernelRing(t, 4096)
	u := newRing(t, 4096)
	rd := newReader(t, k, u)
	asleep := watchSleep(rd)
	out := loadProg(t, outputProgram(k.FD(), 0))
	// Each record is written once the Reader is about to sleep on both
	// empty rings: only a wake-up through its epoll can bring it back,
	// exactly one per record. (No deadline, which would wake it too.)
	done := readAsync(t.Context(), rd)
	asleep.wait(t, "on the empty kernel and user-space rings")
	if ret := out.run(); ret != 0 {
		t.Fatalf("the BPF program's output returned %d", ret)
	}
	res := waitfor.Recv(t, done, waitfor.Short, "the kernel ring's commit to wake the Reader")
	if rec := res.rec; res.err != nil || rec.Source != k || le64(rec.Data) != 0 {
		t.Fatalf("first record: %v from %v (%v)", rec.Data, rec.Source, res.err)
	}
	if w := rd.Wakeups(); w != 1 {
		t.Fatalf("reader woken %d times for the one record it slept for", w)
	}
	asleep.drain()
	done = readAsync(t.Context(), rd)
	asleep.wait(t, "on the empty kernel and user-space rings, again")
	if err := u.Output([]byte("user"), 0); err != nil {
		t.Fatal(err)
	}
	res = waitfor.Recv(t, done, waitfor.Short, "the user-space ring's commit to wake the Reader")
	if rec := res.rec; res.err != nil || rec.Source != u || string(rec.Data) != "user" {
		t.Fatalf("second record: %q from %v (%v)", rec.Data, rec.Source, res.err)
	}
	if w := rd.Wakeups(); w != 2 {
		t.Fatalf("reader woken %d times for two records it slept for", w)
	}
}

// The kernel's answers, from a BPF program: a full ring makes output
// return -EAGAIN and reserve fail, unknown output flags are -EINVAL.
func TestKernelRingFullAndFlags(t *testing.T) {
	k := newKernelRing(t, 4096)
	bad := loadProg(t, outputProgram(k.FD(), 4))
	if ret := bad.run(); ret != -int32(syscall.EINVAL) {
		t.Fatalf("output with flags 4 returned %d", ret)
	}
	out := loadProg(t, outputProgram(k.FD(), 0))
	n := 0
	for out.run() == 0 {
		n++
	}
	// 16 bytes a record, at most size-1 bytes: 255 records.
	if n != 255 {
		t.Fatalf("%d records fit in a 4096-byte kernel ring, want 255", n)
	}
	if ret := out.run(); ret != -int32(syscall.EAGAIN) {
		t.Fatalf("output into a full ring returned %d", ret)
	}
	res := loadProg(t, reserveProgram(k.FD(), 8, false, 0))
	if ret := res.run(); ret != 1 {
		t.Fatalf("reserve in a full ring: %d", ret)
	}
}

// Conformance: the same seeded sequence of outputs, reserve+submit and
// reserve+discard with every wake-up flag, applied by BPF programs to a
// kernel ring and by Go code to a user-space ring, with the consumer
// advancing at the same points, leaves the same bytes and positions after
// every step, and both consumers deliver the same records.
func TestKernelConformance(t *testing.T) {
	seeds := 20
	if testing.Short() {
		seeds = 4
	}
	if os.Getenv("RINGO_CONFORMANCE_LONG") != "" {
		seeds = 500
	}
	for seed := 0; seed < seeds; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { conformance(t, uint64(seed), 600) })
	}
}

func conformance(t *testing.T, seed uint64, steps int) {
	const size = 4096
	k := newKernelRing(t, size)
	u := newRing(t, size)
	kr, ur := newReader(t, k), newReader(t, u)

	// Programs for each operation and flag; sizes 8..4000 for reserve.
	type op struct {
		kind  string // output, submit, discard, dsubmit, ddiscard (dynptr)
		size  int
		flags uint64
	}
	progs := map[op]*prog{}
	get := func(o op) *prog {
		if p, ok := progs[o]; ok {
			return p
		}
		var insns []sys.Instruction
		switch o.kind {
		case "output":
			insns = outputProgram(k.FD(), int32(o.flags))
		case "submit", "discard":
			insns = reserveProgram(k.FD(), int32(o.size), o.kind == "discard", int32(o.flags))
		default:
			insns = dynptrProgram(k.FD(), int32(o.size), o.kind == "ddiscard", int32(o.flags))
		}
		p := loadProg(t, insns)
		progs[o] = p
		return p
	}
	sizes := []int{8, 16, 24, 100, 504, 1000, 2040, 4000}
	flags := []uint64{0, NoWakeup, ForceWakeup}
	rng := newRand(seed)
	var kRecs, uRecs [][]byte
	collect := func(dst *[][]byte) func(Record) error {
		return func(rec Record) error { *dst = append(*dst, bytes.Clone(rec.Data)); return nil }
	}
	fullSeen := 0
	for step := 0; step < steps; step++ {
		var o op
		sz, fl := sizes[rng.IntN(len(sizes))], flags[rng.IntN(3)]
		switch r := rng.IntN(12); {
		case r < 4:
			o = op{"output", 8, fl}
		case r < 7:
			o = op{"submit", sz, fl}
		case r < 8:
			o = op{"discard", sz, fl}
		case r < 11:
			o = op{"dsubmit", sz, fl}
		default:
			o = op{"ddiscard", sz, fl}
		}
		kret := get(o).run()
		var uerr error
		switch o.kind {
		case "output":
			pos, _ := u.Query(ProducerPos)
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], pos)
			uerr = u.Output(b[:], o.flags)
		default:
			res, err := u.Reserve(o.size)
			uerr = err
			if err == nil {
				pos, _ := u.Query(ProducerPos)
				binary.LittleEndian.PutUint64(res.Bytes(), pos)
				if o.kind == "discard" || o.kind == "ddiscard" {
					u.Discard(res, o.flags)
				} else {
					u.Commit(res, o.flags)
				}
			}
		}
		if kerr := kret != 0; kerr != (uerr != nil) {
			t.Fatalf("step %d %+v: kernel returned %d, ringo %v", step, o, kret, uerr)
		}
		if uerr != nil {
			fullSeen++
		}
		// The consumer advances at the same points in both.
		if rng.IntN(8) == 0 {
			kr.Consume(collect(&kRecs))
			ur.Consume(collect(&uRecs))
		}
		if kp, up := k.Positions(), u.Positions(); kp != up {
			t.Fatalf("step %d %+v: kernel positions %+v, ringo %+v", step, o, kp, up)
		}
		if !bytes.Equal(k.mapping.Data[:size], u.mapping.Data[:size]) {
			i := 0
			for k.mapping.Data[i] == u.mapping.Data[i] {
				i++
			}
			t.Fatalf("step %d %+v: data differs first at offset %d: kernel %x, ringo %x", step, o, i,
				k.mapping.Data[i&^7:i&^7+8], u.mapping.Data[i&^7:i&^7+8])
		}
	}
	kr.Consume(collect(&kRecs))
	ur.Consume(collect(&uRecs))
	if len(kRecs) != len(uRecs) {
		t.Fatalf("kernel delivered %d records, ringo %d", len(kRecs), len(uRecs))
	}
	for i := range kRecs {
		if !bytes.Equal(kRecs[i], uRecs[i]) {
			t.Fatalf("record %d: kernel %x, ringo %x", i, kRecs[i], uRecs[i])
		}
	}
	laps := k.Positions().Producer / size
	if laps < 3 || fullSeen == 0 {
		t.Fatalf("sequence too tame: %d laps, %d full-ring refusals", laps, fullSeen)
	}
}

// A BPF program's view of bpf_ringbuf_query, for every property, against
// what ringo reads from user space.
func TestKernelRingQueryFromBPF(t *testing.T) {
	k := newKernelRing(t, 8192)
	out := loadProg(t, outputProgram(k.FD(), 0))
	q := loadProg(t, queryProgram(k.FD()))
	for i := 0; i < 3; i++ {
		out.run() // 48 bytes
	}
	rd := newReader(t, k)
	rd.Consume(func(Record) error { return nil }) // consumer at 48
	out.run()                                     // producer at 64
	if ret := q.run(); ret != 0 {
		t.Fatalf("query program: %d", ret)
	}
	var seen []uint64
	rd.Consume(func(rec Record) error {
		if len(rec.Data) == 32 {
			for i := 0; i < 4; i++ {
				seen = append(seen, le64(rec.Data[8*i:]))
			}
		}
		return nil
	})
	want := []uint64{16, 8192, 48, 64} // avail, size, consumer, producer
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("the program saw %v, want %v", seen, want)
	}
	// User space reads the same through the mapping.
	k2 := newKernelRing(t, 8192)
	loadProg(t, outputProgram(k2.FD(), 0)).run()
	for p, v := range map[Prop]uint64{AvailData: 16, RingSize: 8192, ConsumerPos: 0, ProducerPos: 16} {
		if got, _ := k2.Query(p); got != v {
			t.Errorf("Query(%v) = %d, want %d", p, got, v)
		}
	}
}

// The dynptr variants write the same records as reserve/submit.
func TestKernelRingDynptr(t *testing.T) {
	k := newKernelRing(t, 4096)
	sub := loadProg(t, dynptrProgram(k.FD(), 24, false, 0))
	dis := loadProg(t, dynptrProgram(k.FD(), 24, true, 0))
	if sub.run() != 0 || dis.run() != 0 || sub.run() != 0 {
		t.Fatal("dynptr programs failed")
	}
	rd := newReader(t, k)
	var got []uint64
	rd.Consume(func(rec Record) error {
		if len(rec.Data) != 24 {
			t.Errorf("record of %d bytes", len(rec.Data))
		}
		got = append(got, le64(rec.Data))
		return nil
	})
	// Positions after each 32-byte reservation: 32, (64 discarded), 96.
	if fmt.Sprint(got) != "[32 96]" {
		t.Fatalf("dynptr records carry %v", got)
	}
	// Too large for the ring: the reservation fails, the program returns
	// the error and the verifier-mandated discard of the null dynptr is fine.
	big := loadProg(t, dynptrProgram(k.FD(), 8000, false, 0))
	if ret := big.run(); ret >= 0 {
		t.Fatalf("dynptr reservation of 8000 bytes in a 4096-byte ring returned %d", ret)
	}
}

// A ring ringo creates and pins is what bpftool, the ecosystem's tool, calls
// a ringbuf of that size and name. CI installs bpftool.
func TestBpftoolSeesPinnedRing(t *testing.T) {
	requireKernel(t)
	bpftool, err := exec.LookPath("bpftool")
	if err != nil {
		skipUnlessRequired(t, "bpftool is not in PATH (apt-get install bpftool)")
	}
	k := newKernelRing(t, 1<<16)
	pin := filepath.Join(bpffsDir(t), "ring")
	if err := k.Pin(pin); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Short)
	defer cancel()
	out, err := exec.CommandContext(ctx, bpftool, "--json", "map", "show", "pinned", pin).CombinedOutput()
	if err != nil {
		t.Fatalf("bpftool: %v: %s", err, out)
	}
	var m struct {
		ID         uint32 `json:"id"`
		Type       string `json:"type"`
		Name       string `json:"name"`
		MaxEntries uint32 `json:"max_entries"`
		BytesKey   uint32 `json:"bytes_key"`
		BytesValue uint32 `json:"bytes_value"`
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("bpftool output %s: %v", out, err)
	}
	if m.ID != k.ID() || m.Type != "ringbuf" || m.Name != "ringo_test" || m.MaxEntries != 1<<16 || m.BytesKey != 0 || m.BytesValue != 0 {
		t.Fatalf("bpftool says %+v", m)
	}
}

// TestKernelOverwriteRefused: Linux 6.18 refuses BPF_F_RB_OVERWRITE, and
// ringo says so, pointing at the user-space ring that has the mode; where a
// kernel accepts it, the ring opens in overwrite mode.
func TestKernelOverwriteRefused(t *testing.T) {
	requireKernel(t)
	k, err := CreateKernelRing("ringo_overwrite", 4096, WithOverwrite())
	if kernelSupportsOverwrite() {
		if err != nil {
			t.Fatalf("the kernel supports overwrite rings, but: %v", err)
		}
		defer k.Close()
		if !k.Overwrite() {
			t.Error("a kernel ring made with FlagOverwrite is not in overwrite mode")
		}
		return
	}
	if err == nil {
		k.Close()
		t.Fatal("kernelSupportsOverwrite() = false, yet the kernel made an overwrite ring")
	}
	if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "after Linux 6.18") || !strings.Contains(err.Error(), "WithOverwrite") {
		t.Errorf("error %q does not explain the refusal", err)
	}
	// The same option gives a user-space ring in overwrite mode.
	r, err := New(4096, WithOverwrite())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.Overwrite() {
		t.Error("New WithOverwrite made a ring not in overwrite mode")
	}
}

// TestKernelRingReadIntoFrees: a record's space is free when ReadInto
// returns (the consumer position is past it), as its doc says and the
// ringbuf drop-in, built on it, promises as cilium/ebpf's ReadInto does.
func TestKernelRingReadIntoFrees(t *testing.T) {
	k := newKernelRing(t, 4096)
	out := loadProg(t, outputProgram(k.FD(), 0))
	discard := loadProg(t, reserveProgram(k.FD(), 8, true, 0))
	// Records of 16 bytes each: committed, then discarded, in turn (the
	// cursor skips a discarded record before each committed one).
	for i := 0; i < 5; i++ {
		if ret := out.run(); ret != 0 {
			t.Fatalf("bpf_ringbuf_output returned %d", ret)
		}
		discard.run()
	}
	rd := newReader(t, k)
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Short)
	defer cancel()
	var rec Record
	for i := 0; i < 5; i++ {
		if err := rd.ReadInto(ctx, &rec); err != nil {
			t.Fatal(err)
		}
		if c, want := k.Positions().Consumer, uint64(32*i+16); c < want {
			t.Fatalf("after ReadInto of record %d, consumer_pos %d, want %d or more", i, c, want)
		}
	}
}

// TestKernelRingFenceBeforeSleep: ReadInto (and a batch going on) store a
// kernel ring's consumer_pos with a release store, which owes the
// StoreLoad fence the wake-up protocol needs; the Reader pays it before it
// sleeps, even when the position is already stored. Without it, the
// Reader's load of producer_pos could pass its store, and a producer
// committing then would see neither a caught-up consumer (no wake-up) nor
// be seen (the Reader sleeps with a record there).
func TestKernelRingFenceBeforeSleep(t *testing.T) {
	k := newKernelRing(t, 4096)
	out := loadProg(t, outputProgram(k.FD(), 0))
	if ret := out.run(); ret != 0 {
		t.Fatalf("bpf_ringbuf_output returned %d", ret)
	}
	rd := newReader(t, k)
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Short)
	defer cancel()
	var rec Record
	if err := rd.ReadInto(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	rr := rd.rings[0]
	if !rr.fenceOwed || k.Positions().Consumer != 16 {
		t.Fatalf("after ReadInto: fence owed %v, consumer_pos %d; want a release store of 16", rr.fenceOwed, k.Positions().Consumer)
	}
	rd.mu.Lock()
	sleep := !rd.ready(true)
	rd.mu.Unlock()
	if !sleep || rr.fenceOwed {
		t.Fatalf("ready before sleeping: sleep %v, fence still owed %v", sleep, rr.fenceOwed)
	}
}

// TestReaderSpinsOnlyWhereWakingIsDear: a Reader about to sleep spins first
// only where its wake-up costs system calls and its producers may be
// goroutines: a Reader of a shared ring, or of an in-process ring beside a
// kernel ring (it sleeps in epoll_wait). A Reader of a kernel ring (only
// BPF programs produce: a spin helps none of them) and one of in-process
// rings only (parked: a producer wakes it with a channel send) sleep as
// soon as their last look finds nothing, which at every rate below the
// spin's saved its whole cost a record (BenchmarkStreamPaced,
// BenchmarkUserPaced). After a spin that found nothing, the next
// spinRetry-1 sleeps come without one. The record written while the Reader
// sleeps still wakes it, every time.
func TestReaderSpinsOnlyWhereWakingIsDear(t *testing.T) {
	kernel := func(t *testing.T) (*KernelRing, func() error) {
		k := newKernelRing(t, 4096)
		out := loadProg(t, outputProgram(k.FD(), 0))
		return k, func() error {
			if ret := out.run(); ret != 0 {
				return fmt.Errorf("bpf_ringbuf_output returned %d", ret)
			}
			return nil
		}
	}
	output := func(r *Ring) func() error { return func() error { return r.Output([]byte("x"), 0) } }
	for _, c := range []struct {
		name   string
		rings  func(t *testing.T) ([]Source, func() error)
		parked bool
		spins  bool
	}{
		{"kernel ring", func(t *testing.T) ([]Source, func() error) {
			k, write := kernel(t)
			return []Source{k}, write
		}, false, false},
		{"in-process ring", func(t *testing.T) ([]Source, func() error) {
			r := newRing(t, 4096)
			return []Source{r}, output(r)
		}, true, false},
		{"shared ring", func(t *testing.T) ([]Source, func() error) {
			sh := newSharedRing(t, "spin", 4096)
			return []Source{sh}, output(sh)
		}, false, true},
		{"in-process ring beside a kernel ring", func(t *testing.T) ([]Source, func() error) {
			k, _ := kernel(t)
			r := newRing(t, 4096)
			return []Source{k, r}, output(r)
		}, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			rings, write := c.rings(t)
			rd := newReader(t, rings...)
			if rd.parked != c.parked {
				t.Fatalf("parked %v, want %v", rd.parked, c.parked)
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitfor.Long)
			defer cancel()
			slept := watchSleep(rd)
			spins := 0
			for i := range spinRetry + 1 {
				got := make(chan error, 1)
				go func() {
					var rec Record
					got <- rd.ReadInto(ctx, &rec)
				}()
				slept.wait(t, "on empty rings")
				if err := write(); err != nil {
					t.Fatal(err)
				}
				if err := waitfor.Recv(t, got, waitfor.Short, "ReadInto woken by the record"); err != nil {
					t.Fatalf("sleep %d: %v", i, err)
				}
				want := c.spins && i%spinRetry == 0
				if spun := rd.spins > spins; spun != want {
					t.Fatalf("sleep %d: spun %v before sleeping, want %v", i, spun, want)
				}
				spins = rd.spins
			}
		})
	}
}
