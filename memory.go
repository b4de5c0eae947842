package ringo

import (
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ringo-bpf/ringo/internal/sys"
)

// memory is the mapped memory of a ring as the consumer and the producers
// see it, whatever kind of ring it is. This file is the only place where
// ringo turns mapped bytes into typed atomic words.
//
// Every access to a position or a header's length word is atomic. Go's
// sync/atomic operations are sequentially consistent, so each one is at least
// the smp_load_acquire / smp_store_release / xchg that the kernel pairs it
// with, and a store followed by a load of another word is ordered too
// (the StoreLoad barrier that the wake-up protocol needs: see Reader).
type memory struct {
	consumerPos *atomic.Uint64 // consumer page, offset 0
	producerPos *atomic.Uint64 // producer page, offset 0
	pendingPos  *atomic.Uint64 // producer page, offset 8

	// waiter, in the consumer page, is ringo's own word (the kernel has no
	// such thing; nil for kernel rings): non-zero while the consumer sleeps
	// or is about to, so that producers make the wake-up system call only
	// when someone waits for it. See Reader.wait.
	waiter *atomic.Uint32

	// fencedByReader is set for in-process rings when the system offers a
	// process-wide memory barrier (sys.ProcessBarrier): Output then commits
	// its record with a plain store instead of a locked exchange, and the
	// Reader, before it sleeps, runs the barrier between its stores
	// (consumer_pos, waiter) and its last look at the ring, which orders
	// the producers' store before their wake-up test for them (while
	// readerFences is set; else Output locks an instruction itself). See
	// Ring.finish and Reader.wait. Only a consumer in this process can do
	// that, so shared rings, whose consumer may be elsewhere, never set it.
	fencedByReader bool
	// readerFences, for such a ring, says that its Reader fences for
	// Output now. A Reader that sleeps after a few records only, where a
	// barrier a sleep costs more than a locked instruction a record,
	// clears it, and Output locks an instruction of its own after the
	// store; the Reader sets it again once it takes many records between
	// sleeps (see Reader.chooseFence). Only the Reader writes it.
	readerFences atomic.Bool

	// lockWord, in the producer page, is ringo's own reservation lock for
	// user-space rings (the kernel's spin lock lives in its private page):
	// 0 free, 1 held. nil for kernel rings, which user space never
	// reserves in.
	lockWord *atomic.Uint64

	// slots records which handle owns each open reservation of a shared
	// ring, so that the records of a process that died can be recovered;
	// nil for in-process rings, whose goroutines cannot die alone.
	slots []slot
	// consumerOwner is the token of the handle consuming a shared ring.
	consumerOwner *atomic.Uint64

	// self is this handle's token, written into the lock word, owner
	// slots and consumer claim; presence is a shared ring's presence
	// table (nil otherwise) and file the ring file, whose locks say which
	// tokens are alive (liveness.go).
	self     uint64
	presence []atomic.Uint64
	file     int

	// dropped and abandoned are ringo's counters of user-space rings, in
	// the consumer page (nil for kernel rings).
	dropped   *atomic.Uint64
	abandoned *atomic.Uint64

	// Overwrite mode. overwritePos is nil unless the ring overwrites its
	// oldest records when full. overSeq and overCount (producer page),
	// consCount (consumer page) are ringo's record counts, nil for kernel
	// rings; overwritten and overwrittenBytes are what the consumer lost
	// (for kernel rings, words of the Go heap).
	overwritePos     *atomic.Uint64
	overSeq          *atomic.Uint64
	overCount        *atomic.Uint64
	consCount        *atomic.Uint64
	overwritten      *atomic.Uint64
	overwrittenBytes *atomic.Uint64

	// droppedBytes counts the payload bytes of refused reservations.
	droppedBytes *atomic.Uint64

	// space is where producers wait for room (wait.go); nil for kernel
	// rings.
	space *spaceWait

	// data is the data area mapped twice: data[i] and data[i+size] alias.
	data []byte
	mask uint64 // size - 1

	pageShift uint

	// gatherStepped, set only by tests before the ring is read, is
	// called after each of gatherBatch's waits on this ring.
	gatherStepped func()
}

