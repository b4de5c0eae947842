package ringo

import (
	"errors"
	"iter"
	"time"
)

// A Batch is the records available now in one ring, which ConsumeBatch
// hands to its callback at once. Ranging over All walks them in place: the
// loop over the ring's headers is the iterator's, inlined into the
// caller's loop, so that the Reader costs a few instructions per record
// instead of a call of the callback.
//
// A Batch is valid until the callback returns. The records All yields are
// consumed as the loop moves on from them; those it does not get to stay
// in the ring, for the next call.
type Batch struct {
	r  *Reader
	rr *readerRing

	// The walk, as All keeps it in registers (and run in these fields,
	// see there): positions are relative to base (a multiple of the ring
	// size, so that rel&mask is a record's offset): the record at rel has
	// the length word w and takes t bytes, and All takes records alike up
	// to lim. k counts the records yielded.
	ring     area
	mask     uint64
	base     uint64
	rel, lim uint64
	w        uint32
	t        uint64
	k        int

	// end is where the batch ends (absolute), stop where the walk stops
	// next to store consumer_pos (or end); prod is producer_pos as last
	// loaded. runK is k when the record at rel was found, runRel its rel:
	// the records yielded since are alike (see account).
	start, end, stop, prod uint64
	took                   uint64 // bytes of positions passed
	runK                   int
	runRel                 uint64
	copied                 bool // a ring in overwrite mode: ring holds the copy of one record
	broke                  bool // a loop broke out
	err                    error
}

// walkPrefetch is how many records ahead run asks for the header of a
// large record (prefetchRecords bytes or more): best of 4, 8, 16 and 32 in
// BenchmarkDrain (256 and 1024 B: 17.8 and 18.6-20 ns a record against
// 23-31 without).
const walkPrefetch = 16

// batchBytes is how many bytes of positions one Batch spans at most: a
// turn of one ring when a Reader has several.
const batchBytes = 64 << 10

// All returns an iterator over the payloads of the batch's records, in
// order: views into the ring's memory (copies, for a ring in overwrite
// mode), valid until the callback returns. Each record is consumed once
// the loop moves on from it; the record the loop breaks out on and those
// after it stay in the ring. (If the loop panics, records it moved on from
// may stay too, to be handed out again: All keeps its place in registers,
// and writes it back only now and then.)
func (b *Batch) All() iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		rel, lim, w, t, k := b.rel, b.lim, b.w, b.t, b.k
		ring, mask := b.ring, b.mask
		for {
			for rel < lim {
				off := rel & mask
				// Pairs with the producer's commit (xchg of the
				// length word): the payload is visible. A word
				// equal to w is a committed record of w bytes
				// (next checked that records of t bytes fit
				// before lim).
				if ring.word(off).Load() != w {
					break
				}
				if !yield(ring.payload(off+HeaderSize, w)) {
					b.rel, b.k, b.broke = rel, k, true // it stays in the ring
					return
				}
				rel += t
				k++
			}
			if rel, lim, w, t, k = b.next(rel, k); rel >= lim {
				return
			}
			ring, mask = b.ring, b.mask
		}
	}
}

// ConsumeBatch hands fn the records available now, one ring's at a time,
// as a Batch of the ring src: ranging over b.All() walks them in place,
// the fastest way to consume records (the Reader's part costs a fraction
// of Consume's, which calls a function per record). It returns how many
// records were yielded and consumed. fn gets a batch only when its ring
// has a record; rings take turns, a batch each, and one call takes at most
// one ring's worth of bytes from each ring, as Consume.
//
// If fn returns an error, ConsumeBatch stops and returns it (nil for
// Stop); the records the loop moved on from are consumed all the same,
// the others stay in the ring. If fn panics, records may be handed out
// again, never lost (see All). fn may call Stats and Close (it takes
// effect when fn returns), but no other method of the Reader.
//
// All yields payloads without their positions, which Release needs: in
// explicit release mode ConsumeBatch fails, and Consume, Read or Records
// hand out the records instead.
//
// All is fastest when the records of a ring mostly share a length: each
// change of length costs a call. Records of a ring in overwrite mode are
// copied out one at a time, so that producers cannot tear them.
func (r *Reader) ConsumeBatch(fn func(src Source, b *Batch) error) (int, error) {
	return r.turns(-1, func(rr *readerRing, _ int) (int, error) { return rr.consumeBatch(r, fn) })
}

// consumeBatch hands the records of rr to fn in batches until the ring is
// empty, busy at its head, or has given a ring's worth.
func (rr *readerRing) consumeBatch(r *Reader, fn func(Source, *Batch) error) (n int, err error) {
	if rr.explicit {
		return 0, errors.New("ringo: ConsumeBatch in explicit release mode: its batches hand out no positions to release; use Consume, Read or Records, or turn explicit release off")
	}
	defer rr.settle()
	c := &rr.cur
	size := c.mem.size()
	b := &rr.batch
	for rr.taken < size && !r.closed.Load() {
		b.begin(r, rr, c.pos+min(size-rr.taken, batchBytes))
		if b.rel >= b.lim {
			// No record: the ring is empty, busy at its head or
			// corrupt (it may have passed discarded records).
			rr.endBatch()
			return n, b.err
		}
		err := fn(rr.src, b)
		n += rr.endBatch()
		if err != nil {
			return n, err
		}
		if b.err != nil {
			return n, b.err
		}
		if b.broke || b.rel < b.lim {
			// fn broke out of the loop, or did not walk the batch:
			// the rest waits for the next call.
			return n, Stop
		}
	}
	return n, nil
}

