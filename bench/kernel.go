package bench

import (
	"errors"
	"fmt"
	"time"

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

// A feed is what the producer writes in a streaming run: count attempts,
// with every as the wake-up sampling (0: adaptive; k: FORCE_WAKEUP every
// k-th record, NO_WAKEUP otherwise) and how as the helper. rate, if not 0,
// paces it to that many records a second (see feed); 0 is as fast as it
// goes.
type feed struct {
	count, every uint64
	how          int
	rate         float64
}

// pacedRates are the stream_paced scenario's producer rates, records a
// second: from a quiet tracer's to a busy one's.
var pacedRates = []float64{1e3, 1e4, 1e5, 1e6}

// pacedSize is the paced scenarios' record size, and pacedImpls the
// readers stream_paced runs (user_paced runs Ringo and Chan).
const pacedSize = 64

var pacedImpls = []string{Ringo, RingoBatch, Libbpf, CiliumReadInto, DropinReadInto}

// pacedCount is how many records a paced run of seconds writes at rate.
func pacedCount(rate, seconds float64) uint64 { return uint64(rate * seconds) }

// pacedBurst is how many runs (system calls) a second a paced producer
// makes at most: faster rates write more than a record per run.
const pacedBurst = 100e3

// feed runs the producer on cpu as f says. A paced feed writes bursts
// of rate/100k records (at least one), spaced by a pacer.
func (k *kernel) feed(cpu int, size uint64, f feed) error {
	if f.rate <= 0 {
		return k.produce(cpu, f.count, size, f.every, f.how)
	}
	burst := max(1, uint64(f.rate/pacedBurst))
	p := newPacer(f.rate / float64(burst))
	for left := f.count; left > 0; {
		p.wait()
		n := min(left, burst)
		if err := k.produce(cpu, n, size, f.every, f.how); err != nil {
			return err
		}
		left -= n
	}
	return nil
}

// A pacer spaces a producer's steps to a rate, spinning on the clock in
// between: the producer's CPU is not what the suite measures, and a sleep
// would blur the rate.
type pacer struct {
	next     time.Time
	interval time.Duration
}

// newPacer paces to rate steps a second; 0 is no pacing.
func newPacer(rate float64) pacer {
	if rate <= 0 {
		return pacer{}
	}
	return pacer{next: time.Now(), interval: time.Duration(float64(time.Second) / rate)}
}

// wait returns when the next step is due.
func (p *pacer) wait() {
	if p.interval == 0 {
		return
	}
	for time.Now().Before(p.next) {
	}
	p.next = p.next.Add(p.interval)
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
