package bench

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo"
)

// skipUnlessRequired skips the test for the reason given (something this
// machine lacks), or fails it where RINGO_REQUIRE_KERNEL=1 (CI), under
// which nothing may pass by skipping.
func skipUnlessRequired(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("RINGO_REQUIRE_KERNEL") == "1" {
		t.Fatal(reason + ", and RINGO_REQUIRE_KERNEL=1")
	}
	t.Skip(reason + " (RINGO_REQUIRE_KERNEL=1 makes this a failure)")
}

// requireBPF skips without BPF, except where RINGO_REQUIRE_KERNEL=1 (CI)
// makes that a failure.
func requireBPF(t testing.TB) {
	t.Helper()
	k, err := loadKernel(4096, 4096)
	if err != nil {
		skipUnlessRequired(t, fmt.Sprintf("BPF not usable: %v", err))
	}
	k.Close()
}

// testDriver builds the libbpf baseline; where it cannot run (no gcc and
// libbpf-dev to build it, no bpffs to find the maps through) it returns
// nil and why, for the libbpf measurements to skip with.
func testDriver(t testing.TB) (*driver, string) {
	t.Helper()
	var why []string
	var st syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/bpf", &st); err != nil || st.Type != 0xcafe4a11 {
		why = append(why, "no BPF file system at /sys/fs/bpf, where the libbpf baseline finds the maps (mount -t bpf bpf /sys/fs/bpf)")
	}
	d, err := buildDriver(t.TempDir(), "/sys/fs/bpf")
	if err != nil {
		reason, _, _ := strings.Cut(err.Error(), "\n") // not gcc's whole output
		why = append(why, reason)
	}
	if len(why) > 0 {
		return nil, strings.Join(why, "; ")
	}
	return d, ""
}

