package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/ringo-bpf/ringo"
	"golang.org/x/sys/unix"
)

// userSeq is the sequence number of producer p's i-th record: producers
// write disjoint numbers, so the checksum tells their records apart.
func userSeq(p, i int) uint64 { return uint64(p)<<48 | uint64(i) }

// expectedSum is the checksum of producers x perProducer records of size
// bytes.
func expectedSum(producers, perProducer, size int) uint64 {
	var sum uint64
	for p := range producers {
		for i := range perProducer {
			sum += recordSum(userSeq(p, i), size)
		}
	}
	return sum
}

// userRingo moves records of size bytes from producers goroutines to one
// consumer through an in-process ringo ring of ringBytes: Reserve, fill,
// Commit on the producer side (waiting while the ring is full), the
// Records iterator on the consumer side.
func userRingo(scenario string, producers, size, ringBytes, perProducer int, rate float64) (Result, error) {
	res := Result{Scenario: scenario, Impl: Ringo, RecordSize: size, Rate: rate}
	r, err := ringo.New(ringBytes)
	if err != nil {
		return res, err
	}
	defer r.Close()
	rd, err := ringo.NewReader(r)
	if err != nil {
		return res, err
	}
	defer rd.Close()
	total := uint64(producers * perProducer)
	ready := make(chan struct{})
	ctx := context.Background()
	wait := startProducers(producers, ready, func(p int) error {
		pc := newPacer(rate / float64(producers))
		for i := range perProducer {
			pc.wait()
			v, err := r.ReserveWait(ctx, size)
			if err != nil {
				return err
			}
			fillRecord(v.Bytes(), userSeq(p, i))
			r.Commit(v, 0)
		}
		return nil
	})
	c := consumeUser(producers, ready, func(s *sink) error {
		for rec, err := range rd.Records(context.Background()) {
			if err != nil {
				return err
			}
			s.add(rec.Data)
			if s.records >= total {
				return nil
			}
		}
		return nil
	})
	pcpu, err := wait()
	if err := errors.Join(err, c.err); err != nil {
		return res, err
	}
	c.sp.result(&res, c.s.records)
	c.sp.others(&res, c.s.records, pcpu)
	res.WakeupsPer1000 = 1000 * float64(rd.Wakeups()) / float64(max(c.s.records, 1))
	return res, c.s.check(total, expectedSum(producers, perProducer, size))
}

// startProducers starts producers goroutines running produce(p) once
// ready is closed, the only one pinned to producerCPU when there is one,
// and returns what waits for them and gives their errors, and the CPU time
// the pinned one's thread used (-1 for several producers).
func startProducers(producers int, ready <-chan struct{}, produce func(p int) error) (wait func() (time.Duration, error)) {
	errs := make(chan error, producers)
	cpu := time.Duration(-1)
	for p := range producers {
		go func() {
			if producers == 1 {
				pinThread(producerCPU)
				<-ready
				var err error
				cpu, err = threadCPUOf(func() error { return produce(p) })
				errs <- err
				return
			}
			<-ready
			errs <- produce(p)
		}()
	}
	return func() (time.Duration, error) {
		var all []error
		for range producers {
			all = append(all, <-errs)
		}
		return cpu, errors.Join(all...)
	}
}

// consumeUser runs fn on the consumer (pinned when there is one producer)
// and measures it; ready is closed when it starts.
func consumeUser(producers int, ready chan struct{}, fn func(*sink) error) consumed {
	out := make(chan consumed, 1)
	go func() {
		if producers == 1 {
			pinThread(consumerCPU)
		}
		var c consumed
		c.sp.start()
		close(ready)
		c.err = fn(&c.s)
		c.sp.stop()
		out <- c
	}()
	return <-out
}

// userChan is userRingo through a buffered channel of [size]byte arrays
// holding as many records as the ring, the fastest way a channel carries
// records of a size known at compile time.
func userChan(scenario string, producers, size, ringBytes, perProducer int, rate float64) (Result, error) {
	switch size {
	case 16:
		return chanRun(scenario, producers, size, ringBytes, perProducer, rate, func(a *[16]byte) []byte { return a[:] })
	case 64:
		return chanRun(scenario, producers, size, ringBytes, perProducer, rate, func(a *[64]byte) []byte { return a[:] })
	case 256:
		return chanRun(scenario, producers, size, ringBytes, perProducer, rate, func(a *[256]byte) []byte { return a[:] })
	case 1024:
		return chanRun(scenario, producers, size, ringBytes, perProducer, rate, func(a *[1024]byte) []byte { return a[:] })
	}
	return Result{}, fmt.Errorf("bench: no channel of %d-byte records", size)
}