// begin starts a batch at the cursor that ends at end or before.
func (b *Batch) begin(r *Reader, rr *readerRing, end uint64) {
	c := &rr.cur
	// Field by field: assigning a whole Batch copies it with the write
	// barriers of its pointers, a sizeable part of a one-record Consume.
	b.r, b.rr, b.ring, b.mask, b.base = r, rr, c.mem.area(), c.mem.mask, c.pos&^c.mem.mask
	b.start, b.end, b.stop, b.prod, b.took = c.pos, end, 0, c.prod, 0
	b.rel, b.lim, b.w, b.t, b.k, b.runK, b.runRel = 0, 0, 0, 0, 0, 0, 0
	b.copied, b.broke, b.err = false, false, nil
	b.rel, b.lim, b.w, b.t, b.k = b.next(c.pos-b.base, 0)
}

// finish ends the batch: the cursor moves past what it yielded, and counts
// it. It returns how many records it yielded and how many bytes of
// positions it took.
func (b *Batch) finish() (int, uint64) {
	b.account()
	c := &b.rr.cur
	if c.mem.overwritePos == nil {
		c.pos = b.base + b.rel
		b.took = c.pos - b.start
	} else if b.copied && b.rel >= b.lim {
		c.pos += b.t // the copy was yielded
		b.took += b.t
	}
	return b.k, b.took
}

// account adds the records yielded since the walk found the record at
// runRel (alike: its length) to the cursor's counts. (A batch never walks
// a ring in explicit release mode, whose records are held one by one.)
func (b *Batch) account() {
	c := &b.rr.cur
	k := b.k - b.runK
	if k == 0 {
		return
	}
	n := uint64(b.w)
	c.last = b.base + b.runRel + uint64(k-1)*b.t
	if b.copied {
		c.last = c.pos
	}
	c.passed += uint64(k)
	c.count += uint64(k)
	c.passedBy += uint64(k) * n
	b.runK, b.runRel = b.k, b.rel
}

// next is All's way on from rel, the first record it did not take, with
// k records yielded: past discarded records, to a record of another
// length, to a new producer_pos, past a store of consumer_pos. It makes
// every check that cursor.next makes. It returns the walk's next state;
// rel >= lim when the batch is over.
func (b *Batch) next(rel uint64, k int) (uint64, uint64, uint32, uint64, int) {
	b.rel, b.k = rel, k
	b.account()
	rr, c := b.rr, &b.rr.cur
	m := c.mem
	if m.overwritePos != nil {
		return b.nextCopy()
	}
	for {
		pos := b.base + b.rel
		c.pos = pos
		b.runRel = b.rel
		if b.err != nil || b.r.closed.Load() || int64(pos-b.end) >= 0 {
			return b.over()
		}
		if pos == b.prod {
			// Paced as cursor.next (paceRecords).
			prod, err := rr.reload(pos, max(paceBytes, paceRecords*b.t))
			if b.prod, b.err = prod, err; err != nil || pos == prod {
				return b.over()
			}
		} else if err := checkDistance(pos, b.prod, m.size()); err != nil {
			b.err = err
			return b.over()
		}
		// Where consumer_pos is stored next, from the producer_pos just
		// loaded (a ring found nearly full stores soon).
		if b.stop = rr.storeAt(b.prod); int64(pos-b.stop) >= 0 {
			rr.store(true)
			if b.stop = rr.storeAt(b.prod); int64(b.stop-pos) <= 0 {
				b.stop = pos + 1 // held records keep consumer_pos back
			}
		}
		if int64(b.end-b.stop) < 0 {
			b.stop = b.end
		}
		off := pos & m.mask
		w := b.ring.word(off).Load()
		if w&busyBit != 0 {
			if rr.recovers() && rr.stalled(time.Now()) {
				continue
			}
			return b.over()
		}
		l := uint64(payloadLen(w))
		t := recordSize(l)
		if t > b.prod-pos {
			b.err = corruptLength(pos, l, b.prod-pos)
			return b.over()
		}
		if w&discardBit != 0 {
			b.rel += t
			continue
		}
		// Records of t bytes are taken while they fit before
		// producer_pos, up to stop (the last one may cross it).
		b.w, b.t = w, t
		b.lim = b.rel + (b.prod - pos) - t + 1
		if s := b.stop - b.base; s < b.lim {
			b.lim = s
		}
		return b.rel, b.lim, b.w, b.t, b.k
	}
}

// over ends the walk at rel: nothing more to take in this batch (the ring is
// empty or busy at rel, the batch's end is reached, or the ring is
// corrupt). lim = rel tells consumeBatch that the walk was not cut short.
func (b *Batch) over() (uint64, uint64, uint32, uint64, int) {
	b.lim = b.rel
	return b.rel, b.rel, b.w, b.t, b.k
}

