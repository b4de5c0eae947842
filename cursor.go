package ringo

import (
	"fmt"
	"sync/atomic"
)

// cursor walks the records of one ring from a position: the one piece of
// code that reads record headers, for every kind of ring and every way of
// consuming (Consume, Read, ReadInto, Records, Peek, the drop-in's look).
//
// It treats the ring's memory as untrusted: a position or header that no
// correct producer writes yields an error wrapping ErrCorrupt that names the
// position, and the cursor never reads outside the doubled data area, never
// moves backwards, and never spins: each step advances by at least a header.
type cursor struct {
	mem  *memory
	pos  uint64 // position of the next header to read
	prod uint64 // producer_pos as last loaded

	// Overwrite mode only: records are copied into buf, since producers
	// may overwrite them while they are read; count is the number of
	// committed records before pos (when the ring keeps counts); lost and
	// lostBytes are what producers overwrote before the cursor got to it,
	// not yet added to the ring's counters.
	buf             []byte
	count           uint64
	lost, lostBytes uint64
	fence           uint64 // see nextOverwrite

	// For Reader.Stats: the payload length of the record next returned
	// last, and the records and payload bytes passed so far.
	lastLen          uint64
	passed, passedBy uint64
	// last is the position of the record passed last, for the kernel
	// rings' store of consumer_pos while the consumer goes on (see
	// readerRing.store).
	last uint64
	// showDiscarded has next return discarded records (stepDiscarded)
	// instead of skipping them: for the drop-in's RawReader (look.go).
	showDiscarded bool
}

// pass moves the cursor past a record of total bytes that next returned.
func (c *cursor) pass(total uint64) {
	c.last = c.pos
	c.pos += total
	c.count++
	c.passed++
	c.passedBy += c.lastLen
}

// paceBytes is how much new data a cursor wants to find before it goes on
// without waiting for more (gatherBatch): about two records of 64 bytes;
// and paceRecords how many records of the last length. A cursor right
// behind producers of large records would otherwise take each as it is
// published, every cache line it reads still in the producer's core
// (BenchmarkStream, 256 B: 300 ns a record), where one a few records behind
// reads them at the drain's cost.
const (
	paceBytes   = 160
	paceRecords = 8
)

// step is what next found at the cursor.
type step int

const (
	stepRecord    step = iota // a committed record; its bytes are returned
	stepEmpty                 // nothing published past the cursor
	stepBusy                  // the record at the cursor is still being written
	stepDiscarded             // a discarded record, with showDiscarded only
)

// next returns the record at the cursor, skipping discarded records (unless
// showDiscarded), without moving past it: advance does that once the record
// has been handled. It loads producer_pos again only when the records it saw
// last are used up.
func (c *cursor) next() ([]byte, uint64, step, error) {
	m := c.mem
	if m.overwritePos != nil {
		return c.nextOverwrite()
	}
	for {
		if c.pos == c.prod {
			// Pairs with the producer's store-release of producer_pos: the
			// headers of every record below it are visible.
			c.prod = m.producerPos.Load()
			if c.pos == c.prod {
				return nil, 0, stepEmpty, nil
			}
			if c.prod-c.pos < max(paceBytes, paceRecords*recordSize(c.lastLen)) {
				// Only a record or two: the consumer may be right
				// behind a producer that is still writing. (Counted
				// in records as well as bytes: see paceRecords.)
				c.prod = gatherBatch(m, c.prod)
			}
		}
		avail := c.prod - c.pos
		if avail > m.size() || c.pos&7 != 0 || avail&7 != 0 {
			return nil, 0, stepEmpty, corruptDistance(c.pos, c.prod, m.size())
		}
		off := c.pos & m.mask
		// Pairs with the producer's commit (xchg of the length word): the
		// payload written before it is visible.
		w := m.lenWord(off).Load()
		if w&busyBit != 0 {
			return nil, 0, stepBusy, nil
		}
		n := uint64(payloadLen(w))
		total := recordSize(n)
		if total > avail {
			return nil, 0, stepEmpty, corruptLength(c.pos, n, avail)
		}
		if w&discardBit != 0 {
			if c.showDiscarded {
				return nil, total, stepDiscarded, nil
			}
			c.pos += total
			continue
		}
		p := off + HeaderSize
		if total >= prefetchRecords && avail > prefetchDistance*total {
			// Large records: ask for the header a few records on
			// (records of a ring tend to be alike) while this one is
			// handled. Small ones are covered by the hardware's
			// prefetcher, and the hint would cost more than it saves.
			prefetchRead(&m.data[(off+prefetchDistance*total)&m.mask])
		}
		c.lastLen = n
		return m.data[p : p+n : p+n], total, stepRecord, nil
	}
}

