package ringo

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringo-bpf/ringo/internal/sys"
)

// Ring is a BPF ring buffer in user space: the memory layout of
// BPF_MAP_TYPE_RINGBUF to the byte, and the producer side of the BPF helpers
// for Go code. Any number of goroutines may produce into it at once; one
// Reader consumes it.
//
// After any sequence of Output, Reserve, Commit and Discard calls and
// consumer advances, the data area and the producer, pending and consumer
// positions hold exactly what a kernel ring would after the same sequence.
type Ring struct {
	ringMem
	file int // the memory file behind the mapping
	bell doorbell
	// park is set while the ring's Reader sleeps on a channel rather
	// than in epoll_wait (Reader.parked): a producer that wakes it sends
	// there, not to bell.
	park atomic.Pointer[chan struct{}]
	name string
	path string // the file of a shared ring; empty for an in-process one

	// mu guards closing. Reservations are serialised by the spin lock in
	// the ring's memory (lock.go), like the kernel ring's; commits and
	// discards take no lock.
	mu     sync.Mutex
	closed atomic.Bool

	// wakeups counts how many times a commit, discard or output decided
	// to wake the consumer, by the kernel's rule: forced, or adaptive (the
	// consumer had caught up with the record) and not suppressed.
	wakeups  atomic.Uint64
	attached atomic.Bool // a Reader consumes this ring

	// single is set for rings made WithSingleProducer: reservations
	// take no lock (single.go).
	singleWriter
}

// New creates a ring with a data area of size bytes: a power of two and a
// multiple of the page size, as for a kernel ring's max_entries. An invalid
// size gets an error that wraps syscall.EINVAL and names the nearest valid
// size.
func New(size int, opts ...Option) (*Ring, error) {
	if err := validateSize(int64(size)); err != nil {
		return nil, err
	}
	o, err := gather("New", optName|optOverwrite|optSingle, opts)
	if err != nil {
		return nil, err
	}
	if o.name == "" {
		o.name = "ringo"
	}
	fd, err := sys.MemFile(o.name, fileSize(size))
	if err != nil {
		return nil, fmt.Errorf("ringo: create ring %q: %w", o.name, err)
	}
	bell, err := sys.NewEventFD()
	if err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("ringo: create ring %q: %w", o.name, err)
	}
	r, err := mapRing(fd, size, o.name, bell)
	if err != nil {
		bell.Close()
		closeFD(fd)
		return nil, fmt.Errorf("ringo: create ring %q: %w", o.name, err)
	}
	id := ident{magic: ringMagic, version: ringVersion, pageSize: uint32(sys.PageSize), size: uint64(size), nonce: newNonce()}
	if o.overwrite {
		id.flags |= ringFlagOverwrite
		r.mem.enableOverwrite(r.mapping, true)
	}
	*identity(r.mapping) = id
	// Its Reader is in this process too (attach refuses a second one, and
	// the memory file is never opened elsewhere), so it can fence for
	// the producers.
	r.mem.fencedByReader = sys.ProcessBarrierAvailable()
	r.mem.readerFences.Store(r.mem.fencedByReader)
	r.single = o.single && sys.ProcessBarrierAvailable()
	return r, nil
}

// fileSize is the length of the file behind a ring of size data bytes.
func fileSize(size int) int { return 2*sys.PageSize + size }

// mapRing maps the ring file fd with a data area of size bytes.
func mapRing(fd, size int, name string, bell doorbell) (*Ring, error) {
	m, err := sys.MapRing(fd, size, sys.ReadWrite, sys.ReadWrite, false)
	if err != nil {
		return nil, err
	}
	return &Ring{ringMem: ringMem{mem: newMemory(m, size), mapping: m, label: name}, file: fd, bell: bell, name: name}, nil
}

// doorbell is how producers wake a ring's consumer: an eventfd in one
// process, a named pipe between processes.
type doorbell interface {
	Signal() error
	Drain() error
	FD() int
	Close() error
}

