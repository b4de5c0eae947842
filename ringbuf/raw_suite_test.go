package ringbuf_test

// RawReader's suite, run against every implementation in rawImpls: this
// package's, and cilium/ebpf main's when the tests are built with the tag
// ciliummain (raw_cilium_test.go) against a checkout of cilium/ebpf's main
// branch, where RawReader lives (commit a7d72cd2e818, "ringbuf: introduce
// RawReader wrapped by Reader", after v0.22.0; no release has it yet):
//
//	go mod edit -modfile=/tmp/main.mod -replace github.com/cilium/ebpf=/path/to/ebpf-main
//	GOWORK=off go test -modfile=/tmp/main.mod -tags ciliummain -run TestRaw .
//
// (with /tmp/main.mod a copy of go.mod and go.sum beside it as main.sum).
// Each test cites what it checks in main's raw_reader.go and ring.go.

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	dropin "github.com/ringo-bpf/ringo/ringbuf"
	"github.com/ringo-bpf/ringo/ringbuf/internal/producer"
)

// rawLease is the Lease the two packages share.
type rawLease interface {
	ReadSample() ([]byte, int, error)
	Commit()
}

// rawReader is the RawReader the two packages share.
type rawReader interface {
	// WithLease calls fn with a lease; the adapters allocate nothing
	// per call (TestRawAllocations).
	WithLease(fn func(rawLease) error) error
	SetDeadline(time.Time)
	Flush() error
	BufferSize() int
	AvailableBytes() int
	Close() error
}

// rawImpl is one RawReader under test.
type rawImpl struct {
	name       string
	newRaw     func(*ebpf.Map) (rawReader, error)
	errFlushed error
}

var rawImpls = []rawImpl{{"ringo", func(m *ebpf.Map) (rawReader, error) {
	r, err := dropin.NewRawReader(m)
	if err != nil {
		return nil, err
	}
	d := &dropinRaw{r: r}
	d.lease = func(l dropin.Lease) error { return d.fn(l) }
	return d, nil
}, dropin.ErrFlushed}}

type dropinRaw struct {
	r     *dropin.RawReader
	fn    func(rawLease) error
	lease func(dropin.Lease) error
}

func (d *dropinRaw) WithLease(fn func(rawLease) error) error {
	d.fn = fn
	return d.r.WithLease(d.lease)
}
func (d *dropinRaw) SetDeadline(t time.Time) { d.r.SetDeadline(t) }
func (d *dropinRaw) Flush() error            { return d.r.Flush() }
func (d *dropinRaw) BufferSize() int         { return d.r.BufferSize() }
func (d *dropinRaw) AvailableBytes() int     { return d.r.AvailableBytes() }
func (d *dropinRaw) Close() error            { return d.r.Close() }

// bothRaw runs test against each RawReader, as a subtest of its name.
func bothRaw(t *testing.T, test func(t *testing.T, im rawImpl)) {
	requireKernel(t)
	for _, im := range rawImpls {
		t.Run(im.name, func(t *testing.T) { test(t, im) })
	}
}

// openRaw opens im's RawReader on m, closed with the test, with a deadline
// waitLimit ahead: no read of the suite waits for ever unless it sets the
// zero deadline itself.
func openRaw(t testing.TB, im rawImpl, m *ebpf.Map) rawReader {
	t.Helper()
	r, err := im.newRaw(m)
	if err != nil {
		t.Fatalf("%s: NewRawReader: %v", im.name, err)
	}
	r.SetDeadline(time.Now().Add(waitLimit))
	t.Cleanup(func() { r.Close() })
	return r
}

// sample is what one ReadSample returned, the data copied.
type sample struct {
	data    []byte
	isNil   bool
	remain  int
	err     error
	capData int
}

