package ringo

import (
	"encoding/binary"
	"math"
	"runtime"
	"slices"
	"testing"

	"github.com/ringo-bpf/ringo/internal/sys"
	"golang.org/x/sys/unix"
)

// BenchmarkSteadiness asks why a drain's cost per record moves between
// runs (issue 19: nine drains of 16-byte records in one process took
// 5.6-8.1 ns a record). Each round, on one pinned thread, times three
// things back to back: Consume draining a kernel ring a BPF program filled
// with 2^20 8-byte records; a plain loop over the same number of records
// (no checks, no call per record, consumer_pos stored once); and a probe
// that touches no memory at all, a loop of two indirect calls per step.
// Each is timed in the thread's CPU time, so that a preempted thread does
// not count. It reports each one's fastest and slowest round (ns per
// record or step) and how the probe's round-to-round changes follow
// Consume's (Pearson's r): code that touches no memory moving with
// Consume, while the plain loop does not, says the machine itself speeds
// up and slows down for call-bound code (a vCPU whose core a neighbour
// shares, its clock), not the Reader's data.
//
//	go test -run XXX -bench Steadiness -benchtime 30x .
func BenchmarkSteadiness(b *testing.B) {
	requireKernel(b)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set unix.CPUSet
	set.Set(runtime.NumCPU() - 1)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		b.Logf("pin: %v", err)
	}
	const size, n = 64 << 20, 1 << 20
	k := newKernelRing(b, size)
	fill := loadProg(b, outputProgram(k.FD(), 0))
	rd := newReader(b, k)
	m := k.mem
	var sum uint64
	fn := func(r Record) error { sum += binary.LittleEndian.Uint64(r.Data); return nil }
	g := func(x uint64) uint64 { return x*3 + 1 }
	run := func(batch uint32) {
		if _, err := sys.ProgTestRun(fill.fd, make([]byte, 64), batch); err != nil {
			b.Fatal(err)
		}
	}
	var consume, plain, probe []float64
	b.ResetTimer()
	for range b.N {
		run(n)
		t0 := threadNanos()
		for got := 0; got < n; {
			c, err := rd.Consume(fn)
			if err != nil {
				b.Fatal(err)
			}
			got += c
		}
		consume = append(consume, float64(threadNanos()-t0)/n)

		run(n)
		t0 = threadNanos()
		rr := rd.rings[0]
		pos, prod := rr.cur.pos, m.producerPos.Load()
		for pos < prod {
			off := pos & m.mask
			w := m.lenWord(off).Load()
			sum += binary.LittleEndian.Uint64(m.data[off+HeaderSize:])
			pos += recordSize(uint64(payloadLen(w)))
		}
		rr.cur.pos, rr.cur.prod = pos, pos
		rr.storePos()
		plain = append(plain, float64(threadNanos()-t0)/n)

		t0 = threadNanos()
		var x uint64
		for range n {
			x = probeCalls(g, x)
		}
		sum += x
		probe = append(probe, float64(threadNanos()-t0)/n)
	}
	b.StopTimer()
	for _, s := range []struct {
		name string
		v    []float64
	}{{"consume", consume}, {"plain", plain}, {"probe", probe}} {
		b.ReportMetric(slices.Min(s.v), s.name+"-min-ns")
		b.ReportMetric(slices.Max(s.v), s.name+"-max-ns")
	}
	b.ReportMetric(pearson(consume, probe), "r(consume,probe)")
	b.ReportMetric(pearson(consume, plain), "r(consume,plain)")
	if sum == 42 {
		b.Log(sum) // keep the loops
	}
}

//go:noinline
func probeCalls(g func(uint64) uint64, x uint64) uint64 { return g(x) + g(x+1) }

func threadNanos() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return ts.Nano()
}

// pearson is the correlation of a and b (0 when either is constant).
func pearson(a, b []float64) float64 {
	var ma, mb float64
	for i := range a {
		ma += a[i]
		mb += b[i]
	}
	ma /= float64(len(a))
	mb /= float64(len(b))
	var num, da, db float64
	for i := range a {
		num += (a[i] - ma) * (b[i] - mb)
		da += (a[i] - ma) * (a[i] - ma)
		db += (b[i] - mb) * (b[i] - mb)
	}
	if da == 0 || db == 0 {
		return 0
	}
	return num / math.Sqrt(da*db)
}
