package ringo

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringo-bpf/ringo/internal/sys"
)

// A Source is a ring a Reader can consume: its mapped memory (positions and
// the doubled data area) and a descriptor that polls readable when its
// producers wake the consumer. *Ring is a Source; so are the kernel and
// shared rings of this package.
type Source interface {
	// Positions returns the ring's positions, as bpf_ringbuf_query
	// reads them.
	Positions() Positions
	// Loss returns what the ring lost so far.
	Loss() (Loss, error)
	ringView() *ringMem
	identity() Identity
	pollFD() int
	// notified is called after the poll descriptor reported a wake-up.
	notified()
	// parkOn has the ring's producers wake its Reader by a send on *ch
	// instead of through the poll descriptor (nil: through it again). It
	// reports false, and does nothing, for a ring whose producers may be
	// outside this process.
	parkOn(ch *chan struct{}) bool
	// recoverHead is called when the record at pos, the head, has been
	// busy for a while; it reports whether the ring recovered it (its
	// producer died) so the head should be looked at again.
	recoverHead(pos uint64) bool
	// attach claims the ring for one consumer; detach releases it.
	attach() error
	detach()
}

// Record is one record handed out by a Reader.
type Record struct {
	// Source is the ring the record came from.
	Source Source
	// Pos is the position of the record's header in its ring.
	Pos uint64
	// Data is the payload. From Consume and Records it is a view into
	// the ring's memory, valid only until the callback returns or the loop
	// moves on; from Read and ReadInto it is a copy. Reslicing it is
	// fine: the record's extent in the ring travels apart from it.
	Data []byte

	// size is the bytes the record takes in its ring (header and padding
	// included), for Release.
	size uint64
}

// Reader is the consumer of one or more rings of any kind, waiting on all of
// them at once: in one epoll instance, or on a channel while every ring is
// an in-process one (see wait). It is the single consumer of each ring it
// holds. Its methods are for one goroutine at a time, except Close, which
// any goroutine may call to interrupt a blocked Read.
//
// The wake-up protocol: a Reader stores consumer_pos after the records it
// has handled, then loads producer_pos and the next header; a producer
// commits (swaps the header's length word), then loads consumer_pos and wakes
// the Reader if it equals the record's position. Both sides use sequentially
// consistent atomics (or, for Output into an in-process ring, a plain store
// and the Reader's process-wide barrier: see ready), so at least one sees
// the other: a Reader about to sleep on a busy or missing record is always
// woken by that record's commit.
type Reader struct {
	mu     sync.Mutex // held by the consuming goroutine
	poller *sys.Poller
	rings  []*readerRing
	keys   []int
	turn   int // the ring whose turn it is
	taken  int // records taken from it in this turn
	closed atomic.Bool
	freed  sync.Once

	explicit bool // explicit release (release.go)

	// inside is 1 while a Consume call or a Records loop runs (on the
	// consumer's goroutine, which holds mu meanwhile): the methods their
	// callbacks and loop bodies may call (Release, Rewind, Held) then
	// take no lock. rewinds counts Rewinds, so that a consume loop knows
	// one happened in its callback.
	inside  atomic.Int32
	rewinds uint64

	wakeups atomic.Uint64

	// shared is set while a ring is a shared one, whose memory may fault
	// (faults.go): the methods that touch the rings then guard against it.
	shared bool
	// spinFirst is set while a ring has producers in user space and the
	// Reader sleeps in epoll_wait (a shared ring, or an in-process one
	// beside kernel rings): about to sleep, the Reader spins first (see
	// wait).
	spinFirst bool
	// parked is set while every ring is an in-process one and no set
	// that changes is followed: producers then wake the Reader by a send
	// on park, and it sleeps there instead of in epoll_wait (two system
	// calls and a thread woken through the kernel spared a sleep). timer
	// bounds such a sleep.
	parked bool
	park   chan struct{}
	timer  *time.Timer

	// statRings is a copy of rings for Stats and Losses, which must not
	// wait for the consumer's lock (a blocked Read holds it).
	ringsMu   sync.Mutex
	statRings []*readerRing

	nextKey  int          // poller key for the next ring added
	sets     []*readerSet // the ring sets followed
	removing int          // how many rings are being removed

	// The context whose cancellation interrupts a blocked wait, registered
	// once and kept while the same context is passed again, so that a
	// blocking read does not allocate each time it sleeps.
	waitCtx  context.Context
	stopWait func() bool

	// sleeping, set only by tests before the Reader is used, is called
	// each time the Reader is about to sleep (in epoll_wait or parked): it has
	// announced its wait and its last look found every ring empty or busy
	// at its head, so a commit from then on must wake it. Tests act on
	// it instead of sleeping and hoping the Reader is asleep by then.
	// Only the sleeping path looks at it.
	sleeping func()
	// spins counts the looks the Reader took while it spun before
	// sleeping (wait, spinFirst). spinSkips is how many waits are still
	// to sleep without a spin.
	spins     int
	spinSkips int
	// slept is how long the last sleep in the poller lasted,
	// runtimeWaits how many sleeps were in the runtime's poller (sleep).
	slept        time.Duration
	runtimeWaits int
}

