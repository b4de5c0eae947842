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
// The package's test suite runs every Reader test against cilium/ebpf
// v0.22.0 and this package, on kernel rings written by BPF programs, and
// asserts the same outcome; the RawReader tests follow main's source line by
// line (the module proxy does not serve that branch). Both readers wait as
// cilium's do, on one epoll set holding the ring's descriptor (readable while
// it holds data the kernel signalled), an eventfd written by Close and one
// written by Flush, level-triggered, one event per wait:
//
//   - NewReader and NewRawReader take maps of type ebpf.RingBuf (and
//     ebpf.WindowsRingBuf) with a power-of-two size, and refuse others with
//     "invalid Map type: <type>".
//   - A Reader read waits for the kernel's wake-up before it looks at the
//     ring, and reads on without waiting until the ring is empty. A passed
//     deadline (SetDeadline) or a Flush ends the wait; the records there are
//     read, then os.ErrDeadlineExceeded (wrapped) or ErrFlushed is returned,
//     once. The zero deadline waits for ever.
//   - A Lease's ReadSample looks at the ring first and waits only when it is
//     empty, with the same deadline and flush errors.
//   - Close interrupts a blocked read, which returns an error matching
//     ErrClosed; later reads fail with one too; a second Close returns nil.
//   - ReadInto reuses RawSample's memory when its capacity suffices, and
//     allocates exactly the record's size when it does not.
//   - Remaining and ReadSample's remain are the producer position loaded by
//     the read less the end of the record: headers, padding and discarded
//     records count.
//   - Discarded records are skipped by Reader and handed out by ReadSample
//     as nil data, whose space Commit frees like any sample's.
//   - Reader stores the kernel's consumer position after every record, so a
//     read frees its record's space for producers before it returns;
//     RawReader stores it at Commit only.
//
// # Speed
//
// What this package does differently cannot be seen through the API. It
// stores the consumer position with a release store (a plain store on
// amd64, as libbpf does) where cilium/ebpf pays an exchange, a full barrier,
// on every record. And where a wait could not tell the difference, it does
// not make the epoll_wait system call: once a wait has reported the ring,
// the kernel keeps it on epoll's ready list until a wait finds it empty, so
// the next wait would return as soon as data arrived, whatever wake-up flags
// the producers used; then the reader looks at the ring for a few
// microseconds before it sleeps, and a reader that keeps up with its
// producers rarely enters the kernel. Where the ring is off the ready list
// (after a wait that timed out or reported a flush), or a Flush or Close may
// be pending, it makes the system call, as cilium/ebpf does.
//
// # Behaviours kept from cilium/ebpf that look like bugs
//
// They are kept because programs may depend on them, and the suite checks
// that both packages have them:
//
//   - A Reader read does not look at the ring before its first wait, so
//     records written with BPF_RB_NO_WAKEUP can sit in the ring while a read
//     with the zero deadline sleeps, until another record wakes it, or
//     Flush or Close is called.
//   - A blocked Read holds the Reader's lock, so SetDeadline from another
//     goroutine waits until the read returns: it cannot shorten that wait.
//     Flush can.
//   - Deadlines are counted in whole milliseconds, rounded down: a deadline
//     less than a millisecond away counts as passed.
//   - Reader.AvailableBytes panics after Close, and loads the producer
//     position before the consumer position without a lock, so beside a
//     concurrent read it can be briefly negative.
//   - The data ReadSample returns has a capacity that runs on to the end of
//     the ring's mapping: appending to it writes into read-only memory, a
//     fault. Copy it instead.
//   - A WithLease callback that calls Close never returns (Close waits for
//     the lease).
//
// One difference is deliberate: after Close, RawReader.AvailableBytes panics,
// where cilium/ebpf's reads the memory it has unmapped, a fatal fault.
package ringbuf
