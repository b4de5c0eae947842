package ringo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// fuzzSize is the data size of the fuzzed rings.
const fuzzSize = 4096

// fuzzRecord is a record a consumer should hand out: its header position and
// payload.
type fuzzRecord struct {
	pos  uint64
	data []byte
}

func (r fuzzRecord) String() string { return fmt.Sprintf("%d bytes at %d", len(r.data), r.pos) }

// fuzzWalk is what consuming a ring whose memory is image should give, by
// the kernel's consumer loop read off the spec, written here independently
// of cursor.go: the committed records from cons on, skipping discarded ones;
// a stop at a busy record or at prod; or corruption: positions more than the
// ring apart or not 8-byte aligned, or a header claiming more bytes than are
// published after it. stop is where consuming ends up: the busy or corrupt
// record, or prod.
type fuzzWalk struct {
	recs    []fuzzRecord
	stop    uint64
	corrupt bool
}

func walkImage(image []byte, cons, prod uint64) fuzzWalk {
	size := uint64(len(image))
	var w fuzzWalk
	pos := cons
	for pos != prod {
		avail := prod - pos
		if avail > size || pos%8 != 0 || avail%8 != 0 {
			w.corrupt = true
			break
		}
		off := pos % size
		word := binary.NativeEndian.Uint32(image[off:])
		if word&busyBit != 0 {
			break
		}
		n := uint64(word &^ (busyBit | discardBit))
		total := (n + 8 + 7) / 8 * 8
		if total > avail {
			w.corrupt = true
			break
		}
		if word&discardBit == 0 {
			data := make([]byte, n)
			for i := range data {
				data[i] = image[(off+8+uint64(i))%size]
			}
			w.recs = append(w.recs, fuzzRecord{pos, data})
		}
		pos += total
	}
	w.stop = pos
	return w
}

