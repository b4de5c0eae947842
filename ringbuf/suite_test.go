package ringbuf_test

// The shared suite: every test of Reader here runs twice, as subtests
// "cilium" (cilium/ebpf v0.22.0's ringbuf package) and "ringo" (this
// package), on real kernel ring buffer maps written by BPF programs
// (internal/producer), and asserts the same outcome of both. Tests of
// RawReader (raw_suite_test.go) run against this package only: the
// module proxy does not serve cilium/ebpf's main branch, where RawReader
// lives; each of those cites the lines of main's source it checks.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	cilium "github.com/cilium/ebpf/ringbuf"
	dropin "github.com/ringo-bpf/ringo/ringbuf"
	"github.com/ringo-bpf/ringo/ringbuf/internal/producer"
)

// rec is a Record of either package.
type rec struct {
	RawSample []byte
	Remaining int
}

// reader is the API the two packages' Readers share.
type reader interface {
	Read() (rec, error)
	ReadInto(*rec) error
	SetDeadline(time.Time)
	Flush() error
	BufferSize() int
	AvailableBytes() int
	Close() error
	// readScratch is ReadInto into a Record of the package's own kept by
	// the adapter, for counting allocations; one goroutine only.
	readScratch() error
}

// impl is one of the two implementations under test.
type impl struct {
	name       string
	newReader  func(*ebpf.Map) (reader, error)
	errFlushed error
	errClosed  error
}

var impls = []impl{
	{"cilium", func(m *ebpf.Map) (reader, error) {
		r, err := cilium.NewReader(m)
		if err != nil {
			return nil, err
		}
		return &ciliumReader{r: r}, nil
	}, cilium.ErrFlushed, cilium.ErrClosed},
	{"ringo", func(m *ebpf.Map) (reader, error) {
		r, err := dropin.NewReader(m)
		if err != nil {
			return nil, err
		}
		return &dropinReader{r: r}, nil
	}, dropin.ErrFlushed, dropin.ErrClosed},
}

type ciliumReader struct {
	r       *cilium.Reader
	scratch cilium.Record
}

func (c *ciliumReader) readScratch() error { return c.r.ReadInto(&c.scratch) }

func (c *ciliumReader) Read() (rec, error) {
	r, err := c.r.Read()
	return rec{r.RawSample, r.Remaining}, err
}

// ReadInto goes through a Record of the caller's goroutine: the adapter is
// shared by the goroutines of TestConcurrentReaders. (The Record escapes
// to the heap: TestReadIntoReuses counts allocations with readScratch.)
func (c *ciliumReader) ReadInto(r *rec) error {
	cr := cilium.Record{RawSample: r.RawSample, Remaining: r.Remaining}
	err := c.r.ReadInto(&cr)
	r.RawSample, r.Remaining = cr.RawSample, cr.Remaining
	return err
}

func (c *ciliumReader) SetDeadline(t time.Time) { c.r.SetDeadline(t) }
func (c *ciliumReader) Flush() error            { return c.r.Flush() }
func (c *ciliumReader) BufferSize() int         { return c.r.BufferSize() }
func (c *ciliumReader) AvailableBytes() int     { return c.r.AvailableBytes() }
func (c *ciliumReader) Close() error            { return c.r.Close() }

type dropinReader struct {
	r       *dropin.Reader
	scratch dropin.Record
}

func (d *dropinReader) readScratch() error { return d.r.ReadInto(&d.scratch) }

func (d *dropinReader) Read() (rec, error) {
	r, err := d.r.Read()
	return rec{r.RawSample, r.Remaining}, err
}

func (d *dropinReader) ReadInto(r *rec) error {
	dr := dropin.Record{RawSample: r.RawSample, Remaining: r.Remaining}
	err := d.r.ReadInto(&dr)
	r.RawSample, r.Remaining = dr.RawSample, dr.Remaining
	return err
}

func (d *dropinReader) SetDeadline(t time.Time) { d.r.SetDeadline(t) }
func (d *dropinReader) Flush() error            { return d.r.Flush() }
func (d *dropinReader) BufferSize() int         { return d.r.BufferSize() }
func (d *dropinReader) AvailableBytes() int     { return d.r.AvailableBytes() }
func (d *dropinReader) Close() error            { return d.r.Close() }

// both runs test against each implementation, as a subtest of its name.
func both(t *testing.T, test func(t *testing.T, im impl)) {
	requireKernel(t)
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) { test(t, im) })
	}
}