// Close releases the ring's memory. It fails, leaving the ring usable for
// committing and discarding but closed to new reservations, while
// reservations are still open or a Reader still consumes the ring: their
// memory must outlive them.
func (r *Ring) Close() (err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.guarded && r.mapping != nil {
		defer r.catchFault(guardFaults(), &err)
	}
	if r.mapping == nil {
		return nil
	}
	r.closed.Store(true)
	if w := r.mem.space; w != nil {
		w.wake() // waiting producers of this ring see it closed
	}
	n := r.closeReservations()
	if n > 0 {
		return fmt.Errorf("ringo: close ring %q: %d reservations are still open: commit or discard them first", r.name, n)
	}
	if r.attached.Load() {
		return fmt.Errorf("ringo: close ring %q: a Reader still consumes it: close the Reader first", r.name)
	}
	// A producer that passed its closed check just before may still be on
	// its way into the memory (Output copies and commits after the lock).
	// Rather than unmap under it, swap the ring's pages for blank
	// anonymous ones: the memory is freed, a late access is harmless, and
	// the address range and the doorbell go back to the system once the
	// Ring itself is garbage.
	err = r.mapping.Retire()
	closeFD(r.file)
	m, bell := r.mapping, r.bell
	r.mapping = nil
	runtime.SetFinalizer(r, func(*Ring) {
		m.Unmap()
		if bell != nil {
			bell.Close()
		}
	})
	if err != nil {
		return fmt.Errorf("ringo: close ring %q: %w", r.name, err)
	}
	return nil
}

// Output copies data into the ring as one record and commits it, like
// bpf_ringbuf_output. flags are 0, NoWakeup or ForceWakeup; any other bit is
// an error wrapping syscall.EINVAL. A full ring returns ErrFull, which
// matches syscall.EAGAIN as the helper's -EAGAIN does.
func (r *Ring) Output(data []byte, flags uint64) error {
	if r.guarded {
		return r.outputShared(data, flags)
	}
	return r.output(data, flags)
}

// outputShared is Output for a shared ring, whose memory may fault.
func (r *Ring) outputShared(data []byte, flags uint64) (err error) {
	defer r.catchFault(guardFaults(), &err)
	return r.output(data, flags)
}

func (r *Ring) output(data []byte, flags uint64) error {
	if flags&^wakeupFlags != 0 {
		return badFlags("output", flags)
	}
	pos, slot, err := r.reserve(uint64(len(data)), nil, true)
	if err != nil {
		return err
	}
	off := pos & r.mem.mask
	copy(r.mem.data[off+HeaderSize:], data)
	r.finish(off, uint32(len(data))|busyBit, flags, false, slot, true)
	return nil
}

// Reservation is a record reserved in a ring and not yet committed or
// discarded: the view Reserve returns and Commit or Discard takes back. It
// is a small value; copying it is fine, but only one Commit or Discard of a
// reservation succeeds.
type Reservation struct {
	ring *Ring     // the ring it was reserved in, or
	user *UserRing // the user ring
	pos  uint64    // position of the record's header
	buf  []byte
	slot int // index in a shared ring's owner table, or -1
}

// Bytes returns the reserved payload: exactly the reserved number of bytes
// (capacity too) inside the ring's memory, contiguous even when the record
// wraps past the end of the data area. It is valid until Commit or Discard.
func (v Reservation) Bytes() []byte { return v.buf }

// Reserve reserves a record of n bytes, like bpf_ringbuf_reserve. Fill its
// Bytes, then pass it to Commit or Discard; until then the consumer waits at
// this record, so keep reservations short. Like the helper, Reserve does not
// clear the memory.
//
// A full ring returns ErrFull; a record that cannot fit even in an empty
// ring (n > Size()-16) returns ErrTooLarge.
func (r *Ring) Reserve(n int) (res Reservation, err error) {
	if r.guarded {
		defer r.catchFault(guardFaults(), &err)
	}
	if n < 0 {
		return Reservation{}, negativeSize(n)
	}
	pos, slot, err := r.reserve(uint64(n), nil, true)
	if err != nil {
		return Reservation{}, err
	}
	return r.reservation(pos, slot, n), nil
}

func negativeSize(n int) error {
	return fmt.Errorf("ringo: reserve %d bytes: negative size: %w", n, ErrTooLarge)
}

// reservation is the view of the n-byte record reserved at pos.
func (r *Ring) reservation(pos uint64, slot, n int) Reservation {
	p := pos&r.mem.mask + HeaderSize
	return Reservation{ring: r, pos: pos, buf: r.mem.data[p : p+uint64(n) : p+uint64(n)], slot: slot}
}