// newMemory describes a mapping with a data area of size bytes.
func newMemory(m *sys.Mapping, size int) *memory {
	shift := uint(0)
	for 1<<shift < sys.PageSize {
		shift++
	}
	return &memory{
		// The position pages are page-aligned, so the words are aligned.
		consumerPos:      (*atomic.Uint64)(unsafe.Pointer(&m.Consumer[consumerPosOffset])),
		producerPos:      (*atomic.Uint64)(unsafe.Pointer(&m.Producer[producerPosOffset])),
		pendingPos:       (*atomic.Uint64)(unsafe.Pointer(&m.Producer[pendingPosOffset])),
		waiter:           (*atomic.Uint32)(unsafe.Pointer(&m.Consumer[waiterOffset])),
		lockWord:         (*atomic.Uint64)(unsafe.Pointer(&m.Producer[lockOffset])),
		dropped:          (*atomic.Uint64)(unsafe.Pointer(&m.Consumer[droppedOffset])),
		abandoned:        (*atomic.Uint64)(unsafe.Pointer(&m.Consumer[abandonedOffset])),
		droppedBytes:     (*atomic.Uint64)(unsafe.Pointer(&m.Consumer[droppedBytesOff])),
		overwritten:      (*atomic.Uint64)(unsafe.Pointer(&m.Consumer[overwrittenOff])),
		overwrittenBytes: (*atomic.Uint64)(unsafe.Pointer(&m.Consumer[overwrittenBytes])),
		data:             m.Data[: 2*size : 2*size],
		mask:             uint64(size - 1),
		pageShift:        shift,
		self:             inProcessToken,
		file:             -1,
		space: &spaceWait{
			wanted: (*atomic.Uint32)(unsafe.Pointer(&m.Consumer[spaceOffset])),
			seq:    (*atomic.Uint32)(unsafe.Pointer(&m.Consumer[spaceOffset+4])),
			ch:     make(chan struct{}),
		},
	}
}

// newKernelMemory describes the mapping of a kernel ring: the kernel's
// words only, none of ringo's own.
func newKernelMemory(m *sys.Mapping, size int) *memory {
	mem := newMemory(m, size)
	mem.waiter, mem.lockWord, mem.dropped, mem.abandoned, mem.droppedBytes, mem.space = nil, nil, nil, nil, nil, nil
	// What the consumer loses to an overwriting kernel ring is counted
	// here, in the Go heap: the kernel's pages have no room for it.
	mem.overwritten, mem.overwrittenBytes = new(atomic.Uint64), new(atomic.Uint64)
	return mem
}

// enableOverwrite puts the memory in overwrite mode: overwrite_pos at
// producer page offset 16, and for user-space rings (counts true) ringo's
// record counts.
func (m *memory) enableOverwrite(mp *sys.Mapping, counts bool) {
	m.overwritePos = (*atomic.Uint64)(unsafe.Pointer(&mp.Producer[overwritePosOffset]))
	if counts {
		m.overSeq = (*atomic.Uint64)(unsafe.Pointer(&mp.Producer[overSeqOffset]))
		m.overCount = (*atomic.Uint64)(unsafe.Pointer(&mp.Producer[overCountOffset]))
		m.consCount = (*atomic.Uint64)(unsafe.Pointer(&mp.Consumer[consCountOffset]))
	}
}

// slot is one entry of a shared ring's reservation owner table.
type slot struct {
	pos   atomic.Uint64 // position of the reservation's header
	owner atomic.Uint64 // token of its owner's handle; 0: free
}

// trackOwners turns on the reservation owner table, the consumer owner
// word and the presence table of a shared ring: the producer page from
// slotsOffset on, a word of the consumer page and the consumer page from
// presenceOffset on, all 8-byte aligned memory of the mapping. It then
// registers this handle, whose ring file is fd (liveness.go).
func (m *memory) trackOwners(mp *sys.Mapping, fd int) error {
	n := (len(mp.Producer) - slotsOffset) / slotSize
	m.slots = unsafe.Slice((*slot)(unsafe.Pointer(&mp.Producer[slotsOffset])), n)
	m.consumerOwner = (*atomic.Uint64)(unsafe.Pointer(&mp.Consumer[consumerOwnerOffset]))
	m.space.shared = true // its producers may be in other processes
	p := (len(mp.Consumer) - presenceOffset) / 8
	m.presence = unsafe.Slice((*atomic.Uint64)(unsafe.Pointer(&mp.Consumer[presenceOffset])), p)
	return m.register(fd)
}

// size is the size of the data area in bytes.
func (m *memory) size() uint64 { return m.mask + 1 }