// fuzzCheckView checks that a record handed out as a view lies inside the
// ring's doubled data area and is no longer than a record can be.
func fuzzCheckView(t *testing.T, r *Ring, data []byte) {
	t.Helper()
	m := r.mem
	if uint64(len(data)) > m.size()-HeaderSize {
		t.Fatalf("record of %d bytes in a %d-byte ring", len(data), m.size())
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(m.data)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	if p < base || p+uintptr(len(data)) > base+uintptr(len(m.data)) {
		t.Fatalf("record of %d bytes at address %#x lies outside the data mapping [%#x, %#x)", len(data), p, base, base+uintptr(len(m.data)))
	}
}

// fuzzCompare checks the records a consumer handed out against the walk.
func fuzzCompare(t *testing.T, how string, got []fuzzRecord, want fuzzWalk) {
	t.Helper()
	if !slices.EqualFunc(got, want.recs, func(a, b fuzzRecord) bool { return a.pos == b.pos && bytes.Equal(a.data, b.data) }) {
		t.Fatalf("%s handed out %v, want %v", how, got, want.recs)
	}
}

// fuzzSeed is an input of FuzzCursor: the positions, and the bytes of the
// data area from the consumer position on.
type fuzzSeed struct {
	cons, avail, pendBack uint64
	data                  []byte
}

// fuzzHeader appends a record header with length word word and the payload
// (padded to 8) to b.
func fuzzHeader(b []byte, word uint32, payload []byte) []byte {
	b = binary.NativeEndian.AppendUint32(b, word)
	b = binary.NativeEndian.AppendUint32(b, 3)
	b = append(b, payload...)
	for len(b)%8 != 0 {
		b = append(b, 0xee)
	}
	return b
}

// fuzzRingSeed snapshots a ring that produce has filled into a seed.
func fuzzRingSeed(f *testing.F, start uint64, produce func(r *Ring)) fuzzSeed {
	r, err := New(fuzzSize)
	if err != nil {
		f.Fatal(err)
	}
	defer r.Close()
	m := r.mem
	m.consumerPos.Store(start)
	m.producerPos.Store(start)
	m.pendingPos.Store(start)
	produce(r)
	p := r.Positions()
	data := make([]byte, fuzzSize)
	for i := range data {
		data[i] = m.data[(p.Consumer+uint64(i))&m.mask]
	}
	// Leave the ring empty so that Close succeeds.
	m.consumerPos.Store(0)
	m.producerPos.Store(0)
	m.pendingPos.Store(0)
	return fuzzSeed{p.Consumer, p.Producer - p.Consumer, p.Producer - p.Pending, data}
}

// FuzzCursor feeds arbitrary ring memory to every consumer path of a Reader:
// consumer, producer and pending positions, and the data area (written from
// the consumer position on, through the doubled mapping). Whatever the
// memory holds, each path must hand out exactly the records walkImage finds,
// as views inside the mapping (or copies) of at most size-8 bytes, end with
// an error wrapping ErrCorrupt exactly when walkImage finds corruption, never
// panic or hang, never write the data area or the producer page, and leave
// consumer_pos between the end of the last record handed out and the stop.
// Consume calls its callback at most size/8 times per call; ReadInto, with a
// short deadline, ends with ErrCorrupt or context.DeadlineExceeded.
func FuzzCursor(f *testing.F) {
	seeds := []fuzzSeed{
		// A valid ring: records of 0, 5 and 100 bytes around a discarded one.
		fuzzRingSeed(f, 0, func(r *Ring) {
			r.Output(nil, 0)
			r.Output([]byte("hello"), 0)
			v, _ := r.Reserve(30)
			r.Discard(v, 0)
			r.Output(bytes.Repeat([]byte{7}, 100), 0)
		}),
		// A valid ring whose records wrap past the end of the data area,
		// with a busy record last.
		fuzzRingSeed(f, 3*fuzzSize+4000, func(r *Ring) {
			r.Output(bytes.Repeat([]byte{1}, 200), 0)
			r.Output(bytes.Repeat([]byte{2}, 3), 0)
			r.Reserve(10)
		}),
		// A nearly full ring of small records.
		fuzzRingSeed(f, 8, func(r *Ring) {
			for i := 0; r.Output([]byte{byte(i)}, 0) == nil; i++ {
			}
		}),
		// The largest record.
		fuzzRingSeed(f, 0, func(r *Ring) { r.Output(make([]byte, fuzzSize-16), 0) }),
		// A header with a huge length.
		{0, 64, 0, fuzzHeader(nil, maxRecordSize, nil)},
		{0, 64, 0, fuzzHeader(nil, 0x3fff_fff8, nil)},
		// A record that fills all that is published, and one byte more.
		{0, 32, 0, fuzzHeader(nil, 24, make([]byte, 24))},
		{0, 32, 0, fuzzHeader(nil, 25, make([]byte, 25))},
		// A record as large as the whole ring, which no producer makes.
		{16, fuzzSize, 0, fuzzHeader(nil, fuzzSize-8, make([]byte, fuzzSize-8))},
		// Misaligned positions.
		{3, 16, 0, fuzzHeader(nil, 8, make([]byte, 8))},
		{0, 12, 0, fuzzHeader(nil, 4, make([]byte, 4))},
		// The producer behind the consumer, and far ahead of it.
		{4096, 1<<64 - 16, 0, fuzzHeader(nil, 8, make([]byte, 8))},
		{0, 2 * fuzzSize, 0, fuzzHeader(nil, 8, make([]byte, 8))},
		// A busy record at the head, holding back a committed one.
		{0, 48, 48, fuzzHeader(fuzzHeader(nil, busyBit|8, make([]byte, 8)), 16, []byte("0123456789abcdef"))},
		// Discarded records only; then discarded records around a busy one.
		{40, 48, 0, fuzzHeader(fuzzHeader(nil, discardBit|16, make([]byte, 16)), discardBit, nil)},
		{0, 40, 0, fuzzHeader(fuzzHeader(fuzzHeader(nil, discardBit, nil), busyBit|discardBit|4, make([]byte, 4)), 0, nil)},
		// A discarded record that claims more than is published.
		{0, 16, 0, fuzzHeader(nil, discardBit|100, nil)},
		// Positions about to wrap around 2^64.
		{1<<64 - 16, 32, 0, fuzzHeader(fuzzHeader(nil, 3, []byte("abc")), 1, []byte("z"))},
	}
	for i, s := range seeds {
		f.Add(s.cons, s.avail, s.pendBack, s.data)
		if i < 3 {
			// The same with an odd pendBack: ReadInto sleeps at the end.
			f.Add(s.cons, s.avail, s.pendBack+1, s.data)
		}
	}

	// One ring for all inputs; each consumer path gets a fresh Reader over
	// memory written afresh.
	r, err := New(fuzzSize)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		m := r.mem
		m.consumerPos.Store(0)
		m.producerPos.Store(0)
		m.pendingPos.Store(0)
		if err := r.Close(); err != nil {
			f.Error(err)
		}
	})
	m := r.mem
	size := m.size()

	f.Fuzz(func(t *testing.T, cons, avail, pendBack uint64, data []byte) {
		prod, pend := cons+avail, cons+avail-pendBack
		data = data[:min(uint64(len(data)), size)]
		image := make([]byte, size)
		for i, b := range data {
			image[(cons+uint64(i))%size] = b
		}
		want := walkImage(image, cons, prod)
		lastEnd := cons
		if n := len(want.recs); n > 0 {
			lastEnd = want.recs[n-1].pos + recordSize(uint64(len(want.recs[n-1].data)))
		}

		// load writes the memory and returns a Reader over it.
		load := func() *Reader {
			clear(m.data[:size])
			off := cons & m.mask
			copy(m.data[off:off+uint64(len(data))], data) // may run into the second view
			m.consumerPos.Store(cons)
			m.producerPos.Store(prod)
			m.pendingPos.Store(pend)
			rd, err := NewReader(r)
			if err != nil {
				t.Fatal(err)
			}
			return rd
		}
		// done closes the Reader and checks that the consumer wrote nothing
		// but consumer_pos, which it left between lo and want.stop.
		done := func(how string, rd *Reader, lo uint64) {
			t.Helper()
			rd.Close()
			if !bytes.Equal(m.data[:size], image) {
				t.Fatalf("%s changed the data area", how)
			}
			if p := r.Positions(); p.Producer != prod || p.Pending != pend {
				t.Fatalf("%s changed producer or pending position: %+v, want %d, %d", how, p, prod, pend)
			}
			if c := m.consumerPos.Load(); c-lo > want.stop-lo {
				t.Fatalf("%s left consumer_pos at %d, want it in [%d, %d]", how, c, lo, want.stop)
			}
		}
		checkEnd := func(how string, err error, otherwise error) {
			t.Helper()
			if want.corrupt {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("%s ended with %v, want ErrCorrupt", how, err)
				}
			} else if !errors.Is(err, otherwise) {
				t.Fatalf("%s ended with %v, want %v", how, err, otherwise)
			}
		}

		// Peek: the records, not consumed.
		rd := load()
		var got []fuzzRecord
		_, err := rd.peek(func(rec Record) error {
			fuzzCheckView(t, r, rec.Data)
			if len(got) > int(size/8) {
				t.Fatal("Peek handed out more records than fit in the ring")
			}
			got = append(got, fuzzRecord{rec.Pos, bytes.Clone(rec.Data)})
			return nil
		})
		checkEnd("Peek", err, nil)
		fuzzCompare(t, "Peek", got, want)
		done("Peek", rd, cons)
		if c := m.consumerPos.Load(); c != cons {
			t.Fatalf("Peek moved consumer_pos from %d to %d", cons, c)
		}

		// Consume: everything in the first call; the second finds nothing
		// new (or the same corruption).
		rd = load()
		got = got[:0]
		for call := 0; call < 2; call++ {
			calls := 0
			n, err := rd.Consume(func(rec Record) error {
				fuzzCheckView(t, r, rec.Data)
				if calls++; calls > int(size/8) {
					t.Fatalf("Consume called its callback %d times in a %d-byte ring", calls, size)
				}
				sum := 0
				for _, b := range rec.Data {
					sum += int(b)
				}
				_ = sum
				got = append(got, fuzzRecord{rec.Pos, bytes.Clone(rec.Data)})
				return nil
			})
			if n != calls {
				t.Fatalf("Consume returned %d after %d callbacks", n, calls)
			}
			checkEnd(fmt.Sprintf("Consume call %d", call+1), err, nil)
		}
		fuzzCompare(t, "Consume", got, want)
		done("Consume", rd, lastEnd)

		// ConsumeBatch, walking with All: the same, in two calls.
		{
			how := "ConsumeBatch"
			rd = load()
			got = got[:0]
			for call := 0; call < 2; call++ {
				calls := 0
				n, err := rd.ConsumeBatch(func(src Source, b *Batch) error {
					if src != Source(r) {
						t.Fatalf("%s: a batch of %v", how, src)
					}
					add := func(pos uint64, data []byte) {
						fuzzCheckView(t, r, data)
						if calls++; calls > int(size/8) {
							t.Fatalf("%s yielded %d records in a %d-byte ring", how, calls, size)
						}
						got = append(got, fuzzRecord{pos, bytes.Clone(data)})
					}
					for data := range b.All() {
						// All says no position: take the one
						// expected, the data is compared.
						pos := uint64(0)
						if len(got) < len(want.recs) {
							pos = want.recs[len(got)].pos
						}
						add(pos, data)
					}
					return nil
				})
				if n != calls {
					t.Fatalf("%s returned %d after %d records", how, n, calls)
				}
				checkEnd(fmt.Sprintf("%s call %d", how, call+1), err, nil)
			}
			fuzzCompare(t, how, got, want)
			done(how, rd, lastEnd)
		}

		// ReadInto, with a deadline for when nothing is left: one already
		// past, or, when pendBack (which consumers ignore) is odd, one a
		// millisecond away, so that ReadInto sleeps in epoll first. (Only
		// sometimes: a sleep in every run would slow fuzzing down, above all
		// the minimizing of new inputs, to a crawl.)
		rd = load()
		got = got[:0]
		wait := time.Duration(0)
		if pendBack%2 == 1 {
			wait = time.Millisecond
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		var rec Record
		for {
			err := rd.ReadInto(ctx, &rec)
			if err != nil {
				checkEnd("ReadInto", err, context.DeadlineExceeded)
				break
			}
			if uint64(len(rec.Data)) > size-HeaderSize {
				t.Fatalf("ReadInto: record of %d bytes", len(rec.Data))
			}
			if got = append(got, fuzzRecord{rec.Pos, bytes.Clone(rec.Data)}); len(got) > len(want.recs) {
				break // fuzzCompare fails
			}
		}
		cancel()
		fuzzCompare(t, "ReadInto", got, want)
		done("ReadInto", rd, lastEnd)

		// Records, with a context already cancelled: it only matters once
		// nothing is left.
		rd = load()
		got = got[:0]
		ctx, cancel = context.WithCancel(context.Background())
		cancel()
		ended := false
		for rec, err := range rd.Records(ctx) {
			if err != nil {
				checkEnd("Records", err, context.Canceled)
				ended = true
				break
			}
			fuzzCheckView(t, r, rec.Data)
			if got = append(got, fuzzRecord{rec.Pos, bytes.Clone(rec.Data)}); len(got) > len(want.recs) {
				break
			}
		}
		fuzzCompare(t, "Records", got, want)
		if !ended {
			t.Fatal("Records ended without an error")
		}
		done("Records", rd, lastEnd)
	})
}