// reserve is __bpf_ringbuf_reserve: it returns the position of a new
// record's header, marked busy, with producer_pos already published, and
// for a shared ring the index of the owner slot it took (else -1).
//
// Wherever a process dies in here, holding the lock, the ring stays
// consistent for whoever takes the lock over: pending_pos only ever moves
// to a record boundary at or before the oldest busy record, the header is
// written past producer_pos where nobody reads it, the owner slot is
// written before producer_pos publishes the record, and producer_pos last.
//
// ctx bounds the wait for the lock of a shared ring that another process
// holds; without one, the wait gives up after lockPatience (lock.go).
// count says whether a refusal (ErrFull, ErrBusy) counts as a record
// dropped: a non-waiting call gives the record up, a waiting one tries
// again (wait.go).
func (r *Ring) reserve(n uint64, ctx context.Context, count bool) (uint64, int, error) {
	m := r.mem
	if n > maxRecordSize || recordSize(n) > m.mask {
		return 0, -1, ErrTooLarge
	}
	total := recordSize(n)
	// Loaded before the lock, as the kernel does: a stale (smaller) value
	// can only make the ring look fuller than it is.
	cons := m.consumerPos.Load()

	if err := r.lockReserve(ctx); err != nil {
		if count && errors.Is(err, ErrBusy) {
			m.countDrop(n)
		}
		return 0, -1, err
	}
	pend := m.pendingPos.Load()
	prod := m.producerPos.Load()
	if prod-pend > m.mask {
		// Reservations keep producer_pos within size-1 of pending_pos,
		// which only grows: only a process writing garbage into a shared
		// ring gets here. Refuse rather than walk or write on its word.
		r.unlockReserve()
		return 0, -1, fmt.Errorf("%w: producer position %d is more than the ring size past pending position %d", ErrCorrupt, prod, pend)
	}
	// Walk pending_pos over every record that is no longer busy: the
	// oldest record still being written bounds how far producers may run
	// ahead, so that a slow producer's reservation is never overwritten.
	// The kernel writes pend < prod; compared as a signed distance here,
	// so that positions near 2^64 wrap as the spec requires.
	for int64(prod-pend) > 0 {
		w := m.lenWord(pend & m.mask).Load()
		if w&busyBit != 0 {
			break
		}
		pend += recordSize(uint64(payloadLen(w)))
	}
	if pend != m.pendingPos.Load() {
		// Before the header and producer_pos below: see commit.
		storeRelease(m.pendingPos, pend)
	}

	// The consumer never stores a position past producer_pos, nor, unless
	// producers overwrite, a lap behind it: anything else is garbage,
	// which would make the ring look full for ever. (cons was loaded
	// before the lock, and may be that old: look again before saying so.)
	if int64(prod-cons) < 0 || (m.overwritePos == nil && prod-cons > m.mask) {
		if c := m.consumerPos.Load(); int64(prod-c) < 0 || (m.overwritePos == nil && prod-c > m.mask) {
			r.unlockReserve()
			return 0, -1, fmt.Errorf("%w: consumer position %d is not within the ring size before producer position %d", ErrCorrupt, c, prod)
		}
	}
	newProd := prod + total
	// Never past a record still being written; past unconsumed ones only
	// in overwrite mode, which then overwrites the oldest records.
	if newProd-pend > m.mask || (m.overwritePos == nil && newProd-cons > m.mask) {
		r.unlockReserve()
		if count {
			m.countDrop(n)
		}
		return 0, -1, ErrFull
	}
	if m.overwritePos != nil {
		if err := m.overwriteTo(prod, newProd); err != nil {
			r.unlockReserve()
			return 0, -1, err
		}
	}
	slot := -1
	if m.slots != nil {
		if slot = m.claimSlot(prod); slot < 0 {
			r.unlockReserve()
			if count {
				m.countDrop(n)
			}
			return 0, -1, ErrFull
		}
	}
	m.writeHeader(prod&m.mask, uint32(n))
	// Publishes the busy header with it; pairs with the consumer's load of
	// producer_pos before it reads headers.
	storeRelease(m.producerPos, newProd)
	r.unlockReserve()
	// Ask for the cache line a few records ahead now, while this record
	// is written: the consumer read it last, and a store that still
	// waits for it would stall the commit's locked instruction below.
	prefetchWrite(&m.data[(newProd+prefetchAhead)&m.mask])
	return prod, slot, nil
}

// prefetchAhead is how far past its record a producer asks for the next
// cache lines: a few 64-byte records, measured best of 256, 1024 and 4096
// in BenchmarkTransfer.
const prefetchAhead = 256

// Commit publishes a reserved record, like bpf_ringbuf_submit. flags are
// 0, NoWakeup or ForceWakeup. The kernel ignores other bits; ringo refuses
// them with an error wrapping syscall.EINVAL and leaves the reservation
// open, so that a typo surfaces instead of changing wake-ups. A reservation
// that is not outstanding in this ring (committed or discarded already, even
// by a copy of it, or from another ring) returns ErrNotReserved and changes
// nothing.
func (r *Ring) Commit(v Reservation, flags uint64) error {
	return r.commit(v, flags, false)
}