// newRing creates a ring buffer map of size bytes (0: a page), closed with
// the test.
func newRing(t testing.TB, size int) *ebpf.Map {
	t.Helper()
	m, err := producer.NewRing(size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// emit writes msgs into m with one run of a BPF program, message i with
// sequence number seq+i, and returns how many the ring refused.
func emit(t testing.TB, m *ebpf.Map, seq uint64, msgs ...producer.Message) int {
	t.Helper()
	prog, err := producer.Messages(m, msgs...)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	refused, err := producer.Run(prog, -1, seq)
	if err != nil {
		t.Fatal(err)
	}
	return int(refused)
}

// mustEmit is emit for messages that all fit.
func mustEmit(t testing.TB, m *ebpf.Map, seq uint64, msgs ...producer.Message) {
	t.Helper()
	if n := emit(t, m, seq, msgs...); n != 0 {
		t.Fatalf("the ring refused %d of %d records", n, len(msgs))
	}
}

// open opens im's Reader on m, closed with the test.
func open(t testing.TB, im impl, m *ebpf.Map) reader {
	t.Helper()
	r, err := im.newReader(m)
	if err != nil {
		t.Fatalf("%s: NewReader: %v", im.name, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// size is the bytes of ring positions a record of n payload bytes takes.
func size(n int) int { return 8 + (n+7)&^7 }

// waitLimit bounds every wait of the suite for a state it needs.
const waitLimit = 10 * time.Second

// waitGoroutine waits until some goroutine's stack (with its header line,
// which gives its state) satisfies match, failing after waitLimit.
func waitGoroutine(t testing.TB, what string, match func(stack string) bool) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for end := time.Now().Add(waitLimit); time.Now().Before(end); {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if match(g) {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("no goroutine %s after %v", what, waitLimit)
}

// inEpollWait matches a goroutine in the epoll_wait system call (both
// packages call golang.org/x/sys/unix.EpollWait) under a function whose
// name contains fn.
func inEpollWait(fn string) func(string) bool {
	return func(g string) bool {
		return strings.Contains(g, "[syscall") && strings.Contains(g, "golang.org/x/sys/unix.EpollWait(") && strings.Contains(g, fn)
	}
}

// result is what a read in another goroutine returned.
type result struct {
	rec rec
	err error
}

// readAsync reads in a goroutine of its own; the channel gets the result.
func readAsync(r reader) <-chan result {
	c := make(chan result, 1)
	go func() {
		rec, err := r.Read()
		c <- result{rec, err}
	}()
	return c
}

// blockedRead starts a read and waits until it sleeps in epoll_wait.
func blockedRead(t *testing.T, r reader) <-chan result {
	t.Helper()
	c := readAsync(r)
	waitGoroutine(t, "reading in epoll_wait", inEpollWait(".ReadInto("))
	select {
	case res := <-c:
		t.Fatalf("the read returned instead of blocking: %v", res.err)
	default:
	}
	return c
}

// await returns the result of a read that must come within waitLimit.
func await(t *testing.T, c <-chan result, what string) result {
	t.Helper()
	select {
	case res := <-c:
		return res
	case <-time.After(waitLimit):
		t.Fatalf("%s: the read did not return within %v", what, waitLimit)
		return result{}
	}
}

// TestNewReaderMapTypes: NewReader takes BPF_MAP_TYPE_RINGBUF maps, and
// refuses others with cilium's error text, also for a closed map.
func TestNewReaderMapTypes(t *testing.T) {
	requireKernel(t)
	specs := []*ebpf.MapSpec{
		{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1},
		{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1},
		{Type: ebpf.PerfEventArray},
		{Type: ebpf.UserRingbuf, MaxEntries: uint32(os.Getpagesize())},
	}
	for _, spec := range specs {
		m, err := ebpf.NewMap(spec)
		if err != nil {
			t.Fatalf("create a %v map: %v", spec.Type, err)
		}
		want := fmt.Sprintf("invalid Map type: %s", spec.Type)
		for _, im := range impls {
			_, err := im.newReader(m)
			if err == nil || err.Error() != want {
				t.Errorf("%s: NewReader of a %v map: %v, want %q", im.name, spec.Type, err, want)
			}
		}
		m.Close()
	}
	m, err := producer.NewRing(0)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	var errs []string
	for _, im := range impls {
		if _, err := im.newReader(m); err == nil {
			t.Errorf("%s: NewReader of a closed map succeeded", im.name)
		} else {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) == 2 && errs[0] != errs[1] {
		t.Errorf("NewReader of a closed map: cilium says %q, ringo %q", errs[0], errs[1])
	}
	both(t, func(t *testing.T, im impl) {
		for _, n := range []int{os.Getpagesize(), 1 << 16} {
			r := open(t, im, newRing(t, n))
			if r.BufferSize() != n {
				t.Errorf("BufferSize %d, want %d", r.BufferSize(), n)
			}
		}
	})
}

// TestRecords: records come out whole and in order, discarded ones are
// skipped, AvailableBytes and Remaining count positions as cilium does
// (headers, padding and discarded records included).
func TestRecords(t *testing.T) {
	cases := map[string][]producer.Message{
		"one short":               {{Size: 5}},
		"second discarded":        {{Size: 5}, {Size: 10, Discard: true}, {Size: 15}},
		"every other discarded":   {{Size: 5}, {Size: 10, Discard: true}, {Size: 15}, {Size: 20, Discard: true}, {Size: 25}},
		"discarded at the end":    {{Size: 8}, {Size: 16, Discard: true}, {Size: 1, Discard: true}},
		"only discarded":          {{Size: 16, Discard: true}, {Size: 24, Discard: true}},
		"output, flags and sizes": {{Size: 1, Output: true}, {Size: 7, Flags: producer.ForceWakeup}, {Size: 64, Flags: producer.NoWakeup}, {Size: 256, Output: true}, {Size: 1000}},
	}
	both(t, func(t *testing.T, im impl) {
		for name, msgs := range cases {
			t.Run(name, func(t *testing.T) {
				m := newRing(t, 0)
				r := open(t, im, m)
				if n := r.AvailableBytes(); n != 0 {
					t.Errorf("AvailableBytes of an empty ring: %d", n)
				}
				mustEmit(t, m, 100, msgs...)
				total := 0
				for _, msg := range msgs {
					total += size(msg.Size)
				}
				if n := r.AvailableBytes(); n != total {
					t.Errorf("AvailableBytes %d, want %d", n, total)
				}
				r.SetDeadline(time.Now().Add(-time.Second)) // nothing may block
				end := 0
				for i, msg := range msgs {
					end += size(msg.Size)
					if msg.Discard {
						continue
					}
					got, err := r.Read()
					if err != nil {
						t.Fatalf("record %d: %v", i, err)
					}
					if want := producer.Payload(uint64(100+i), msg.Size); !bytes.Equal(got.RawSample, want) {
						t.Errorf("record %d: %x, want %x", i, got.RawSample, want)
					}
					if got.Remaining != total-end {
						t.Errorf("record %d: Remaining %d, want %d", i, got.Remaining, total-end)
					}
					if n := r.AvailableBytes(); n != total-end {
						t.Errorf("after record %d: AvailableBytes %d, want %d", i, n, total-end)
					}
				}
				if _, err := r.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("read of the empty ring: %v, want os.ErrDeadlineExceeded", err)
				}
				// Discarded records at the end are consumed too.
				if n := r.AvailableBytes(); n != 0 {
					t.Errorf("AvailableBytes after reading all: %d", n)
				}
			})
		}
	})
}

// TestReadIntoReuses: ReadInto reuses RawSample's memory when its capacity
// suffices and allocates exactly the record's size when it does not; it
// allocates nothing per record.
func TestReadIntoReuses(t *testing.T) {
	both(t, func(t *testing.T, im impl) {
		m := newRing(t, 1<<16)
		r := open(t, im, m)
		mustEmit(t, m, 0, producer.Message{Size: 5}, producer.Message{Size: 20}, producer.Message{Size: 3})
		buf := make([]byte, 1, 10)
		rd := rec{RawSample: buf}
		if err := r.ReadInto(&rd); err != nil {
			t.Fatal(err)
		}
		if len(rd.RawSample) != 5 || cap(rd.RawSample) != 10 || &rd.RawSample[0] != &buf[0] {
			t.Errorf("5-byte record into a 10-byte buffer: len %d cap %d, same memory %v", len(rd.RawSample), cap(rd.RawSample), &rd.RawSample[:1][0] == &buf[0])
		}
		if err := r.ReadInto(&rd); err != nil {
			t.Fatal(err)
		}
		if len(rd.RawSample) != 20 || cap(rd.RawSample) != 20 || &rd.RawSample[0] == &buf[0] {
			t.Errorf("20-byte record into a 10-byte buffer: len %d cap %d, want a new 20-byte one", len(rd.RawSample), cap(rd.RawSample))
		}
		if !bytes.Equal(rd.RawSample, producer.Payload(1, 20)) {
			t.Errorf("record 1: %x", rd.RawSample)
		}
		grown := rd.RawSample
		if err := r.ReadInto(&rd); err != nil {
			t.Fatal(err)
		}
		if len(rd.RawSample) != 3 || cap(rd.RawSample) != 20 || &rd.RawSample[0] != &grown[0] {
			t.Errorf("3-byte record: len %d cap %d, want the 20-byte buffer", len(rd.RawSample), cap(rd.RawSample))
		}

		const runs = 200
		msgs := make([]producer.Message, runs+1)
		for i := range msgs {
			msgs[i] = producer.Message{Size: 64}
		}
		mustEmit(t, m, 0, msgs...)
		allocs := testing.AllocsPerRun(runs, func() {
			if err := r.readScratch(); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("ReadInto: %v allocations per record", allocs)
		}

		// A program that sets a deadline before every read, to stop
		// waiting now and then, allocates nothing either.
		mustEmit(t, m, 0, msgs...)
		allocs = testing.AllocsPerRun(runs, func() {
			r.SetDeadline(time.Now().Add(time.Minute))
			if err := r.readScratch(); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("SetDeadline and ReadInto: %v allocations per record", allocs)
		}
	})
}

// TestDeadline: a deadline in the past makes a read of an empty ring
// return os.ErrDeadlineExceeded at once, every time; records there come
// first; a future deadline is waited for; the zero deadline blocks.
func TestDeadline(t *testing.T) {
	texts := map[string]string{}
	both(t, func(t *testing.T, im impl) {
		m := newRing(t, 0)
		r := open(t, im, m)
		r.SetDeadline(time.Now().Add(-time.Second))
		for i := range 2 {
			_, err := r.Read()
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read %d of an empty ring past the deadline: %v", i, err)
			}
			texts[im.name] = err.Error()
		}
		mustEmit(t, m, 0, producer.Message{Size: 8}, producer.Message{Size: 9})
		for i := range 2 {
			if _, err := r.Read(); err != nil {
				t.Fatalf("record %d past the deadline: %v", i, err)
			}
		}
		if _, err := r.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read past the deadline once empty: %v", err)
		}

		start := time.Now()
		r.SetDeadline(start.Add(30 * time.Millisecond))
		if _, err := r.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read with a deadline 30ms ahead: %v", err)
		}
		if d := time.Since(start); d < 29*time.Millisecond {
			t.Errorf("a deadline 30ms ahead returned after %v", d)
		}

		r.SetDeadline(time.Time{})
		c := blockedRead(t, r)
		mustEmit(t, m, 7, producer.Message{Size: 16})
		res := await(t, c, "a record written after the read blocked")
		if res.err != nil || !bytes.Equal(res.rec.RawSample, producer.Payload(7, 16)) {
			t.Fatalf("woken read: %x, %v", res.rec.RawSample, res.err)
		}
	})
	if texts["cilium"] != texts["ringo"] {
		t.Errorf("deadline errors differ: cilium %q, ringo %q", texts["cilium"], texts["ringo"])
	}
}

// TestNoWakeup: records written with BPF_RB_NO_WAKEUP while a read sleeps
// do not end its wait (Close does, with ErrClosed); a passed deadline reads
// the records there, then returns os.ErrDeadlineExceeded (cilium's
// TestReaderNoWakeup).
func TestNoWakeup(t *testing.T) {
	both(t, func(t *testing.T, im impl) {
		m := newRing(t, 0)
		r := open(t, im, m)
		// The zero deadline: the read sleeps, and the records written
		// meanwhile do not wake it.
		c := blockedRead(t, r)
		mustEmit(t, m, 0, producer.Message{Size: 5, Flags: producer.NoWakeup}, producer.Message{Size: 7, Flags: producer.NoWakeup})
		if n := r.AvailableBytes(); n != 32 {
			t.Errorf("AvailableBytes %d, want 32", n)
		}
		select {
		case res := <-c:
			t.Fatalf("a record written without wake-up ended the wait: %d bytes, %v", len(res.rec.RawSample), res.err)
		default:
		}
		r.Close()
		if res := await(t, c, "Close"); !errors.Is(res.err, im.errClosed) {
			t.Fatalf("read closed while records written without wake-up were there: %v", res.err)
		}

		m = newRing(t, 0)
		r = open(t, im, m)
		mustEmit(t, m, 0, producer.Message{Size: 5, Flags: producer.NoWakeup}, producer.Message{Size: 7, Flags: producer.NoWakeup})
		r.SetDeadline(time.Now())
		for i, n := range []int{5, 7} {
			got, err := r.Read()
			if err != nil || len(got.RawSample) != n {
				t.Fatalf("read %d: %d bytes, %v; want %d bytes", i, len(got.RawSample), err, n)
			}
			if left := r.AvailableBytes(); left != 16*(1-i) {
				t.Errorf("after read %d: AvailableBytes %d", i, left)
			}
		}
		if _, err := r.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("third read: %v, want os.ErrDeadlineExceeded", err)
		}
	})
}

// TestReadWaitsForWakeup: cilium/ebpf v0.22.0's read waits for a wake-up
// before it looks at the ring, so records written with BPF_RB_NO_WAKEUP
// before a read with the zero deadline sit in the ring while it sleeps, to
// be read after Flush (or a later wake-up, the deadline or Close). The
// drop-in keeps it (doc.go), though ringo's own Reader looks at the ring
// before it sleeps, as cilium/ebpf's main branch does.
func TestReadWaitsForWakeup(t *testing.T) {
	both(t, func(t *testing.T, im impl) {
		m := newRing(t, 0)
		r := open(t, im, m)
		mustEmit(t, m, 0, producer.Message{Size: 5, Flags: producer.NoWakeup}, producer.Message{Size: 7, Flags: producer.NoWakeup})
		c := blockedRead(t, r)
		if err := r.Flush(); err != nil {
			t.Fatal(err)
		}
		if res := await(t, c, "Flush"); res.err != nil || len(res.rec.RawSample) != 5 {
			t.Fatalf("flushed read: %d bytes, %v; want 5 bytes", len(res.rec.RawSample), res.err)
		}
		if got, err := r.Read(); err != nil || len(got.RawSample) != 7 {
			t.Fatalf("second read: %d bytes, %v; want 7", len(got.RawSample), err)
		}
		if _, err := r.Read(); err != im.errFlushed {
			t.Fatalf("third read: %v, want ErrFlushed", err)
		}
	})
}

// TestFlush: Flush makes a blocked read return the records there, then
// ErrFlushed (cilium's TestReaderFlushPendingEvents, with the records
// written while the read sleeps: see TestReadWaitsForWakeup); the flush is
// spent then; a Flush while no read waits is kept for the next; two
// Flushes before a wait count once.
func TestFlush(t *testing.T) {
	both(t, func(t *testing.T, im impl) {
		m := newRing(t, 0)
		r := open(t, im, m)
		c := blockedRead(t, r)
		mustEmit(t, m, 0, producer.Message{Size: 5, Flags: producer.NoWakeup}, producer.Message{Size: 7, Flags: producer.NoWakeup})
		if err := r.Flush(); err != nil {
			t.Fatal(err)
		}
		res := await(t, c, "Flush")
		if res.err != nil || len(res.rec.RawSample) != 5 {
			t.Fatalf("flushed read: %d bytes, %v; want 5 bytes", len(res.rec.RawSample), res.err)
		}
		if got, err := r.Read(); err != nil || len(got.RawSample) != 7 {
			t.Fatalf("second read: %d bytes, %v; want 7", len(got.RawSample), err)
		}
		if _, err := r.Read(); !errors.Is(err, im.errFlushed) || err != im.errFlushed {
			t.Fatalf("third read: %v, want ErrFlushed itself", err)
		}
		// The flush is spent: the next read blocks again.
		c = blockedRead(t, r)
		mustEmit(t, m, 2, producer.Message{Size: 9})
		if res := await(t, c, "a wake-up"); res.err != nil || len(res.rec.RawSample) != 9 {
			t.Fatalf("read after the flush: %d bytes, %v", len(res.rec.RawSample), res.err)
		}

		// Flushed while nobody waits, twice: the next read of the empty
		// ring returns ErrFlushed at once, and only once.
		r.Flush()
		r.Flush()
		if _, err := r.Read(); err != im.errFlushed {
			t.Fatalf("read after two Flushes: %v, want ErrFlushed", err)
		}
		r.SetDeadline(time.Now().Add(-time.Second))
		if _, err := r.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read after the flush was returned: %v, want os.ErrDeadlineExceeded", err)
		}
	})
}

// TestFlushAndDeadline: a Flush and a passed deadline are returned one
// after the other, the flush first, whichever came first; after a flush,
// reads wait again until the deadline.
func TestFlushAndDeadline(t *testing.T) {
	both(t, func(t *testing.T, im impl) {
		m := newRing(t, 0)
		r := open(t, im, m)
		r.SetDeadline(time.Now().Add(-time.Second))
		if _, err := r.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read past the deadline: %v", err)
		}
		// Flushed after the deadline passed.
		r.Flush()
		if _, err := r.Read(); err != im.errFlushed {
			t.Fatalf("read flushed after the deadline passed: %v, want ErrFlushed", err)
		}
		if _, err := r.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read after the flush was returned: %v, want os.ErrDeadlineExceeded", err)
		}
		// Flushed, then a deadline set in the past.
		r.SetDeadline(time.Time{})
		r.Flush()
		r.SetDeadline(time.Now().Add(-time.Second))
		if _, err := r.Read(); err != im.errFlushed {
			t.Fatalf("read flushed before a deadline in the past: %v, want ErrFlushed", err)
		}
		if _, err := r.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read after that flush: %v, want os.ErrDeadlineExceeded", err)
		}
		// A deadline ahead, a flush with records there: the records, the
		// flush, then reads wait until the deadline.
		deadline := time.Now().Add(50 * time.Millisecond)
		r.SetDeadline(deadline)
		mustEmit(t, m, 0, producer.Message{Size: 8})
		r.Flush()
		if got, err := r.Read(); err != nil || len(got.RawSample) != 8 {
			t.Fatalf("read of the record there when flushed: %d bytes, %v", len(got.RawSample), err)
		}
		if _, err := r.Read(); err != im.errFlushed {
			t.Fatalf("read once the ring is empty: %v, want ErrFlushed", err)
		}
		if _, err := r.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read after the flush: %v, want os.ErrDeadlineExceeded", err)
		}
		// Both count in whole milliseconds: the wait ends in the last one.
		if early := time.Until(deadline); early > time.Millisecond {
			t.Errorf("the read after the flush returned %v before the deadline", early)
		}
	})
}

