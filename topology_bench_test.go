package ringo

import (
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkTopology: several producer goroutines writing 64-byte records
// into one ring, against the same producers each on a ring of its own (a
// Shards set by producer), one Reader either way. Reports records/s and
// the consumer's CPU time per record.
func BenchmarkTopology(b *testing.B) {
	for _, producers := range []int{2, 4} {
		b.Run("one-ring/producers="+itoa(producers), func(b *testing.B) { benchTopology(b, producers, false) })
		b.Run("ring-per-producer/producers="+itoa(producers), func(b *testing.B) { benchTopology(b, producers, true) })
	}
}

func itoa(n int) string { return string(rune('0' + n)) }

func threadCPU() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return ts.Nano()
}

func benchTopology(b *testing.B, producers int, perProducer bool) {
	const size = 1 << 20
	shards := 1
	if perProducer {
		shards = producers
	}
	set, err := NewShards(shards, size)
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
	per := b.N / producers
	total := per * producers
	b.SetBytes(64)
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for p := range producers {
		ring := set.Ring(uint32(p % shards))
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, 64)
			for i := range per {
				payload[0] = byte(i)
				for ring.Output(payload, 0) != nil {
					runtime.Gosched()
				}
			}
		}()
	}
	cpu := consumeAll(b, rd, total, func() bool { return false })
	wg.Wait()
	b.StopTimer()
	reportTopology(b, total, cpu)
}

// consumeAll consumes total records with rd, unless stop says to give up,
// and returns the CPU time the consuming thread used.
func consumeAll(b *testing.B, rd *Reader, total int, stop func() bool) int64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := threadCPU()
	for got := 0; got < total && !stop(); {
		n, err := rd.Consume(func(Record) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		got += n
		if n == 0 {
			runtime.Gosched()
		}
	}
	return threadCPU() - cpu0
}

// reportTopology reports the records/s and the consumer's CPU ns per record.
func reportTopology(b *testing.B, total int, cpu int64) {
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(cpu)/float64(total), "consumer-cpu-ns/rec")
}