type readerRing struct {
	src Source
	key int     // its key in the poller
	set RingSet // the set it came from, or nil
	// dropAt is when a ring being removed may be dropped once empty (zero
	// while it is not being removed): a moment after removal, so that a
	// producer that found the ring just before still gets its record read.
	dropAt time.Time
	cur    cursor
	// stored is the consumer position last stored to the ring. fenceOwed
	// says it was stored with a release store, without the StoreLoad fence
	// the wake-up protocol needs before the Reader sleeps (ready).
	stored    uint64
	fenceOwed bool
	// sleptAt is the cursor's passed count when the Reader last went to
	// sleep, fenceFrom fenceWorth (tests change it): see chooseFence.
	sleptAt, fenceFrom uint64
	// consumed and consumedBytes publish the cursor's passed counts for
	// Stats, at every commit.
	consumed, consumedBytes atomic.Uint64
	// Explicit release (release.go): explicit is the Reader's mode;
	// released is the end of the last record released; held are the
	// records handed out since, heldBytes their payload bytes.
	explicit  bool
	released  uint64
	held      []heldRecord
	heldBytes uint64
	// taken is how many bytes of positions the current Consume call has
	// taken from this ring: one call takes at most a ring's worth. (Bytes
	// taken, not the distance moved: a cursor that jumps over records
	// producers overwrote moves further.)
	taken uint64
	// stallPos is the busy head of a shared ring last seen, and
	// stallCheck when it is next to be looked into (see stalled).
	stallPos   uint64
	stallCheck time.Time
	// batch is the walk of ConsumeBatch, and of run (Consume).
	batch Batch
}

// spinFor is how long a Reader of user-space rings looks at its rings
// again, yielding in between, before it sleeps.
const spinFor = 5 * time.Microsecond

// spinRetry: after a spin that found nothing, one wait in spinRetry spins.
const spinRetry = 8

// runtimeWaitAfter: after a sleep in epoll_wait this long or longer, the
// Reader sleeps in the runtime's poller (sys.Poller.WaitInRuntime)
// instead, and back in epoll_wait after a shorter one. BenchmarkStreamPaced,
// the CPU of the process's other threads a record (AMD EPYC), each way
// throughout: at 1 k records/s 169-184 µs in epoll_wait, 66-122 in the
// runtime's poller; at 100 k/s 0.9-1.0 µs against 3.2-3.5.
const runtimeWaitAfter = 500 * time.Microsecond

// batchRecords is how many records a Reader takes from one ring before it
// turns to the next, so that a flooding ring cannot starve the others.
const batchRecords = 256

