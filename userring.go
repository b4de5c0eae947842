package ringo

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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
// its caller).
//
// Unlike a kernel-produced ring, a user ring can be filled to the last byte:
// the kernel's drain, not a reservation rule, keeps positions consistent.
type UserRing struct {
	kernelMap
	ringMem

	mu     spinLock // serialises reservations
	closed atomic.Bool
	// cons is consumer_pos as last loaded, a lower bound of it: the
	// kernel's drain moves it on the other CPU, so each load is a cache
	// miss; Reserve loads it again only when the stale value says the
	// record does not fit. Stored under mu.
	cons atomic.Uint64

	// pollMu guards the lazily made poller used by ReserveWait.
	pollMu sync.Mutex
	poller *sys.Poller
}

// UserRecord is a record reserved in a UserRing, to fill and then Submit or
// Discard.
type UserRecord struct {
	ring *UserRing
	pos  uint64
	buf  []byte
}

// Bytes returns the reserved payload, contiguous even when it wraps.
func (u UserRecord) Bytes() []byte { return u.buf }

// OpenUserRing maps the user ring buffer map m (anything with the map's
// descriptor as FD() int), for example a cilium/ebpf *ebpf.Map. The
// descriptor is duplicated: m stays the caller's.
func OpenUserRing(m interface{ FD() int }) (*UserRing, error) {
	fd, what, err := bpfmap.Dup(m.FD())
	if err != nil {
		return nil, fmt.Errorf("ringo: %w", err)
	}
	return openUserRing(fd, what)
}

// OpenUserRingPinned maps the user ring buffer map pinned at path.
func OpenUserRingPinned(path string) (*UserRing, error) {
	fd, what, err := bpfmap.Pinned(path)
	if err != nil {
		return nil, fmt.Errorf("ringo: %w", err)
	}
	return openUserRing(fd, what)
}

// CreateUserRing creates a BPF_MAP_TYPE_USER_RINGBUF map named name of size
// bytes and maps it.
func CreateUserRing(name string, size int) (*UserRing, error) {
	if err := ValidateSize(int64(size)); err != nil {
		return nil, err
	}
	fd, err := sys.MapCreate(uint32(UserRingBuf), 0, 0, uint32(size), 0, name)
	if err != nil {
		return nil, fmt.Errorf("ringo: create user_ringbuf map %q: %w", name, bpfmap.Err(err))
	}
	return openUserRing(fd, name)
}

func openUserRing(fd int, what string) (*UserRing, error) {
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
	if err := ValidateSize(int64(info.MaxEntries)); err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("ringo: map %d (%s): %w", info.ID, what, err)
	}
	size := int(info.MaxEntries)
	m, err := sys.MapKernelRing(fd, size, true)
	if err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("ringo: map %d (%s): %w", info.ID, what, bpfmap.Err(err))
	}
	return &UserRing{kernelMap: kernelMap{fd: fd, info: info}, ringMem: ringMem{mem: newKernelMemory(m, size), mapping: m}}, nil
}

// Close unmaps the ring and closes its descriptor. Records reserved and not
// yet submitted stay busy: the BPF program's drain stops at the first.
func (u *UserRing) Close() error {
	if u.closed.Swap(true) {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.pollMu.Lock()
	if u.poller != nil {
		u.poller.Close()
	}
	u.pollMu.Unlock()
	err := u.mapping.Unmap()
	closeFD(u.fd)
	return err
}

// spinLock serialises the few instructions of a reservation. Unlocking
// is a plain store on amd64 (storeRelease), where sync.Mutex's unlock is a
// second locked instruction that waits for the producer's store buffer,
// full of the payload it just wrote, to drain: a third of the producer's
// time in BenchmarkUserRing.
type spinLock struct{ w atomic.Uint64 }

func (l *spinLock) Lock() {
	for !l.w.CompareAndSwap(0, 1) {
		runtime.Gosched() // the holder is between two loads and a store
	}
}

func (l *spinLock) Unlock() { storeRelease(&l.w, 0) }

// ErrNoSpace means a user ring has no room for the record now: the BPF
// program has not drained enough. It matches syscall.ENOSPC, as libbpf's
// user_ring_buffer__reserve reports it.
var ErrNoSpace error = &ringError{"ringo: user ring has no space", unix.ENOSPC}

// Reserve reserves a record of n bytes, as user_ring_buffer__reserve: it
// returns ErrNoSpace when the ring is too full now, ErrTooLarge when n
// bytes can never fit (n plus the 8-byte header, rounded up to 8, above the
// ring size, or n using the header's flag bits).
func (u *UserRing) Reserve(n int) (UserRecord, error) {
	if n < 0 || n >= discardBit {
		return UserRecord{}, fmt.Errorf("ringo: reserve %d bytes in a user ring: %w", n, ErrTooLarge)
	}
	total := recordSize(uint64(n))
	m := u.mem
	if total > m.size() {
		return UserRecord{}, ErrTooLarge
	}
	u.mu.Lock()
	if u.closed.Load() {
		u.mu.Unlock()
		return UserRecord{}, ErrClosed
	}
	prod := m.producerPos.Load()
	if cons := u.cons.Load(); m.size()-(prod-cons) < total {
		// Pairs with the kernel's store-release of consumer_pos after
		// a drain.
		cons = m.consumerPos.Load()
		u.cons.Store(cons)
		if m.size()-(prod-cons) < total {
			u.mu.Unlock()
			return UserRecord{}, ErrNoSpace
		}
	}
	off := prod & m.mask
	// libbpf writes pad (pg_off) 0: the kernel's drain does not read it.
	m.writeUserHeader(off, uint32(n))
	// Pairs with the drain's load-acquire of producer_pos.
	storeRelease(m.producerPos, prod+total) // only this writer, holding mu, stores it
	u.mu.Unlock()
	p := off + HeaderSize
	return UserRecord{ring: u, pos: prod, buf: m.data[p : p+uint64(n) : p+uint64(n)]}, nil
}

// ReserveWait reserves like Reserve, but waits for the BPF program to drain
// enough when the ring is full, until ctx is done (like
// user_ring_buffer__reserve_blocking with a timeout). It waits on the map's
// EPOLLOUT, which the kernel signals after each drain; several goroutines
// may wait at once.
func (u *UserRing) ReserveWait(ctx context.Context, n int) (UserRecord, error) {
	for {
		rec, err := u.Reserve(n)
		if !errors.Is(err, ErrNoSpace) {
			return rec, err
		}
		if err := u.waitSpace(ctx); err != nil {
			return UserRecord{}, err
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

// Submit publishes a reserved record to the BPF program, as
// user_ring_buffer__submit.
func (u *UserRing) Submit(rec UserRecord) error { return u.finish(rec, false) }

// Discard drops a reserved record: the drain skips it.
func (u *UserRing) Discard(rec UserRecord) error { return u.finish(rec, true) }

func (u *UserRing) finish(rec UserRecord, discard bool) error {
	if rec.ring != u {
		return fmt.Errorf("%w: a record of another user ring, or a zero UserRecord", ErrNotReserved)
	}
	m := u.mem
	w := m.lenWord(rec.pos & m.mask)
	old := w.Load()
	// A record is outstanding while it lies between the drain's position
	// and ours and is busy; the drain never passes a busy record. (With
	// the cached lower bound of the drain's position, a UserRecord
	// submitted, drained and then submitted again once its bytes belong
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
	if !w.CompareAndSwap(old, nw) {
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
