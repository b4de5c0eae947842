package bench

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The producer program's ways of writing records (its ARG_HOW).
const (
	howReserve = 0 // bpf_ringbuf_reserve + bpf_ringbuf_submit
	howOutput  = 1 // bpf_ringbuf_output
	howPerf    = 2 // bpf_perf_event_output
)

// endHead is the head of the sentinel record that ends a streaming run.
const endHead = ^uint64(0)

// golden is what a record's tail is its head times.
const golden = 0x9E3779B97F4A7C15

// maxLoop is the most records one run of the producer writes: bpf_loop's
// limit is 1<<23, and shorter runs let the consumer's wake-ups through.
const maxLoop = 1 << 16

// kernel is the benchmarks' BPF side: the producer program, the rings it
// writes (rb, perf) and the user ring its drain program empties (urb).
type kernel struct {
	objs producerObjects
}

// loadKernel loads the producer with a ring buffer of ringSize bytes and
// a user ring of userSize bytes.
func loadKernel(ringSize, userSize int) (*kernel, error) {
	spec, err := loadProducer()
	if err != nil {
		return nil, err
	}
	spec.Maps["rb"].MaxEntries = uint32(ringSize)
	spec.Maps["urb"].MaxEntries = uint32(userSize)
	k := &kernel{}
	if err := spec.LoadAndAssign(&k.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("bench: load the producer program: %+v", ve)
		}
		return nil, fmt.Errorf("bench: load the producer program (BPF needs root or CAP_BPF+CAP_PERFMON): %w", err)
	}
	return k, nil
}

func (k *kernel) Close() error { return k.objs.Close() }

// produce runs the producer on cpu until it has attempted count records
// of size bytes, in runs of at most maxLoop. every is the wake-up sampling
// (0: adaptive; k: FORCE_WAKEUP every k-th record, NO_WAKEUP otherwise).
func (k *kernel) produce(cpu int, count, size, every uint64, how int) error {
	for count > 0 {
		n := min(count, maxLoop)
		ctx := []uint64{n, size, every, uint64(how)}
		ret, err := k.objs.Produce.Run(&ebpf.RunOptions{Context: ctx, CPU: uint32(cpu), Flags: unix.BPF_F_TEST_RUN_ON_CPU})
		if err != nil {
			return fmt.Errorf("bench: run the producer on CPU %d: %w", cpu, err)
		}
		if ret != 0 {
			return fmt.Errorf("bench: the producer refused %d-byte records (returned %d)", size, int32(ret))
		}
		count -= n
	}
	return nil
}

// end writes the sentinel that ends a streaming run, retrying while the
// ring is full.
func (k *kernel) end(cpu int, how int) error {
	ctx := []uint64{0, 0, 0, uint64(how)}
	for {
		ret, err := k.objs.Sentinel.Run(&ebpf.RunOptions{Context: ctx, CPU: uint32(cpu), Flags: unix.BPF_F_TEST_RUN_ON_CPU})
		if err != nil {
			return fmt.Errorf("bench: run the sentinel program: %w", err)
		}
		if ret == 0 {
			return nil
		}
	}
}

// stats returns what the producer counted since the last reset.
func (k *kernel) stats() (producerStats, error) {
	var s producerStats
	err := k.objs.Stats.Get(&s)
	return s, err
}

// reset zeroes the producer's counters (sequence numbers restart at 0).
func (k *kernel) reset() error {
	if err := k.objs.Stats.Set(producerStats{}); err != nil {
		return err
	}
	return k.objs.Drained.Set(producerDrained{})
}