// NewReader returns a Reader over the given rings.
func NewReader(rings ...Source) (*Reader, error) {
	p, err := sys.NewPoller()
	if err != nil {
		return nil, fmt.Errorf("ringo: new reader: %w", err)
	}
	r := &Reader{poller: p, park: make(chan struct{}, 1)}
	for _, s := range rings {
		if err := r.Add(s); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

// ringsChanged refreshes statRings; called with the consumer's lock held
// after each change of rings.
func (r *Reader) ringsChanged() {
	r.ringsMu.Lock()
	r.statRings = slices.Clone(r.rings)
	r.ringsMu.Unlock()
	r.shared = slices.ContainsFunc(r.rings, func(rr *readerRing) bool { return rr.recovers() })
	r.chooseSleep()
}

// chooseSleep decides where the Reader sleeps (parked) and whether it spins
// first, after each change of its rings and sets; r.mu held, so the Reader
// is awake: it announces and looks again before its next sleep, and a
// producer that woke it the other way meanwhile had its record seen by
// that look. (That wake-up, left in the eventfd or the channel, ends a
// later sleep there at once: a look for nothing.)
func (r *Reader) chooseSleep() {
	r.parked = len(r.rings) > 0 && !slices.ContainsFunc(r.sets, func(rs *readerSet) bool { return rs.changes })
	for _, rr := range r.rings {
		if r.parked && !rr.src.parkOn(&r.park) {
			r.parked = false
		}
	}
	if !r.parked {
		for _, rr := range r.rings {
			rr.src.parkOn(nil)
		}
	}
	r.spinFirst = !r.parked && slices.ContainsFunc(r.rings, func(rr *readerRing) bool { return rr.cur.mem.space != nil })
}

// lock takes the consumer's lock for the method named what, failing if the
// Reader is closed, or if called from inside a Consume callback or a
// Records loop, where the consumer's goroutine holds the lock already.
func (r *Reader) lock(what string) error {
	if r.inside.Load() > 0 {
		return fmt.Errorf("ringo: %s inside a Consume callback or a Records loop: only Release, Rewind, Held, Stats and Close may be called there", what)
	}
	r.mu.Lock()
	if r.closed.Load() {
		r.unlock()
		return ErrClosed
	}
	return nil
}

// enter is lock for the methods a callback may call (Release, Rewind,
// Held): inside one it takes nothing, the callback's caller holding the
// lock, and reports locked false.
func (r *Reader) enter() (locked bool, err error) {
	if r.inside.Load() > 0 {
		if r.closed.Load() {
			return false, ErrClosed
		}
		return false, nil
	}
	if err := r.lock(""); err != nil {
		return false, err
	}
	return true, nil
}

// unlock releases the consumer's lock, and the Reader's resources if Close
// was called meanwhile. Close and unlock each check after their own step
// (Close: mark closed, then try the lock; unlock: unlock, then check the
// mark), so one of them always frees.
func (r *Reader) unlock() {
	r.mu.Unlock()
	if r.closed.Load() && r.mu.TryLock() {
		r.free()
		r.mu.Unlock()
	}
}

// Add adds a ring to the Reader. The Reader becomes its single consumer and
// continues from its consumer position.
func (r *Reader) Add(s Source) (err error) {
	if err := r.lock("Add"); err != nil {
		return err
	}
	defer r.unlock()
	if s.ringView().guarded {
		defer r.catchFault(guardFaults(), &err)
	}
	return r.add(s, nil)
}

// add adds a ring, from set if not nil; called with r.mu held.
func (r *Reader) add(s Source, set RingSet) error {
	for _, rr := range r.rings {
		if rr.src == s {
			return fmt.Errorf("ringo: ring %v is in this reader already", s)
		}
	}
	if err := s.attach(); err != nil {
		return err
	}
	m := s.ringView().mem
	cons := m.consumerPos.Load()
	rr := &readerRing{src: s, key: r.nextKey, set: set, cur: cursor{mem: m, pos: cons, prod: cons}, stored: cons, explicit: r.explicit, released: cons, fenceFrom: fenceWorth}
	if m.consCount != nil {
		rr.cur.count = m.consCount.Load()
	}
	if err := r.poller.Add(s.pollFD(), rr.key); err != nil {
		s.detach()
		return fmt.Errorf("ringo: add ring %v to reader: %w", s, err)
	}
	r.nextKey++
	r.rings = append(r.rings, rr)
	r.ringsChanged()
	return nil
}

// Remove takes a ring out of the Reader once the records in it now are
// consumed: the Reader goes on handing them out, then lets the ring go
// (to be closed, or given to another Reader). It returns at once.
func (r *Reader) Remove(s Source) error {
	if err := r.lock("Remove"); err != nil {
		return err
	}
	defer r.unlock()
	for _, rr := range r.rings {
		if rr.src == s {
			r.startRemoval(rr)
			r.sweep()
			return nil
		}
	}
	return fmt.Errorf("ringo: ring %v is not in this reader", s)
}

// removeGrace is how long a ring taken out of a set stays in the Reader at
// least: a BPF program that looked the ring up just before it left the
// set may still be writing its record.
const removeGrace = 20 * time.Millisecond

// startRemoval marks rr to be dropped once drained; r.mu held.
func (r *Reader) startRemoval(rr *readerRing) {
	if rr.dropAt.IsZero() {
		grace := time.Duration(0)
		if rr.set != nil {
			grace = removeGrace
		}
		rr.dropAt = time.Now().Add(grace)
		r.removing++
	}
}

// sweep drops the rings being removed that are empty and past their
// grace; r.mu held.
func (r *Reader) sweep() {
	if r.removing == 0 {
		return
	}
	now := time.Now()
	for i := 0; i < len(r.rings); i++ {
		rr := r.rings[i]
		if rr.dropAt.IsZero() || now.Before(rr.dropAt) {
			continue
		}
		if _, _, st, err := rr.cur.next(); (err == nil && st != stepEmpty) || rr.holding() {
			continue // records (or one being written) left to read or release
		}
		rr.storePos()
		r.poller.Remove(rr.src.pollFD())
		rr.src.detach()
		if rr.set != nil {
			rr.set.released(rr.src)
		}
		r.rings = append(r.rings[:i], r.rings[i+1:]...)
		r.ringsChanged()
		r.removing--
		if r.turn > i || r.turn >= len(r.rings) {
			r.turn = max(0, r.turn-1) % max(1, len(r.rings))
			r.taken = 0
		}
		i--
	}
}

// nextDrop is how long until the next ring being removed may be dropped,
// or -1 if none is being removed.
func (r *Reader) nextDrop() time.Duration {
	d := time.Duration(-1)
	for _, rr := range r.rings {
		d = sooner(d, rr.dropAt)
	}
	return d
}

// sooner is d (a wait, -1 for none) or the time until at (at least a
// millisecond), whichever is shorter; a zero at is no time at all.
func sooner(d time.Duration, at time.Time) time.Duration {
	if at.IsZero() {
		return d
	}
	if u := max(time.Until(at), time.Millisecond); d < 0 || u < d {
		return u
	}
	return d
}

// Close releases the Reader and the rings it holds, which may then be closed
// or given to another Reader. It never waits: a Read blocked in another
// goroutine returns ErrClosed, and if a Reader method is running (even the
// one whose callback called Close) it frees the Reader as it returns.
func (r *Reader) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	r.poller.Interrupt()
	poke(r.park) // a parked Reader wakes to see closed
	if r.mu.TryLock() {
		r.free()
		r.mu.Unlock()
	}
	return nil
}

// free releases the rings and the poller, once; called with r.mu held.
func (r *Reader) free() {
	if r.shared {
		// Closing goes on whatever the rings' memory does.
		defer func(old bool) { faultError(old, recover(), r.mapped) }(guardFaults())
	}
	r.freed.Do(func() {
		if r.stopWait != nil {
			r.stopWait()
		}
		for _, rr := range r.rings {
			rr.storePos()
			rr.src.detach()
			if rr.set != nil && !rr.dropAt.IsZero() {
				rr.set.released(rr.src)
			}
		}
		r.rings = nil
		r.ringsChanged()
		for _, rs := range r.sets {
			rs.set.unwatch(r.poller)
		}
		r.poller.Close()
	})
}

// Wakeups returns how many times a blocked Reader was woken by its rings.
func (r *Reader) Wakeups() uint64 { return r.wakeups.Load() }

// storePos stores the cursor's position (in explicit release mode, the end of
// the last released record) as the ring's consumer_pos, freeing
// the space of the records before it. Pairs with the producers' load of
// consumer_pos in reserve and in the wake-up test.
func (rr *readerRing) storePos() { rr.store(false) }

// storeAwake is storePos for a consumer that is not about to sleep: at the
// end of a Consume, a batch, a Read. A kernel ring's producer wakes its
// consumer when it commits the record at consumer_pos (the adaptive
// wake-up), in the kernel, a few microseconds of its CPU each time; a
// consumer that stores the position it stopped at, right behind the
// producer, has the producer pay that for every batch of a stream, though
// nothing sleeps (BenchmarkStream, 64 B: 1-2 M records/s instead of 8-15).
// So it stores the start of the last record it passed instead, a position
// no commit is at: one record's space is freed a little later. Before it
// sleeps, the Reader stores its whole position (ready), which the wake-up
// needs.
func (rr *readerRing) storeAwake() {
	c := &rr.cur
	if m := c.mem; m.fencedByReader && c.passed-rr.sleptAt >= rr.fenceFrom && !m.readerFences.Load() {
		// Many records and no sleep: fence for Output again
		// (chooseFence), which costs nothing until the next sleep.
		// (Never in the look before a sleep, which decides whether
		// to fence before it begins.)
		m.readerFences.Store(true)
	}
	if c.mem.space != nil || rr.holding() || int64(c.last-rr.stored) <= 0 || int64(c.pos-c.last) <= 0 {
		rr.store(false)
		return
	}
	pos := c.pos
	c.pos = c.last
	rr.store(false)
	c.pos = pos
}

// store is storePos; midBatch says the consumer goes on reading this ring at
// once (advance), so that waiting producers are woken only once a quarter
// of the ring is free: a wake-up then pays for many records. Every other
// store (the end of a batch, of a Read, a Release, before sleeping) wakes
// them whatever it freed.
func (rr *readerRing) store(midBatch bool) { rr.storeAs(midBatch, midBatch) }

// settled reports whether the consumer position to store has been stored
// with the fence the wake-up protocol needs before the consumer sleeps: no
// store is owed.
func (rr *readerRing) settled() bool { return rr.stored == rr.target() && !rr.fenceOwed }

// releaseTo stores pos as a kernel ring's consumer_pos with a release
// store: a consumer going on at once needs no StoreLoad fence after its
// store (the one before it sleeps has it: storePos, ready), so a release
// store, as libbpf's, frees the space without the locked instruction's
// wait, cheap enough to make often. The fence is then owed.
func (rr *readerRing) releaseTo(pos uint64) {
	rr.stored = pos
	storeRelease(rr.cur.mem.consumerPos, pos)
	rr.fenceOwed = true
}

// storeAs is store; release says a kernel ring's consumer_pos may be stored
// with a release store (the consumer does not sleep next): the fence is
// then owed, and paid by the next store that is not a release store, ready
// making one before the Reader sleeps.
func (rr *readerRing) storeAs(midBatch, release bool) {
	c := &rr.cur
	// Only this goroutine stores them: a release store suffices (a
	// plain one on amd64). Held records are not consumed yet.
	storeRelease(&rr.consumed, c.passed-uint64(len(rr.held)))
	storeRelease(&rr.consumedBytes, c.passedBy-rr.heldBytes)
	if pos := rr.target(); rr.stored != pos || rr.fenceOwed && !release {
		rr.stored = pos
		if c.mem.consCount != nil {
			// Before consumer_pos: a consumer that takes over reads
			// the count of the records before the position it finds.
			c.mem.consCount.Store(c.count)
		}
		if release && c.mem.space == nil {
			rr.releaseTo(rr.stored)
		} else {
			// Pairs with the kernel's smp_load_acquire of
			// consumer_pos in bpf_ringbuf_commit (kernel/bpf/
			// ringbuf.c): a full barrier before the Reader's next
			// load of producer_pos, so that either the producer sees
			// this position and wakes the Reader, or the Reader sees
			// the record.
			c.mem.consumerPos.Store(rr.stored)
			rr.fenceOwed = false
		}
	}
	// After consumer_pos: pairs with a waiting producer's store of wanted
	// before its last try (wait.go).
	if w := c.mem.space; w != nil && w.wanted.Load() != 0 && (!midBatch || c.prod-rr.stored <= 3*c.mem.size()/4) {
		w.wake()
	}
	if c.lost|c.lostBytes != 0 {
		// After consumer_pos: until then Ring.Overwritten counts these
		// as lying between consumer_pos and overwrite_pos.
		c.mem.overwritten.Add(c.lost)
		c.mem.overwrittenBytes.Add(c.lostBytes)
		c.lost, c.lostBytes = 0, 0
	}
}

// advance moves past a record of total bytes, storing consumer_pos when
// the cursor reaches storeAt: seldom while there is room, so that the
// cache line producers read is not bounced for every record, and soon when
// producers are about to run out of space, so that few are refused for
// space the consumer has already freed.
func (rr *readerRing) advance(total uint64) {
	rr.pass(total)
	rr.storeSometimes()
}

// storeSometimes stores consumer_pos if the rule of advance says so.
func (rr *readerRing) storeSometimes() {
	if int64(rr.cur.pos-rr.storeAt(rr.cur.prod)) >= 0 {
		rr.store(true)
	}
}

// storeAt is the cursor position from which advance stores consumer_pos,
// prod being producer_pos as last loaded: once the consumer has passed a
// quarter of the space producers see free (the ring's size less what lies
// between consumer_pos and prod), but at least storeMin bytes. The
// interval follows the producers' rate: a consumer that keeps up finds the
// ring nearly empty and stores every quarter ring, so that the cache line
// producers read is not bounced for every record; one that falls behind
// finds it fuller at each look and stores more and more often, every
// storeMin bytes when it is full, so that few records are refused for
// space it has freed already. (A fixed fraction of the ring, 1/64 once half
// full, let BPF producers of 1 KiB records run into a full ring every 64
// records: 17-60% of their records dropped in BenchmarkStream.)
func (rr *readerRing) storeAt(prod uint64) uint64 {
	size := rr.cur.mem.size()
	free := uint64(0)
	if fill := prod - rr.stored; fill < size {
		free = size - fill
	}
	return rr.stored + max(free/4, storeMin)
}

// storeMin is the least a consumer moves between two stores of
// consumer_pos while it goes on reading.
const storeMin = 1 << 10

// Consume hands every record available now to fn, without blocking, and
// returns how many it handed over. Records are views into the ring's memory,
// valid until fn returns. If fn returns an error, Consume stops and returns
// it, and that record stays in the ring, to be handed out again; fn returns
// Stop to stop without an error. Rings take turns, a batch of records each,
// and one call takes at most one ring's worth of bytes from each ring, so
// it returns even while producers flood. fn may call Release, Rewind, Held,
// Stats and Close, but no other method of the Reader.
func (r *Reader) Consume(fn func(Record) error) (int, error) {
	return r.ConsumeN(-1, fn)
}

// ConsumeN is Consume that hands fn at most n records (no limit if n is
// negative), like libbpf's ring_buffer__consume_n.
func (r *Reader) ConsumeN(n int, fn func(Record) error) (int, error) {
	return r.turns(n, func(rr *readerRing, max int) (int, error) { return rr.consume(r, fn, max) })
}

// turns is Consume, ConsumeN and ConsumeBatch: rings take turns, each
// handing up to batchRecords records (fewer to reach n, unless n is
// negative) through take, until n are handed out or the rings are empty.
func (r *Reader) turns(n int, take func(rr *readerRing, max int) (int, error)) (total int, err error) {
	if err := r.lock("Consume"); err != nil {
		return 0, err
	}
	defer r.unlock()
	r.inside.Store(1)
	defer r.inside.Store(0)
	if r.shared {
		defer r.catchFault(guardFaults(), &err)
	}
	r.follow()
	defer r.sweep()
	// (The turns themselves are a function of their own, so that turns
	// has few enough returns for its defers to be open-coded: a call of
	// Consume for one record pays no deferred-call records.)
	return r.takeTurns(n, take)
}

// takeTurns is the loop of turns, with the Reader locked.
func (r *Reader) takeTurns(n int, take func(rr *readerRing, max int) (int, error)) (total int, err error) {
	for _, rr := range r.rings {
		rr.taken = 0
	}
	for len(r.rings) > 0 && total != n {
		got := 0
		for range r.rings {
			rr := r.rings[r.turn]
			max := batchRecords
			if n >= 0 {
				max = min(max, n-total)
			}
			k, err := take(rr, max)
			total += k
			got += k
			if err != nil {
				if err == Stop {
					err = nil
				}
				return total, err
			}
			if total == n {
				return total, nil
			}
			r.turn = (r.turn + 1) % len(r.rings)
		}
		if got == 0 {
			return total, nil
		}
	}
	return total, nil
}

// Stop is what a Consume callback returns to stop Consume without an
// error: the record it was handed stays in the ring, to be handed out again,
// and Consume returns nil.
var Stop = errors.New("ringo: stop consuming")

// consume hands up to max records of one ring to fn, then stores the
// consumer position. It stops early once the Reader is closed (fn may
// call Close). The record fn gets is passed already (and held, in explicit
// release mode), so that fn may release it; if fn fails, the cursor goes
// back to it, unless fn released or rewound meanwhile.
func (rr *readerRing) consume(r *Reader, fn func(Record) error, max int) (n int, err error) {
	if !rr.explicit && rr.cur.mem.overwritePos == nil {
		return rr.run(r, fn, max)
	}
	defer rr.storePos()
	size := rr.cur.mem.size()
	for n < max && rr.taken < size && !r.closed.Load() {
		data, total, st, err := rr.cur.next()
		if st == stepBusy && rr.recovers() && rr.stalled(time.Now()) {
			continue
		}
		if err != nil || st != stepRecord {
			return n, err
		}
		rec := Record{Source: rr.src, Pos: rr.cur.pos, Data: data, size: total}
		rr.pass(total)
		rewinds := r.rewinds
		if err := fn(rec); err != nil {
			if r.rewinds == rewinds && int64(rr.released-rec.Pos) <= 0 {
				rr.unpass(total)
			}
			return n, err
		}
		rr.storeSometimes()
		rr.taken += total
		n++
	}
	return n, nil
}

// peek hands the records the Reader has not handed out yet to fn, ring
// after ring, as views, without consuming them: a later Consume or Read
// returns them again. It stops when fn returns an error, and returns that
// error and how many records fn saw. (Tests check the cursor with it; users
// have Peek, which works on any ring beside any consumer.)
func (r *Reader) peek(fn func(Record) error) (n int, err error) {
	if err := r.lock("Peek"); err != nil {
		return 0, err
	}
	defer r.unlock()
	if r.shared {
		defer r.catchFault(guardFaults(), &err)
	}
	for _, rr := range r.rings {
		c := rr.cur
		for {
			data, total, st, err := c.next()
			if err != nil {
				return n, err
			}
			if st != stepRecord {
				break
			}
			if err := fn(Record{Source: rr.src, Pos: c.pos, Data: data}); err != nil {
				return n, err
			}
			c.pos += total
			n++
		}
	}
	return n, nil
}

// Read waits for the next record and returns a copy of it. It returns
// ctx.Err() when ctx is done (a deadline applies), and ErrClosed when the
// Reader is closed. Use ReadInto to reuse a buffer, Consume or Records to
// avoid the copy.
func (r *Reader) Read(ctx context.Context) (Record, error) {
	var rec Record
	err := r.ReadInto(ctx, &rec)
	return rec, err
}

// ReadInto waits for the next record like Read and copies it into rec,
// reusing rec.Data's memory when it is large enough. It stores the consumer
// position after each record, as libbpf does.
func (r *Reader) ReadInto(ctx context.Context, rec *Record) (err error) {
	if err := r.lock("ReadInto"); err != nil {
		return err
	}
	defer r.unlock()
	if r.shared {
		defer r.catchFault(guardFaults(), &err)
	}
	rr, data, total, err := r.next(ctx)
	if err != nil {
		return err
	}
	rec.Source, rec.Pos, rec.size = rr.src, rr.cur.pos, total
	rec.Data = append(rec.Data[:0], data...)
	rr.pass(total)
	// The whole position, not storeAwake's: the record's space is free
	// when ReadInto returns, as the doc and cilium/ebpf's ReadInto (which
	// the ringbuf drop-in builds on this) promise. A release store: the
	// Reader does not sleep now, and pays the fence before it does.
	rr.storeAs(false, true)
	return nil
}

// Records returns an iterator over records as they arrive, waiting when
// there are none. Each record is a view into the ring, valid until the loop
// moves on; it is consumed when the loop moves on or stops. The iterator
// ends after yielding an error: ctx.Err() when ctx is done, ErrClosed when
// the Reader is closed, or one wrapping ErrCorrupt. The loop body may call
// Release, Rewind, Held, Stats and Close, but no other method of the
// Reader.
func (r *Reader) Records(ctx context.Context) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		if err := r.lock("Records"); err != nil {
			yield(Record{}, err)
			return
		}
		defer r.unlock()
		r.inside.Store(1)
		defer r.inside.Store(0)
		for {
			rr, data, total, err := r.guardedNext(ctx)
			if err != nil {
				yield(Record{}, err)
				return
			}
			rec := Record{Source: rr.src, Pos: rr.cur.pos, Data: data, size: total}
			rr.pass(total) // before the body, which may release it
			more := yield(rec, nil)
			if err := r.guardedStore(rr, !more); err != nil || !more {
				if more {
					yield(Record{}, err)
				}
				return
			}
		}
	}
}