// readSamples reads n samples in one lease, committing after them when
// commit is set.
func readSamples(t *testing.T, r rawReader, n int, commit bool) []sample {
	t.Helper()
	var got []sample
	err := r.WithLease(func(l rawLease) error {
		for range n {
			data, remain, err := l.ReadSample()
			got = append(got, sample{bytes.Clone(data), data == nil, remain, err, cap(data)})
			if err != nil {
				return err
			}
		}
		if commit {
			l.Commit()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("lease: %v", err)
	}
	return got
}

// TestRawMapTypes: raw_reader.go:63-71, the same checks and texts as
// Reader's; BufferSize is the map's size (:196).
func TestRawMapTypes(t *testing.T) {
	bothRaw(t, func(t *testing.T, im rawImpl) {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if _, err := im.newRaw(m); err == nil || err.Error() != "invalid Map type: Hash" {
			t.Errorf("NewRawReader of a hash map: %v", err)
		}
		r := openRaw(t, im, newRing(t, 1<<16))
		if r.BufferSize() != 1<<16 {
			t.Errorf("BufferSize %d", r.BufferSize())
		}
	})
}

// TestRawSamples: ReadSample hands out views of the ring (ring.go:118, the
// capacity running to the end of the double mapping, ring_other.go), remain
// counted from the producer position loaded per call (:76, :117); the
// consumer position the kernel sees moves only at Commit (raw_reader.go:191,
// ring.go:57), so AvailableBytes counts what was read but not committed
// (ring.go:51); a new lease goes on from the reader's own position, not
// the kernel's (ring.go:74-77: localCons), and Commit covers both leases.
func TestRawSamples(t *testing.T) {
	bothRaw(t, func(t *testing.T, im rawImpl) {
		m := newRing(t, 0)
		r := openRaw(t, im, m)
		msgs := []producer.Message{{Size: 5}, {Size: 15}, {Size: 25}, {Size: 0}}
		mustEmit(t, m, 0, msgs...)
		total := 0
		for _, msg := range msgs {
			total += size(msg.Size)
		}
		if n := r.AvailableBytes(); n != total {
			t.Fatalf("AvailableBytes %d, want %d", n, total)
		}
		got := readSamples(t, r, 1, false)
		if !bytes.Equal(got[0].data, producer.Payload(0, 5)) || got[0].remain != total-16 {
			t.Errorf("sample 0: %x remain %d", got[0].data, got[0].remain)
		}
		if got[0].capData != 2*4096-8 {
			t.Errorf("sample 0: capacity %d, want %d (to the end of the mapping)", got[0].capData, 2*4096-8)
		}
		if n := r.AvailableBytes(); n != total {
			t.Errorf("AvailableBytes before Commit: %d, want %d", n, total)
		}
		got = readSamples(t, r, 3, true)
		if !bytes.Equal(got[0].data, producer.Payload(1, 15)) || got[0].remain != total-16-24 || got[0].capData != 2*4096-16-8 {
			t.Errorf("sample 1: %x remain %d capacity %d", got[0].data, got[0].remain, got[0].capData)
		}
		if !bytes.Equal(got[1].data, producer.Payload(2, 25)) || got[1].remain != 8 {
			t.Errorf("sample 2: %x remain %d", got[1].data, got[1].remain)
		}
		// An empty payload is an empty sample, not a nil one.
		if got[2].isNil || len(got[2].data) != 0 || got[2].remain != 0 {
			t.Errorf("sample 3 (empty): nil %v, %d bytes, remain %d", got[2].isNil, len(got[2].data), got[2].remain)
		}
		if n := r.AvailableBytes(); n != 0 {
			t.Errorf("AvailableBytes after Commit: %d", n)
		}
	})
}

// TestRawDiscarded: ReadSample hands out a sample the producer discarded
// as nil data with the remain past it (ring.go:120-124), whose space
// Commit frees like any sample's.
func TestRawDiscarded(t *testing.T) {
	bothRaw(t, func(t *testing.T, im rawImpl) {
		m := newRing(t, 0)
		r := openRaw(t, im, m)
		msgs := []producer.Message{{Size: 5}, {Size: 10, Discard: true}, {Size: 15}, {Size: 20, Discard: true}, {Size: 25}, {Size: 30, Discard: true}}
		mustEmit(t, m, 0, msgs...)
		total := 0
		for _, msg := range msgs {
			total += size(msg.Size)
		}
		got := readSamples(t, r, 6, false)
		end := 0
		for i, msg := range msgs {
			end += size(msg.Size)
			if msg.Discard != got[i].isNil || got[i].remain != total-end {
				t.Errorf("sample %d: nil %v remain %d, want nil %v remain %d", i, got[i].isNil, got[i].remain, msg.Discard, total-end)
			}
		}
		if n := r.AvailableBytes(); n != total {
			t.Errorf("AvailableBytes before Commit: %d, want %d", n, total)
		}
		readSamples(t, r, 0, true)
		if n := r.AvailableBytes(); n != 0 {
			t.Errorf("AvailableBytes after Commit: %d", n)
		}
	})
}

// TestRawBatchCommit: samples read in one lease stay valid until Commit,
// which frees all their space at once (raw_reader.go:91-97).
func TestRawBatchCommit(t *testing.T) {
	bothRaw(t, func(t *testing.T, im rawImpl) {
		m := newRing(t, 0)
		r := openRaw(t, im, m)
		msgs := []producer.Message{{Size: 1016}, {Size: 1016}, {Size: 1016}, {Size: 1000}}
		mustEmit(t, m, 0, msgs...)
		err := r.WithLease(func(l rawLease) error {
			var views [][]byte
			for range msgs {
				data, _, err := l.ReadSample()
				if err != nil {
					return err
				}
				views = append(views, data)
			}
			// Not committed: the full ring has no room, and the views hold.
			if n := emit(t, m, 10, producer.Message{Size: 1000}); n != 1 {
				t.Errorf("the ring took a record before Commit")
			}
			for i, v := range views {
				if !bytes.Equal(v, producer.Payload(uint64(i), msgs[i].Size)) {
					t.Errorf("view %d changed before Commit", i)
				}
			}
			l.Commit()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		mustEmit(t, m, 10, producer.Message{Size: 1000}, producer.Message{Size: 1000}, producer.Message{Size: 1000})
		if n := r.AvailableBytes(); n != 3*1008 {
			t.Errorf("AvailableBytes %d", n)
		}
	})
}

// TestRawUncommitted: samples read and not committed are not read again by
// a later lease (the local consumer position, ring.go:118, outlives the
// lease) but stay in the ring: AvailableBytes counts them (:151-153) and,
// after Close (which stores nothing, raw_reader.go:111-124), a new reader
// reads them first.
func TestRawUncommitted(t *testing.T) {
	bothRaw(t, func(t *testing.T, im rawImpl) {
		m := newRing(t, 0)
		r := openRaw(t, im, m)
		msgs := []producer.Message{{Size: 8}, {Size: 16}, {Size: 24}, {Size: 32}}
		mustEmit(t, m, 0, msgs...)
		readSamples(t, r, 1, true)
		got := readSamples(t, r, 1, false)
		if !bytes.Equal(got[0].data, producer.Payload(1, 16)) {
			t.Errorf("second lease: %x, want record 1", got[0].data)
		}
		got = readSamples(t, r, 1, false)
		if !bytes.Equal(got[0].data, producer.Payload(2, 24)) {
			t.Errorf("third lease: %x, want record 2 (record 1 read, not committed)", got[0].data)
		}
		want := size(16) + size(24) + size(32)
		if n := r.AvailableBytes(); n != want {
			t.Errorf("AvailableBytes with two samples not committed: %d, want %d", n, want)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		next := openRaw(t, im, m)
		if n := next.AvailableBytes(); n != want {
			t.Errorf("AvailableBytes after Close: %d, want %d", n, want)
		}
		got = readSamples(t, next, 3, true)
		for i, k := range []int{1, 2, 3} {
			if !bytes.Equal(got[i].data, producer.Payload(uint64(k), msgs[k].Size)) {
				t.Errorf("next reader's sample %d: %x, want record %d", i, got[i].data, k)
			}
		}
		if n := next.AvailableBytes(); n != 0 {
			t.Errorf("AvailableBytes after the next reader's Commit: %d", n)
		}
	})
}

// TestRawHeldNaps: while samples it returned are not committed, the
// kernel reports the map ready for ever (bytes lie past the committed
// consumer position), so a ReadSample of an empty ring that waited on the
// poller would spin; the drop-in naps a millisecond between looks instead,
// returns at its deadline, and still gets a record written meanwhile. This
// package only: cilium/ebpf main's ReadSample spins there and never sees
// its deadline (doc.go, "One difference is deliberate").
func TestRawHeldNaps(t *testing.T) {
	requireKernel(t)
	im := rawImpls[0]
	m := newRing(t, 0)
	r := openRaw(t, im, m)
	mustEmit(t, m, 0, producer.Message{Size: 8}, producer.Message{Size: 8})
	readSamples(t, r, 2, false)

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const wait = 200 * time.Millisecond
	r.SetDeadline(time.Now().Add(wait))
	cpu0, start := threadCPU(), time.Now()
	err := r.WithLease(func(l rawLease) error { _, _, err := l.ReadSample(); return err })
	cpu, took := threadCPU()-cpu0, time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadSample of an empty ring, samples held: %v, want os.ErrDeadlineExceeded", err)
	}
	if cpu > took/2 {
		t.Errorf("waiting %v with samples held took %v of CPU: it spins", took, cpu)
	}

	r.SetDeadline(time.Now().Add(waitLimit))
	got := make(chan sample, 1)
	go func() {
		var s sample
		s.err = r.WithLease(func(l rawLease) error {
			data, _, err := l.ReadSample()
			s.data = bytes.Clone(data)
			l.Commit()
			return err
		})
		got <- s
	}()
	waitGoroutine(t, "napping in ReadSample", func(g string) bool {
		return strings.Contains(g, "wakeups).nap(") && strings.Contains(g, "ReadSample(")
	})
	mustEmit(t, m, 2, producer.Message{Size: 16})
	select {
	case s := <-got:
		if s.err != nil || !bytes.Equal(s.data, producer.Payload(2, 16)) {
			t.Errorf("sample written during the nap: %x, %v", s.data, s.err)
		}
	case <-time.After(waitLimit):
		t.Fatal("a sample written during the nap was not read")
	}
	if n := r.AvailableBytes(); n != 0 {
		t.Errorf("AvailableBytes after Commit: %d", n)
	}
}

// TestRawWrap: a sample that wraps past the end of the data area is one
// contiguous view (ring_other.go maps the data pages twice).
func TestRawWrap(t *testing.T) {
	bothRaw(t, func(t *testing.T, im rawImpl) {
		m := newRing(t, 0)
		r := openRaw(t, im, m)
		r.SetDeadline(time.Now().Add(-time.Second))
		seq := uint64(0)
		for round := range 6 {
			mustEmit(t, m, seq, producer.Message{Size: 1000}, producer.Message{Size: 1000}, producer.Message{Size: 1000})
			for i, s := range readSamples(t, r, 3, true) {
				if !bytes.Equal(s.data, producer.Payload(seq, 1000)) {
					t.Fatalf("round %d sample %d mangled", round, i)
				}
				seq++
			}
		}
	})
}

// TestRawDeadlineFlushNoWakeup: ReadSample reads what is there first
// (raw_reader.go:163-166), and once the ring is empty returns a wait's
// deadline or flush (:172-182): os.ErrDeadlineExceeded, ErrFlushed; the
// zero deadline blocks, and NO_WAKEUP samples written while it does wait
// for a Flush.
func TestRawDeadlineFlushNoWakeup(t *testing.T) {
	bothRaw(t, func(t *testing.T, im rawImpl) {
		m := newRing(t, 0)
		r := openRaw(t, im, m)
		read := func() sample {
			var s sample
			r.WithLease(func(l rawLease) error {
				data, remain, err := l.ReadSample()
				s = sample{bytes.Clone(data), data == nil, remain, err, cap(data)}
				if err == nil {
					l.Commit()
				}
				return nil
			})
			return s
		}
		r.SetDeadline(time.Now().Add(-time.Second))
		for i := range 2 {
			if s := read(); !errors.Is(s.err, os.ErrDeadlineExceeded) {
				t.Fatalf("read %d past the deadline: %v", i, s.err)
			}
		}
		mustEmit(t, m, 0, producer.Message{Size: 5, Flags: producer.NoWakeup}, producer.Message{Size: 7, Flags: producer.NoWakeup})
		for i, n := range []int{5, 7} {
			if s := read(); s.err != nil || len(s.data) != n {
				t.Fatalf("read %d: %d bytes, %v", i, len(s.data), s.err)
			}
		}
		if s := read(); !errors.Is(s.err, os.ErrDeadlineExceeded) {
			t.Fatalf("read of the empty ring: %v", s.err)
		}

		// Unlike v0.22.0's Reader, ReadSample looks at the ring before it
		// waits (raw_reader.go:163): a NO_WAKEUP sample there is read at
		// once, with the zero deadline too.
		r.SetDeadline(time.Time{})
		mustEmit(t, m, 2, producer.Message{Size: 9, Flags: producer.NoWakeup})
		if s := read(); s.err != nil || len(s.data) != 9 {
			t.Fatalf("read of a NO_WAKEUP sample there: %d bytes, %v", len(s.data), s.err)
		}
		// Then it blocks, and a NO_WAKEUP sample written meanwhile does not
		// end the wait; Flush does: the sample, then ErrFlushed.
		c := make(chan sample, 1)
		go func() { c <- read() }()
		waitGoroutine(t, "reading in epoll_wait", inEpollWait("ReadSample("))
		mustEmit(t, m, 3, producer.Message{Size: 11, Flags: producer.NoWakeup})
		select {
		case s := <-c:
			t.Fatalf("ReadSample returned instead of blocking: %v", s.err)
		default:
		}
		r.Flush()
		var s sample
		select {
		case s = <-c:
		case <-time.After(waitLimit):
			t.Fatal("Flush did not end the wait")
		}
		if s.err != nil || len(s.data) != 11 {
			t.Fatalf("flushed read: %d bytes, %v", len(s.data), s.err)
		}
		if s := read(); s.err != im.errFlushed {
			t.Fatalf("read after the flushed samples: %v, want ErrFlushed", s.err)
		}
	})
}

// TestRawClose: Close interrupts a blocked ReadSample with an error
// matching ErrClosed, waits for the lease to end (raw_reader.go:111-124),
// and returns nil when called again (:112); WithLease after Close fails
// with "ringbuf: file already closed" (:49-51), and a lease while another
// runs with "concurrent use of RawReader" (:38, :44-46).
func TestRawClose(t *testing.T) {
	bothRaw(t, func(t *testing.T, im rawImpl) {
		m := newRing(t, 0)
		r := openRaw(t, im, m)
		r.SetDeadline(time.Time{})

		inner := r.WithLease(func(rawLease) error {
			return r.WithLease(func(rawLease) error { return nil })
		})
		if inner == nil || inner.Error() != "concurrent use of RawReader" {
			t.Errorf("a lease inside a lease: %v", inner)
		}

		release := make(chan struct{})
		leased := make(chan error, 1)
		go func() {
			leased <- r.WithLease(func(l rawLease) error {
				_, _, err := l.ReadSample()
				<-release // the lease goes on after the interrupted read
				return err
			})
		}()
		waitGoroutine(t, "reading in epoll_wait", inEpollWait("ReadSample("))
		closed := make(chan error, 1)
		go func() { closed <- r.Close() }()
		waitGoroutine(t, "closing", func(g string) bool {
			return strings.Contains(g, "RawReader).Close(") && !strings.Contains(g, "[chan receive")
		})
		select {
		case err := <-closed:
			t.Fatalf("Close returned while a lease was running: %v", err)
		default:
		}
		close(release)
		select {
		case err := <-leased:
			if !errors.Is(err, os.ErrClosed) {
				t.Errorf("interrupted ReadSample: %v", err)
			}
		case <-time.After(waitLimit):
			t.Fatal("the lease did not end")
		}
		select {
		case err := <-closed:
			if err != nil {
				t.Errorf("Close: %v", err)
			}
		case <-time.After(waitLimit):
			t.Fatal("Close did not return after the lease ended")
		}
		if err := r.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		err := r.WithLease(func(rawLease) error { return nil })
		if err == nil || err.Error() != "ringbuf: file already closed" || !errors.Is(err, os.ErrClosed) {
			t.Errorf("WithLease after Close: %v", err)
		}
		if err := r.Flush(); !errors.Is(err, os.ErrClosed) {
			t.Errorf("Flush after Close: %v", err)
		}
	})
}

// TestRawAllocations: the lease path allocates nothing per sample.
func TestRawAllocations(t *testing.T) {
	bothRaw(t, func(t *testing.T, im rawImpl) {
		m := newRing(t, 1<<16)
		r := openRaw(t, im, m)
		const runs = 200
		msgs := make([]producer.Message, runs+1)
		for i := range msgs {
			msgs[i] = producer.Message{Size: 64}
		}
		mustEmit(t, m, 0, msgs...)
		var sum int
		fn := func(l rawLease) error {
			data, _, err := l.ReadSample()
			sum += len(data)
			l.Commit()
			return err
		}
		allocs := testing.AllocsPerRun(runs, func() {
			if err := r.WithLease(fn); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%v allocations per sample", allocs)
		}
	})
}
