package ringo

import (
	"cmp"
	"fmt"

	"github.com/ringo-bpf/ringo/internal/look"
)

// The ringbuf drop-in's look at a ring (internal/look): one record per
// call, as cilium/ebpf's readers take them, through the Reader's cursor
// and its checks, without the Reader's lock (the drop-in holds its own).

func init() { look.Open = openLook }

// aLook is a look.Ring: the cursor of rr, the Reader's one ring, or for a
// RawReader's look (raw) a cursor of its own, which Store copies back, so
// that the Reader's cursor (which its Close stores) stays at the last
// position stored.
type aLook struct {
	rr  *readerRing
	c   *cursor
	raw bool
	own cursor

	stored func() // tests: called after an empty look's store
}

func openLook(v any, raw bool) (look.Ring, error) {
	r, ok := v.(*Reader)
	if !ok {
		return nil, fmt.Errorf("ringo: look at a %T, not a *Reader", v)
	}
	if err := r.lock("look"); err != nil {
		return nil, err
	}
	defer r.unlock()
	if len(r.rings) != 1 || len(r.sets) != 0 || r.explicit {
		return nil, fmt.Errorf("ringo: look at a Reader of %d rings and %d sets (explicit release %v): it takes one ring, in the default mode", len(r.rings), len(r.sets), r.explicit)
	}
	rr := r.rings[0]
	if m := rr.cur.mem; m.space != nil || m.overwritePos != nil || rr.recovers() {
		return nil, fmt.Errorf("ringo: look at %v: only kernel rings", rr.src)
	}
	l := &aLook{rr: rr, c: &rr.cur, raw: raw}
	if raw {
		l.own = rr.cur
		l.own.showDiscarded = true
		l.c = &l.own
	}
	return l, nil
}

func (l *aLook) Next() ([]byte, int, error) {
	if !l.raw {
		panic("ringo: Next of a Reader's look: use Take")
	}
	c := l.c
	data, total, st, err := l.look()
	if err != nil {
		return nil, 0, err
	}
	switch st {
	case stepDiscarded:
		c.pos += total
	case stepRecord:
		// cilium/ebpf's RawReader's view: its capacity runs on to the
		// end of the doubled data area.
		p := c.pos&c.mem.mask + HeaderSize
		data = c.mem.data[p : p+uint64(len(data))]
		c.pass(total)
	default:
		return nil, 0, noRecord(st)
	}
	return data, int(c.prod - c.pos), nil
}

func (l *aLook) Take(dst []byte) ([]byte, int, error) {
	if l.raw {
		panic("ringo: Take of a RawReader's look: use Next and Store")
	}
	data, total, st, err := l.look()
	if err != nil || st != stepRecord {
		return dst, 0, cmp.Or(err, noRecord(st))
	}
	if len(data) <= cap(dst) {
		dst = dst[:len(data)]
	} else {
		dst = make([]byte, len(data))
	}
	copy(dst, data)
	c := l.c
	c.pass(total)
	// storeAs(false, true) for a kernel ring in the default mode, its
	// counters for Stats left to the next full store (storePos: when
	// look finds the ring empty, or at Close).
	l.rr.releaseTo(c.pos)
	return dst, int(c.prod - c.pos), nil
}

// look is the cursor's next. cilium/ebpf loads producer_pos at every read,
// so that remain counts what is published now: so does this. A Reader's
// look that finds no record stores consumer_pos with a full barrier unless
// it is settled (as the Reader's ready before it sleeps): if it owes the
// fence of its release stores or has skipped discarded records since the
// last store (which cilium's stores past, and which the kernel
// counts as data: left unstored they keep the map ready and their space
// taken), then looks again (see look.Ring.Take).
//
// It looks until it finds a record or finds none at a position it has
// stored with the barrier: a look after the store may skip records
// discarded meanwhile, whose position must be stored too, or no later
// commit would find consumer_pos at its record and wake the ring's
// waiters. (Each round moves past records discarded since the last.)
func (l *aLook) look() ([]byte, uint64, step, error) {
	c := l.c
	c.prod = c.mem.producerPos.Load()
	for {
		data, total, st, err := c.next()
		if err != nil || l.raw || st != stepEmpty && st != stepBusy {
			return data, total, st, err
		}
		rr := l.rr
		if rr.settled() {
			return data, total, st, err
		}
		rr.storePos()
		if l.stored != nil {
			l.stored()
		}
	}
}

// noRecord is the error of a step that found no record.
func noRecord(st step) error {
	if st == stepBusy {
		return look.ErrBusy
	}
	return look.ErrEmpty
}

func (l *aLook) Store() {
	if !l.raw {
		panic("ringo: Store of a Reader's look: Take stores")
	}
	own := l.own
	own.showDiscarded = false
	l.rr.cur = own
	l.rr.storePos()
}
