package ringo

import "fmt"

// Overwrite mode: a ring that, when full, overwrites its oldest committed
// records instead of refusing new ones (never a record still being
// written), as mainline kernels' BPF_F_RB_OVERWRITE rings do: a flight
// recorder that always holds the newest records. overwrite_pos, at
// producer page offset 16, is the position after the last overwritten
// record; the consumer jumps to it when it falls behind, and counts what it
// lost (Ring.Overwritten).

// overwriteTo moves overwrite_pos past the oldest records until a
// reservation ending at newProd fits in the ring, counting the committed
// ones; called with the reservation lock held, before producer_pos is
// published. The records it passes lie before pending_pos (the caller
// checked newProd-pend <= mask), so none is still being written.
func (m *memory) overwriteTo(prod, newProd uint64) error {
	// Read directly, not through overwriteMark: only a holder of the lock
	// writes them, and one that died in the middle left them usable (and
	// the sequence word odd, which setOverwriteMark mends).
	over, count := m.overwritePos.Load(), m.overCount.Load()
	// overwrite_pos trails producer_pos by less than a ring (each
	// reservation brings it along); one that does not is garbage, and a
	// walk from it would never end.
	if prod-over > m.mask || over&7 != 0 {
		return fmt.Errorf("%w: overwrite position %d is not 8-byte aligned within the ring size before producer position %d", ErrCorrupt, over, prod)
	}
	if newProd-over <= m.mask {
		return nil
	}
	// overwrite_pos stays within a lap of producer_pos (each reservation
	// brings it along), so the headers it walks are this lap's. Bounded
	// by distances, so that a corrupt header ends the walk.
	start := over
	for newProd-over > m.mask {
		w := m.lenWord(over & m.mask).Load()
		if w&discardBit == 0 {
			count++
		}
		over += recordSize(uint64(payloadLen(w)))
		if over-start > newProd-start {
			return fmt.Errorf("%w: overwriting from position %d, the record at %d runs past the producer position %d",
				ErrCorrupt, start, over, newProd)
		}
	}
	m.setOverwriteMark(over, count)
	return nil
}

// overwritten returns how many committed records of a ring in overwrite
// mode producers overwrote before a consumer read them, and the bytes of
// ring positions lost with them (headers and padding included): those a
// Reader skipped, and those lying between the consumer position and
// overwrite_pos that no Reader has got to yet, so a flight recorder nobody
// reads still counts what it lost. Both are 0 for other rings. A reading
// taken while a Reader is storing its position may be briefly short, never
// over.
func (r *Ring) overwritten() (records, bytes uint64) {
	m := r.mem
	if m.overwritePos == nil {
		return 0, 0
	}
	records, bytes = m.overwritten.Load(), m.overwrittenBytes.Load()
	// Consumer words after the counters: a Reader adds to the counters
	// after it stores its position, so nothing is counted twice.
	cons, consCount := m.consumerPos.Load(), m.consCount.Load()
	over, overCount := m.overwriteMark()
	if int64(over-cons) > 0 {
		bytes += over - cons
		if overCount > consCount {
			records += overCount - consCount
		}
	}
	return records, bytes
}

// lapped reports whether producers of a ring in overwrite mode have
// overwritten records at consumer position cons: the adaptive wake-up then
// wakes the consumer at every commit, since no record may ever start at
// the position it waits at. (Mainline kernels wake only at cons; ringo's
// addition, so that a consumer asleep on a lapped ring is not left there.)
func (m *memory) lapped(cons uint64) bool {
	return m.overwritePos != nil && int64(m.overwritePos.Load()-cons) > 0
}
