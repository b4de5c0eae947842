package ringo

// The ring layout, defined once for every kind of ring ringo handles. These
// are the kernel's values (include/uapi/linux/bpf.h, kernel/bpf/ringbuf.c).
const (
	// HeaderSize is the size of a record header: a u32 length word, then a
	// u32 page offset.
	HeaderSize = 8

	// busyBit in a header's length word marks a record still being
	// written.
	busyBit = 1 << 31
	// discardBit in a header's length word marks a discarded record, which
	// consumers skip.
	discardBit = 1 << 30

	// maxRecordSize is the largest payload the kernel would ever reserve
	// (UINT_MAX / 4); a ring's own size limits records further.
	maxRecordSize = 1<<32/4 - 1

	// maxSize is the largest ring: max_entries is a u32 power of two.
	maxSize = 1 << 31
)

// What a sleeping Reader asks of a user-space ring's producers, in its
// waiter word: to be woken by the kernel's rule (a commit at consumer_pos,
// or forced), or by any commit not marked NoWakeup (a shared ring whose
// head was empty: see Ring.finish).
const (
	waitAtConsumer = 1
	waitAnyCommit  = 2
)

// Offsets inside the two position pages.
const (
	consumerPosOffset = 0 // u64 consumer_pos, consumer page
	producerPosOffset = 0 // u64 producer_pos, producer page
	pendingPosOffset  = 8 // u64 pending_pos, producer page

	// ringo's own: u32 consumer-is-waiting word of user-space rings, in the
	// consumer page but a cache line away from consumer_pos: 0, or one of
	// the waitAt values below.
	waiterOffset = 64

	// ringo's own: the wanted and seq words (u32 each) of producers that
	// wait for room in a user-space ring (wait.go), in the consumer page,
	// a cache line of their own.
	spaceOffset = 192

	// ringo's own: the identity and counters of user-space rings, in the
	// consumer page, past everything the kernel uses. Shared rings are
	// checked against them when opened.
	identOffset      = 2048 // u64 magic, u32 version, u32 page size, u64 data size, u32 flags, u32 pad, u64 nonce, u64 wake-up pipe inode
	droppedOffset    = 2112 // u64 reservations refused because the ring was full
	abandonedOffset  = 2176 // u64 records abandoned by dead producers
	droppedBytesOff  = 2184 // u64 payload bytes of the refused reservations
	consCountOffset  = 2240 // u64 overwrite mode: committed records the consumer has passed
	overwrittenOff   = 2248 // u64 overwrite mode: records the consumer lost to producers
	overwrittenBytes = 2256 // u64 overwrite mode: bytes of positions the consumer lost

	ringMagic = 0x00474e4952 // "RING" and a NUL, little-endian
	// Version 2: tokens of handles (liveness.go), the presence table,
	// the wake-up pipe's inode.
	ringVersion = 2

	// ringo's own: u64 reservation lock of user-space rings, in the
	// producer page, a cache line away from the positions the consumer
	// reads (and from overwrite_pos at 16, which mainline kernels add).
	// It holds the token of its holder's handle (liveness.go).
	lockOffset = 64

	// ringo's own: the owners of open reservations of shared rings, from
	// producer page offset 256 to its end: slots of {u64 pos, u64 owner
	// process token}, owner 0 meaning free.
	slotsOffset = 256
	slotSize    = 16

	// overwrite_pos, in the producer page of rings in overwrite mode
	// (mainline's BPF_F_RB_OVERWRITE): the position after the last record
	// producers have overwritten.
	overwritePosOffset = 16

	// ringo's own, overwrite mode: a u64 sequence word and the u64 count
	// of committed records overwrite_pos has passed, written together
	// under the reservation lock so that a consumer reads a position and
	// its count as one.
	overSeqOffset   = 128
	overCountOffset = 136

	// ringo's own: u64 token of the handle whose Reader consumes a shared
	// ring, in the consumer page.
	consumerOwnerOffset = 128

	// ringo's own: the presence table of shared rings (liveness.go), u64
	// entries from consumer page offset 2304 to its end; and the offset in
	// the ring file of the byte a handle at index 0 locks (index i locks
	// the byte at presenceLockBase+i, far past the file's end).
	presenceOffset   = 2304
	presenceLockBase = 1 << 40

	// The kernel's struct bpf_ringbuf has one page of its own before the
	// consumer page, so a header's pg_off counts three pages before the data.
	pgOffBase = 3
)

// recordSize returns the bytes a record with an n-byte payload takes in the
// ring: the header and payload, rounded up to 8.
func recordSize(n uint64) uint64 { return (n + HeaderSize + 7) &^ 7 }

// payloadLen extracts the payload length from a header's length word.
func payloadLen(word uint32) uint32 { return word &^ (busyBit | discardBit) }

// Flags of Output, Commit and Discard: BPF_RB_NO_WAKEUP and
// BPF_RB_FORCE_WAKEUP. With neither, the ring wakes its consumer only if the
// consumer has caught up with the record being committed.
const (
	// NoWakeup commits without waking the consumer.
	NoWakeup uint64 = 1 << 0
	// ForceWakeup wakes the consumer whether or not it has caught up.
	ForceWakeup uint64 = 1 << 1

	wakeupFlags = NoWakeup | ForceWakeup
)

// Prop names a property for Query: the BPF_RB_* values of bpf_ringbuf_query.
type Prop uint64

// The properties bpf_ringbuf_query knows.
const (
	// AvailData is the number of bytes of records not yet consumed:
	// producer position minus consumer position (BPF_RB_AVAIL_DATA).
	AvailData Prop = 0
	// RingSize is the size of the data area in bytes (BPF_RB_RING_SIZE).
	RingSize Prop = 1
	// ConsumerPos is the consumer's position (BPF_RB_CONS_POS).
	ConsumerPos Prop = 2
	// ProducerPos is the producer's position (BPF_RB_PROD_POS).
	ProducerPos Prop = 3
	// OverwritePos is the position after the last record producers
	// overwrote, in a ring in overwrite mode (BPF_RB_OVERWRITE_POS of
	// mainline kernels); 0 otherwise.
	OverwritePos Prop = 4
)

// ringFlagOverwrite in a user-space ring's identity block: the ring is in
// overwrite mode (FlagOverwrite is the kernel's map flag for the same).
const ringFlagOverwrite = 1 << 0