// nextCopy is next for a ring in overwrite mode: the cursor copies the next
// record (nextOverwrite), and the walk takes that copy, alone.
func (b *Batch) nextCopy() (uint64, uint64, uint32, uint64, int) {
	rr, c := b.rr, &b.rr.cur
	if b.copied && b.rel >= b.lim {
		c.pos += b.t // the copy was yielded
		b.took += b.t
	}
	b.copied = false
	b.ring, b.mask = c.mem.area(), c.mem.mask
	for {
		rr.storeSometimes()
		// (Bytes taken, not the distance moved: the cursor jumps over
		// what producers overwrote.)
		if b.err != nil || b.r.closed.Load() || b.took >= b.end-b.start {
			b.rel, b.lim = 0, 0
			return 0, 0, b.w, b.t, b.k
		}
		data, total, st, err := c.next()
		if st == stepBusy && rr.recovers() && rr.stalled(time.Now()) {
			continue
		}
		if err != nil || st != stepRecord {
			b.err = err
			b.rel, b.lim = 0, 0
			return 0, 0, b.w, b.t, b.k
		}
		// The copy lies in c.buf after a header's room: its own
		// length word goes there, and the walk looks at offset 0.
		b.copied = true
		putLenWord(c.buf, uint32(len(data)))
		b.ring, b.mask = bufArea(c.buf), 0
		b.w, b.t = uint32(len(data)), total
		b.rel, b.lim, b.runRel, b.runK = 0, total, 0, b.k
		return 0, total, b.w, b.t, b.k
	}
}

// run is consume for the rings whose records are consumed as fn gets
// them: neither in overwrite mode (records copied) nor in explicit release
// mode (records held), which take consume's general path. It walks the
// ring as All does, calling fn per record from the walk's loop: the loop
// and its checks cost less than cursor.next's per record, and fn's record
// is passed before fn gets it, as in consume (the walk's position, stored
// before each call, is where settle leaves the cursor if fn panics).
func (rr *readerRing) run(r *Reader, fn func(Record) error, max int) (n int, err error) {
	c := &rr.cur
	b := &rr.batch
	defer rr.settle()
	size := c.mem.size()
	for n < max && rr.taken < size && !r.closed.Load() {
		b.begin(r, rr, c.pos+min(size-rr.taken, batchBytes))
		if b.rel >= b.lim {
			rr.endBatch()
			return n, b.err
		}
		// The walk's state stays in b, not in locals: Go keeps no
		// register across a call, so each local live across fn's is
		// stored and loaded again per record, where b's fields are
		// loaded where they are used. And rec is built once, its
		// fields set per record: a Record literal per call is zeroed
		// on the stack, written and loaded again. Together a fifth off
		// Consume's fastest drain of 8-byte records (BenchmarkSteadiness
		// consume-min-ns, AMD EPYC: 5.12-5.31 to 4.18-4.25 ns; rec
		// alone 4.59, b alone no better).
		kmax := max - n
		rec := Record{Source: rr.src}
		stop := false
		for !stop {
			for b.rel < b.lim {
				if b.k >= kmax {
					stop = true
					break
				}
				off := b.rel & b.mask
				// Pairs with the producer's commit: see All.
				if b.ring.word(off).Load() != b.w {
					break
				}
				t := b.t
				pos := b.base + b.rel
				b.rel += t
				b.k++
				if t >= prefetchRecords {
					// Large records: ask for a header well ahead.
					// Each record's call leaves the core too few
					// instructions of look-ahead to have more than
					// a record or two's cache misses in flight.
					b.ring.prefetch((off + walkPrefetch*t) & b.mask)
				}
				rec.Pos, rec.Data, rec.size = pos, b.ring.payload(off+HeaderSize, b.w), t
				if err = fn(rec); err != nil {
					// It stays in the ring. (Nothing fn may call
					// touches rr.batch, which holds the walk: Rewind
					// moves no cursor outside explicit release mode,
					// Release there fails, Held and Stats only read.)
					b.rel, b.k = b.rel-t, b.k-1
					stop = true
					break
				}
				if r.closed.Load() {
					stop = true
					break
				}
			}
			if stop {
				break
			}
			if b.rel, b.lim, b.w, b.t, b.k = b.next(b.rel, b.k); b.rel >= b.lim {
				break
			}
		}
		n += rr.endBatch()
		if stop || b.err != nil {
			if err == nil {
				err = b.err
			}
			return n, err
		}
	}
	return n, nil
}

// endBatch finishes the Batch that run or consumeBatch walks (see finish),
// and returns how many records it yielded.
func (rr *readerRing) endBatch() int {
	k, took := rr.batch.finish()
	rr.taken += took
	rr.batch.r = nil // done: settle has nothing to finish
	return k
}

// settle ends run (even one that fn's panic ends): the batch under way, if
// any, is finished, and consumer_pos is stored.
func (rr *readerRing) settle() {
	if rr.batch.r != nil {
		rr.endBatch()
	}
	rr.storeAwake()
}
