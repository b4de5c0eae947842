package ringo

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ringo-bpf/ringo/internal/sys"
	"golang.org/x/sys/unix"
)

// BenchmarkKernelTopology: a BPF program on every CPU writing 8-byte
// records (bpf_ringbuf_output, BPF_PROG_TEST_RUN in batches) into one
// ring, against the same programs each writing into the ring of its CPU
// (a per-CPU KernelRingSet), one Reader either way. Producers pause while
// their ring is over half full, so nothing is dropped and records/s is
// what gets through.
func BenchmarkKernelTopology(b *testing.B) {
	requireKernel(b)
	b.Run("one-ring", func(b *testing.B) { benchKernelTopology(b, false) })
	b.Run("ring-per-cpu", func(b *testing.B) { benchKernelTopology(b, true) })
}

func benchKernelTopology(b *testing.B, perCPU bool) {
	cpus := runtime.NumCPU()
	const size = 1 << 22
	shards := 1
	if perCPU {
		shards = cpus
	}
	set, err := CreateRingSet(RingSetSpec{Name: "bench", Shards: shards, Size: size})
	if err != nil {
		b.Fatal(err)
	}
	defer set.Close()
	rd, err := NewReader()
	if err != nil {
		b.Fatal(err)
	}
	defer rd.Close()
	if err := rd.AddSet(set); err != nil {
		b.Fatal(err)
	}
	progs := make([]*prog, cpus)
	for cpu := range cpus {
		progs[cpu] = loadProg(b, outputProgram(set.Ring(uint32(cpu%shards)).FD(), 0))
	}
	const batch = 512
	per := max(b.N/cpus/batch, 1) * batch
	total := per * cpus
	var failed atomic.Bool
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for cpu := range cpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var mask unix.CPUSet
			mask.Set(cpu)
			unix.SchedSetaffinity(0, &mask)
			ring := set.Ring(uint32(cpu % shards))
			data := make([]byte, 64)
			for done := 0; done < per; done += batch {
				for ring.Positions().avail() > size/2 {
					runtime.Gosched()
				}
				if _, err := sys.ProgTestRun(progs[cpu].fd, data, batch); err != nil {
					failed.Store(true)
					return
				}
			}
		}()
	}
	cpu := consumeAll(b, rd, total, failed.Load)
	wg.Wait()
	b.StopTimer()
	if failed.Load() {
		b.Fatal("BPF_PROG_TEST_RUN failed")
	}
	reportTopology(b, total, cpu)
}
