// Package ringbuf reads BPF ring buffer maps (BPF_MAP_TYPE_RINGBUF) with the
// API and the behaviour of cilium/ebpf's ringbuf package, so that a program
// written against cilium/ebpf switches to it by its import path alone:
//
//	import "github.com/ringo-bpf/ringo/ringbuf" // was "github.com/cilium/ebpf/ringbuf"
//
// Reader is cilium/ebpf v0.22.0's Reader: NewReader, Read, ReadInto,
// SetDeadline, Flush, BufferSize, AvailableBytes and Close, with Record,
// ErrClosed (os.ErrClosed) and ErrFlushed. RawReader is the zero-copy reader
// of cilium/ebpf's main branch (after v0.22.0): NewRawReader, WithLease and
// a Lease's ReadSample and Commit, with the same Close, SetDeadline, Flush,
// BufferSize and AvailableBytes.
//
// # Sameness
//
// Both readers read through ringo's Reader (ringo.OpenMap's KernelRing):
// its cursor, with every check against corrupt memory, one record per call
// (internal/look: without the Reader's lock, this package holding its own),
// and wait for the kernel's wake-ups on an epoll instance of their own, as
// cilium's do. The package's test suite runs every Reader test against
// cilium/ebpf v0.22.0 and this package, on kernel rings written by BPF
// programs, and asserts the same outcome; the RawReader tests follow main's
// source (built against it with -tags ciliummain):
//
//   - NewReader and NewRawReader take maps of type ebpf.RingBuf (and
//     ebpf.WindowsRingBuf) with a power-of-two size, and refuse others with
//     "invalid Map type: <type>".
//   - A passed deadline (SetDeadline) or a Flush ends a wait; the records
//     there are read, then os.ErrDeadlineExceeded (wrapped) or ErrFlushed is
//     returned, once. The zero deadline waits for ever.
//   - Close interrupts a blocked read, which returns an error matching
//     ErrClosed; later reads fail with one too; a second Close returns nil.
//   - ReadInto reuses RawSample's memory when its capacity suffices, and
//     allocates exactly the record's size when it does not.
//   - Remaining and ReadSample's remain are the producer position loaded by
//     the read less the end of the record: headers, padding and discarded
//     records count.
//   - Reader skips discarded records; a Lease's ReadSample returns them as
//     nil data, with their remain, and Commit frees their space.
//   - Reader stores the kernel's consumer position after every record, so a
//     read frees its record's space for producers before it returns;
//     RawReader stores it at Commit only: samples read and not committed
//     are not read again by the next lease, and stay in the ring, for the
//     next reader, after Close.
//
// No case of the suite is skipped for either package.
//
// # Speed
//
// On a 2-vCPU AMD EPYC VM (BenchmarkDrain, BenchmarkStream; three runs,
// ranges in the README): draining a pre-filled ring, ReadInto takes 24-40 M
// records/s at 16 B where cilium/ebpf's takes 31-52 M (0.7-1.3x over the
// sizes and runs), and a lease of 256 samples 42-66 M; reading a BPF
// program's stream on the other CPU, ReadInto gets 6.5-18 M records/s at
// 44-134 CPU ns a record where cilium's gets 3.4-12 M at 81-260 ns, and the
// lease 14-23 M at 32-40 ns. A call per record costs about what cilium's
// does (the lock, the checks, the copy, the store that frees the record);
// ringo's own Reader pays the call without the rest: Consume drains 81-126 M
// records/s there, ConsumeBatch more.
//
// # Behaviours kept from cilium/ebpf that look like bugs
//
// They are kept because programs may depend on them, and the suite checks
// that both packages have them:
//
//   - A blocked Read holds the Reader's lock, so SetDeadline from another
//     goroutine waits until the read returns: it cannot shorten that wait.
//     Flush can.
//   - Deadlines are counted in whole milliseconds, rounded down: a deadline
//     less than a millisecond away counts as passed.
//   - Reader.AvailableBytes panics after Close.
//   - The data ReadSample returns has a capacity that runs on to the end of
//     the ring's mapping: appending to it writes into read-only memory, a
//     fault. Copy it instead.
//   - A WithLease callback that calls Close never returns (Close waits for
//     the lease).
//   - Once a Reader read has found the ring empty (and before its first),
//     it waits for the kernel's next wake-up of the ring before it looks
//     again, so records written with BPF_RB_NO_WAKEUP sit in the ring while
//     it sleeps, until a later wake-up, the deadline, Flush or Close
//     (TestReadWaitsForWakeup). ringo's own Reader looks before it sleeps.
//     (The drop-in's wait is an epoll instance of its own, as cilium's is:
//     wakeup.go. Its look stores the consumer position after each record
//     with a release store, and with a full barrier before it reports the
//     ring empty, where cilium's stores it with a barrier after every
//     record: either way a record committed as the read finds the ring
//     empty wakes the wait.)
//
// Where cilium/ebpf's behaviour is a fault, a hang or a race rather than a
// quirk a program could depend on, the drop-in differs on purpose:
//
//   - After Close, RawReader.AvailableBytes panics, where cilium/ebpf's reads
//     the memory it has unmapped, a fatal fault.
//   - AvailableBytes loads the consumer position before the producer
//     position, as the kernel's bpf_ringbuf_query does, so it is never
//     negative; cilium's loads them the other way round, and beside a
//     concurrent read can be briefly negative.
//   - A read that finds the record at the consumer position still being
//     written waits for its commit by spinning, yielding the processor,
//     and stops at Close. cilium/ebpf's spin (v0.22.0's Reader without
//     yielding, holding the lock Close waits for; main's RawReader for
//     ever). A BPF program commits or discards every record it reserves
//     before it returns (the verifier sees to it), so the wait is a moment,
//     and no test makes a record stay busy.
//   - A Lease's ReadSample of an empty ring while samples it returned are not
//     committed looks at the ring every millisecond until a sample comes or
//     the deadline, Flush or Close ends the wait (TestRawHeldNaps). The
//     kernel reports the map ready for as long as bytes lie past the
//     committed consumer position, so cilium/ebpf main's epoll wait returns
//     at once, again and again: its ReadSample spins on a processor and
//     never sees its deadline (checked against main's source, -tags
//     ciliummain: the read does not return).
package ringbuf
