package ringo

import "fmt"

// Crash safety of shared rings. A process may die at any instant: holding
// the reservation lock (lock.go takes a dead holder's lock over), between a
// reservation and its commit (its record would stay busy and stall the
// consumer forever), or while consuming. Each open reservation of a shared
// ring records its owner's token (liveness.go) in the producer page; a consumer
// that finds a busy record at its head for a while checks that owner, and
// discards the record if the owner is gone, counting it as abandoned.

// claimSlot takes a free owner slot for a reservation at pos, with the
// reservation lock held, and returns its index, or -1 if every slot belongs
// to a live process. Slots of dead processes are freed on the way.
func (m *memory) claimSlot(pos uint64) int {
	n := len(m.slots)
	start := int(pos/8) % n
	for pass := 0; pass < 2; pass++ {
		for k := 0; k < n; k++ {
			i := (start + k) % n
			s := &m.slots[i]
			owner := s.owner.Load()
			if owner != 0 && pass == 1 && !m.alive(owner) {
				// Left by a process that died after its commit or
				// before its reservation was published; a busy record
				// of a dead owner is the consumer's to recover, and a
				// slot freed here only loses it a name, not a record.
				if s.owner.CompareAndSwap(owner, 0) {
					owner = 0
				}
			}
			if owner == 0 {
				// pos before owner: a slot with an owner always has
				// the right position.
				s.pos.Store(pos)
				s.owner.Store(m.self)
				return i
			}
		}
	}
	return -1
}

// forgetReserver frees the slot a lock holder that died (dead) may have
// claimed for a reservation it never published; called by the process that
// took its lock over, holding it. Such a slot carries producer_pos, where
// this process is about to reserve: left in place, it would name a dead
// owner for the live record published there next, and a consumer stalled
// on that record would discard it from under its producer. Slots of
// records dead published stay: those records are the consumer's to recover.
func (m *memory) forgetReserver(dead uint64) {
	prod := m.producerPos.Load()
	for i := range m.slots {
		s := &m.slots[i]
		if s.owner.Load() == dead && s.pos.Load() == prod {
			s.owner.CompareAndSwap(dead, 0)
		}
	}
}

// ownedReservations counts the owner slots this handle holds: its open
// reservations of a shared ring.
func (m *memory) ownedReservations() int {
	self, n := m.self, 0
	for i := range m.slots {
		if m.slots[i].owner.Load() == self {
			n++
		}
	}
	return n
}

// recoverHead is called by a Reader whose head record, at pos, has been busy
// for a while. If the record's owner process is gone, the record is
// discarded (its bytes were never complete), counted as abandoned, and
// recoverHead reports true: the Reader looks at the head again.
func (r *Ring) recoverHead(pos uint64) bool {
	m := r.mem
	if m.slots == nil {
		return false // in-process: a goroutine cannot die without its process
	}
	// Every slot that names pos is looked at, not only the first: should
	// a dead reserver's slot for pos survive beside its successor's (see
	// claimSlot), the live one must win.
	for i := range m.slots {
		s := &m.slots[i]
		if o := s.owner.Load(); o != 0 && s.pos.Load() == pos && m.alive(o) {
			return false
		}
	}
	// No live owner: and a dead process never runs again, so none will
	// commit the record. Every reservation claims its slot before it is
	// published, so a busy record without a slot lost its owner before it
	// could be recorded, or the slot was freed after the owner died.
	w := m.lenWord(pos & m.mask).Load()
	if w&busyBit == 0 {
		return true // committed meanwhile
	}
	if m.lenWord(pos&m.mask).CompareAndSwap(w, payloadLen(w)|discardBit) {
		m.abandoned.Add(1)
		// Free the dead owners' slots. pos is published, so no new
		// claim carries it, and a dead owner's token never comes back:
		// the swap frees exactly the slot that was looked at.
		for i := range m.slots {
			s := &m.slots[i]
			if o := s.owner.Load(); o != 0 && s.pos.Load() == pos {
				s.owner.CompareAndSwap(o, 0)
			}
		}
	}
	return true
}

// claimConsumer makes this process the consumer of a shared ring, taking
// the place of a consumer process that died.
func (r *Ring) claimConsumer() error {
	m := r.mem
	if m.consumerOwner == nil {
		return nil
	}
	me := m.self
	for {
		owner := m.consumerOwner.Load()
		if owner != 0 && m.alive(owner) {
			return fmt.Errorf("ringo: ring %q is consumed by process %d already: a ring has one consumer", r.name, m.pidOf(owner))
		}
		if m.consumerOwner.CompareAndSwap(owner, me) {
			return nil
		}
	}
}

// releaseConsumer gives up the consumer role of a shared ring.
func (r *Ring) releaseConsumer() {
	if m := r.mem; m.consumerOwner != nil {
		m.consumerOwner.CompareAndSwap(m.self, 0)
	}
}