// Model of a ring for FuzzProducerConsumer.
const (
	modelBusy = iota
	modelCommitted
	modelDiscarded
)

type modelRecord struct {
	pos   uint64
	data  []byte
	state int
	res   Reservation // for reserved records
}

func (r *modelRecord) total() uint64 { return recordSize(uint64(len(r.data))) }

// ringModel is the state a kernel ring would be in: its records in position
// order, from the first one the test made, and the three positions, with
// the indexes of the records at the consumer and pending positions.
type ringModel struct {
	recs              []*modelRecord
	cons, prod, pend  uint64
	consIdx, pendIdx  int
	open              []int // indexes of busy records
	finished          []Reservation
	wakeups           uint64
	size, mask, shift uint64
}

// deliverable is what a consumer hands out next: the committed records from
// the consumer position on, skipping discarded ones, up to a busy one.
func (m *ringModel) deliverable() []*modelRecord {
	var out []*modelRecord
	for _, rec := range m.recs[m.consIdx:] {
		if rec.state == modelBusy {
			break
		}
		if rec.state == modelCommitted {
			out = append(out, rec)
		}
	}
	return out
}

// consumedTo moves the model's consumer position to pos, which must be a
// record boundary between lo (the end of what was handed out) and the next
// record that is not discarded.
func (m *ringModel) consumedTo(t *testing.T, how string, lo, pos uint64) {
	t.Helper()
	i := m.consIdx
	for i < len(m.recs) && m.recs[i].pos != lo {
		i++
	}
	if lo == m.prod {
		i = len(m.recs)
	}
	hi := lo
	for j := i; j < len(m.recs) && m.recs[j].state == modelDiscarded; j++ {
		hi += m.recs[j].total()
	}
	if pos-lo > hi-lo {
		t.Fatalf("%s: consumer_pos is %d, want it in [%d, %d]", how, pos, lo, hi)
	}
	for i < len(m.recs) && m.recs[i].pos != pos {
		i++
	}
	if i == len(m.recs) && pos != m.prod {
		t.Fatalf("%s: consumer_pos %d is not a record boundary", how, pos)
	}
	m.consIdx, m.cons = i, pos
}

