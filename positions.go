package ringo

import "golang.org/x/sys/unix"

// Positions are a ring's positions: the kernel's consumer, producer and
// pending positions, and overwrite_pos in overwrite mode. They are
// ever-increasing byte counts whose offset in the data area is
// pos & (size-1).
type Positions struct {
	// Consumer is where the consumer will read the next record.
	Consumer uint64
	// Producer is where the next reservation will start.
	Producer uint64
	// Pending is the oldest record that may still be busy: producers do not
	// run more than size-1 bytes ahead of it.
	Pending uint64
	// Overwrite is the position after the last record producers
	// overwrote, in a ring in overwrite mode; 0 otherwise.
	Overwrite uint64
}

// avail is the number of bytes of records not yet consumed (and, in
// overwrite mode, not overwritten).
func (p Positions) avail() uint64 {
	from := p.Consumer
	if int64(p.Overwrite-from) > 0 {
		from = p.Overwrite
	}
	return p.Producer - from
}

// positions reads the positions as one snapshot: the others between two
// loads of producer_pos that agree (tried a few times while producers move
// it). For a healthy ring such a snapshot has the consumer position (and
// overwrite_pos) at most producer_pos and at most the size behind it: the
// consumer never passes a producer_pos it has not seen, and producers
// publish no producer_pos more than the size past the consumer position,
// or past overwrite_pos, which they move first. Read in one pass, a
// producer could publish between the loads and the ring look more than
// full (or, producer first, the consumer look past the producer). Under a
// load that moves producer_pos between every two loads, the last pass is
// returned, which may be off by what was published meanwhile.
func (m *memory) positions() Positions {
	var p Positions
	prod := m.producerPos.Load()
	for try := 0; ; try++ {
		p.Consumer = m.consumerPos.Load()
		if m.overwritePos != nil {
			p.Overwrite = m.overwritePos.Load()
		}
		p.Pending = m.pendingPos.Load()
		p.Producer = m.producerPos.Load()
		if p.Producer == prod || try == positionTries {
			return p
		}
		prod = p.Producer
	}
}

// positionTries bounds positions' retries.
const positionTries = 8

// query is bpf_ringbuf_query.
func (m *memory) query(p Prop) (uint64, error) {
	switch p {
	case AvailData:
		// ringbuf_avail_data_sz: consumer first, then producer; in
		// overwrite mode overwrite_pos before producer_pos, and what
		// lies before it is gone.
		cons := m.consumerPos.Load()
		if m.overwritePos != nil {
			over := m.overwritePos.Load()
			prod := m.producerPos.Load()
			if int64(over-cons) > 0 {
				cons = over
			}
			return prod - cons, nil
		}
		return m.producerPos.Load() - cons, nil
	case RingSize:
		return m.size(), nil
	case ConsumerPos:
		return m.consumerPos.Load(), nil
	case ProducerPos:
		return m.producerPos.Load(), nil
	case OverwritePos:
		if m.overwritePos == nil {
			return 0, nil
		}
		return m.overwritePos.Load(), nil
	}
	return 0, invalid("query property %d: the properties are AvailData (0), RingSize (1), ConsumerPos (2), ProducerPos (3) and OverwritePos (4)", uint64(p))
}

func closeFD(fd int) { unix.Close(fd) }