// Discard drops a reserved record, like bpf_ringbuf_discard: it stays in the
// ring, marked discarded, and the consumer skips it. Flags and errors are
// those of Commit.
func (r *Ring) Discard(v Reservation, flags uint64) error {
	return r.commit(v, flags, true)
}

func (r *Ring) commit(v Reservation, flags uint64, discard bool) (err error) {
	if r.guarded {
		defer r.catchFault(guardFaults(), &err)
	}
	op := "commit"
	if discard {
		op = "discard"
	}
	if flags&^wakeupFlags != 0 {
		return badFlags(op, flags)
	}
	if v.ring != r {
		if v.ring == nil {
			return fmt.Errorf("%w: %s of a zero Reservation in ring %q", ErrNotReserved, op, r.name)
		}
		return fmt.Errorf("%w: %s in ring %q of a reservation of ring %q", ErrNotReserved, op, r.name, v.ring.name)
	}
	m := r.mem
	off := v.pos & m.mask
	w := m.lenWord(off).Load()
	// Outstanding reservations lie in [pending_pos, producer_pos) and are
	// busy. A reserver stores pending_pos before it writes a header, so a
	// busy header seen here from a later lap, in the slot of a record
	// committed long ago, comes with a pending_pos past that record.
	pend := m.pendingPos.Load()
	if w&busyBit == 0 || v.pos-pend >= m.producerPos.Load()-pend {
		return fmt.Errorf("%w: %s of the record at position %d of ring %q, which was already committed or discarded", ErrNotReserved, op, v.pos, r.name)
	}
	if !r.finish(off, w, flags, discard, v.slot, false) {
		return fmt.Errorf("%w: the record at position %d of ring %q was committed or discarded concurrently", ErrNotReserved, v.pos, r.name)
	}
	return nil
}

// finish is bpf_ringbuf_commit: clear the busy bit (and set the discard bit),
// then wake the consumer if forced, or if it has caught up with this very
// record and waking is not suppressed. It reports false if the length word
// was no longer w. owned says that no other goroutine can commit the record
// (Output's, which never leaves it).
func (r *Ring) finish(off uint64, w uint32, flags uint64, discard bool, slot int, owned bool) bool {
	m := r.mem
	nw := w ^ busyBit
	if discard {
		nw |= discardBit
	}
	if owned && m.fencedByReader {
		// Nobody else commits this record, and the Reader may fence for
		// us before it sleeps (memory.fencedByReader): a release store
		// publishes the payload, as the exchange does, without the
		// locked instruction's wait for the payload's cache lines. The
		// bytes in the ring are the same.
		storeRelease32(m.lenWord(off), nw)
		if !m.readerFences.Load() {
			// The Reader does not fence for us now (it sleeps
			// often): a locked instruction orders the store before
			// the wake-up test's loads. Loaded after the store: a
			// Reader that stops fencing runs the barrier once, after
			// which this load sees that it stopped, or this store is
			// visible to it (Reader.chooseFence).
			m.lenWord(off).CompareAndSwap(nw, nw)
		}
	} else if !m.lenWord(off).CompareAndSwap(w, nw) {
		// The kernel's xchg; a compare-and-swap so that two goroutines
		// committing the same slice cannot both succeed. Pairs with the
		// consumer's load of the length word.
		return false
	}
	if slot >= 0 {
		// After the swap: a record whose slot is free is never busy.
		m.slots[slot].owner.Store(0)
	}
	// Load after the swap (both sequentially consistent, or fenced by
	// the Reader): either the consumer sees the committed header, or we
	// see its consumer_pos and wake it. See Reader for its half.
	cons := m.consumerPos.Load()
	wake := flags&ForceWakeup != 0 || (flags&NoWakeup == 0 && (cons&m.mask == off || m.lapped(cons)))
	if wake {
		r.wakeups.Add(1)
	}
	// The kernel queues irq_work that wakes whoever waits; the system call
	// is only worth making if the Reader announced that it waits. Loaded
	// after the swap: pairs with the Reader's store of waiter before its
	// last look at the ring. A Reader asleep on an empty shared ring asks
	// to be woken by any commit (waitAnyCommit): a record reserved at its
	// position since may belong to a process that died, and the commits
	// after it are then the only sign that something waits behind it.
	if wake || (m.slots != nil && flags&NoWakeup == 0) {
		if w := m.waiter.Load(); w != 0 && (wake || w == waitAnyCommit) && m.waiter.Swap(0) != 0 {
			r.wakeReader()
		}
	}
	return true
}

