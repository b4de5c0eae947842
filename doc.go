// Package ringo is the BPF ring buffer (BPF_MAP_TYPE_RINGBUF) in Go: a
// user-space ring with the kernel's memory layout to the byte and the
// producer API of a BPF program, and one Reader for every kind of ring: rings
// in this process, rings shared between processes, and the kernel rings BPF
// programs write. It also writes into BPF_MAP_TYPE_USER_RINGBUF maps that BPF
// programs drain.
//
// # Rings
//
// Three kinds of ring hold records: each is a consumer page, a producer page
// and a data area mapped twice, so that every record, even one that wraps,
// is one contiguous slice.
//
//   - Ring, made by New (in this process) or Create and Open (a named ring in
//     shared memory, for producers and a consumer in any processes). Its
//     producers use the BPF helpers' API: Output, Reserve with Commit or
//     Discard, Query, the NoWakeup and ForceWakeup flags. OutputWait and
//     ReserveWait wait for room instead of failing with ErrFull.
//   - KernelRing, a BPF_MAP_TYPE_RINGBUF map that BPF programs produce into:
//     OpenMap (an *ebpf.Map, or anything with FD() int), OpenPinned,
//     CreateKernelRing.
//   - UserRing, a BPF_MAP_TYPE_USER_RINGBUF map that user space produces into
//     and a BPF program drains: Reserve, Commit, Discard.
//
// Every constructor takes the same Options, and refuses one that means
// nothing to it.
//
// # Reading
//
// A Reader (NewReader) is the single consumer of any number of rings of
// either readable kind, waiting on all of them at once (in one epoll
// instance, or on a channel while every ring is an in-process one):
// Consume and ConsumeN hand out views in batches without blocking; Read and
// ReadInto block until a record arrives; Records is an iterator;
// ConsumeBatch hands a ring's records over at once, walked by an iterator
// (Batch.All) inlined into the caller's loop, the cheapest path. Ring sets
// (a KernelRingSet in a map of maps, or Shards of user-space rings) are
// followed as rings join and leave them (Reader.AddSet). In explicit release
// mode (SetExplicitRelease) records stay in their ring until Released, for a
// consumer that forwards them and may only free them once acknowledged.
// Peek and Meter look at any ring without consuming.
//
// # Losses and crashes
//
// Every ring kind reports what it lost (Loss): records producers gave up
// on, records overwritten in overwrite mode, records abandoned by producer
// processes that died. Reader.Stats reports them with what was consumed. A
// shared ring survives any of its processes dying at any instant: a dead lock
// holder's lock is taken over, a dead producer's reservation is discarded, a
// dead consumer's successor goes on from its position.
//
// # Where things are
//
//	layout.go     the kernel's layout: header bits, offsets, flags, properties
//	memory.go     the mapped words of a ring as typed atomics (with ringmem.go,
//	              what every ring kind holds, and positions.go, Positions)
//	ring.go       Ring and New; the producer API: Output, Reserve, Commit, Discard
//	lock.go       the reservation lock, in the ring's memory
//	wait.go       producers that wait for room (OutputWait, ReserveWait)
//	reader.go     Reader: Consume, Read, Records, and its wake-up protocol
//	cursor.go     the walk over record headers, checked against corrupt memory
//	batch.go      ConsumeBatch and Consume's fast walk: the same checks, in registers
//	look.go       the ringbuf drop-in's look at one kernel ring (internal/look):
//	              a record per call, without the Reader's lock
//	explicit.go   explicit release: SetExplicitRelease, Release, Rewind
//	shared.go     rings shared between processes: Create, Open, Remove, names,
//	              the directory and the files, checked as a careful daemon would
//	liveness.go   which handles of a shared ring are alive: the kernel's file locks
//	recovery.go   crash recovery: owner slots, abandoned records, the consumer claim
//	faults.go     a shared ring's file truncated under its mapping
//	overwrite.go  overwrite mode, a flight recorder's ring
//	loss.go       Loss, and the drop counters of kernel rings (bpf/ringo.h)
//	stats.go      Reader.Stats
//	kernel.go     KernelRing; kernelmap.go what it shares with UserRing (userring.go)
//	ringset.go    ring sets: KernelRingSet, and the Reader following sets
//	shards.go     Shards, sets of user-space rings
//	inspect.go    Peek and Meter, which never consume
//	identify.go   Identify: a ring's kind, name and incarnation
//	spec.go       MapSpec: the kernel's rules for ring buffer maps
//	options.go    Option, for every constructor
//	errors.go     the sentinel errors, matching the helpers' errnos
package ringo