// lenWord returns the length word of the header at data offset off, which
// must be a multiple of 8 below size: the data area is page-aligned, so the
// word is 4-byte aligned, as atomic access requires.
func (m *memory) lenWord(off uint64) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&m.data[off]))
}

// area is the start of a ring's data area, for the loop that walks most
// headers (scan), which keeps it in a register.
type area struct{ p unsafe.Pointer }

// area returns the start of m's data area.
func (m *memory) area() area { return area{unsafe.Pointer(unsafe.SliceData(m.data))} }

// bufArea returns buf's memory as an area: a copy of records laid out as
// in a ring (batch.go).
func bufArea(buf []byte) area { return area{unsafe.Pointer(unsafe.SliceData(buf))} }

// putLenWord writes n as the length word at the start of buf, a copy of a
// record with a header's room before its payload (batch.go); buf is a Go
// slice of at least HeaderSize bytes (cursor.nextOverwrite makes it so),
// 8-byte aligned as the heap allocates.
func putLenWord(buf []byte, n uint32) {
	*(*uint32)(unsafe.Pointer(&buf[:HeaderSize][0])) = n
}

// word returns the length word of the header at data offset off. It is
// lenWord without the bounds check, which the caller's loop cannot afford
// per header and does not need: off is a position masked to the ring's
// size (off <= mask < len(data)), and a multiple of 8 (positions are), so
// the word is in the mapping and 4-byte aligned as atomic access requires.
func (a area) word(off uint64) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Add(a.p, off))
}

// prefetch asks for the cache line at data offset off (below the size of
// the data area: a masked position), a hint that never faults.
func (a area) prefetch(off uint64) { prefetchRead((*byte)(unsafe.Add(a.p, off))) }

// payload returns the n bytes at data offset p, without the bounds check
// of slicing: p and n are those of a record that scan checked, whose
// header lies at p-HeaderSize <= mask and which, header, payload and
// padding, fits in what producer_pos published, at most a ring's length:
// p+n <= mask+size < len(data), so the bytes lie in the data area mapped
// twice (entry's bound).
func (a area) payload(p uint64, n uint32) []byte {
	// (Sliced as an array that no uint32 overruns rather than made with
	// unsafe.Slice: no check at all instead of unsafe.Slice's.)
	return (*[1 << 32]byte)(unsafe.Add(a.p, p))[:n:n]
}

// writeHeader writes a reserved record's header at data offset off: the
// length word with busyBit, and the page offset the kernel computes. Plain
// stores, as in the kernel: the header lies past producer_pos, where no
// consumer reads, until the reserver's store of producer_pos publishes it,
// and other producers read it only under the reservation lock.
func (m *memory) writeHeader(off uint64, n uint32) {
	*(*uint32)(unsafe.Pointer(&m.data[off])) = n | busyBit
	*(*uint32)(unsafe.Pointer(&m.data[off+4])) = uint32(off>>m.pageShift) + pgOffBase
}

// writeUserHeader writes a user ring record's header as libbpf does: the
// length word with busyBit and a zero pad word. Plain stores, published by
// the store of producer_pos that follows.
func (m *memory) writeUserHeader(off uint64, n uint32) {
	*(*uint32)(unsafe.Pointer(&m.data[off])) = n | busyBit
	*(*uint32)(unsafe.Pointer(&m.data[off+4])) = 0
}

// pgOff reads the page offset of the header at data offset off.
func (m *memory) pgOff(off uint64) uint32 {
	return *(*uint32)(unsafe.Pointer(&m.data[off+4]))
}

// ident is the identity block of a user-space ring's consumer page.
type ident struct {
	magic    uint64
	version  uint32
	pageSize uint32
	size     uint64
	flags    uint32 // ringFlagOverwrite; 0 in rings of earlier ringo versions
	_        uint32
	// nonce is random, drawn when the ring is created: with the name, it
	// tells this ring from one created later under the same name, whose
	// positions start again at 0 (see Identify).
	nonce uint64
	// wake is the inode number of a shared ring's wake-up pipe, so that
	// a pipe deleted or replaced since is noticed (shared.go); 0 for
	// in-process rings.
	wake uint64
}

// wakeOffset is the offset of ident.wake in the identity block.
const wakeOffset = 40

