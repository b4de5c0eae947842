package bench

import (
	"fmt"
	"testing"
)

// The Benchmark functions run the suite's scenarios under go test, for
// profiling (-cpuprofile, -memprofile); each iteration is one whole
// measurement, and the metrics are the suite's: ns/record, cpu-ns/record,
// records/s, drops.

func report(b *testing.B, results []Result) {
	var ns, cpu, other, rps, drops float64
	for _, r := range results {
		ns += r.NsPerRecord
		cpu += r.CPUNsPerRecord
		other += r.OtherCPUNsPerRecord
		rps += r.RecordsPerSec
		drops += float64(r.Drops)
	}
	n := float64(len(results))
	b.ReportMetric(ns/n, "ns/record")
	b.ReportMetric(cpu/n, "cpu-ns/record")
	if other != 0 {
		b.ReportMetric(other/n, "other-cpu-ns/record")
	}
	b.ReportMetric(rps/n, "records/s")
	b.ReportMetric(drops/n, "drops")
	b.ReportMetric(0, "ns/op")
}

// benchImpls runs fn for every implementation and record size.
func benchImpls(b *testing.B, impls []string, fn func(impl string, size int, lib *driver) (Result, error)) {
	requireBPF(b)
	var lib *driver
	var noLib string
	for _, impl := range impls {
		if impl == Libbpf {
			lib, noLib = testDriver(b)
		}
	}
	for _, size := range []int{16, 64, 256, 1024} {
		for _, impl := range impls {
			b.Run(fmt.Sprintf("%s/size=%d", impl, size), func(b *testing.B) {
				if impl == Libbpf && lib == nil {
					skipUnlessRequired(b, noLib)
				}
				var results []Result
				for b.Loop() {
					r, err := fn(impl, size, lib)
					if err != nil {
						b.Fatal(err)
					}
					results = append(results, r)
				}
				report(b, results)
			})
		}
	}
}

func BenchmarkDrain(b *testing.B) {
	benchImpls(b, []string{Ringo, RingoBatch, Libbpf, CiliumRead, CiliumReadInto, DropinRead, DropinReadInto, FloorCall}, func(impl string, size int, lib *driver) (Result, error) {
		return drain(impl, size, 32<<20, lib)
	})
}

func BenchmarkStream(b *testing.B) {
	benchImpls(b, []string{Ringo, RingoBatch, Libbpf, CiliumReadInto, DropinReadInto}, func(impl string, size int, lib *driver) (Result, error) {
		return stream(Stream, impl, size, 4<<20, feed{count: 1 << 20}, lib)
	})
}

func BenchmarkStreamSampled(b *testing.B) {
	benchImpls(b, []string{Ringo, RingoBatch, Libbpf, CiliumReadInto, DropinReadInto}, func(impl string, size int, lib *driver) (Result, error) {
		return stream(StreamSampled, impl, size, 4<<20, feed{count: 1 << 20, every: 256}, lib)
	})
}

func BenchmarkPerfBuf(b *testing.B) {
	benchImpls(b, []string{Ringo, CiliumPerf}, func(impl string, size int, lib *driver) (Result, error) {
		how := howOutput
		if impl == CiliumPerf {
			how = howPerf
		}
		return stream(PerfBuf, impl, size, 4<<20, feed{count: 1 << 20, how: how}, lib)
	})
}

func BenchmarkUser(b *testing.B) {
	for _, producers := range []int{1, 2} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			benchImpls(b, []string{Ringo, Chan}, func(impl string, size int, _ *driver) (Result, error) {
				if impl == Chan {
					return userChan(UserSPSC, producers, size, 4<<20, 1<<20/producers, 0)
				}
				return userRingo(UserSPSC, producers, size, 4<<20, 1<<20/producers, 0)
			})
		})
	}
}

func BenchmarkUserRing(b *testing.B) {
	benchImpls(b, []string{Ringo, Libbpf}, func(impl string, size int, lib *driver) (Result, error) {
		return userRing(impl, size, 4<<20, 1<<20, lib)
	})
}

func BenchmarkStreamPaced(b *testing.B) {
	requireBPF(b)
	lib, noLib := testDriver(b)
	for _, rate := range pacedRates {
		for _, impl := range pacedImpls {
			b.Run(fmt.Sprintf("%s/rate=%s", impl, formatRate(rate)), func(b *testing.B) {
				if impl == Libbpf && lib == nil {
					skipUnlessRequired(b, noLib)
				}
				var results []Result
				for b.Loop() {
					r, err := stream(StreamPaced, impl, pacedSize, 4<<20, feed{count: pacedCount(rate, 0.4), rate: rate}, lib)
					if err != nil {
						b.Fatal(err)
					}
					results = append(results, r)
				}
				report(b, results)
			})
		}
	}
}

func BenchmarkUserPaced(b *testing.B) {
	for _, rate := range pacedRates {
		for _, impl := range []string{Ringo, Chan} {
			b.Run(fmt.Sprintf("%s/rate=%s", impl, formatRate(rate)), func(b *testing.B) {
				var results []Result
				for b.Loop() {
					run := userRingo
					if impl == Chan {
						run = userChan
					}
					r, err := run(UserPaced, 1, pacedSize, 4<<20, int(pacedCount(rate, 0.4)), rate)
					if err != nil {
						b.Fatal(err)
					}
					results = append(results, r)
				}
				report(b, results)
			})
		}
	}
}