// guardedNext is next, guarded against faults of shared rings' memory; the
// loop body of Records is not (faults.go), since an iterator may not
// recover its body's panics.
func (r *Reader) guardedNext(ctx context.Context) (rr *readerRing, data []byte, total uint64, err error) {
	if r.shared {
		defer r.catchFault(guardFaults(), &err)
	}
	return r.next(ctx)
}

// guardedStore stores the consumer position after a record Records
// handed out, as advance does, or at once if the loop stops; guarded
// against faults.
func (r *Reader) guardedStore(rr *readerRing, stop bool) (err error) {
	if r.shared {
		defer r.catchFault(guardFaults(), &err)
	}
	if stop {
		rr.storePos()
	} else {
		rr.storeSometimes()
	}
	return nil
}

// next finds the next record, taking rings in turns of batchRecords and
// sleeping when every ring is empty or busy at its head. Called with r.mu
// held. The record is not consumed: the caller moves the cursor.
func (r *Reader) next(ctx context.Context) (*readerRing, []byte, uint64, error) {
	for {
		if r.closed.Load() {
			return nil, nil, 0, ErrClosed
		}
		r.follow()
		// One more step than there are rings: the ring whose turn ran out
		// is looked at again with a fresh turn after all the others.
		steps := len(r.rings) + 1
		if len(r.rings) == 0 {
			steps = 0 // a set with no rings yet: wait for one
		}
		for range steps {
			rr := r.rings[r.turn]
			if r.taken < batchRecords {
				data, total, st, err := rr.cur.next()
				if st == stepBusy && rr.recovers() && rr.stalled(time.Now()) {
					data, total, st, err = rr.cur.next()
				}
				if err != nil {
					rr.storePos()
					return nil, nil, 0, err
				}
				if st == stepRecord {
					r.taken++
					return rr, data, total, nil
				}
			}
			// Free what was consumed before turning away (ready
			// stores the rest before the Reader sleeps: producers
			// wake it only once consumer_pos has caught up).
			rr.storeAwake()
			r.turn = (r.turn + 1) % len(r.rings)
			r.taken = 0
		}
		if err := r.wait(ctx); err != nil {
			return nil, nil, 0, err
		}
	}
}

