// Package look is what the ringbuf drop-in (github.com/ringo-bpf/ringo/ringbuf)
// needs of ringo's Reader beyond its public API: cilium/ebpf's readers
// take one record per call, under a lock of their own, and their zero-copy
// RawReader hands out discarded records and stores the consumer position
// only when told to. A Ring is that: a look at the one kernel ring of a
// Reader, one record per call, with the Reader's cursor and every one of
// its checks against corrupt memory, but without the Reader's lock, which a
// drop-in that holds its own would pay twice per record. Package ringo
// sets Open; it adds no exported name to ringo.
package look

import "errors"

// ErrEmpty is Next's error when no committed record lies past the look.
var ErrEmpty = errors.New("ringo: no record in the ring")

// ErrBusy is Next's error when the record at the look is still being
// written: a BPF program commits or discards every record it reserves
// (the verifier sees to it), so it is there in a moment.
var ErrBusy = errors.New("ringo: the record at the consumer position is being written")

// A Ring is a look at one kernel ring. Its caller serializes every call,
// and calls no method of the Reader it came from but Close, once no call of
// the Ring runs, nor after.
type Ring interface {
	// Next returns the payload of the record at the look, a view of the
	// ring's memory, and moves the look past it. remain is the producer
	// position, loaded by this call, less the end of the record, as
	// cilium/ebpf's Record.Remaining. A Raw look returns a discarded
	// record as nil data, and a record's view with a capacity that runs
	// on to the end of the ring's doubled data area, as cilium/ebpf's
	// RawReader does; a Reader's skips discarded records, and when
	// it finds no record it first makes its last store a full barrier and
	// looks again, so that a producer that committed meanwhile either saw
	// the position and woke the ring's waiters or has its record found.
	Next() (data []byte, remain int, err error)

	// Take is Next for a Reader's look, then a copy of the record into
	// dst's memory if it is large enough, else into a new slice of
	// exactly its size (as cilium/ebpf's ReadInto allocates), then
	// Store: the record's space is free when it returns.
	Take(dst []byte) (rec []byte, remain int, err error)

	// Store stores the look's position as the ring's consumer position:
	// the space of the records Next moved past is free for producers. A
	// Reader's store is a release store, paid for with a fence by Next
	// before it reports the ring empty; a Raw look's is a full barrier.
	Store()
}

// Open returns a look at the ring of rd, a *ringo.Reader of one KernelRing
// in its default mode. raw says the look is a RawReader's: it shows
// discarded records, and the consumer position moves at Store only (a
// Close of rd does not store it). Set by package ringo.
var Open func(rd any, raw bool) (Ring, error)