func chanRun[A any](scenario string, producers, size, ringBytes, perProducer int, rate float64, bytes func(*A) []byte) (Result, error) {
	res := Result{Scenario: scenario, Impl: Chan, RecordSize: size, WakeupsPer1000: -1, Note: "chan [N]byte", Rate: rate}
	ch := make(chan A, ringBytes/recordSize(size))
	total := uint64(producers * perProducer)
	ready := make(chan struct{})
	wait := startProducers(producers, ready, func(p int) error {
		var a A
		pc := newPacer(rate / float64(producers))
		for i := range perProducer {
			pc.wait()
			fillRecord(bytes(&a), userSeq(p, i))
			ch <- a
		}
		return nil
	})
	c := consumeUser(producers, ready, func(s *sink) error {
		for s.records < total {
			a := <-ch
			s.add(bytes(&a))
		}
		return nil
	})
	pcpu, err := wait()
	if err != nil {
		return res, err
	}
	c.sp.result(&res, c.s.records)
	c.sp.others(&res, c.s.records, pcpu)
	return res, c.s.check(total, expectedSum(producers, perProducer, size))
}

// userRing measures records/s from a user-space producer into the
// kernel's user ring, drained by the BPF drain program running in a loop
// on the other CPU. impl is ringo (its UserRing writer) or libbpf
// (user_ring_buffer__reserve/submit in the C driver).
func userRing(impl string, size, ringBytes int, count uint64, libbpf *driver) (Result, error) {
	res := Result{Scenario: UserRing, Impl: impl, RecordSize: size, WakeupsPer1000: -1,
		Note: "cpu_ns_per_record is the producer's; the consumer is the kernel; ringo: WithSingleProducer, one writer as libbpf's"}
	k, err := loadKernel(4096, ringBytes)
	if err != nil {
		return res, err
	}
	defer k.Close()
	// The drainer: runs the drain program until it has seen count records.
	drained := make(chan error, 1)
	startDrain := func() {
		go func() {
			pinThread(consumerCPU)
			var d producerDrained
			for d.Records < count {
				if _, err := k.objs.Drain.Run(&ebpf.RunOptions{}); err != nil {
					drained <- fmt.Errorf("bench: run the drain program: %w", err)
					return
				}
				if err := k.objs.Drained.Get(&d); err != nil {
					drained <- err
					return
				}
				if d.Bad != 0 {
					drained <- fmt.Errorf("bench: the drain program found %d malformed records", d.Bad)
					return
				}
			}
			drained <- nil
		}()
	}
	var wantSum uint64
	if impl == Libbpf {
		var derr error
		out, err := libbpf.produce(k, count, size, func() { startDrain(); derr = <-drained })
		if err != nil {
			return res, err
		}
		if derr != nil {
			return res, derr
		}
		out.result(&res)
		wantSum = out.Csum
	} else {
		// One writer, as libbpf's user_ring_buffer: no lock.
		u, err := ringo.OpenUserRing(k.objs.Urb, ringo.WithSingleProducer())
		if err != nil {
			return res, err
		}
		defer u.Close()
		var c consumed
		err = onCPU(producerCPU, func() error {
			c.sp.start()
			startDrain()
			for i := range count {
				for {
					rec, err := u.Reserve(size)
					if err == nil {
						fillRecord(rec.Bytes(), i)
						if err := u.Commit(rec); err != nil {
							return err
						}
						break
					}
					if !errors.Is(err, ringo.ErrFull) {
						return err
					}
					// As the libbpf driver does: a full ring is
					// drained on the other CPU, so yield the CPU.
					// (runtime.Gosched from this goroutine, locked
					// to its thread, would hand the thread through
					// the scheduler: a few microseconds more.)
					unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
				}
				wantSum += recordSum(i, size)
			}
			err := <-drained
			c.sp.stop()
			return err
		})
		if err != nil {
			return res, err
		}
		c.sp.result(&res, count)
	}
	var d producerDrained
	if err := k.objs.Drained.Get(&d); err != nil {
		return res, err
	}
	s := sink{records: d.Records, csum: d.Csum, bad: d.Bad}
	return res, s.check(count, wantSum)
}