// wait sleeps until a ring signals, ctx is done or the Reader is closed.
// Every ring's consumer position has been stored and its head found empty
// or busy since, so every commit from now on wakes us (see Reader).
func (r *Reader) wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	timeout := time.Duration(-1)
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			// ctx's own timer fires at the deadline, perhaps a moment
			// after this clock says it passed: wait for it, so that
			// the error returned is always ctx.Err(), never while
			// ctx.Err() is still nil.
			<-ctx.Done()
			return ctx.Err()
		}
	}
	if ctx.Done() != nil && ctx != r.waitCtx && !r.parked {
		// (A parked Reader waits for ctx.Done itself.)
		if r.stopWait != nil {
			r.stopWait()
		}
		r.waitCtx, r.stopWait = ctx, context.AfterFunc(ctx, r.poller.Interrupt)
	}
	// Waking a Reader asleep in epoll_wait costs two system calls and a
	// trip through the scheduler, far more than a record: with producers
	// in user space, first look again for a few microseconds, yielding to
	// other goroutines (a producer may be one). Not when only BPF
	// programs produce: a yield helps none of them, and a spin without
	// one costs the CPU it was to save (BenchmarkStreamPaced, 64 B at
	// 10 k/s: 82 µs of CPU a record with an 80 µs spin, 9 without; libbpf
	// 7-10). Nor for a parked Reader, woken as a channel's receiver is
	// (BenchmarkUserPaced at 1 M/s: 410-460 ns of CPU a record with the
	// spin, 104-109 without; from a goroutine locked to its thread, a
	// yield hands the thread off through the scheduler). A spin that
	// found nothing says the producers write less often than it lasts:
	// the next spinRetry-1 waits sleep at once.
	if r.spinFirst {
		if r.spinSkips > 0 {
			r.spinSkips--
		} else if r.spin() {
			return nil
		} else {
			r.spinSkips = spinRetry - 1
		}
	}
	r.chooseFence()
	if r.parked {
		// A wake-up left from an earlier sleep (its record was read
		// since) would end this one at once.
		select {
		case <-r.park:
		default:
		}
	}
	// Announce the wait to the producers of user-space rings, then look
	// once more: a commit that this look misses sees the announcement
	// (both sequentially consistent: the producer's locked instruction,
	// or the barrier ready runs for it) and wakes us.
	r.announce(true)
	if r.ready(true) || r.closed.Load() {
		// (closed: Close's wake-up may have been the one just dropped.)
		r.announce(false)
		if r.closed.Load() {
			return ErrClosed
		}
		return nil
	}
	// Rings being removed, sets to look at again and busy heads of shared
	// rings (whose owners may have died: see stalled) have their times;
	// held records keep producers from waking us (release.go).
	held, bound := time.Duration(-1), time.Duration(-1)
	if r.holdingAny() {
		held = heldPoll
	}
	for _, d := range [...]time.Duration{r.nextDrop(), r.nextRefresh(), held, r.nextStallCheck()} {
		if d >= 0 && (bound < 0 || d < bound) {
			bound = d
		}
	}
	if r.sleeping != nil {
		r.sleeping()
	}
	if r.parked {
		if r.nap(ctx, bound) && !r.closed.Load() {
			r.wakeups.Add(1)
		}
		r.announce(false)
	} else {
		if bound >= 0 && (timeout < 0 || bound < timeout) {
			timeout = bound
		}
		if err := r.sleep(timeout); err != nil {
			return err
		}
	}
	if r.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