// gatherBatch waits a moment for more records when a cursor has found
// only a record or two past it, producer_pos at prod: taking them at once
// would chase a producer that is still writing, record by record, every
// header's cache line crossing between the cores twice, where a moment's
// wait turns that into one pass over a batch. It waits a gatherStep at a
// time, up to gatherSteps, and only while the producer moves on: one that
// writes now and then is left at once, since a wait for it would be lost
// each time (BenchmarkStreamPaced: 1.6 µs of a fixed wait per record, where
// the record itself costs 2 µs at 100 k records/s). It returns producer_pos
// as last loaded.
func gatherBatch(m *memory, prod uint64) uint64 {
	for range gatherSteps {
		cpuPause(gatherStep)
		if m.gatherStepped != nil {
			m.gatherStepped()
		}
		// Pairs with the producer's store-release: see next.
		p := m.producerPos.Load()
		if p == prod {
			break
		}
		prod = p
	}
	return prod
}

// gatherStep is how many PAUSE instructions gatherBatch waits at a time
// (each takes tens of cycles on current x86 cores: 8 are 0.2 µs on an AMD
// EPYC, BenchmarkPause), gatherSteps how many times at most.
const (
	gatherStep  = 8
	gatherSteps = 8
)

// reload loads producer_pos for a Batch's walk (batch.go), once it has
// passed every record published before, and checks it against the
// position pos reached: next's load and checks, pacing as next does while
// fewer than pace bytes are new.
func (rr *readerRing) reload(pos, pace uint64) (uint64, error) {
	c, m := &rr.cur, rr.cur.mem
	// Pairs with the producer's store-release of producer_pos: the
	// headers of every record below it are visible.
	prod := m.producerPos.Load()
	if pos == prod {
		return prod, nil
	}
	if prod-pos < pace {
		prod = gatherBatch(m, prod) // see next
	}
	c.prod = prod
	return prod, checkDistance(pos, prod, m.size())
}

// checkDistance is next's check of the cursor's position pos against the
// producer position prod in a ring of size bytes.
func checkDistance(pos, prod, size uint64) error {
	if avail := prod - pos; avail > size || pos&7 != 0 || avail&7 != 0 {
		return corruptDistance(pos, prod, size)
	}
	return nil
}

// corruptDistance and corruptLength are next's errors for a producer
// position and a record that no correct producer writes.
func corruptDistance(pos, prod, size uint64) error {
	return fmt.Errorf("%w: consumer position %d and producer position %d are %d bytes apart in a %d-byte ring, or not 8-byte aligned",
		ErrCorrupt, pos, prod, prod-pos, size)
}

func corruptLength(pos, n, avail uint64) error {
	return fmt.Errorf("%w: the record at position %d claims %d bytes, but only %d bytes are published after it",
		ErrCorrupt, pos, n, avail-HeaderSize)
}

// Read-ahead in the cursor: for records of prefetchRecords bytes or more,
// the header prefetchDistance records on is prefetched.
const (
	prefetchRecords  = 256
	prefetchDistance = 4
)