// TestScenarios runs every scenario and implementation once, small: each
// must read every record the producer wrote, intact (the checksum), or
// fail. The libbpf ones skip, naming the reason, where the baseline cannot
// be built (unless RINGO_REQUIRE_KERNEL=1).
func TestScenarios(t *testing.T) {
	requireBPF(t)
	lib, noLib := testDriver(t)
	needLib := func(t *testing.T, impl string) {
		t.Helper()
		if impl == Libbpf && lib == nil {
			skipUnlessRequired(t, noLib)
		}
	}
	for _, impl := range []string{Ringo, RingoBatch, Libbpf, CiliumRead, CiliumReadInto} {
		t.Run("drain/"+impl, func(t *testing.T) {
			needLib(t, impl)
			r, err := drain(impl, 64, 1<<20, lib)
			if err != nil {
				t.Fatal(err)
			}
			if r.Records != (1<<20-1)/72 || r.RecordsPerSec <= 0 {
				t.Fatalf("%+v", r)
			}
		})
		t.Run("stream/"+impl, func(t *testing.T) {
			needLib(t, impl)
			r, err := stream(Stream, impl, 64, 1<<16, feed{count: 100000}, lib)
			if err != nil {
				t.Fatal(err)
			}
			if r.Records+r.Drops != 100000 {
				t.Fatalf("%d records and %d drops of 100000", r.Records, r.Drops)
			}
			t.Logf("%d drops, %.1f wake-ups per 1000", r.Drops, r.WakeupsPer1000)
		})
	}
	// The floor reads every record of a drain too (floor.go).
	t.Run("drain/"+FloorCall, func(t *testing.T) {
		r, err := drain(FloorCall, 64, 1<<20, lib)
		if err != nil {
			t.Fatal(err)
		}
		if r.Records != (1<<20-1)/72 {
			t.Fatalf("%+v", r)
		}
	})
	// Paced: every record arrives, and not at the producer's full speed
	// (millions a second). A Go reader's clock starts before the producer
	// does, so its rate cannot pass the pace (2x leaves room for the last
	// record's share). libbpf's driver starts its own clock once told to
	// go, a moment after the producer may have begun, so a short run's
	// rate says nothing of the pacing there: TestFeedPaced checks that.
	// The ring holds every record (2000 of 72 bytes), so that a reader
	// that starts late, as libbpf's driver may on a loaded machine,
	// drops none.
	for _, impl := range []string{Ringo, Libbpf, DropinReadInto} {
		t.Run("stream_paced/"+impl, func(t *testing.T) {
			needLib(t, impl)
			r, err := stream(StreamPaced, impl, pacedSize, 1<<18, feed{count: 2000, rate: 1e5}, lib)
			if err != nil {
				t.Fatal(err)
			}
			if r.Records != 2000 || r.Drops != 0 || r.Rate != 1e5 || impl != Libbpf && r.RecordsPerSec > 2e5 {
				t.Fatalf("paced to 100 k/s: %d records, %d drops, %.0f records/s, rate %v; want 2000, 0, at most 200 k/s", r.Records, r.Drops, r.RecordsPerSec, r.Rate)
			}
		})
	}
	t.Run("perfbuf", func(t *testing.T) {
		r, err := stream(PerfBuf, CiliumPerf, 64, 1<<16, feed{count: 100000, how: howPerf}, lib)
		if err != nil {
			t.Fatal(err)
		}
		if r.Records+r.Drops != 100000 {
			t.Fatalf("%d records and %d drops of 100000", r.Records, r.Drops)
		}
	})
	for _, impl := range []string{Ringo, Libbpf} {
		t.Run("user_ring/"+impl, func(t *testing.T) {
			needLib(t, impl)
			if _, err := userRing(impl, 64, 1<<16, 100000, lib); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestUserScenarios runs the user-space scenarios, which need no BPF: an
// in-process ring and a Go channel, one and two producers.
func TestUserScenarios(t *testing.T) {
	for _, producers := range []int{1, 2} {
		t.Run("user/ringo", func(t *testing.T) {
			if _, err := userRingo(UserSPSC, producers, 64, 1<<16, 50000, 0); err != nil {
				t.Fatal(err)
			}
		})
		t.Run("user/chan", func(t *testing.T) {
			if _, err := userChan(UserSPSC, producers, 64, 1<<16, 50000, 0); err != nil {
				t.Fatal(err)
			}
		})
	}
	for _, run := range []func(string, int, int, int, int, float64) (Result, error){userRingo, userChan} {
		r, err := run(UserPaced, 1, 64, 1<<16, 2000, 1e5)
		if err != nil {
			t.Fatal(err)
		}
		if r.Records != 2000 || r.Rate != 1e5 || r.RecordsPerSec > 2e5 {
			t.Fatalf("%s paced to 100 k/s: %d records, %.0f records/s, rate %v; want 2000, at most 200 k/s", r.Impl, r.Records, r.RecordsPerSec, r.Rate)
		}
		// The other threads' CPU leaves the producer's out: its pacer
		// spins all along, so counting it would make about one CPU,
		// NsPerRecord a record (they used a fifth of that here).
		if r.OtherCPUNsPerRecord == 0 || r.OtherCPUNsPerRecord > r.NsPerRecord/2 {
			t.Fatalf("%s paced to 100 k/s: other threads' CPU %.0f ns a record, %.0f ns a record of wall time; want some, under half", r.Impl, r.OtherCPUNsPerRecord, r.NsPerRecord)
		}
	}
}

// TestRingoDrainAllocatesNothing: ringo's reader, as the benchmark drives
// it (its Consume callback over the benchmark's kernel ring, filled by the
// BPF producer), allocates nothing per record. testing.AllocsPerRun counts
// only what the consumer's own loop allocates: it runs the loop here, in a
// goroutine no thread is locked to, so a preemption needs no new thread
// (the benchmark's pinned consumer does, and the runtime allocates for
// that); and it reports whole allocations per run of 256 records, so a
// stray allocation of the runtime's does not count, while a consumer that
// allocates once per run, let alone per record, fails.
func TestRingoDrainAllocatesNothing(t *testing.T) {
	requireBPF(t)
	const size, perRun, runs = 64, 256, 500
	count := uint64((runs + 1) * perRun) // AllocsPerRun runs once more, first
	k, err := loadKernel(16<<20, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if err := k.produce(producerCPU, count, size, 0, howReserve); err != nil {
		t.Fatal(err)
	}
	r, err := newRingoReader(k.objs.Rb, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rr := r.(*ringoReader)
	var s sink
	rr.s = &s
	errRun := errors.New("a run's records taken")
	taken := 0
	fn := func(rec ringo.Record) error {
		if taken == perRun {
			return errRun // stays in the ring for the next run
		}
		taken++
		return rr.fn(rec)
	}
	var runErr error
	allocs := testing.AllocsPerRun(runs, func() {
		taken = 0
		// errRun, or nil once the ring is empty after the last run.
		if _, err := rr.rd.Consume(fn); (err != errRun && err != nil || taken != perRun) && runErr == nil {
			runErr = fmt.Errorf("Consume took %d records of a run, %d in all: %v", taken, s.records, err)
		}
	})
	if runErr != nil {
		t.Fatal(runErr)
	}
	if allocs != 0 {
		t.Errorf("ringo's reader: %v allocations per %d records drained", allocs, perRun)
	}
	st, err := k.stats()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.check(st.Produced, st.Csum); err != nil {
		t.Fatal(err)
	}

	// The same for ConsumeBatch, its loop leaving the rest of a batch in
	// the ring after a run's records.
	if err := k.reset(); err != nil {
		t.Fatal(err)
	}
	if err := k.produce(producerCPU, count, size, 0, howReserve); err != nil {
		t.Fatal(err)
	}
	rb, err := newRingoReader(k.objs.Rb, true)
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	var sb sink
	batch := func(_ ringo.Source, b *ringo.Batch) error {
		for data := range b.All() {
			if taken == perRun {
				break
			}
			taken++
			sb.add(data)
		}
		return nil
	}
	allocs = testing.AllocsPerRun(runs, func() {
		taken = 0
		if _, err := rb.(*ringoReader).rd.ConsumeBatch(batch); (err != nil || taken != perRun) && runErr == nil {
			runErr = fmt.Errorf("ConsumeBatch took %d records of a run, %d in all: %v", taken, sb.records, err)
		}
	})
	if runErr != nil {
		t.Fatal(runErr)
	}
	if allocs != 0 {
		t.Errorf("ringo's batch reader: %v allocations per %d records drained", allocs, perRun)
	}
	if st, err = k.stats(); err != nil {
		t.Fatal(err)
	}
	if err := sb.check(st.Produced, st.Csum); err != nil {
		t.Fatal(err)
	}
}

// TestSinkCatchesSkippedWork: a consumer that drops, tears or invents
// records does not pass the check.
func TestSinkCatchesSkippedWork(t *testing.T) {
	b := make([]byte, 32)
	var want sink
	for i := range uint64(3) {
		fillRecord(b, i)
		want.add(b)
	}
	if err := want.check(3, recordSum(0, 32)+recordSum(1, 32)+recordSum(2, 32)); err != nil {
		t.Fatal(err)
	}
	var short sink
	fillRecord(b, 0)
	short.add(b)
	if short.check(3, want.csum) == nil {
		t.Error("a consumer that read 1 of 3 records passed")
	}
	var torn sink
	fillRecord(b, 5)
	b[31] ^= 1
	torn.add(b)
	if torn.check(1, recordSum(5, 32)) == nil {
		t.Error("a torn record passed")
	}
}

// TestDropsCountedExactly: fill the ring, then have the BPF program
// attempt K more records; ringo.LossOf finds the program's
// RINGO_DROP_COUNTER by name and reports exactly K drops and their bytes,
// for both wrappers (ringo_reserve's path and ringo_output).
func TestDropsCountedExactly(t *testing.T) {
	requireBPF(t)
	for _, how := range []int{howReserve, howOutput} {
		k, err := loadKernel(1<<16, 4096)
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		kr, err := ringo.OpenMap(k.objs.Rb)
		if err != nil {
			t.Fatal(err)
		}
		defer kr.Close()
		fit := uint64((1<<16 - 1) / recordSize(64))
		const K = 1234
		if err := k.produce(0, fit+K, 64, 0, how); err != nil {
			t.Fatal(err)
		}
		l, err := kr.Loss()
		if err != nil {
			t.Fatal(err)
		}
		if !l.Counted || l.Dropped != K || l.DroppedBytes != K*64 {
			t.Fatalf("how %d: LossOf = %+v, want %d drops of 64 bytes", how, l, K)
		}
		st, _ := k.stats()
		if st.Dropped != K || st.Produced != fit {
			t.Fatalf("the program itself counted %+v", st)
		}
		// The same counter, given explicitly.
		kr2, err := ringo.OpenMap(k.objs.Rb)
		if err != nil {
			t.Fatal(err)
		}
		defer kr2.Close()
		if err := kr2.SetDropCounter(k.objs.RbDrops); err != nil {
			t.Fatal(err)
		}
		if l2, err := kr2.Loss(); err != nil || l2 != l {
			t.Fatalf("with SetDropCounter: LossOf = %+v, %v; want %+v", l2, err, l)
		}
	}
}

// TestFeedPaced: a paced feed takes at least as long as its records at
// its rate (the pacer lets a burst go only when it is due), whichever
// reader reads them; and an unpaced one is not held back.
func TestFeedPaced(t *testing.T) {
	requireBPF(t)
	k, err := loadKernel(1<<20, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	for _, f := range []feed{{count: 500, rate: 1e4}, {count: 5000, rate: 1e6}} {
		start := time.Now()
		if err := onCPU(producerCPU, func() error { return k.feed(producerCPU, pacedSize, f) }); err != nil {
			t.Fatal(err)
		}
		burst := max(1, uint64(f.rate/pacedBurst))
		least := time.Duration(float64((f.count+burst-1)/burst-1) * float64(burst) / f.rate * float64(time.Second))
		if took := time.Since(start); took < least {
			t.Fatalf("%d records paced to %.0f/s took %v; the pacer lets them go no sooner than %v", f.count, f.rate, took, least)
		}
	}
}