// sleep waits in the poller until a ring's descriptor signals, the poller
// is interrupted (Close, ctx) or timeout passes (negative: no limit): in
// epoll_wait, or in the runtime's poller after a long sleep
// (runtimeWaitAfter).
func (r *Reader) sleep(timeout time.Duration) error {
	wait := r.poller.Wait
	if r.slept >= runtimeWaitAfter {
		wait = r.poller.WaitInRuntime
		r.runtimeWaits++
	}
	start := time.Now()
	keys, _, err := wait(r.keys[:0], timeout)
	r.slept = time.Since(start)
	r.announce(false)
	r.keys = keys[:0]
	if err != nil {
		return fmt.Errorf("ringo: wait for records: %w", err)
	}
	if len(keys) > 0 {
		r.wakeups.Add(1)
	}
	for _, k := range keys {
		for _, rr := range r.rings {
			if rr.key == k {
				rr.src.notified()
			}
		}
	}
	return nil
}

// poke sends on ch, a channel of one, unless a send is pending already.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// nap is sleep for a parked Reader: it waits until a producer (or Close)
// sends on park, ctx ends or timeout passes, and reports whether it was
// woken by a send.
func (r *Reader) nap(ctx context.Context, timeout time.Duration) bool {
	var expired <-chan time.Time
	if timeout >= 0 {
		if r.timer == nil {
			r.timer = time.NewTimer(timeout)
		} else {
			r.timer.Reset(timeout)
		}
		defer r.timer.Stop()
		expired = r.timer.C
	}
	select {
	case <-r.park:
		return true
	case <-ctx.Done():
	case <-expired:
	}
	return false
}

