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

// ErrEmpty is the error of Take and Next when no committed record lies past
// the look.
var ErrEmpty = errors.New("ringo: no record in the ring")

// ErrBusy is the error of Take and Next when the record at the look is
// still being written: a BPF program commits or discards every record it
// reserves (the verifier sees to it), so it is there in a moment.
var ErrBusy = errors.New("ringo: the record at the consumer position is being written")

// A Ring is a look at one kernel ring: a Reader's look is used with Take,
// a Raw look with Next and Store (the others panic). Its caller serializes
// every call, and calls no method of the Reader it came from but Close,
// once no call of the Ring runs, nor after.
type Ring interface {
	// Take returns a copy of the payload of the record at a Reader's
	// look, in dst's memory if it is large enough, else in a new slice of
	// exactly its size (as cilium/ebpf's ReadInto allocates), skipping
	// discarded records, and stores the consumer position past it: the
	// record's space is free when Take returns. remain is the producer
	// position, loaded by this call, less the end of the record, as
	// cilium/ebpf's Record.Remaining. The store is a release store;
	// before Take reports the ring empty it stores the position with a
	// full barrier (also past discarded records it skipped) and looks
	// again, so that a producer that committed meanwhile either saw the
	// position and woke the ring's waiters or has its record found.
	Take(dst []byte) (rec []byte, remain int, err error)

	// Next returns the payload of the record at a Raw look, a view of the
	// ring's memory whose capacity runs on to the end of the ring's
	// doubled data area (as cilium/ebpf's RawReader's), or nil data for a
	// discarded record, and moves the look past it; remain as Take's.
	// The consumer position does not move.
	Next() (data []byte, remain int, err error)

	// Store stores a Raw look's position as the ring's consumer position,
	// with a full barrier: the space of the records Next moved past is
	// free for producers.
	Store()
}

// Open returns a look at the ring of rd, a *ringo.Reader of one KernelRing
// in its default mode: a Reader's, or with raw a RawReader's, whose
// consumer position moves at Store only (a Close of rd does not store it).
// Set by package ringo.
var Open func(rd any, raw bool) (Ring, error)
