package bench

import (
	"fmt"
	"time"

	"github.com/ringo-bpf/ringo"
)

// recordSize is the bytes of ring positions a record of n payload bytes
// takes: its 8-byte header and the payload rounded up to 8.
func recordSize(n int) int { return (ringo.HeaderSize + n + 7) &^ 7 }

// The CPUs producers and consumers run on: different cores, so that the
// streaming scenarios measure two sides running at once.
const (
	producerCPU = 0
	consumerCPU = 1
)

// openReader opens the Go implementation impl over the kernel's ring.
func openReader(k *kernel, impl string, size int, perfBytes int) (reader, error) {
	switch impl {
	case Ringo, RingoBatch:
		return newRingoReader(k.objs.Rb, impl == RingoBatch)
	case CiliumRead, CiliumReadInto, DropinRead, DropinReadInto:
		return newRingbufReader(k.objs.Rb, impl)
	case CiliumPerf:
		return newPerfReader(k.objs.Perf, perfBytes, size)
	case FloorCall:
		return newFloorReader(k.objs.Rb.FD(), int(k.objs.Rb.MaxEntries()))
	}
	return nil, fmt.Errorf("bench: no Go reader %q", impl)
}

// consumed is what a consumer goroutine measured.
type consumed struct {
	s       sink
	sp      span
	wakeups float64
	err     error
}

// consume runs r on consumerCPU until done(s), in a goroutine of its own.
// It closes ready when it is about to start (the span starts then).
func consume(r reader, ready chan<- struct{}, done func(*sink) bool) <-chan consumed {
	out := make(chan consumed, 1)
	go func() {
		pinThread(consumerCPU)
		spareThreads()
		var c consumed
		close(ready)
		c.sp.start()
		for !done(&c.s) {
			if c.err = r.read(&c.s); c.err != nil {
				break
			}
		}
		c.sp.stop()
		c.wakeups = r.wakeups()
		out <- c
	}()
	return out
}

// onCPU runs fn on a thread pinned to cpu and returns its error.
func onCPU(cpu int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		pinThread(cpu)
		errc <- fn()
	}()
	return <-errc
}

// drain measures impl consuming a pre-filled ring of ringBytes holding
// records of size bytes, to empty.
func drain(impl string, size, ringBytes int, libbpf *driver) (Result, error) {
	res := Result{Scenario: Drain, Impl: impl, RecordSize: size, WakeupsPer1000: -1}
	k, err := loadKernel(ringBytes, 4096)
	if err != nil {
		return res, err
	}
	defer k.Close()
	count := uint64((ringBytes - 1) / recordSize(size))
	if err := onCPU(producerCPU, func() error { return k.produce(producerCPU, count, uint64(size), 0, howReserve) }); err != nil {
		return res, err
	}
	st, err := k.stats()
	if err != nil {
		return res, err
	}
	if st.Dropped != 0 || st.Produced != count {
		return res, fmt.Errorf("bench: filling the ring: %d records written, %d dropped, want %d and 0", st.Produced, st.Dropped, count)
	}
	if impl == Libbpf {
		out, err := libbpf.consume(k, count, false, nil)
		if err != nil {
			return res, err
		}
		out.result(&res)
		return res, out.check(st.Produced, st.Csum)
	}
	r, err := openReader(k, impl, size, 0)
	if err != nil {
		return res, err
	}
	defer r.Close()
	ready := make(chan struct{})
	c := <-consume(r, ready, func(s *sink) bool { return s.records >= count })
	if c.err != nil {
		return res, fmt.Errorf("bench: %s after %d records: %w", impl, c.s.records, c.err)
	}
	c.sp.result(&res, c.s.records)
	return res, c.s.check(st.Produced, st.Csum)
}

// stream measures impl consuming while the BPF producer writes records of
// size bytes into a ring of ringBytes (or per-CPU perf buffers of that
// size) on another CPU, as f says, then the end record.
func stream(scenario, impl string, size, ringBytes int, f feed, libbpf *driver) (Result, error) {
	res := Result{Scenario: scenario, Impl: impl, RecordSize: size, WakeupsPer1000: -1, Rate: f.rate}
	if f.every != 0 {
		res.Note = fmt.Sprintf("BPF_RB_NO_WAKEUP, BPF_RB_FORCE_WAKEUP every %dth record", f.every)
	}
	k, err := loadKernel(ringBytes, 4096)
	if err != nil {
		return res, err
	}
	defer k.Close()
	var pcpu time.Duration // the producer thread's CPU
	produce := func() error {
		return onCPU(producerCPU, func() (err error) {
			pcpu, err = threadCPUOf(func() error {
				if err := k.feed(producerCPU, uint64(size), f); err != nil {
					return err
				}
				return k.end(producerCPU, f.how)
			})
			return err
		})
	}
	var perr error
	if impl == Libbpf {
		// The harness's own threads, beside the producer's, while
		// libbpf's process consumes: what OtherCPUNsPerRecord of a Go
		// reader holds that is not the reader's.
		proc := processCPU()
		out, err := libbpf.consume(k, 0, true, func() { perr = produce() })
		proc = processCPU() - proc
		if err != nil {
			return res, err
		}
		if perr != nil {
			return res, perr
		}
		st, err := k.stats()
		if err != nil {
			return res, err
		}
		out.result(&res)
		if out.Records > 0 {
			res.OtherCPUNsPerRecord = float64(proc-pcpu) / float64(out.Records)
		}
		res.Drops = st.Dropped
		res.WakeupsPer1000 = 1000 * float64(out.Polls) / float64(max(out.Records, 1))
		return res, out.check(st.Produced, st.Csum)
	}
	r, err := openReader(k, impl, size, ringBytes)
	if err != nil {
		return res, err
	}
	defer r.Close()
	ready := make(chan struct{})
	cc := consume(r, ready, func(s *sink) bool { return s.ended })
	<-ready
	perr = produce()
	c := <-cc
	if perr != nil {
		return res, perr
	}
	if c.err != nil {
		return res, fmt.Errorf("bench: %s after %d records: %w", impl, c.s.records, c.err)
	}
	st, err := k.stats()
	if err != nil {
		return res, err
	}
	c.sp.result(&res, c.s.records)
	c.sp.others(&res, c.s.records, pcpu)
	res.Drops = st.Dropped
	if c.wakeups >= 0 {
		res.WakeupsPer1000 = 1000 * c.wakeups / float64(max(c.s.records, 1))
	}
	return res, c.s.check(st.Produced, st.Csum)
}