// TestClose: Close from another goroutine interrupts a blocked read with an
// error matching ErrClosed; Close again returns nil; reads and Flush after
// it fail with cilium's errors; AvailableBytes after it panics (cilium's
// reads the ring it has let go).
func TestClose(t *testing.T) {
	var texts [2][]string
	both(t, func(t *testing.T, im impl) {
		m := newRing(t, 0)
		mustEmit(t, m, 0, producer.Message{Size: 5})
		r := open(t, im, m)
		if _, err := r.Read(); err != nil {
			t.Fatal(err)
		}
		c := blockedRead(t, r)
		closed := make(chan error, 1)
		go func() { closed <- r.Close() }()
		res := await(t, c, "Close")
		if !errors.Is(res.err, im.errClosed) || !errors.Is(res.err, os.ErrClosed) {
			t.Fatalf("interrupted read: %v, want ErrClosed", res.err)
		}
		if err := <-closed; err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := r.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		_, err := r.Read()
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("read after Close: %v", err)
		}
		ferr := r.Flush()
		if !errors.Is(ferr, os.ErrClosed) {
			t.Fatalf("Flush after Close: %v", ferr)
		}
		if r.BufferSize() != os.Getpagesize() {
			t.Errorf("BufferSize after Close: %d", r.BufferSize())
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AvailableBytes after Close did not panic")
				}
			}()
			r.AvailableBytes()
		}()
		i := 0
		if im.name == "ringo" {
			i = 1
		}
		texts[i] = []string{res.err.Error(), err.Error(), ferr.Error()}
	})
	if fmt.Sprint(texts[0]) != fmt.Sprint(texts[1]) {
		t.Errorf("error texts differ: cilium %q, ringo %q", texts[0], texts[1])
	}
}

