package ringo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringo-bpf/ringo/internal/bpfmap"
	"github.com/ringo-bpf/ringo/internal/sys"
	"golang.org/x/sys/unix"
)

// UserRing writes records into a BPF_MAP_TYPE_USER_RINGBUF map, which a BPF
// program drains with bpf_user_ringbuf_drain. It follows libbpf's
// user_ring_buffer__reserve / __submit / __discard, but any number of
// goroutines may use it at once (libbpf's producer must be serialised by
// its caller), unless it was opened WithSingleProducer: then, as libbpf's,
// one goroutine at a time reserves and commits, and neither takes a lock.
//
// Unlike a kernel-produced ring, a user ring can be filled to the last byte:
// the kernel's drain, not a reservation rule, keeps positions consistent.
type UserRing struct {
	kernelMap
	ringMem

	closed atomic.Bool
	// cons is consumer_pos as last loaded, a lower bound of it: the
	// kernel's drain moves it on the other CPU, so each load is a cache
	// miss; Reserve loads it again only when the stale value says the
	// record does not fit. Stored under mu.
	cons atomic.Uint64

	// pollMu guards the lazily made poller used by ReserveWait.
	pollMu sync.Mutex
	poller *sys.Poller

	// single is set for a ring opened WithSingleProducer: Reserve takes
	// no lock (single.go), Commit and Discard publish with a store instead
	// of a compare-and-swap.
	singleWriter
}

// OpenUserRing maps the user ring buffer map m (anything with the map's
// descriptor as FD() int), for example a cilium/ebpf *ebpf.Map. The
// descriptor is duplicated: m stays the caller's. The one option a user
// ring takes is WithSingleProducer: one goroutine at a time reserves and
// commits, and neither takes a lock, as libbpf's writer (the user_ring
// scenario of `ringo bench`: 1.2-1.5x the records/s of the locking writer).
func OpenUserRing(m interface{ FD() int }, opts ...Option) (*UserRing, error) {
	o, err := gather("OpenUserRing", optSingle, opts)
	if err != nil {
		return nil, err
	}
	fd, what, err := bpfmap.Dup(m.FD())
	if err != nil {
		return nil, fmt.Errorf("ringo: %w", err)
	}
	return openUserRing(fd, what, o)
}

// OpenUserRingPinned maps the user ring buffer map pinned at path.
func OpenUserRingPinned(path string, opts ...Option) (*UserRing, error) {
	o, err := gather("OpenUserRingPinned", optSingle, opts)
	if err != nil {
		return nil, err
	}
	fd, what, err := bpfmap.Pinned(path)
	if err != nil {
		return nil, fmt.Errorf("ringo: %w", err)
	}
	return openUserRing(fd, what, o)
}

// CreateUserRing creates a BPF_MAP_TYPE_USER_RINGBUF map named name of size
// bytes and maps it.
func CreateUserRing(name string, size int, opts ...Option) (*UserRing, error) {
	o, err := gather("CreateUserRing", optSingle, opts)
	if err != nil {
		return nil, err
	}
	if err := validateSize(int64(size)); err != nil {
		return nil, err
	}
	fd, err := sys.MapCreate(uint32(UserRingBuf), 0, 0, uint32(size), 0, name)
	if err != nil {
		return nil, fmt.Errorf("ringo: create user_ringbuf map %q: %w", name, bpfmap.Err(err))
	}
	return openUserRing(fd, name, o)
}

func openUserRing(fd int, what string, o options) (*UserRing, error) {
	info, err := bpfmap.Info(fd, what)
	if err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("ringo: %w", err)
	}
	if t := MapType(info.Type); t != UserRingBuf {
		closeFD(fd)
		if t == RingBuf {
			return nil, fmt.Errorf("ringo: map %d (%s) is a ringbuf, which BPF programs produce into: consume it with a Reader (OpenMap), not a user ring writer", info.ID, what)
		}
		return nil, fmt.Errorf("ringo: map %d (%s) is a %s map, not a user_ringbuf", info.ID, what, bpfmap.TypeName(info.Type))
	}
	if err := validateSize(int64(info.MaxEntries)); err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("ringo: map %d (%s): %w", info.ID, what, err)
	}
	size := int(info.MaxEntries)
	m, err := sys.MapKernelRing(fd, size, true)
	if err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("ringo: map %d (%s): %w", info.ID, what, bpfmap.Err(err))
	}
	mem := newKernelMemory(m, size)
	// The reservation lock in this process's memory: user space writes a
	// user ring's producer page, but its other writers (another process)
	// would not know of a lock word there.
	mem.lockWord = new(atomic.Uint64)
	u := &UserRing{kernelMap: kernelMap{fd: fd, info: info}, ringMem: ringMem{mem: mem, mapping: m, label: fmt.Sprintf("user_ringbuf %d (%s)", info.ID, info.Name)}}
	// Close needs the process-wide barrier to stop a writer that takes
	// no lock.
	u.single = o.single && sys.ProcessBarrierAvailable()
	return u, nil
}

