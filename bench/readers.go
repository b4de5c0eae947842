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
	"github.com/cilium/ebpf/ringbuf"
	"github.com/ringo-bpf/ringo"
)

// A reader is one Go implementation consuming the benchmark's kernel
// ring (or perf buffer). read blocks until it has added at least one
// record to s, or fails after waitLimit without one.
type reader interface {
	read(s *sink) error
	// wakeups is how many times the reader returned from epoll, or -1
	// where the implementation does not say.
	wakeups() float64
	Close() error
}

// waitLimit is how long a reader waits for a record before the run is
// called failed.
const waitLimit = 30 * time.Second

var errNoRecords = errors.New("no record arrived for 30s")

// ringoReader is ringo's Reader over the kernel ring: Consume hands out
// views into the ring, with ReadInto to sleep when it is empty.
type ringoReader struct {
	ring *ringo.KernelRing
	rd   *ringo.Reader
	rec  ringo.Record
	fn   func(ringo.Record) error
	s    *sink
}

func newRingoReader(m *ebpf.Map) (reader, error) {
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
	r.fn = func(rec ringo.Record) error { r.s.add(rec.Data); return nil }
	return r, nil
}

func (r *ringoReader) read(s *sink) error {
	r.s = s
	n, err := r.rd.Consume(r.fn)
	if n > 0 || err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := r.rd.ReadInto(ctx, &r.rec); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return errNoRecords
		}
		return err
	}
	s.add(r.rec.Data)
	return nil
}

func (r *ringoReader) wakeups() float64 { return float64(r.rd.Wakeups()) }

func (r *ringoReader) Close() error {
	return errors.Join(r.rd.Close(), r.ring.Close())
}

// ciliumReader is cilium/ebpf's ringbuf.Reader, with Read (a new record
// per call) or ReadInto (one reused).
type ciliumReader struct {
	rd   *ringbuf.Reader
	into bool
	rec  ringbuf.Record
}

func newCiliumReader(m *ebpf.Map, into bool) (reader, error) {
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, fmt.Errorf("cilium ringbuf.NewReader: %w", err)
	}
	return &ciliumReader{rd: rd, into: into}, nil
}

func (r *ciliumReader) read(s *sink) error {
	r.rd.SetDeadline(time.Now().Add(waitLimit))
	if r.into {
		if err := r.rd.ReadInto(&r.rec); err != nil {
			return ciliumErr(err)
		}
		s.add(r.rec.RawSample)
		return nil
	}
	rec, err := r.rd.Read()
	if err != nil {
		return ciliumErr(err)
	}
	s.add(rec.RawSample)
	return nil
}

func ciliumErr(err error) error {
	if errors.Is(err, ringbuf.ErrFlushed) || errors.Is(err, perf.ErrFlushed) || errors.Is(err, os.ErrDeadlineExceeded) {
		return errNoRecords
	}
	return err
}

func (r *ciliumReader) wakeups() float64 { return -1 }
func (r *ciliumReader) Close() error     { return r.rd.Close() }

// perfReader is cilium/ebpf's perf.Reader with ReadInto. perf pads each
// sample, so the record is cut back to the size the producer wrote.
type perfReader struct {
	rd   *perf.Reader
	size int
	rec  perf.Record
	lost uint64
}

func newPerfReader(m *ebpf.Map, perCPU, size int) (reader, error) {
	rd, err := perf.NewReader(m, perCPU)
	if err != nil {
		return nil, fmt.Errorf("cilium perf.NewReader: %w", err)
	}
	return &perfReader{rd: rd, size: size}, nil
}

func (r *perfReader) read(s *sink) error {
	r.rd.SetDeadline(time.Now().Add(waitLimit))
	if err := r.rd.ReadInto(&r.rec); err != nil {
		return ciliumErr(err)
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
