package ringo

import "golang.org/x/sys/unix"

// Positions are a ring's three positions: ever-increasing byte counts whose
// offset in the data area is pos & (size-1).
type Positions struct {
	// Consumer is where the consumer will read the next record.
	Consumer uint64
	// Producer is where the next reservation will start.
	Producer uint64
	// Pending is the oldest record that may still be busy: producers do not
	// run more than size-1 bytes ahead of it.
	Pending uint64
}

// Avail is the number of bytes of records not yet consumed.
func (p Positions) Avail() uint64 { return p.Producer - p.Consumer }

func (m *memory) positions() Positions {
	return Positions{
		Consumer: m.consumerPos.Load(),
		Producer: m.producerPos.Load(),
		Pending:  m.pendingPos.Load(),
	}
}

// query is bpf_ringbuf_query.
func (m *memory) query(p Prop) (uint64, error) {
	switch p {
	case AvailData:
		// ringbuf_avail_data_sz: consumer first, then producer.
		cons := m.consumerPos.Load()
		return m.producerPos.Load() - cons, nil
	case RingSize:
		return m.size(), nil
	case ConsumerPos:
		return m.consumerPos.Load(), nil
	case ProducerPos:
		return m.producerPos.Load(), nil
	}
	return 0, invalid("query property %d: the properties are AvailData (0), RingSize (1), ConsumerPos (2) and ProducerPos (3)", uint64(p))
}

func closeFD(fd int) { unix.Close(fd) }