// wakeReader wakes the ring's Reader: on its channel if it parks on one
// (no system call, and the Go scheduler hands the Reader's goroutine a
// thread the way a channel send does), else through the doorbell.
func (r *Ring) wakeReader() {
	if ch := r.park.Load(); ch != nil {
		poke(*ch)
		return
	}
	r.bell.Signal()
}

// closeReservations waits until no reservation that saw the ring open is
// under way, and counts the open ones. Called after closed is set. It takes
// no lock: a stopped process holding a shared ring's lock must not keep a
// handle that never reserved (a reader, `ringo show`) from closing.
func (r *Ring) closeReservations() int {
	if r.single {
		r.waitIdle()
		return r.openReservations()
	}
	// A reservation of this handle that saw closed unset holds the lock
	// now, or will see closed once it has it (lockReserve looks again):
	// wait for the first kind, which lets go within microseconds. (Both
	// sequentially consistent: our store of closed, then our load of the
	// lock word, against its swap of the lock word, then its load of
	// closed.)
	for start := time.Now(); r.mem.lockWord.Load() == r.mem.self; {
		if r.mem.slots != nil && time.Since(start) > lockPatience {
			// No goroutine of this handle holds the lock that long:
			// the word is a value another process wrote into the
			// shared ring (spun on, it hung Close for ever).
			break
		}
		runtime.Gosched()
	}
	if r.mem.slots != nil {
		// Other handles' reservations of a shared ring are theirs
		// to finish; only this handle's stop it closing.
		return r.mem.ownedReservations()
	}
	return r.openReservations()
}

// lockReserve starts a reservation: it takes the reservation lock, or for
// a single producer marks the reservation under way. It fails, holding
// nothing, if the ring is closed, or the lock could not be had (lock).
func (r *Ring) lockReserve(ctx context.Context) error {
	if r.single {
		return r.beginSingle(&r.closed, r.name)
	}
	if r.closed.Load() {
		return ErrClosed
	}
	if err := r.mem.lock(ctx); err != nil {
		if held, ok := err.(*lockHeldError); ok {
			held.ring = r.name
			return held
		}
		return fmt.Errorf("ringo: reserve in ring %q: %w", r.name, err)
	}
	if r.closed.Load() {
		// Close looked at the lock before we took it: it counts on no
		// reservation starting once it has.
		r.mem.unlock()
		return ErrClosed
	}
	return nil
}

// unlockReserve ends what lockReserve started.
func (r *Ring) unlockReserve() {
	if r.single {
		r.endSingle()
		return
	}
	r.mem.unlock()
}

// openReservations counts the busy records between pending_pos and
// producer_pos: reservations not yet committed or discarded. Called with
// the reservation lock held, or for a single producer with none under way.
func (r *Ring) openReservations() int {
	m := r.mem
	n := 0
	pend, prod := m.pendingPos.Load(), m.producerPos.Load()
	// Compared as distances from pend, so that a header corrupted to
	// claim too much ends the walk instead of skipping past prod.
	for pos, steps := pend, uint64(0); pos-pend < prod-pend && steps <= m.size()/HeaderSize; steps++ {
		w := m.lenWord(pos & m.mask).Load()
		if w&busyBit != 0 {
			n++
		}
		pos += recordSize(uint64(payloadLen(w)))
	}
	return n
}

// The Source methods.
func (r *Ring) pollFD() int { return r.bell.FD() }
func (r *Ring) notified()   { r.bell.Drain() }
func (r *Ring) parkOn(ch *chan struct{}) bool {
	if r.path != "" {
		return false // a shared ring: its producers may be elsewhere
	}
	r.park.Store(ch)
	return true
}
func (r *Ring) attach() error {
	if !r.attached.CompareAndSwap(false, true) {
		return fmt.Errorf("ringo: ring %q already has a Reader: a ring has one consumer", r.name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mapping == nil {
		r.attached.Store(false)
		return fmt.Errorf("ringo: ring %q: %w", r.name, ErrClosed)
	}
	if err := r.claimConsumer(); err != nil {
		r.attached.Store(false)
		return err
	}
	return nil
}
func (r *Ring) detach() {
	r.park.Store(nil)
	r.releaseConsumer()
	r.attached.Store(false)
}

func badFlags(op string, flags uint64) error {
	return invalid("%s flags %#x: only NoWakeup (%#x) and ForceWakeup (%#x) exist", op, flags, NoWakeup, ForceWakeup)
}
