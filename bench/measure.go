package bench

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"runtime/metrics"
	"time"

	"golang.org/x/sys/unix"
)

// sink checks and counts what a consumer read: every record carries its
// head (a sequence number) in its first 8 bytes and head*golden in its
// last 8, and the checksum is the sum of (head ^ tail) + length, the sum
// the producers compute too. No implementation can win by skipping work.
type sink struct {
	records, bytes, csum, bad uint64
	ended                     bool // the sentinel arrived
}

// add checks one record.
func (s *sink) add(b []byte) {
	if len(b) < 16 {
		s.bad++
		return
	}
	head := binary.LittleEndian.Uint64(b)
	if head == endHead {
		s.ended = true
		return
	}
	tail := binary.LittleEndian.Uint64(b[len(b)-8:])
	if tail != head*golden {
		s.bad++
		return
	}
	s.records++
	s.bytes += uint64(len(b))
	s.csum += head ^ tail + uint64(len(b))
}

// check compares the sink with what the producer says it wrote.
func (s *sink) check(records, csum uint64) error {
	switch {
	case s.bad != 0:
		return fmt.Errorf("%d records were torn or malformed", s.bad)
	case s.records != records:
		return fmt.Errorf("read %d records, the producer wrote %d", s.records, records)
	case s.csum != csum:
		return fmt.Errorf("checksum %#x of what was read differs from the producer's %#x", s.csum, csum)
	}
	return nil
}

// fillRecord writes record seq's head and tail into b.
func fillRecord(b []byte, seq uint64) {
	binary.LittleEndian.PutUint64(b, seq)
	binary.LittleEndian.PutUint64(b[len(b)-8:], seq*golden)
}

// recordSum is what fillRecord's record seq of n bytes adds to a checksum.
func recordSum(seq uint64, n int) uint64 { return seq ^ seq*golden + uint64(n) }

// pinThread locks the calling goroutine to its thread and the thread to
// cpu (if cpu >= 0 and the machine has it). The goroutine should end
// without unlocking: its thread then exits, affinity and all.
func pinThread(cpu int) {
	runtime.LockOSThread()
	if cpu < 0 || cpu >= runtime.NumCPU() {
		return
	}
	var set unix.CPUSet
	set.Set(cpu)
	_ = unix.SchedSetaffinity(0, &set) // best effort: a cgroup may forbid it
}

// spareThreads makes sure the runtime has a thread to spare before a
// pinned consumer's span starts. A goroutine locked to its thread hands
// its P to another thread each time the scheduler preempts it (every 10 ms
// of running), and if no thread is idle the runtime creates one, which
// allocates a handful of heap objects: the runtime's, not the consumer's,
// yet counted by the span. Yielding the locked thread does that hand-off
// now, until one round needs no new thread.
func spareThreads() {
	for range 8 {
		before := liveThreads()
		runtime.Gosched()
		if liveThreads() == before {
			return
		}
	}
}

// liveThreads is how many threads the runtime owns.
func liveThreads() uint64 {
	s := []metrics.Sample{{Name: "/sched/threads/total:threads"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// threadCPU is the CPU time the calling thread has used.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// processCPU is the CPU time all the process's threads have used.
func processCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// heapAllocs is the number of Go heap objects allocated so far.
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// span measures one consumer run: wall time, the consumer thread's CPU
// time and the process's heap allocations. Start and stop it on the
// consumer's (pinned) thread.
type span struct {
	wall      time.Time
	cpu, proc time.Duration
	allocs    uint64
	// results
	wallNs, cpuNs, procNs time.Duration
	nallocs               uint64
}

func (s *span) start() {
	s.allocs = heapAllocs()
	s.proc = processCPU()
	s.cpu = threadCPU()
	s.wall = time.Now()
}

func (s *span) stop() {
	s.wallNs = time.Since(s.wall)
	s.cpuNs = threadCPU() - s.cpu
	s.procNs = processCPU() - s.proc
	s.nallocs = heapAllocs() - s.allocs
}

// others fills r's OtherCPUNsPerRecord for n records, producer being the
// CPU the producer's thread used within the span (negative: not measured,
// and neither is the rest).
func (s *span) others(r *Result, n uint64, producer time.Duration) {
	if n > 0 && producer >= 0 {
		r.OtherCPUNsPerRecord = float64(s.procNs-s.cpuNs-producer) / float64(n)
	}
}

// threadCPUOf runs fn and returns the CPU time the calling thread used
// meanwhile (fn must not leave the thread: call it on a pinned one).
func threadCPUOf(fn func() error) (time.Duration, error) {
	start := threadCPU()
	err := fn()
	return threadCPU() - start, err
}

// result fills the measured fields of r for n records.
func (s *span) result(r *Result, n uint64) {
	r.Records = n
	if n == 0 {
		return
	}
	r.NsPerRecord = float64(s.wallNs) / float64(n)
	r.RecordsPerSec = float64(n) / s.wallNs.Seconds()
	r.CPUNsPerRecord = float64(s.cpuNs) / float64(n)
	r.AllocsPerRecord = float64(s.nallocs) / float64(n)
}
