package ringo

import "fmt"

// cursor walks the records of one ring from a position: the one piece of
// code that reads record headers, for every kind of ring and every way of
// consuming (Consume, Read, ReadInto, Records, Peek).
//
// It treats the ring's memory as untrusted: a position or header that no
// correct producer writes yields an error wrapping ErrCorrupt that names the
// position, and the cursor never reads outside the doubled data area, never
// moves backwards, and never spins: each step advances by at least a header.
type cursor struct {
	mem  *memory
	pos  uint64 // position of the next header to read
	prod uint64 // producer_pos as last loaded
}

// paceBytes is how much new data a cursor wants to find before it goes on
// without pausing: about two records of 64 bytes.
const paceBytes = 160

// step is what next found at the cursor.
type step int

const (
	stepRecord step = iota // a committed record; its bytes are returned
	stepEmpty              // nothing published past the cursor
	stepBusy               // the record at the cursor is still being written
)

// next returns the record at the cursor, skipping discarded records, without
// moving past it: advance does that once the record has been handled. It
// loads producer_pos again only when the records it saw last are used up.
func (c *cursor) next() ([]byte, uint64, step, error) {
	m := c.mem
	for {
		if c.pos == c.prod {
			// Pairs with the producer's store-release of producer_pos: the
			// headers of every record below it are visible.
			c.prod = m.producerPos.Load()
			if c.pos == c.prod {
				return nil, 0, stepEmpty, nil
			}
			if c.prod-c.pos < paceBytes {
				// Only a record or two: the consumer is right behind a
				// producer that is still writing. Taking them now
				// would chase it record by record, every header's
				// cache line crossing between the cores twice; a
				// moment's pause lets a batch gather.
				pause()
				c.prod = m.producerPos.Load()
			}
		}
		avail := c.prod - c.pos
		if avail > m.size() || c.pos&7 != 0 || avail&7 != 0 {
			return nil, 0, stepEmpty, fmt.Errorf("%w: consumer position %d and producer position %d are %d bytes apart in a %d-byte ring, or not 8-byte aligned",
				ErrCorrupt, c.pos, c.prod, avail, m.size())
		}
		off := c.pos & m.mask
		// Pairs with the producer's commit (xchg of the length word): the
		// payload written before it is visible.
		w := m.lenWord(off).Load()
		if w&BusyBit != 0 {
			return nil, 0, stepBusy, nil
		}
		n := uint64(payloadLen(w))
		total := recordSize(n)
		if total > avail {
			return nil, 0, stepEmpty, fmt.Errorf("%w: the record at position %d claims %d bytes, but only %d bytes are published after it",
				ErrCorrupt, c.pos, n, avail-HeaderSize)
		}
		if w&DiscardBit != 0 {
			c.pos += total
			continue
		}
		p := off + HeaderSize
		return m.data[p : p+n : p+n], total, stepRecord, nil
	}
}