// nextOverwrite is next for a ring in overwrite mode, whose producers do
// not wait for the consumer: when full they overwrite the oldest records
// and move overwrite_pos past them. The cursor jumps to overwrite_pos when
// it is behind it, and copies each record before handing it out, checking
// after the copy that overwrite_pos has not passed the record meanwhile: a
// record overwritten while it was read is never handed out torn.
func (c *cursor) nextOverwrite() ([]byte, uint64, step, error) {
	m := c.mem
	for {
		if c.pos == c.prod {
			c.prod = m.producerPos.Load()
			if c.pos == c.prod {
				return nil, 0, stepEmpty, nil
			}
		}
		// Loaded after producer_pos: producers store overwrite_pos
		// before they publish producer_pos.
		if c.overwritten() {
			c.skipOverwritten()
			continue
		}
		avail := c.prod - c.pos
		if avail > m.size() || c.pos&7 != 0 || avail&7 != 0 {
			if c.pos&7 == 0 && c.reload() {
				continue // producers ran on meanwhile
			}
			return nil, 0, stepEmpty, fmt.Errorf("%w: consumer position %d and producer position %d are %d bytes apart in a %d-byte ring, or not 8-byte aligned",
				ErrCorrupt, c.pos, c.prod, avail, m.size())
		}
		off := c.pos & m.mask
		w := m.lenWord(off).Load()
		n := uint64(payloadLen(w))
		total := recordSize(n)
		switch {
		case w&busyBit != 0:
			if c.overwritten() {
				continue
			}
			return nil, 0, stepBusy, nil
		case total > avail:
			if c.reload() {
				continue
			}
			return nil, 0, stepEmpty, fmt.Errorf("%w: the record at position %d claims %d bytes, but only %d bytes are published after it",
				ErrCorrupt, c.pos, n, avail-HeaderSize)
		case w&discardBit == 0:
			// The copy keeps a header's room before it, where
			// ConsumeBatch's entries expect a payload (batch.go).
			if cap(c.buf) < HeaderSize {
				c.buf = make([]byte, HeaderSize, 64)
			}
			p := off + HeaderSize
			c.buf = append(c.buf[:HeaderSize], m.data[p:p+n]...)
		}
		// The copy is good only if no producer overwrote the record
		// while it was made: the producer moves overwrite_pos past a
		// record (a sequentially consistent store) before it writes a
		// byte of it. The store to fence orders the copy's loads before
		// the load of overwrite_pos on every architecture (a store-release
		// waits for earlier loads, and the load-acquire after it does not
		// pass it; on amd64 loads are not reordered anyway): the kernel
		// seqlock's smp_rmb.
		atomic.StoreUint64(&c.fence, 0)
		if c.overwritten() {
			continue
		}
		if w&discardBit != 0 {
			c.pos += total
			continue
		}
		c.lastLen = n
		return c.buf[HeaderSize : HeaderSize+n : HeaderSize+n], total, stepRecord, nil
	}
}

// overwritten reports whether producers have overwritten the record at
// the cursor.
func (c *cursor) overwritten() bool {
	return int64(c.mem.overwritePos.Load()-c.pos) > 0
}

// reload loads producer_pos again and reports whether what looked corrupt
// may have been producers lapping the cursor since the last load.
func (c *cursor) reload() bool {
	c.prod = c.mem.producerPos.Load()
	return c.overwritten()
}

// skipOverwritten moves the cursor to overwrite_pos, noting what was lost:
// the bytes in between and, where the ring keeps counts, the committed
// records (overwrite_pos's count minus the cursor's).
func (c *cursor) skipOverwritten() {
	m := c.mem
	over, count := m.overwriteMark()
	if int64(over-c.pos) <= 0 {
		return
	}
	c.lostBytes += over - c.pos
	if m.overCount != nil && count > c.count {
		c.lost += count - c.count
	}
	c.count = count
	c.pos = over
	if int64(c.prod-c.pos) < 0 {
		c.prod = c.pos
	}
}