// TestWrapAround: records that wrap past the end of the data area come out
// whole (the data pages are mapped twice in a row).
func TestWrapAround(t *testing.T) {
	both(t, func(t *testing.T, im impl) {
		m := newRing(t, 0) // 4096 bytes: records of 1008 wrap at the fourth
		r := open(t, im, m)
		r.SetDeadline(time.Now().Add(-time.Second))
		seq := uint64(0)
		for round := range 6 {
			msgs := []producer.Message{{Size: 1000}, {Size: 1000}, {Size: 1000}}
			mustEmit(t, m, seq, msgs...)
			for i := range msgs {
				got, err := r.Read()
				if err != nil {
					t.Fatalf("round %d record %d: %v", round, i, err)
				}
				if !bytes.Equal(got.RawSample, producer.Payload(seq, 1000)) {
					t.Fatalf("round %d record %d (seq %d) mangled", round, i, seq)
				}
				seq++
			}
		}
	})
}

// TestFullRing: a read frees its record's space for producers before it
// returns: a full ring takes a record again after one read.
func TestFullRing(t *testing.T) {
	both(t, func(t *testing.T, im impl) {
		m := newRing(t, 0)
		r := open(t, im, m)
		// 4096 bytes hold 4 records of 1016 payload bytes (1024 each)
		// but for one position: the kernel keeps them below the size.
		msgs := []producer.Message{{Size: 1016}, {Size: 1016}, {Size: 1016}, {Size: 1000}}
		mustEmit(t, m, 0, msgs...)
		if n := emit(t, m, 9, producer.Message{Size: 1000}); n != 1 {
			t.Fatalf("a full ring took a record")
		}
		if _, err := r.Read(); err != nil {
			t.Fatal(err)
		}
		if n := emit(t, m, 9, producer.Message{Size: 1000}); n != 0 {
			t.Fatalf("after a read, the ring refused a record of the size read")
		}
	})
}