// FuzzProducerConsumer interprets its input as a sequence of operations on a
// 4096-byte ring that starts at an arbitrary position: Reserve, Output,
// Commit and Discard (in any order, with any flags), commits of stale
// reservations, Consume of k records, Peek and ReadInto. After each one it
// compares the ring with a model of the kernel's rules: the errors
// (ErrFull, ErrTooLarge, ErrNotReserved, EINVAL for bad flags), the three
// positions, each header's length word and page offset, the records handed
// out, and which commits wake the consumer.
//
// The input is read a byte at a time: an operation byte, whose value mod 8
// picks the operation, then its arguments (missing bytes read as 0):
//
//	0 n0 n1      Reserve(n), n = (n0 | n1<<8) % 4200 (over 4080: ErrTooLarge)
//	1 n0 n1 fl   Output of n bytes with flags fl%5: 0, NoWakeup, ForceWakeup,
//	             both, or an unknown bit (EINVAL)
//	2 sel fl     Commit the open reservation sel%len(open) with flags fl%5
//	3 sel fl     Discard likewise
//	4 k          Consume k%9 records, stopping with an error at the next one
//	             (8: all of them)
//	5 sel        with op&16: the consumer jumps ahead to a record boundary
//	             (a new Reader starts there); else Commit (op&8 == 0) or
//	             Discard the finished reservation sel%len: ErrNotReserved
//	6            Peek
//	7            ReadInto with a cancelled context: a record, or Canceled
func FuzzProducerConsumer(f *testing.F) {
	f.Add(uint64(0), []byte{0, 10, 0, 0, 200, 0, 2, 0, 0, 4, 9})
	f.Add(uint64(4000), []byte{1, 0xf0, 0x0f, 0, 1, 0xf0, 0x0f, 1, 4, 9, 1, 0xf0, 0x0f, 2, 4, 9})
	f.Add(uint64(1<<40), []byte{0, 1, 0, 0, 2, 0, 3, 1, 0, 2, 0, 1, 4, 2, 7, 6, 5, 0, 3, 0, 0, 4, 9, 5, 1})
	f.Add(uint64(8), []byte{0, 0xf0, 0x07, 0, 0xf0, 0x07, 0, 0xf0, 0x07, 3, 1, 2, 2, 0, 0, 1, 0, 0, 6, 7, 4, 1, 4, 9, 0, 0x68, 0x10})
	f.Add(uint64(0), bytes.Repeat([]byte{1, 100, 0, 0}, 50))
	f.Add(uint64(24), []byte{1, 4, 0, 4, 0, 8, 0, 2, 0, 2, 0x30, 0x10, 4})
	// A busy record, committed ones after it, the consumer jumping past
	// them all, then producers filling the ring up to the busy record.
	f.Add(uint64(0), append([]byte{0, 0, 4, 1, 0, 4, 0, 1, 0, 4, 0, 21, 3}, bytes.Repeat([]byte{1, 0xf0, 1, 0}, 10)...))

	r, err := New(fuzzSize)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		m := r.mem
		m.consumerPos.Store(0)
		m.producerPos.Store(0)
		m.pendingPos.Store(0)
		if err := r.Close(); err != nil {
			f.Error(err)
		}
	})
	mem := r.mem
	errStop := errors.New("stop")

	f.Fuzz(func(t *testing.T, start uint64, ops []byte) {
		// Positions far from 2^64: ringo, like the kernel, walks
		// pending_pos with an ordered compare, which only 2^64 bytes of
		// records would break.
		start = start % (1 << 62) &^ 7
		mem.consumerPos.Store(start)
		mem.producerPos.Store(start)
		mem.pendingPos.Store(start)
		rd, err := NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		wakeups0 := r.wakeups.Load()
		model := &ringModel{cons: start, prod: start, pend: start, size: mem.size(), mask: mem.mask, shift: uint64(mem.pageShift)}
		t.Cleanup(func() {
			for _, i := range model.open {
				r.Discard(model.recs[i].res, 0)
			}
			rd.Close()
		})

		next := func() int {
			if len(ops) == 0 {
				return 0
			}
			b := ops[0]
			ops = ops[1:]
			return int(b)
		}
		flagsOf := func(b int) uint64 { return []uint64{0, NoWakeup, ForceWakeup, NoWakeup | ForceWakeup, 1 << 2}[b%5] }

		// check compares the ring with the model.
		check := func(step int, what string) {
			t.Helper()
			want := Positions{Consumer: model.cons, Producer: model.prod, Pending: model.pend}
			if p := r.Positions(); p != want {
				t.Fatalf("step %d (%s): positions %+v, want %+v", step, what, p, want)
			}
			if a, _ := r.Query(AvailData); a != model.prod-model.cons {
				t.Fatalf("step %d (%s): AvailData %d, want %d", step, what, a, model.prod-model.cons)
			}
			if w := r.wakeups.Load() - wakeups0; w != model.wakeups {
				t.Fatalf("step %d (%s): %d wake-ups, want %d", step, what, w, model.wakeups)
			}
			// Every record not yet overwritable has the header the kernel
			// would have written.
			for _, rec := range model.recs[min(model.consIdx, model.pendIdx):] {
				off := rec.pos & model.mask
				word := uint32(len(rec.data))
				switch rec.state {
				case modelBusy:
					word |= busyBit
				case modelDiscarded:
					word |= discardBit
				}
				if got := mem.lenWord(off).Load(); got != word {
					t.Fatalf("step %d (%s): header of the record at %d has length word %#x, want %#x", step, what, rec.pos, got, word)
				}
				if got, want := mem.pgOff(off), uint32(off>>model.shift)+3; got != want {
					t.Fatalf("step %d (%s): header of the record at %d has pg_off %d, want %d", step, what, rec.pos, got, want)
				}
			}
		}
		// reserve is the model's reservation: the pending walk, then the
		// full test. It returns the error the ring should return.
		reserve := func(n int) error {
			if uint64(n) > model.size-16 {
				return ErrTooLarge
			}
			for model.pendIdx < len(model.recs) && model.recs[model.pendIdx].state != modelBusy {
				model.pend += model.recs[model.pendIdx].total()
				model.pendIdx++
			}
			newProd := model.prod + recordSize(uint64(n))
			if newProd-model.cons > model.mask || newProd-model.pend > model.mask {
				return ErrFull
			}
			return nil
		}
		// finished updates the model after a commit or discard with flags.
		finished := func(rec *modelRecord, flags uint64, discard bool) {
			rec.state = modelCommitted
			if discard {
				rec.state = modelDiscarded
			}
			if flags&ForceWakeup != 0 || (model.cons&model.mask == rec.pos&model.mask && flags&NoWakeup == 0) {
				model.wakeups++
			}
		}
		// compare checks what a consumer handed out against the first
		// records deliverable, and returns the end of the last one.
		compare := func(step int, how string, got []fuzzRecord) uint64 {
			t.Helper()
			want := model.deliverable()
			if len(got) > len(want) {
				t.Fatalf("step %d: %s handed out %d records, only %d were committed", step, how, len(got), len(want))
			}
			end := model.cons
			for i, g := range got {
				if g.pos != want[i].pos || !bytes.Equal(g.data, want[i].data) {
					t.Fatalf("step %d: %s handed out %v as record %d, want %v", step, how, g, i, fuzzRecord{want[i].pos, want[i].data})
				}
				end = want[i].pos + want[i].total()
			}
			return end
		}
		// take is compare for the consuming calls: it then moves the
		// model's consumer position to where the ring's is.
		take := func(step int, how string, got []fuzzRecord) {
			t.Helper()
			end := compare(step, how, got)
			model.consumedTo(t, fmt.Sprintf("step %d: %s", step, how), end, mem.consumerPos.Load())
		}

		pattern := 0
		for step := 0; len(ops) > 0; step++ {
			switch op := next(); op % 8 {
			case 0, 1: // Reserve n, or Output n with flags
				n := (next() | next()<<8) % 4200
				flags := uint64(0)
				if op%8 == 1 {
					flags = flagsOf(next())
				}
				pattern++
				data := stressPattern(0xf0f0, uint64(pattern), n)
				var wantErr error
				if flags&^(NoWakeup|ForceWakeup) != 0 {
					wantErr = syscall.EINVAL // refused before reserving
				} else {
					wantErr = reserve(n)
				}
				pos := model.prod
				var err error
				var v Reservation
				if op%8 == 0 {
					v, err = r.Reserve(n)
				} else {
					err = r.Output(data, flags)
				}
				if !errors.Is(err, wantErr) || (err == nil) != (wantErr == nil) {
					t.Fatalf("step %d: Reserve or Output of %d bytes with flags %#x: %v, want %v (positions %+v)", step, n, flags, err, wantErr, r.Positions())
				}
				if err != nil {
					if wantErr == syscall.EINVAL {
						// The model's pending walk must not have happened.
						check(step, "bad output flags")
					}
					break
				}
				rec := &modelRecord{pos: pos, data: data, state: modelBusy}
				model.recs = append(model.recs, rec)
				model.prod += rec.total()
				if op%8 == 0 {
					if v.pos != pos || len(v.Bytes()) != n || cap(v.Bytes()) != n {
						t.Fatalf("step %d: Reserve(%d) = %d bytes (capacity %d) at %d, want %d bytes at %d", step, n, len(v.Bytes()), cap(v.Bytes()), v.pos, n, pos)
					}
					copy(v.Bytes(), data)
					rec.res = v
					model.open = append(model.open, len(model.recs)-1)
				} else {
					finished(rec, flags, false)
				}
				check(step, "reserve or output")
			case 2, 3: // Commit or Discard an open reservation
				sel, flags := next(), flagsOf(next())
				if len(model.open) == 0 {
					break
				}
				j := sel % len(model.open)
				rec := model.recs[model.open[j]]
				discard := op%8 == 3
				var err error
				if discard {
					err = r.Discard(rec.res, flags)
				} else {
					err = r.Commit(rec.res, flags)
				}
				if flags&^(NoWakeup|ForceWakeup) != 0 {
					if !errors.Is(err, syscall.EINVAL) {
						t.Fatalf("step %d: commit with flags %#x: %v, want EINVAL", step, flags, err)
					}
					check(step, "bad commit flags")
					break
				}
				if err != nil {
					t.Fatalf("step %d: commit or discard of the record at %d: %v", step, rec.pos, err)
				}
				finished(rec, flags, discard)
				model.open = slices.Delete(model.open, j, j+1)
				model.finished = append(model.finished, rec.res)
				check(step, "commit or discard")
			case 4: // Consume k records (8 or more: all of them)
				k := next() % 9
				var got []fuzzRecord
				var n int
				var err error
				batch := op&16 != 0 // with ConsumeBatch, breaking out after k
				if batch {
					deliverable := model.deliverable()
					n, err = rd.ConsumeBatch(func(_ Source, b *Batch) error {
						for data := range b.All() {
							fuzzCheckView(t, r, data)
							if k < 8 && len(got) == k {
								return errStop
							}
							// All says no position: take the one
							// expected, the data is compared.
							pos := uint64(0)
							if len(got) < len(deliverable) {
								pos = deliverable[len(got)].pos
							}
							got = append(got, fuzzRecord{pos, bytes.Clone(data)})
						}
						return nil
					})
				} else {
					n, err = rd.Consume(func(rec Record) error {
						fuzzCheckView(t, r, rec.Data)
						if k < 8 && len(got) == k {
							return errStop
						}
						got = append(got, fuzzRecord{rec.Pos, bytes.Clone(rec.Data)})
						return nil
					})
				}
				avail := len(model.deliverable())
				wantErr := error(nil)
				if k < 8 && k < avail {
					wantErr = errStop
				}
				if n != len(got) || n != min(k, avail) && k < 8 || n != avail && k >= 8 || err != wantErr {
					t.Fatalf("step %d: Consume of %d = %d, %v (callbacks %d), want %d records of %d and error %v", step, k, n, err, len(got), min(k, avail), avail, wantErr)
				}
				take(step, "Consume", got)
				check(step, "consume")
			case 5:
				sel := next()
				if op&16 != 0 {
					// A consumer jumps ahead, past records busy or not, as
					// a buggy or hostile one may: the Reader is replaced
					// by one starting at a later record boundary. The
					// records skipped are never handed out, and producers
					// must not overwrite the busy ones (pending_pos).
					j := model.consIdx + sel%(len(model.recs)-model.consIdx+1)
					pos := model.prod
					if j < len(model.recs) {
						pos = model.recs[j].pos
					}
					rd.Close()
					mem.consumerPos.Store(pos)
					if rd, err = NewReader(r); err != nil {
						t.Fatal(err)
					}
					model.consIdx, model.cons = j, pos
					check(step, "jump")
					break
				}
				// Commit or Discard a reservation already finished.
				discard := op&8 != 0
				if len(model.finished) == 0 {
					break
				}
				v := model.finished[sel%len(model.finished)]
				var err error
				if discard {
					err = r.Discard(v, 0)
				} else {
					err = r.Commit(v, ForceWakeup)
				}
				if !errors.Is(err, ErrNotReserved) {
					t.Fatalf("step %d: stale commit or discard of the record at %d: %v, want ErrNotReserved", step, v.pos, err)
				}
				check(step, "stale commit")
			case 6: // Peek
				var got []fuzzRecord
				if _, err := rd.peek(func(rec Record) error {
					fuzzCheckView(t, r, rec.Data)
					got = append(got, fuzzRecord{rec.Pos, bytes.Clone(rec.Data)})
					return nil
				}); err != nil {
					t.Fatalf("step %d: Peek: %v", step, err)
				}
				want := model.deliverable()
				if len(got) != len(want) {
					t.Fatalf("step %d: Peek handed out %d records, want %d", step, len(got), len(want))
				}
				compare(step, "Peek", got)
				check(step, "peek") // consumer_pos has not moved
			case 7: // ReadInto with a cancelled context: one record or Canceled
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				var rec Record
				err := rd.ReadInto(ctx, &rec)
				var got []fuzzRecord
				if err == nil {
					got = append(got, fuzzRecord{rec.Pos, rec.Data})
				} else if !errors.Is(err, context.Canceled) {
					t.Fatalf("step %d: ReadInto: %v", step, err)
				}
				if (len(got) == 1) != (len(model.deliverable()) > 0) {
					t.Fatalf("step %d: ReadInto = %v with %d records deliverable", step, err, len(model.deliverable()))
				}
				take(step, "ReadInto", got)
				check(step, "read")
			}
		}

		// Finally discard what is still open, and everything committed
		// must come out.
		for _, i := range model.open {
			rec := model.recs[i]
			if err := r.Discard(rec.res, NoWakeup); err != nil {
				t.Fatalf("final discard of the record at %d: %v", rec.pos, err)
			}
			finished(rec, NoWakeup, true)
		}
		model.open = nil
		var got []fuzzRecord
		if _, err := rd.Consume(func(rec Record) error {
			got = append(got, fuzzRecord{rec.Pos, bytes.Clone(rec.Data)})
			return nil
		}); err != nil {
			t.Fatalf("final Consume: %v", err)
		}
		if want := model.deliverable(); len(got) != len(want) {
			t.Fatalf("final Consume handed out %d records, want %d", len(got), len(want))
		}
		take(-1, "final Consume", got)
		if model.cons != model.prod {
			t.Fatalf("after the final Consume, consumer_pos %d, producer_pos %d", model.cons, model.prod)
		}
		check(-1, "final")
	})
}

