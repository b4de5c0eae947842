// Package benchreaders puts cilium/ebpf's ringbuf readers and the drop-in
// behind one small interface, for benchmarks: the ringbuf module's own
// (go test -bench . in ringbuf/) and `ringo bench`, whose implementations
// dropin_read and dropin_readinto are Open(m, DropinRead) and
// Open(m, DropinReadInto).
//
// Every implementation is driven the same way, the way a program that
// stops waiting after a while drives cilium's reader: the deadline is set
// WaitLimit ahead, again every refreshEvery reads, and each Read reads one
// record (the lease implementation: a batch of the records there). Setting
// it on every read would cost each implementation a clock read, 47 ns on
// the project's VM, more than cilium's ReadInto of a 16-byte record: the
// figures would compare clocks, not readers.
package benchreaders

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	cilium "github.com/cilium/ebpf/ringbuf"
	"github.com/ringo-bpf/ringo"
	dropin "github.com/ringo-bpf/ringo/ringbuf"
)

// Implementation names, as `ringo bench` and its JSON carry them.
const (
	CiliumRead     = "cilium_read"     // cilium/ebpf v0.22.0 Reader.Read
	CiliumReadInto = "cilium_readinto" // cilium/ebpf v0.22.0 Reader.ReadInto
	DropinRead     = "dropin_read"     // the drop-in's Reader.Read
	DropinReadInto = "dropin_readinto" // the drop-in's Reader.ReadInto
	DropinLease    = "dropin_lease"    // the drop-in's RawReader, a lease per batch
	Ringo          = "ringo"           // ringo's own Reader: Consume, ReadInto to wait
)

// The indexes of the implementations in Impls.
const (
	ciliumRead = iota
	ciliumReadInto
	dropinRead
	dropinReadInto
	dropinLease
	ringoConsume
)

// Impls lists the implementations, cilium's first.
var Impls = []string{CiliumRead, CiliumReadInto, DropinRead, DropinReadInto, DropinLease, Ringo}

// WaitLimit is how long Read waits for a record before it fails with
// ErrNoRecords.
const WaitLimit = 30 * time.Second

// ErrNoRecords is Read's error when no record came for WaitLimit.
var ErrNoRecords = errors.New("benchreaders: no record arrived for 30s")

// leaseBatch is the most samples the lease implementation reads before it
// commits.
const leaseBatch = 256

// Reader is one implementation reading a ring buffer map.
type Reader struct {
	impl string
	kind int // impl's index in Impls: no string compare per read
	c    *cilium.Reader
	crec cilium.Record
	d    *dropin.Reader
	drec dropin.Record
	raw  *dropin.RawReader
	ring *ringo.KernelRing
	rd   *ringo.Reader
	rrec ringo.Record
	each func(ringo.Record) error
	add  func([]byte)
	fn   func(dropin.Lease) error
	left int // reads until the deadline is moved on
}

// refreshEvery is how many reads a deadline serves before it is moved on.
const refreshEvery = 1024

// Open opens implementation impl (one of Impls) on m.
func Open(m *ebpf.Map, impl string) (*Reader, error) {
	r := &Reader{impl: impl, kind: -1}
	for i, name := range Impls {
		if name == impl {
			r.kind = i
		}
	}
	var err error
	switch impl {
	case CiliumRead, CiliumReadInto:
		r.c, err = cilium.NewReader(m)
	case DropinRead, DropinReadInto:
		r.d, err = dropin.NewReader(m)
	case DropinLease:
		r.raw, err = dropin.NewRawReader(m)
		r.fn = r.lease
	case Ringo:
		if r.ring, err = ringo.OpenMap(m); err == nil {
			if r.rd, err = ringo.NewReader(r.ring); err != nil {
				r.ring.Close()
			}
		}
		r.each = func(rec ringo.Record) error { r.add(rec.Data); return nil }
	default:
		return nil, fmt.Errorf("benchreaders: no implementation %q", impl)
	}
	if err != nil {
		return nil, fmt.Errorf("benchreaders: open %s: %w", impl, err)
	}
	return r, nil
}

// Read waits for the next record (or records) and hands each to add, which
// must not keep the slice. It fails with ErrNoRecords after WaitLimit
// without a record.
func (r *Reader) Read(add func([]byte)) error {
	if r.kind == ringoConsume {
		return r.readRingo(add)
	}
	if r.left--; r.left < 0 {
		r.left = refreshEvery
		deadline := time.Now().Add(WaitLimit)
		switch {
		case r.c != nil:
			r.c.SetDeadline(deadline)
		case r.d != nil:
			r.d.SetDeadline(deadline)
		default:
			r.raw.SetDeadline(deadline)
		}
	}
	var err error
	switch r.kind {
	case ciliumRead:
		var rec cilium.Record
		if rec, err = r.c.Read(); err == nil {
			add(rec.RawSample)
		}
	case ciliumReadInto:
		if err = r.c.ReadInto(&r.crec); err == nil {
			add(r.crec.RawSample)
		}
	case dropinRead:
		var rec dropin.Record
		if rec, err = r.d.Read(); err == nil {
			add(rec.RawSample)
		}
	case dropinReadInto:
		if err = r.d.ReadInto(&r.drec); err == nil {
			add(r.drec.RawSample)
		}
	case dropinLease:
		r.add = add
		err = r.raw.WithLease(r.fn)
	}
	if err != nil && (errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, cilium.ErrFlushed) || errors.Is(err, dropin.ErrFlushed)) {
		return ErrNoRecords
	}
	return err
}

// readRingo hands out the records there, views into the ring, and waits
// for one when there are none.
func (r *Reader) readRingo(add func([]byte)) error {
	r.add = add
	if n, err := r.rd.Consume(r.each); n > 0 || err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), WaitLimit)
	defer cancel()
	if err := r.rd.ReadInto(ctx, &r.rrec); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return ErrNoRecords
		}
		return err
	}
	add(r.rrec.Data)
	return nil
}

// lease reads the samples there, up to leaseBatch, and commits them.
func (r *Reader) lease(l dropin.Lease) error {
	for range leaseBatch {
		data, remain, err := l.ReadSample()
		if err != nil {
			return err
		}
		if data != nil {
			r.add(data)
		}
		if remain == 0 {
			break
		}
	}
	l.Commit()
	return nil
}

// Close closes the reader.
func (r *Reader) Close() error {
	switch {
	case r.c != nil:
		return r.c.Close()
	case r.d != nil:
		return r.d.Close()
	case r.rd != nil:
		return errors.Join(r.rd.Close(), r.ring.Close())
	default:
		return r.raw.Close()
	}
}