// spin looks at the rings again for spinFor (at least once), yielding in
// between, and reports whether one has a record.
func (r *Reader) spin() bool {
	start := time.Now()
	for done := false; !done; done = time.Since(start) >= spinFor {
		runtime.Gosched()
		cpuPause(gatherStep)
		r.spins++
		if r.ready(false) {
			return true
		}
	}
	return false
}

// announce sets the waiter word of every ring that has one: to what the
// Reader asks of its producers before it sleeps (on, see waitAtConsumer and
// waitAnyCommit), or to 0 once it is awake.
func (r *Reader) announce(on bool) {
	for _, rr := range r.rings {
		w := rr.cur.mem.waiter
		if w == nil {
			continue
		}
		v := uint32(0)
		if on {
			v = waitAtConsumer
			if rr.recovers() && !rr.busyHead() {
				// Empty: should the next record's producer die
				// before its commit, only the commits after it
				// can tell us (Ring.finish).
				v = waitAnyCommit
			}
		}
		w.Store(v)
	}
}

// ready reports whether some ring has a record (or an error) at its cursor.
// It moves cursors past discarded records and stores the consumer positions
// before its last look at each ring: a producer decides to wake the Reader
// by comparing consumer_pos with its record's position, so before sleeping
// consumer_pos must be the position the Reader waits at, not an earlier
// discarded record's.
//
// final is set for the look after the Reader announced its wait. Then,
// for rings whose producers commit without a fence of their own
// (memory.readerFences), a process-wide barrier separates the Reader's
// stores from each look: a producer's commit either is visible to the look
// or sees the announcement and this consumer_pos. Without the barrier,
// both sides could read the other's old value (a store-buffer race) and
// the Reader would sleep on a committed record.
func (r *Reader) ready(final bool) bool {
	fence := final && r.fenced()
	if fence && !sys.ProcessBarrier() {
		return true // cannot sleep safely: look again (never happens)
	}
	for _, rr := range r.rings {
		for {
			if _, _, st, err := rr.cur.next(); err != nil || st == stepRecord {
				return true
			}
			if !final {
				rr.storeAwake() // not sleeping yet: see storeAwake
				break
			}
			if rr.settled() {
				break
			}
			rr.storePos() // then look again: store (fenced) before load
			if fence && rr.cur.mem.readerFences.Load() && !sys.ProcessBarrier() {
				return true
			}
		}
	}
	return false
}