// FuzzSharedFile opens ring files holding arbitrary bytes: Open refuses
// them or maps them, and then neither producing nor consuming may panic,
// hang or touch memory outside the mapping. The two numbers overwrite a
// 16-bit word of the file, so that a mutation lands in the position pages a
// hostile process would write, not only in the data.
func FuzzSharedFile(f *testing.F) {
	dir := f.TempDir()
	r, err := Create("seed", 4096, WithDir(dir))
	if err != nil {
		f.Fatal(err)
	}
	r.Output([]byte("a record"), 0)
	r.Close()
	good, _ := os.ReadFile(dir + "/seed")
	f.Add(good, uint16(0), uint16(0))
	f.Add(good, uint16(4096), uint16(0xffff)) // producer_pos garbage
	f.Add(good, uint16(8192), uint16(0x7fff)) // a header claiming too much
	f.Add(good[:5000], uint16(0), uint16(0))
	f.Fuzz(checkSharedFile)
}

// FuzzOverwriteCursor feeds arbitrary memory to the reader of a ring in
// overwrite mode: consumer, producer and overwrite positions, the count
// words, and the data area from the consumer position on. The reader must
// start where the kernel's overwrite reader starts (overwrite_pos when the
// consumer is behind it), hand out exactly the records walkImage finds from
// there, report ErrCorrupt exactly when walkImage does, never panic or hang,
// and never write the data area.
func FuzzOverwriteCursor(f *testing.F) {
	seeds := []struct {
		cons, avail uint64
		overDelta   int64
		seq         uint64
		data        []byte
	}{
		{0, 32, 0, 0, fuzzHeader(fuzzHeader(nil, 3, []byte("abc")), 1, []byte("z"))},
		// The consumer lapped: overwrite_pos at the second record.
		{0, 32, 16, 2, fuzzHeader(fuzzHeader(nil, 3, []byte("abc")), 1, []byte("z"))},
		// overwrite_pos past the producer, in the middle of a record, behind
		// the consumer, misaligned.
		{0, 32, 48, 0, fuzzHeader(nil, 16, make([]byte, 16))},
		{0, 32, 8, 0, fuzzHeader(nil, 16, make([]byte, 16))},
		{64, 32, -64, 0, fuzzHeader(nil, 16, make([]byte, 16))},
		{0, 32, 3, 0, fuzzHeader(nil, 16, make([]byte, 16))},
		// A sequence word as a writer that died mid-update leaves it (odd;
		// taken as even below, see there).
		{0, 32, 16, 7, fuzzHeader(fuzzHeader(nil, 3, []byte("abc")), 1, []byte("z"))},
		// A busy record after overwrite_pos; a huge header.
		{0, 32, 16, 0, fuzzHeader(fuzzHeader(nil, 3, []byte("abc")), busyBit|1, []byte("z"))},
		{1<<64 - 16, 4096, 8, 0, fuzzHeader(nil, maxRecordSize, nil)},
	}
	for _, s := range seeds {
		f.Add(s.cons, s.avail, s.overDelta, s.seq, s.data)
	}
	r, err := New(fuzzSize, WithOverwrite())
	if err != nil {
		f.Fatal(err)
	}
	m := r.mem
	f.Cleanup(func() {
		for _, w := range []*atomic.Uint64{m.consumerPos, m.producerPos, m.pendingPos, m.overwritePos, m.overSeq, m.overCount, m.consCount} {
			w.Store(0)
		}
		if err := r.Close(); err != nil {
			f.Error(err)
		}
	})
	size := m.size()
	f.Fuzz(func(t *testing.T, cons, avail uint64, overDelta int64, seq uint64, data []byte) {
		prod, over := cons+avail, cons+uint64(overDelta)
		data = data[:min(uint64(len(data)), size)]
		image := make([]byte, size)
		for i, b := range data {
			image[(cons+uint64(i))%size] = b
		}
		start := cons
		if int64(over-cons) > 0 && cons != prod {
			start = over
		}
		want := walkImage(image, start, prod)

		clear(m.data[:size])
		off := cons & m.mask
		copy(m.data[off:off+uint64(len(data))], data)
		m.consumerPos.Store(cons)
		m.producerPos.Store(prod)
		m.pendingPos.Store(prod)
		m.overwritePos.Store(over)
		// Even: an in-process ring's reader waits out an odd word for as
		// long as markPatience, since its writers cannot die mid-update
		// (TestOverwriteMarkWriterGone has a shared ring's dead writer).
		m.overSeq.Store(seq &^ 1)
		m.overCount.Store(0)
		m.consCount.Store(0)
		rd, err := NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		var got []fuzzRecord
		for call := 0; call < 2; call++ {
			_, err = rd.Consume(func(rec Record) error {
				if len(got) > int(size/8) {
					t.Fatal("Consume handed out more records than fit in the ring")
				}
				got = append(got, fuzzRecord{rec.Pos, bytes.Clone(rec.Data)})
				return nil
			})
			if want.corrupt != errors.Is(err, ErrCorrupt) || (err != nil && !errors.Is(err, ErrCorrupt)) {
				t.Fatalf("Consume call %d ended with %v; corruption expected: %v", call+1, err, want.corrupt)
			}
		}
		fuzzCompare(t, "Consume", got, want)
		if !bytes.Equal(m.data[:size], image) {
			t.Fatal("Consume changed the data area")
		}
	})
}