// Close unmaps the ring and closes its descriptor. Records reserved and not
// yet submitted stay busy: the BPF program's drain stops at the first.
func (u *UserRing) Close() error {
	if u.closed.Swap(true) {
		return nil
	}
	if u.single {
		u.waitIdle()
	}
	u.mem.lock(nil) // no reservation under way
	defer u.mem.unlock()
	u.pollMu.Lock()
	if u.poller != nil {
		u.poller.Close()
	}
	u.pollMu.Unlock()
	err := u.mapping.Unmap()
	closeFD(u.fd)
	return err
}

// Reserve reserves a record of n bytes, as user_ring_buffer__reserve: it
// returns ErrFull when the ring is too full now (libbpf's ENOSPC, which
// ErrFull matches), ErrTooLarge when n bytes can never fit (n plus the
// 8-byte header, rounded up to 8, above the ring size, or n using the
// header's flag bits). Fill the reservation's Bytes, then Commit or
// Discard it.
func (u *UserRing) Reserve(n int) (Reservation, error) {
	if n < 0 || n >= discardBit {
		return Reservation{}, fmt.Errorf("ringo: reserve %d bytes in a user ring: %w", n, ErrTooLarge)
	}
	total := recordSize(uint64(n))
	m := u.mem
	if total > m.size() {
		return Reservation{}, ErrTooLarge
	}
	if err := u.lockReserve(); err != nil {
		return Reservation{}, err
	}
	prod := m.producerPos.Load()
	if cons := u.cons.Load(); m.size()-(prod-cons) < total {
		// Pairs with the kernel's store-release of consumer_pos after
		// a drain.
		cons = m.consumerPos.Load()
		storeRelease(&u.cons, cons) // only this writer (holding the lock, or alone) stores it
		if m.size()-(prod-cons) < total {
			u.unlockReserve()
			return Reservation{}, ErrFull
		}
	}
	off := prod & m.mask
	// libbpf writes pad (pg_off) 0: the kernel's drain does not read it.
	m.writeUserHeader(off, uint32(n))
	// Pairs with the drain's load-acquire of producer_pos.
	storeRelease(m.producerPos, prod+total) // only this writer (holding the lock, or alone) stores it
	u.unlockReserve()
	p := off + HeaderSize
	return Reservation{user: u, pos: prod, buf: m.data[p : p+uint64(n) : p+uint64(n)], slot: -1}, nil
}

// lockReserve starts a reservation: it takes the lock (only goroutines of
// this process hold it: it never fails), or for a single writer marks the
// reservation under way. It fails, holding nothing, once the ring is
// closed.
func (u *UserRing) lockReserve() error {
	if u.single {
		return u.beginSingle(&u.closed, "")
	}
	u.mem.lock(nil)
	if u.closed.Load() {
		u.mem.unlock()
		return ErrClosed
	}
	return nil
}

// unlockReserve ends what lockReserve started.
func (u *UserRing) unlockReserve() {
	if u.single {
		u.endSingle()
		return
	}
	u.mem.unlock()
}

// ReserveWait reserves like Reserve, but waits for the BPF program to drain
// enough when the ring is full, until ctx is done (like
// user_ring_buffer__reserve_blocking with a timeout). It waits on the map's
// EPOLLOUT, which the kernel signals after each drain; several goroutines
// may wait at once.
func (u *UserRing) ReserveWait(ctx context.Context, n int) (Reservation, error) {
	for {
		rec, err := u.Reserve(n)
		if !errors.Is(err, ErrFull) {
			return rec, err
		}
		if err := u.waitSpace(ctx); err != nil {
			return Reservation{}, err
		}
	}
}