// TestConcurrentReaders: the Reader is safe for goroutines reading at once
// (each record goes to exactly one), while another goroutine produces.
func TestConcurrentReaders(t *testing.T) {
	both(t, func(t *testing.T, im impl) {
		m := newRing(t, 1<<16)
		r := open(t, im, m)
		const goroutines, batches, perBatch = 4, 50, 20
		seen := make(chan uint64, batches*perBatch)
		var wg sync.WaitGroup
		for range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var rd rec
				for {
					if err := r.ReadInto(&rd); err != nil {
						if !errors.Is(err, os.ErrClosed) {
							t.Errorf("read: %v", err)
						}
						return
					}
					seen <- producer.SeqOf(rd.RawSample)
				}
			}()
		}
		msgs := make([]producer.Message, perBatch)
		for i := range msgs {
			msgs[i] = producer.Message{Size: 24}
		}
		for b := range batches {
			mustEmit(t, m, uint64(b*perBatch), msgs...)
		}
		got := map[uint64]bool{}
		timeout := time.After(waitLimit)
		for len(got) < batches*perBatch {
			select {
			case s := <-seen:
				if got[s] {
					t.Fatalf("record %d read twice", s)
				}
				got[s] = true
			case <-timeout:
				t.Fatalf("%d of %d records read after %v", len(got), batches*perBatch, waitLimit)
			}
		}
		r.Close()
		wg.Wait()
		if len(seen) != 0 {
			t.Errorf("%d records read after all were", len(seen))
		}
	})
}

