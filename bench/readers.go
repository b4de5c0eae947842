package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/perf"
	"github.com/ringo-bpf/ringo"
	"github.com/ringo-bpf/ringo/ringbuf/benchreaders"
)

// A reader is one Go implementation consuming the benchmark's kernel
// ring (or perf buffer). read blocks until it has added at least one
// record to s, or fails after waitLimit without one.
type reader interface {
	read(s *sink) error
	// wakeups is how many times the reader was woken from a sleep, or -1
	// where the implementation does not say.
	wakeups() float64
	Close() error
}

// waitLimit is how long a reader waits for a record before the run is
// called failed.
const waitLimit = 30 * time.Second

var errNoRecords = errors.New("no record arrived for 30s")

// The readers' harness costs the same for every implementation: no clock
// is read per record or per call. Each reader sets one deadline, waitLimit
// away, when it starts, and when a wait runs into it, sets another if
// records arrived since (deadline.expired); only a wait that saw none for
// waitLimit fails.
type deadline struct {
	at      time.Time
	records uint64 // the sink's count when at was set
}

// set starts a waitLimit from now.
func (d *deadline) set(s *sink) time.Time {
	d.at, d.records = time.Now().Add(waitLimit), s.records
	return d.at
}

// expired is called when a wait ran into the deadline: it reports whether
// no record arrived in the whole waitLimit (a failure), and otherwise sets
// the next deadline.
func (d *deadline) expired(s *sink) bool {
	if s.records == d.records {
		return true
	}
	d.set(s)
	return false
}

// ringoReader is ringo's Reader over the kernel ring: Consume (or, batch
// set, ConsumeBatch) hands out views into the ring, with ReadInto to sleep
// when it is empty.
type ringoReader struct {
	ring   *ringo.KernelRing
	rd     *ringo.Reader
	rec    ringo.Record
	fn     func(ringo.Record) error
	batch  func(ringo.Source, *ringo.Batch) error
	s      *sink
	dl     deadline
	ctx    context.Context
	cancel context.CancelFunc
}

func newRingoReader(m *ebpf.Map, batch bool) (reader, error) {
	kr, err := ringo.OpenMap(m)
	if err != nil {
		return nil, err
	}
	rd, err := ringo.NewReader(kr)
	if err != nil {
		kr.Close()
		return nil, err
	}
	r := &ringoReader{ring: kr, rd: rd}
	if batch {
		r.batch = func(_ ringo.Source, b *ringo.Batch) error {
			s := r.s
			for data := range b.All() {
				s.add(data)
			}
			return nil
		}
	} else {
		r.fn = func(rec ringo.Record) error { r.s.add(rec.Data); return nil }
	}
	return r, nil
}

func (r *ringoReader) read(s *sink) error {
	r.s = s
	var n int
	var err error
	if r.batch != nil {
		n, err = r.rd.ConsumeBatch(r.batch)
	} else {
		n, err = r.rd.Consume(r.fn)
	}
	if n > 0 || err != nil {
		return err
	}
	for {
		if r.ctx == nil {
			r.ctx, r.cancel = context.WithDeadline(context.Background(), r.dl.set(s))
		}
		err := r.rd.ReadInto(r.ctx, &r.rec)
		if errors.Is(err, context.DeadlineExceeded) {
			r.cancel()
			r.ctx = nil
			if r.dl.expired(s) {
				return errNoRecords
			}
			continue
		}
		if err != nil {
			return err
		}
		s.add(r.rec.Data)
		return nil
	}
}

func (r *ringoReader) wakeups() float64 { return float64(r.rd.Wakeups()) }

func (r *ringoReader) Close() error {
	if r.cancel != nil {
		r.cancel()
	}
	return errors.Join(r.rd.Close(), r.ring.Close())
}

// ringbufReader is a Reader of cilium/ebpf's ringbuf package or of the
// drop-in (github.com/ringo-bpf/ringo/ringbuf), as the drop-in's own
// benchmarks drive them: benchreaders.Open(m, impl), impl being one of
// CiliumRead, CiliumReadInto, DropinRead and DropinReadInto (the same
// names in both).
type ringbufReader struct {
	r   *benchreaders.Reader
	s   *sink
	add func([]byte) // s.add, made once: a method value per read would allocate
}

func newRingbufReader(m *ebpf.Map, impl string) (reader, error) {
	r, err := benchreaders.Open(m, impl)
	if err != nil {
		return nil, err
	}
	return &ringbufReader{r: r}, nil
}

func (r *ringbufReader) read(s *sink) error {
	if r.s != s {
		r.s, r.add = s, s.add
	}
	if err := r.r.Read(r.add); err != nil {
		if errors.Is(err, benchreaders.ErrNoRecords) {
			return errNoRecords
		}
		return err
	}
	return nil
}

func (r *ringbufReader) wakeups() float64 { return -1 }
func (r *ringbufReader) Close() error     { return r.r.Close() }

func ciliumErr(err error) error {
	if errors.Is(err, perf.ErrFlushed) || errors.Is(err, os.ErrDeadlineExceeded) {
		return errNoRecords
	}
	return err
}

// perfReader is cilium/ebpf's perf.Reader with ReadInto. perf pads each
// sample, so the record is cut back to the size the producer wrote.
type perfReader struct {
	rd   *perf.Reader
	size int
	rec  perf.Record
	lost uint64
	dl   deadline
	set  bool
}

func newPerfReader(m *ebpf.Map, perCPU, size int) (reader, error) {
	rd, err := perf.NewReader(m, perCPU)
	if err != nil {
		return nil, fmt.Errorf("cilium perf.NewReader: %w", err)
	}
	return &perfReader{rd: rd, size: size}, nil
}

func (r *perfReader) read(s *sink) error {
	if !r.set {
		r.rd.SetDeadline(r.dl.set(s))
		r.set = true
	}
	for {
		err := r.rd.ReadInto(&r.rec)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) || r.dl.expired(s) {
			return ciliumErr(err)
		}
		r.rd.SetDeadline(r.dl.at)
	}
	if r.rec.LostSamples != 0 {
		r.lost += r.rec.LostSamples
		return nil
	}
	b := r.rec.RawSample
	if n := r.size; len(b) >= 8 && binary.LittleEndian.Uint64(b) == endHead {
		b = b[:min(len(b), 16)] // the 16-byte end record
	} else if len(b) > n {
		b = b[:n]
	}
	s.add(b)
	return nil
}

func (r *perfReader) wakeups() float64 { return -1 }
func (r *perfReader) Close() error     { return r.rd.Close() }
