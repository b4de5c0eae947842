package bench

import (
	"os"
	"testing"

	"github.com/ringo-bpf/ringo"
)

// requireBPF skips without BPF, except where RINGO_REQUIRE_KERNEL=1 (CI)
// makes that a failure.
func requireBPF(t testing.TB) {
	t.Helper()
	k, err := loadKernel(4096, 4096)
	if err != nil {
		if os.Getenv("RINGO_REQUIRE_KERNEL") == "1" {
			t.Fatalf("RINGO_REQUIRE_KERNEL=1 but: %v", err)
		}
		t.Skipf("BPF not usable: %v", err)
	}
	k.Close()
}

// testDriver builds the libbpf baseline, or fails in CI.
func testDriver(t testing.TB) *driver {
	t.Helper()
	d, err := buildDriver(t.TempDir(), "/sys/fs/bpf")
	if err != nil {
		if os.Getenv("RINGO_REQUIRE_KERNEL") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return d
}

// TestScenarios runs every scenario and implementation once, small: each
// must read every record the producer wrote, intact (the checksum), or
// fail.
func TestScenarios(t *testing.T) {
	requireBPF(t)
	lib := testDriver(t)
	for _, impl := range []string{Ringo, Libbpf, CiliumRead, CiliumReadInto} {
		t.Run("drain/"+impl, func(t *testing.T) {
			r, err := drain(impl, 64, 1<<20, lib)
			if err != nil {
				t.Fatal(err)
			}
			if r.Records != (1<<20-1)/72 || r.RecordsPerSec <= 0 {
				t.Fatalf("%+v", r)
			}
		})
		t.Run("stream/"+impl, func(t *testing.T) {
			r, err := stream(Stream, impl, 64, 1<<16, 100000, 0, howReserve, lib)
			if err != nil {
				t.Fatal(err)
			}
			if r.Records+r.Drops != 100000 {
				t.Fatalf("%d records and %d drops of 100000", r.Records, r.Drops)
			}
			t.Logf("%d drops, %.1f wake-ups per 1000", r.Drops, r.WakeupsPer1000)
		})
	}
	t.Run("perfbuf", func(t *testing.T) {
		r, err := stream(PerfBuf, CiliumPerf, 64, 1<<16, 100000, 0, howPerf, lib)
		if err != nil {
			t.Fatal(err)
		}
		if r.Records+r.Drops != 100000 {
			t.Fatalf("%d records and %d drops of 100000", r.Records, r.Drops)
		}
	})
	for _, producers := range []int{1, 2} {
		t.Run("user/ringo", func(t *testing.T) {
			if _, err := userRingo(UserSPSC, producers, 64, 1<<16, 50000); err != nil {
				t.Fatal(err)
			}
		})
		t.Run("user/chan", func(t *testing.T) {
			if _, err := userChan(UserSPSC, producers, 64, 1<<16, 50000); err != nil {
				t.Fatal(err)
			}
		})
	}
	for _, impl := range []string{Ringo, Libbpf} {
		t.Run("user_ring/"+impl, func(t *testing.T) {
			if _, err := userRing(impl, 64, 1<<16, 100000, lib); err != nil {
				t.Fatal(err)
			}
		})
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
		l, err := ringo.LossOf(kr)
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
		if l2, err := ringo.LossOf(kr2); err != nil || l2 != l {
			t.Fatalf("with SetDropCounter: LossOf = %+v, %v; want %+v", l2, err, l)
		}
	}
}
