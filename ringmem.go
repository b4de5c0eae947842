package ringo

import (
	"github.com/ringo-bpf/ringo/internal/sys"
)

// ringMem is what every kind of ring (Ring, KernelRing, UserRing) holds: its
// memory, as the consumer and the producers see it, and the mapping behind
// it, with the accessors every kind has. Those of a shared ring, whose file
// anyone with write access may truncate under the mapping, guard against
// faults (faults.go).
type ringMem struct {
	mem     *memory
	mapping *sys.Mapping
	// guarded is set for shared rings: accesses to the memory turn a fault
	// into an error. label names the ring in those errors.
	guarded bool
	label   string
}

// String names the ring, for records and errors: a ring's name, or a
// kernel map's type, ID and name ("ringbuf 12 (events)").
func (v *ringMem) String() string { return v.label }

// Size returns the size of the data area in bytes.
func (v *ringMem) Size() int { return int(v.mem.size()) }

// Query returns a property of the ring, like bpf_ringbuf_query, read from
// user space. The values are a snapshot that producers and the consumer may
// change at once. An unknown property, for which the helper returns 0, is
// an error wrapping syscall.EINVAL.
func (v *ringMem) Query(p Prop) (val uint64, err error) {
	if v.guarded {
		defer v.catchFault(guardFaults(), &err)
	}
	return v.mem.query(p)
}

// Positions returns the consumer, producer and pending positions (and the
// overwrite position of a ring in overwrite mode), read as one snapshot; zero
// if a shared ring's memory faults. A user ring has no pending position: it
// reads 0.
func (v *ringMem) Positions() (p Positions) {
	if v.guarded {
		var err error
		defer v.catchFault(guardFaults(), &err)
	}
	return v.mem.positions()
}

// Overwrite reports whether the ring is in overwrite mode (FlagOverwrite,
// WithOverwrite).
func (v *ringMem) Overwrite() bool { return v.mem.overwritePos != nil }

func (v *ringMem) ringView() *ringMem { return v }
