package ringbuf_test

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/ringo-bpf/ringo/ringbuf/benchreaders"
	"github.com/ringo-bpf/ringo/ringbuf/internal/producer"
	"golang.org/x/sys/unix"
)

// The benchmarks compare the drop-in with cilium/ebpf v0.22.0 on the same
// kernel rings, written by the same BPF program (producer.Loop: head and
// tail of each record, reserve+submit), read through benchreaders, the
// adapters `ringo bench` uses:
//
//	go test -run XXX -bench . -benchtime 3000000x ./
//
// Drain: a pre-filled 256 MiB ring read to empty; ns/op is per record.
// Stream: the producer on CPU 0 writes while the reader on CPU 1 reads;
// records/s is what the reader got, drops/op what the full ring refused,
// cpu-ns/record the reader thread's CPU time per record it got (steadier
// than records/s, which depends on how the two sides happen to meet).
// Each reader checks every record's head and tail, so none wins by
// skipping work.

var benchSizes = []int{16, 64, 256, 1024}

const (
	drainRing  = 256 << 20
	streamRing = 4 << 20
	loopRun    = 1 << 16 // records a producer run writes at most
)

// sink checks records as the benchmark's readers get them: heads in
// increasing order, each tail its head times producer.Golden.
type sink struct {
	records, last uint64
	ended, bad    bool
	add           func([]byte)
}

const endSeq = ^uint64(0)

func newSink() *sink {
	s := &sink{last: endSeq}
	s.add = func(b []byte) {
		head := binary.NativeEndian.Uint64(b)
		if head == endSeq {
			s.ended = true
			return
		}
		if binary.NativeEndian.Uint64(b[len(b)-8:]) != head*producer.Golden || (s.last != endSeq && head <= s.last) {
			s.bad = true
		}
		s.last = head
		s.records++
	}
	return s
}

// pin locks the goroutine to its thread and the thread to cpu.
func pin(tb testing.TB, cpu int) {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		tb.Logf("pin to CPU %d: %v", cpu, err)
	}
}

func benchRing(b *testing.B, size, ringBytes int) (*ebpf.Map, *ebpf.Program) {
	requireKernel(b)
	m, err := producer.NewRing(ringBytes)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	prog, err := producer.Loop(m, size, false, false)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { prog.Close() })
	return m, prog
}

// produce writes count records from seq on, on cpu, and returns how many
// the ring refused.
func produce(prog *ebpf.Program, cpu int, seq, count uint64, flags uint64) (uint64, error) {
	var refused uint64
	for count > 0 {
		n := min(count, loopRun)
		ret, err := producer.Run(prog, cpu, n, flags, seq)
		if err != nil {
			return refused, err
		}
		refused += uint64(ret)
		seq += n
		count -= n
	}
	return refused, nil
}

func BenchmarkDrain(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			m, prog := benchRing(b, size, drainRing)
			capacity := uint64((drainRing - 1) / (8 + (size+7)&^7))
			for _, impl := range benchreaders.Impls {
				b.Run(impl, func(b *testing.B) {
					benchDrain(b, m, prog, impl, capacity)
				})
			}
		})
	}
}

func benchDrain(b *testing.B, m *ebpf.Map, prog *ebpf.Program, impl string, capacity uint64) {
	pin(b, 1)
	defer runtime.UnlockOSThread()
	r, err := benchreaders.Open(m, impl)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	s := newSink()
	b.ReportAllocs()
	b.ResetTimer()
	var elapsed time.Duration
	for left := uint64(b.N); left > 0; {
		b.StopTimer()
		n := min(left, capacity)
		if refused, err := produce(prog, 0, s.last+1, n, 0); err != nil || refused != 0 {
			b.Fatalf("filling the ring: %d of %d records refused (%v)", refused, n, err)
		}
		want := s.records + n
		b.StartTimer()
		start := time.Now()
		for s.records < want {
			if err := r.Read(s.add); err != nil {
				b.Fatalf("%s after %d records: %v", impl, s.records, err)
			}
		}
		elapsed += time.Since(start)
		left -= n
	}
	b.StopTimer()
	if s.bad {
		b.Fatal("a record was lost, repeated or mangled")
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
}

func BenchmarkStream(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			m, prog := benchRing(b, size, streamRing)
			for _, impl := range benchreaders.Impls {
				b.Run(impl, func(b *testing.B) {
					benchStream(b, m, prog, impl)
				})
			}
		})
	}
}

func benchStream(b *testing.B, m *ebpf.Map, prog *ebpf.Program, impl string) {
	r, err := benchreaders.Open(m, impl)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	s := newSink()
	got := make(chan error, 1)
	ready := make(chan struct{})
	var cpu time.Duration // the consumer thread's, user and system
	go func() {
		pin(b, 1)
		defer runtime.UnlockOSThread()
		start := threadCPU()
		close(ready)
		defer func() { cpu = threadCPU() - start }()
		for !s.ended {
			if err := r.Read(s.add); err != nil {
				got <- fmt.Errorf("%s after %d records: %w", impl, s.records, err)
				return
			}
		}
		got <- nil
	}()
	<-ready
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	type result struct {
		refused uint64
		err     error
	}
	produced := make(chan result, 1)
	go func() {
		pin(b, 0)
		defer runtime.UnlockOSThread()
		n, err := produce(prog, 0, 0, uint64(b.N), 0)
		for giveUp := time.Now().Add(benchreaders.WaitLimit); err == nil; {
			// The end record, retried until there is room for it.
			var refused uint64
			if refused, err = produce(prog, 0, endSeq, 1, producer.ForceWakeup); refused == 0 {
				break
			}
			if time.Now().After(giveUp) {
				err = fmt.Errorf("no room for the end record after %v", benchreaders.WaitLimit)
			}
			runtime.Gosched()
		}
		produced <- result{n, err}
	}()
	p := <-produced
	if p.err != nil {
		r.Close() // interrupts the reader
		<-got
		b.Fatal(p.err)
	}
	drops := p.refused
	if err := <-got; err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if s.bad {
		b.Fatal("a record was lost, repeated or mangled")
	}
	if s.records+drops != uint64(b.N) {
		b.Fatalf("%d records read and %d refused of %d", s.records, drops, b.N)
	}
	b.ReportMetric(float64(s.records)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(drops)/float64(b.N), "drops/op")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(max(s.records, 1)), "cpu-ns/record")
}

// threadCPU is the calling thread's CPU time, user and system.
func threadCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
