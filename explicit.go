package ringo

import (
	"fmt"
	"time"
)

// Explicit release: the Reader hands records out as usual, but a ring's
// consumer_pos moves past a record only once Release says the record is
// done with. Until then the record stays in the ring, so a consumer that
// sends records on (to a message broker, a disk, another host) can let the
// ring free them only after the far side has acknowledged them: if the
// process dies, its successor starts from the first record not released,
// and if the far side fails, Rewind hands the unreleased records out again.

// heldRecord is a record handed out but not yet released: where it ends in
// its ring and its payload length.
type heldRecord struct {
	end uint64
	n   uint64
}

// heldPoll is how often a Reader holding unreleased records looks at its
// rings while it waits: producers wake a consumer only when its
// consumer_pos has caught up with their record, which a held ring's has
// not.
const heldPoll = time.Millisecond

// SetExplicitRelease turns explicit release on or off for every ring of the
// Reader, present and future. While it is on, records handed out by
// Consume, Read, ReadInto and Records stay in their ring until Release
// releases them; Rewind hands out again those not released; Close leaves
// them in the ring for the next consumer. Stats and Losses count released
// records as consumed.
//
// It fails while records are held: release or rewind them first.
func (r *Reader) SetExplicitRelease(on bool) error {
	if err := r.lock("SetExplicitRelease"); err != nil {
		return err
	}
	defer r.unlock()
	for _, rr := range r.rings {
		if rr.holding() {
			return fmt.Errorf("ringo: explicit release: ring %v holds %d unreleased records: release or rewind them first", rr.src, len(rr.held))
		}
	}
	r.explicit = on
	for _, rr := range r.rings {
		rr.explicit = on
		rr.released = rr.cur.pos
	}
	return nil
}

// Release releases rec and every record handed out before it from the same
// ring: the ring's consumer position moves past them, freeing their space
// for producers. rec must be a record this Reader handed out while
// explicit release was on (its Data may have been resliced). Releasing a
// record already released does nothing. Release may be called from a
// Consume callback or a Records loop, for the record in hand too.
func (r *Reader) Release(rec Record) error {
	locked, err := r.enter()
	if err != nil {
		return err
	}
	if locked {
		defer r.unlock()
	}
	if !r.explicit {
		return fmt.Errorf("ringo: release of the record at position %d: explicit release is off (SetExplicitRelease): records are released as they are consumed", rec.Pos)
	}
	for _, rr := range r.rings {
		if rr.src == rec.Source {
			return rr.release(rec)
		}
	}
	return fmt.Errorf("ringo: release of the record at position %d: ring %v is not in this reader", rec.Pos, rec.Source)
}

// release releases the held records of rr up to rec; r.mu held.
func (rr *readerRing) release(rec Record) error {
	size := rec.size
	if size == 0 {
		size = recordSize(uint64(len(rec.Data))) // a Record not from a Reader
	}
	end := rec.Pos + size
	if int64(end-rr.released) <= 0 {
		return nil // released already
	}
	i := 0
	for i < len(rr.held) && int64(rr.held[i].end-end) < 0 {
		i++
	}
	if i == len(rr.held) || rr.held[i].end != end {
		return fmt.Errorf("ringo: release of the record at position %d of ring %v: this Reader did not hand it out, or handed it out before a Rewind (it has handed out records up to position %d)", rec.Pos, rr.src, rr.cur.pos)
	}
	for _, h := range rr.held[:i+1] {
		rr.heldBytes -= h.n
	}
	rr.held = rr.held[:copy(rr.held, rr.held[i+1:])]
	rr.released = end
	rr.storePos()
	return nil
}

// Rewind moves every ring back to its first unreleased record: the records
// handed out and not released are handed out again, in the same order.
func (r *Reader) Rewind() error {
	locked, err := r.enter()
	if err != nil {
		return err
	}
	if locked {
		defer r.unlock()
	}
	r.rewinds++
	for _, rr := range r.rings {
		if !rr.holding() {
			continue
		}
		c := &rr.cur
		n := uint64(len(rr.held))
		c.pos = rr.released
		c.count -= n
		c.passed -= n
		c.passedBy -= rr.heldBytes
		rr.held, rr.heldBytes = rr.held[:0], 0
	}
	r.taken = 0
	return nil
}

// Held returns how many records the Reader has handed out and not
// released.
func (r *Reader) Held() int {
	locked, err := r.enter()
	if err != nil {
		return 0
	}
	if locked {
		defer r.unlock()
	}
	n := 0
	for _, rr := range r.rings {
		n += len(rr.held)
	}
	return n
}

// unpass takes back pass: the record of total bytes just passed was not
// handled after all (its callback failed) and is handed out again.
func (rr *readerRing) unpass(total uint64) {
	if rr.explicit {
		rr.held = rr.held[:len(rr.held)-1]
		rr.heldBytes -= rr.cur.lastLen
	}
	c := &rr.cur
	c.pos -= total
	c.count--
	c.passed--
	c.passedBy -= c.lastLen
}

// holding reports whether rr has records handed out and not released.
func (rr *readerRing) holding() bool { return len(rr.held) > 0 }

// pass moves the cursor past a record of total bytes that it handed out,
// holding it in explicit release mode.
func (rr *readerRing) pass(total uint64) {
	if rr.explicit {
		rr.held = append(rr.held, heldRecord{end: rr.cur.pos + total, n: rr.cur.lastLen})
		rr.heldBytes += rr.cur.lastLen
	}
	rr.cur.pass(total)
}

// target is the consumer position to store: the cursor's, or in explicit
// release mode the end of the last released record while records are
// held. (Discarded records the cursor skipped after it are freed with the
// next release, or at once when nothing is held.)
func (rr *readerRing) target() uint64 {
	if rr.holding() {
		return rr.released
	}
	rr.released = rr.cur.pos
	return rr.cur.pos
}

// holdingAny reports whether some ring holds unreleased records.
func (r *Reader) holdingAny() bool {
	for _, rr := range r.rings {
		if rr.holding() {
			return true
		}
	}
	return false
}