// identity returns a pointer to the identity block of a mapping. The block
// is written once, when the ring is created, before any other process can
// open it, and only read afterwards.
func identity(m *sys.Mapping) *ident {
	return (*ident)(unsafe.Pointer(&m.Consumer[identOffset]))
}

// overwriteMark returns overwrite_pos and, for rings that keep it, the
// count of committed records before it, read as one: producers write both
// between two increments of the sequence word, under the reservation lock
// (or, in a ring made WithSingleProducer, as its one producer).
//
// A reader that takes a torn pair (one word old, the other new) counts
// the wrong records lost for good (the cursor never counts a negative
// loss), so it waits out a writer in the middle of its update however long
// that takes: spinning, yielding, then napping (a preempted goroutine, or
// a process descheduled on a busy host: it happens under load). Only when
// no live handle of a shared ring holds the reservation lock (a process
// that died mid-update) or after markPatience (a holder that stays
// stopped, or a process writing garbage into the words) does it take the
// words as they are: the position is still usable, the caller checks it,
// and only the count may be off.
func (m *memory) overwriteMark() (pos, count uint64) {
	if m.overSeq == nil {
		return m.overwritePos.Load(), 0
	}
	var start, checked time.Time
	for try := 0; ; try++ {
		seq := m.overSeq.Load()
		var waited time.Duration // since the spinning ended
		if try > markSpins {
			waited = time.Since(start)
		}
		if seq&1 == 0 || waited > 0 && m.markAbandoned(waited, start, &checked) {
			pos, count = m.overwritePos.Load(), m.overCount.Load()
			if m.overSeq.Load() == seq || waited > markPatience {
				return pos, count
			}
		}
		switch {
		case try < markSpins:
			cpuPause(1)
		case try == markSpins:
			start = time.Now()
		case waited < markYieldFor:
			runtime.Gosched()
		default:
			time.Sleep(markNap)
		}
	}
}

// markAbandoned reports whether a sequence word that has stayed odd (or
// changing) for waited has no live writer to wait for. An in-process
// ring's writers cannot die in the middle of an update (nor can anyone else
// write its memory), so it always has one. A shared ring's writer holds the
// reservation lock from before it makes the word odd until after it makes
// it even, so a free lock, or one whose holder is dead, means none; the
// caller's second look at the word tells a writer that finished, or
// started, meanwhile (each update makes the word a new odd value, see
// setOverwriteMark). The holder's liveness (a system call) is asked every
// deadOwnerCheck, as a producer waiting for the lock asks it.
func (m *memory) markAbandoned(waited time.Duration, start time.Time, checked *time.Time) bool {
	if waited > markPatience {
		return true
	}
	if m.presence == nil || waited < markYieldFor {
		return false
	}
	owner := m.lockWord.Load()
	if owner == 0 {
		return true
	}
	if now := start.Add(waited); now.Sub(*checked) >= deadOwnerCheck {
		*checked = now
		return !m.alive(owner)
	}
	return false
}

// markSpins is how many times overwriteMark looks before it yields between
// looks; markYieldFor how long it yields before it naps markNap between
// looks and checks that the writer is alive; markPatience how long it waits
// for a writer that stays in the middle of its update (as long as a
// producer waits for a held reservation lock; a variable for tests).
const (
	markSpins    = 1000
	markYieldFor = time.Millisecond
	markNap      = 100 * time.Microsecond
)

var markPatience = lockPatience

// mendOverwriteMark makes even a sequence word that a lock holder that died
// in the middle of setOverwriteMark left odd, so that readers stop waiting
// on it; called by the process that took its lock over, holding it. The
// words stay as the dead holder left them: the position is usable, the
// count may miss that one update's records.
func (m *memory) mendOverwriteMark() {
	if m.overSeq == nil {
		return
	}
	if seq := m.overSeq.Load(); seq&1 != 0 {
		m.overSeq.Store(seq + 1)
	}
}

// setOverwriteMark stores overwrite_pos and its count; called with the
// reservation lock held, before producer_pos is published.
func (m *memory) setOverwriteMark(pos, count uint64) {
	// Odd: being written. A new odd value even if a holder died here and
	// left the word odd, so that a reader that took the dead holder's
	// words as they were sees the word change under it.
	seq := (m.overSeq.Load() + 1) | 1
	m.overSeq.Store(seq)
	m.overwritePos.Store(pos)
	m.overCount.Store(count)
	m.overSeq.Store(seq + 1)
}