// waitSpace sleeps until the kernel signals free space, ctx is done, or a
// short while has passed: with several goroutines waiting on one epoll
// instance only one is told of each drain, so each looks again now and
// then.
func (u *UserRing) waitSpace(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	u.pollMu.Lock()
	if u.poller == nil {
		p, err := sys.NewPoller()
		if err == nil {
			if err = p.AddWritable(u.fd, 0); err != nil {
				p.Close()
			}
		}
		if err != nil {
			u.pollMu.Unlock()
			return fmt.Errorf("ringo: wait for space in user ring: %w", err)
		}
		u.poller = p
	}
	p := u.poller
	u.pollMu.Unlock()
	timeout := userRingRecheck
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return context.DeadlineExceeded
		}
	}
	if _, _, err := p.Wait(nil, timeout); err != nil {
		return fmt.Errorf("ringo: wait for space in user ring: %w", err)
	}
	return ctx.Err()
}

// userRingRecheck bounds each wait for space in a user ring.
const userRingRecheck = 5 * time.Millisecond

// Commit publishes a reserved record to the BPF program, as
// user_ring_buffer__submit. A reservation that is not outstanding in this
// ring returns ErrNotReserved and changes nothing.
func (u *UserRing) Commit(rec Reservation) error { return u.finish(rec, false) }

// Discard drops a reserved record: the drain skips it.
func (u *UserRing) Discard(rec Reservation) error { return u.finish(rec, true) }

func (u *UserRing) finish(rec Reservation, discard bool) error {
	if rec.user != u {
		return fmt.Errorf("%w: a record of another ring, or a zero Reservation", ErrNotReserved)
	}
	m := u.mem
	w := m.lenWord(rec.pos & m.mask)
	old := w.Load()
	// A record is outstanding while it lies between the drain's position
	// and ours and is busy; the drain never passes a busy record. (With
	// the cached lower bound of the drain's position, a reservation
	// committed, drained and then committed again once its bytes belong
	// to a new reservation may go unnoticed; a second Submit right after
	// the first is always caught by the busy bit.)
	cons := u.cons.Load()
	if old&busyBit == 0 || rec.pos-cons >= m.producerPos.Load()-cons {
		return fmt.Errorf("%w: the user ring record at position %d was already submitted or discarded", ErrNotReserved, rec.pos)
	}
	nw := old &^ busyBit
	if discard {
		nw |= discardBit
	}
	// Pairs with the drain's load-acquire of the length word.
	if u.single {
		// Only this writer touches the record (WithSingleProducer): a
		// release store publishes it, as libbpf's exchange does,
		// without the locked instruction's wait for the payload's
		// stores to drain. Nothing wakes on a user ring's commit, so
		// nothing needs the exchange's full barrier.
		storeRelease32(w, nw)
	} else if !w.CompareAndSwap(old, nw) {
		return fmt.Errorf("%w: the user ring record at position %d was submitted or discarded concurrently", ErrNotReserved, rec.pos)
	}
	return nil
}

// Verify walks the records of the ring that the BPF program has yet to
// drain, with the rules of the kernel's drain (__bpf_user_ringbuf_peek),
// and returns how many records a drain would hand to its callback and how
// many discarded ones it would skip before stopping at a busy record or the
// producer position. A layout the kernel would refuse gives the error the
// drain returns: an unaligned producer position or a record that claims
// more than was published (both EINVAL), or more than the ring holds
// (E2BIG). Writers that only use Reserve, Submit and Discard never make
// such layouts; Verify is for checking what another producer wrote.
func (u *UserRing) Verify() (records, discarded int, err error) {
	m := u.mem
	prod := m.producerPos.Load()
	if prod%8 != 0 {
		return 0, 0, fmt.Errorf("%w: producer position %d is not a multiple of 8", unix.EINVAL, prod)
	}
	for cons := m.consumerPos.Load(); cons < prod; {
		w := m.lenWord(cons & m.mask).Load()
		n := uint64(payloadLen(w))
		total := recordSize(n)
		switch {
		case total > prod-cons:
			return records, discarded, fmt.Errorf("%w: the record at position %d claims %d bytes, %d are published", unix.EINVAL, cons, n, prod-cons-HeaderSize)
		case total > m.size() || n > maxDynptrSize:
			return records, discarded, fmt.Errorf("%w: the record at position %d claims %d bytes, more than the ring holds", unix.E2BIG, cons, n)
		case w&discardBit != 0:
			discarded++
		case w&busyBit != 0:
			return records, discarded, nil
		default:
			records++
		}
		cons += total
	}
	return records, discarded, nil
}

// maxDynptrSize is the largest sample a BPF dynptr can describe (24 bits).
const maxDynptrSize = 1<<24 - 1
