package ringo

import (
	"errors"
)

// Inspectable is any ring of this package: *Ring (in-process or shared),
// *KernelRing and *UserRing. Peek and Meter look at its memory without
// consuming, so they work beside a running consumer, even one in another
// process or in the kernel.
type Inspectable interface {
	Positions() Positions
	Size() int
	ringView() *ringMem
}

// errStopPeek ends a walk early without an error for the caller.
var errStopPeek = errors.New("stop")

// Peek hands fn a copy of each committed record of ring that its consumer
// has not consumed yet, oldest first, up to the producer position it finds
// when it starts. It consumes nothing and does not take the consumer's
// place, so it may run while a consumer reads the ring: records that the
// consumer takes meanwhile end the walk (their bytes may already be
// overwritten), and each record handed to fn was checked to be intact
// after it was copied. Peek stops at a record still being written. It
// returns how many records fn saw and the first error fn returned.
//
// Record.Source is the ring for *Ring and *KernelRing, and nil for a
// *UserRing, which no Reader can consume.
func Peek(ring Inspectable, fn func(Record) error) (n int, err error) {
	v := ring.ringView()
	if v.guarded {
		defer v.catchFault(guardFaults(), &err)
	}
	m := v.mem
	src, _ := ring.(Source)
	c := cursor{mem: m, pos: m.consumerPos.Load()}
	end := m.producerPos.Load()
	c.prod = end
	var buf []byte
	for int64(end-c.pos) > 0 { // (in overwrite mode the cursor may jump past end)
		data, total, st, err := c.next()
		if err != nil {
			if consumedPast(m, c.pos) {
				return n, nil // the consumer moved on while we looked
			}
			return n, err
		}
		if st != stepRecord {
			return n, nil
		}
		buf = append(buf[:0], data...)
		if consumedPast(m, c.pos) {
			return n, nil
		}
		n++
		if err := fn(Record{Source: src, Pos: c.pos, Data: buf[:len(buf):len(buf)]}); err != nil {
			if err == errStopPeek {
				return n, nil
			}
			return n, err
		}
		buf = nil // fn may keep the copy
		c.pos += total
	}
	return n, nil
}

// consumedPast reports whether the consumer has moved past pos, so that the
// record there may have been overwritten by producers.
func consumedPast(m *memory, pos uint64) bool {
	return int64(m.consumerPos.Load()-pos) > 0
}

// A Meter counts the records and payload bytes that producers publish to a
// ring, by walking the headers between one look at producer_pos and the
// next. It never consumes and needs no consumer. The zero Meter is not
// usable; make one with NewMeter.
type Meter struct {
	mem  *memory
	ring *ringMem // a shared ring, whose memory may fault (faults.go), or nil
	pos  uint64   // position of the next header to count
	avg  uint64   // record size (header included) seen last, for estimates
}

// Traffic is what a Meter counted since its last sample.
type Traffic struct {
	// Records and Bytes count committed records and their payload bytes;
	// discarded records are not counted.
	Records, Bytes uint64
	// Estimated is true when producers wrote faster than the Meter looked
	// and overwrote headers it had not counted yet: Records then includes
	// an estimate for those bytes, at the average record size seen.
	Estimated bool
	// Positions are the ring's positions at the sample.
	Positions Positions
}

// NewMeter returns a Meter that counts from ring's current producer
// position on.
func NewMeter(ring Inspectable) (mt *Meter) {
	v := ring.ringView()
	mt = &Meter{mem: v.mem}
	if v.guarded {
		mt.ring = v
		var err error
		defer v.catchFault(guardFaults(), &err)
	}
	mt.pos = mt.mem.producerPos.Load()
	return mt
}

// Sample counts what producers published since the last sample (or since
// NewMeter). A record still being written is counted by a later sample.
func (mt *Meter) Sample() (t Traffic) {
	if mt.ring != nil {
		// A fault (the ring's file truncated) leaves what was counted.
		var err error
		defer mt.ring.catchFault(guardFaults(), &err)
	}
	m := mt.mem
	c := cursor{mem: m, pos: mt.pos}
	end := m.producerPos.Load()
	c.prod = end
	for int64(end-c.pos) > 0 { // (in overwrite mode the cursor may jump past end)
		data, total, st, err := c.next()
		if err == nil && overrun(m, c.pos) {
			err = errOverrun
		}
		if err != nil {
			// Producers overwrote headers the meter had not read:
			// estimate the bytes from there to end at the average
			// record size of what they write now.
			avg := mt.recentRecordSize(t)
			rest := end - c.pos
			if int64(rest) < 0 {
				rest = 0
			}
			t.Records += rest / avg
			t.Bytes += rest / avg * (avg - HeaderSize)
			t.Estimated = true
			c.pos = end
			break
		}
		if st != stepRecord {
			break // busy: counted next time; or only discards were left
		}
		t.Records++
		t.Bytes += uint64(len(data))
		c.pos += total
	}
	if t.Records > 0 && !t.Estimated {
		mt.avg = recordSize(t.Bytes / t.Records)
	}
	mt.pos = c.pos
	t.Positions = m.positions()
	return t
}

var errOverrun = errors.New("overrun")

// overrun reports whether producers have reserved past pos+size, so that
// what was read at pos may already be a newer record's bytes.
func overrun(m *memory, pos uint64) bool { return m.producerPos.Load()-pos > m.size() }

// recentRecordSize is the average size (header included) of the records
// counted in t, else of those counted before, else of the records now in
// the ring between the consumer and the producer, else 72 (64-byte
// payloads).
func (mt *Meter) recentRecordSize(t Traffic) uint64 {
	if t.Records > 0 {
		return recordSize(t.Bytes / t.Records)
	}
	if mt.avg != 0 {
		return mt.avg
	}
	m := mt.mem
	c := cursor{mem: m, pos: m.consumerPos.Load()}
	c.prod = m.producerPos.Load()
	var n, bytes uint64
	for n < 64 && c.pos != c.prod {
		data, total, st, err := c.next()
		if err != nil || st != stepRecord || overrun(m, c.pos) {
			break
		}
		n, bytes = n+1, bytes+uint64(len(data))
		c.pos += total
	}
	if n == 0 {
		return recordSize(64)
	}
	return recordSize(bytes / n)
}