// fenced reports whether a ring of the Reader has producers that count on
// its barrier now (memory.readerFences).
func (r *Reader) fenced() bool {
	for _, rr := range r.rings {
		if rr.cur.mem.readerFences.Load() {
			return true
		}
	}
	return false
}

// fenceWorth is how many records a ring's Reader takes between two sleeps
// at least for its barrier before each sleep (a membarrier system call, an
// interrupt to each CPU running the process: about 10 µs of the Reader's
// CPU a sleep in BenchmarkUserPaced on a VM) to pay for the locked
// instruction it spares each Output (tens of cycles on an uncontended
// line; not timed apart here).
const fenceWorth = 1024

// chooseFence decides, as the Reader is about to sleep, who fences for
// Output in each ring with fencedByReader: the Reader, before it sleeps,
// if it took fenceWorth records or more from the ring since it last slept;
// else Output itself (until the Reader takes as many again: storeAwake).
// Stopping costs one barrier: a producer that loaded readerFences set and
// skipped its fence has its commit visible once the barrier returns, and
// one that loads it after sees it cleared (Ring.finish loads it after its
// store). Starting costs nothing: a producer that still fences is only
// slower.
func (r *Reader) chooseFence() {
	stopped := false
	for _, rr := range r.rings {
		m := rr.cur.mem
		if !m.fencedByReader {
			continue
		}
		many := rr.cur.passed-rr.sleptAt >= rr.fenceFrom
		rr.sleptAt = rr.cur.passed
		if many != m.readerFences.Load() {
			m.readerFences.Store(many)
			stopped = stopped || !many
		}
	}
	if stopped && !sys.ProcessBarrier() {
		// (Never happens.) Go on fencing for them: ready's barrier
		// fails the same way and has the Reader look again instead
		// of sleeping.
		for _, rr := range r.rings {
			if rr.cur.mem.fencedByReader {
				rr.cur.mem.readerFences.Store(true)
			}
		}
	}
}

// recovers reports whether the ring can recover the records of producers
// that died (a shared ring).
func (rr *readerRing) recovers() bool { return rr.cur.mem.slots != nil }

// stalled is called when a shared ring's head is busy. Once the same head
// has been busy for stallGrace (a live producer commits within
// microseconds), then every deadOwnerCheck, it has the ring look into the
// record's owner: if its handle is gone (its process died between reserve
// and commit), the ring discards the record (Ring.recoverHead), and
// stalled reports true: the head is to be looked at again. Liveness is the
// kernel's word (liveness.go), so a record is never recovered from under a
// live producer, however slow.
func (rr *readerRing) stalled(now time.Time) bool {
	if rr.stallPos != rr.cur.pos || rr.stallCheck.IsZero() {
		rr.stallPos, rr.stallCheck = rr.cur.pos, now.Add(stallGrace)
		return false
	}
	if now.Before(rr.stallCheck) {
		return false
	}
	rr.stallCheck = now.Add(deadOwnerCheck)
	return rr.src.recoverHead(rr.cur.pos)
}

// stallGrace is how long a shared ring's head may be busy before its
// owner is looked into.
const stallGrace = time.Millisecond

// nextStallCheck is how long until a shared ring busy at its head is due
// to be looked into again (at least a millisecond), or -1 if none is busy.
func (r *Reader) nextStallCheck() time.Duration {
	d := time.Duration(-1)
	for _, rr := range r.rings {
		if rr.recovers() && rr.busyHead() {
			if rr.stallPos != rr.cur.pos || rr.stallCheck.IsZero() {
				d = sooner(d, time.Now().Add(stallGrace)) // not seen yet
			} else {
				d = sooner(d, rr.stallCheck)
			}
		}
	}
	return d
}

// busyHead reports whether the record at the cursor is still being written.
func (rr *readerRing) busyHead() bool {
	_, _, st, err := rr.cur.next()
	return err == nil && st == stepBusy
}