// TestSetDeadlineWaitsForRead: SetDeadline from another goroutine waits
// for a blocked read to return (both take the Reader's lock), so it cannot
// shorten that read; Flush can.
func TestSetDeadlineWaitsForRead(t *testing.T) {
	both(t, func(t *testing.T, im impl) {
		r := open(t, im, newRing(t, 0))
		c := blockedRead(t, r)
		set := make(chan struct{})
		go func() {
			r.SetDeadline(time.Now().Add(-time.Second))
			close(set)
		}()
		waitGoroutine(t, "blocked in SetDeadline", func(g string) bool {
			return strings.Contains(g, "[sync.Mutex.Lock") && strings.Contains(g, ".SetDeadline(")
		})
		select {
		case <-set:
			t.Fatal("SetDeadline returned while a read was blocked")
		default:
		}
		r.Flush()
		if res := await(t, c, "Flush"); res.err != im.errFlushed {
			t.Fatalf("flushed read: %v", res.err)
		}
		select {
		case <-set:
		case <-time.After(waitLimit):
			t.Fatal("SetDeadline still blocked after the read returned")
		}
		if _, err := r.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read with the deadline set meanwhile: %v", err)
		}
	})
}

// TestStream: records written by a BPF program in another goroutine, with
// adaptive wake-ups, while the reader reads, all arrive in order.
func TestStream(t *testing.T) {
	both(t, func(t *testing.T, im impl) {
		m := newRing(t, 1<<16)
		prog, err := producer.Loop(m, 48, false, true)
		if err != nil {
			t.Fatal(err)
		}
		defer prog.Close()
		r := open(t, im, m)
		const runs, perRun = 40, 500
		done := make(chan error, 1)
		giveUp := time.Now().Add(waitLimit)
		go func() {
			for i := range runs {
				// A full ring refuses records: write each run's again
				// until it took them all, one by one.
				for k := uint64(0); k < perRun; {
					if time.Now().After(giveUp) {
						done <- fmt.Errorf("the producer gave up after %v: the ring stayed full", waitLimit)
						return
					}
					ret, err := producer.Run(prog, -1, 1, 0, uint64(i*perRun)+k)
					if err != nil {
						done <- err
						return
					}
					if ret == 0 {
						k++
					} else {
						runtime.Gosched()
					}
				}
			}
			done <- nil
		}()
		r.SetDeadline(giveUp)
		var rd rec
		for seq := uint64(0); seq < runs*perRun; seq++ {
			if err := r.ReadInto(&rd); err != nil {
				t.Fatalf("record %d: %v", seq, err)
			}
			if !bytes.Equal(rd.RawSample, producer.Payload(seq, 48)) {
				t.Fatalf("record %d: %x", seq, rd.RawSample)
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestUnclosedReaderFreed: a Reader (and a RawReader) dropped without
// Close gives back its descriptors once collected, as cilium's does.
func TestUnclosedReaderFreed(t *testing.T) {
	both(t, func(t *testing.T, im impl) { unclosedFreed(t, im) })
}

func unclosedFreed(t *testing.T, im impl) {
	m := newRing(t, 1<<20)
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip(err)
		}
		return len(ents)
	}
	runtime.GC() // readers other tests dropped go first
	before := fds()
	var keep []any // reachable until counted: a GC meanwhile would free them
	for range 20 {
		r, err := im.newReader(m)
		if err != nil {
			t.Fatal(err)
		}
		keep = append(keep, r)
		if im.name == "ringo" {
			rr, err := dropin.NewRawReader(m)
			if err != nil {
				t.Fatal(err)
			}
			keep = append(keep, rr)
		}
	}
	if n := fds(); n < before+len(keep)*3 {
		t.Fatalf("%d descriptors open, want at least %d", n, before+len(keep)*3)
	}
	runtime.KeepAlive(keep)
	for end := time.Now().Add(waitLimit); fds() > before; {
		if time.Now().After(end) {
			t.Fatalf("%d descriptors still open after the readers were collected, want %d", fds(), before)
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}

// TestStreamSampledWakeups: a producer that wakes the reader only every
// 64th record (BPF_RB_NO_WAKEUP for the rest, BPF_RB_FORCE_WAKEUP for
// that one), as tracers that batch wake-ups do: every record still comes,
// in order, with the zero deadline. (The drop-in's look before a wait is
// exercised here against epoll's ready-list state.)
func TestStreamSampledWakeups(t *testing.T) {
	both(t, func(t *testing.T, im impl) {
		m := newRing(t, 1<<16)
		prog, err := producer.Loop(m, 40, false, true)
		if err != nil {
			t.Fatal(err)
		}
		defer prog.Close()
		r := open(t, im, m)
		const batches, every = 200, 64
		done := make(chan error, 1)
		giveUp := time.Now().Add(waitLimit)
		go func() {
			seq := uint64(0)
			run := func(n, flags uint64) error {
				for n > 0 {
					if time.Now().After(giveUp) {
						return fmt.Errorf("the producer gave up after %v at record %d: the ring stayed full", waitLimit, seq)
					}
					ret, err := producer.Run(prog, -1, 1, flags, seq)
					if err != nil {
						return err
					}
					if ret == 0 {
						seq++
						n--
					} else {
						runtime.Gosched() // full: the reader catches up
					}
				}
				return nil
			}
			for range batches {
				if err := run(every-1, producer.NoWakeup); err != nil {
					done <- err
					return
				}
				if err := run(1, producer.ForceWakeup); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		r.SetDeadline(giveUp) // the bound of every read below
		var rd rec
		for seq := uint64(0); seq < batches*every; seq++ {
			if err := r.ReadInto(&rd); err != nil {
				t.Fatalf("record %d: %v", seq, err)
			}
			if !bytes.Equal(rd.RawSample, producer.Payload(seq, 40)) {
				t.Fatalf("record %d: %x", seq, rd.RawSample)
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
