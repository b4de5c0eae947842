package ringo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo/internal/waitfor"
)

// The stress tests run several producer goroutines against one consumer on a
// small ring, under the race detector, and check that every committed record
// arrives exactly once, intact and in per-producer order, that discarded
// records never arrive, and that no wake-up is lost (a lost wake-up shows up
// as a consumer blocked until the safety-net deadline).
//
// The race detector only watches Go's own memory: accesses to the ring's
// mapping (positions, headers, payloads) are invisible to it, so it checks
// the Go-side state (Reader, Ring, contexts) only. The ring's memory
// ordering is checked by the payload and order checks here instead.
//
// Record payloads. A record of 16 bytes or more is
//
//	u32 producer id | u64 sequence number | u32 payload length | pattern
//
// where the pattern is a slice of stressTable picked by a hash of (id, seq),
// so that any corruption, truncation or mix-up of two records is caught.
// Records of 0 to 15 bytes come from one "tiny" producer only; their length
// and bytes are a function of their sequence number, and the consumer checks
// their order at the end, against the tiny producer's list of commits.

const (
	stressHeader   = 16
	stressSentinel = 0xffff_ffff // id of the record that ends a run
	// stressWait is the safety net: a consumer that received no record
	// for this long has lost a wake-up (or the ring hangs).
	stressWait = 30 * time.Second
)

// stressTable is the deterministic byte soup that payload patterns are cut
// from.
var stressTable = func() []byte {
	rng := rand.New(rand.NewPCG(0x5eed, 0xb1f))
	b := make([]byte, 16384)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}()

// stressMix is splitmix64 of (id, seq).
func stressMix(id uint32, seq uint64) uint64 {
	z := uint64(id)<<40 ^ seq + 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// stressPattern is the n pattern bytes of record (id, seq); n <= 8192.
func stressPattern(id uint32, seq uint64, n int) []byte {
	h := stressMix(id, seq) % 8192
	return stressTable[h : h+uint64(n)]
}

// stressTinyLen is the length of the tiny producer's record seq.
func stressTinyLen(id uint32, seq uint64) int { return int(stressMix(id, seq)>>32) % stressHeader }

// stressFill writes the payload of record (id, seq) into b, whose length is
// the payload length. Short payloads get the pattern alone.
func stressFill(b []byte, id uint32, seq uint64) {
	if len(b) < stressHeader {
		copy(b, stressPattern(id, seq, len(b)))
		return
	}
	binary.LittleEndian.PutUint32(b[0:], id)
	binary.LittleEndian.PutUint64(b[4:], seq)
	binary.LittleEndian.PutUint32(b[12:], uint32(len(b)))
	copy(b[stressHeader:], stressPattern(id, seq, len(b)-stressHeader))
}

// isStressEnd reports whether rec is the end-of-run record.
func isStressEnd(rec Record) bool {
	return len(rec.Data) == stressHeader && binary.LittleEndian.Uint32(rec.Data) == stressSentinel
}

// stressConfig describes one stress run.
type stressConfig struct {
	ringSize  int
	producers int // producers of records of 16 bytes or more; one tiny producer runs besides
	records   int // records (committed or discarded) per producer
	maxSize   int // largest payload
	// flags makes producers work in batches with random wake-up flags (see
	// runFlags); otherwise every commit uses the adaptive default.
	flags bool
	// overwrite runs the ring in overwrite mode, without the tiny
	// producer (whose records carry no id to tell which were lost).
	overwrite bool
}

// stressProducer is one producer goroutine's state. committed is only read
// after the goroutine has finished.
type stressProducer struct {
	id        uint32
	tiny      bool
	rng       *rand.Rand
	ring      *Ring
	cfg       stressConfig
	quit      *atomic.Bool
	buf       []byte
	seq       uint64
	committed []uint64
	fulls     int // ErrFull answers
}

// size picks the payload size of the next record.
func (p *stressProducer) size() int {
	if p.tiny {
		return stressTinyLen(p.id, p.seq)
	}
	if p.rng.IntN(2) == 0 {
		return stressHeader + p.rng.IntN(256) // many small records
	}
	return stressHeader + p.rng.IntN(p.cfg.maxSize-stressHeader+1)
}

// full handles an ErrFull answer: it reports false if the run is being
// abandoned, and otherwise yields before the retry.
func (p *stressProducer) full() bool {
	p.fulls++
	if p.quit.Load() {
		return false
	}
	runtime.Gosched()
	return true
}

// hold now and then sleeps for up to 2ms while the producer holds a
// reservation. The consumer then catches up with the busy record, spins for
// a moment and goes to sleep in epoll, and the commit must wake it: without
// these holds a consumer would hardly ever sleep, and lost wake-ups would go
// unnoticed.
func (p *stressProducer) hold() {
	if p.rng.IntN(128) == 0 {
		time.Sleep(time.Duration(p.rng.IntN(2000)) * time.Microsecond)
	}
}

// runPlain produces cfg.records records, each by Output, Reserve+Commit or
// Reserve+Discard, with the default (adaptive) wake-up. On ErrFull it yields
// and retries the same record.
func (p *stressProducer) runPlain(t *testing.T) {
	for ; p.seq < uint64(p.cfg.records); p.seq++ {
		n := p.size()
		switch op := p.rng.IntN(10); {
		case op < 4:
			b := p.buf[:n]
			stressFill(b, p.id, p.seq)
			for {
				err := p.ring.Output(b, 0)
				if err == nil {
					break
				}
				if !errors.Is(err, ErrFull) {
					t.Errorf("producer %d: Output(%d bytes): %v", p.id, n, err)
					return
				}
				if !p.full() {
					return
				}
			}
			p.committed = append(p.committed, p.seq)
		default:
			v, ok := p.reserve(t, n, true)
			if !ok {
				return
			}
			stressFill(v.Bytes(), p.id, p.seq)
			p.hold()
			if op < 8 {
				if err := p.ring.Commit(v, 0); err != nil {
					t.Errorf("producer %d: Commit: %v", p.id, err)
					return
				}
				p.committed = append(p.committed, p.seq)
			} else if err := p.ring.Discard(v, 0); err != nil {
				t.Errorf("producer %d: Discard: %v", p.id, err)
				return
			}
		}
	}
}

// reserve reserves n bytes. With retry it yields and retries on ErrFull;
// without, it reports ErrFull as (zero, true) with an empty Reservation.
func (p *stressProducer) reserve(t *testing.T, n int, retry bool) (Reservation, bool) {
	for {
		v, err := p.ring.Reserve(n)
		if err == nil {
			if len(v.Bytes()) != n || cap(v.Bytes()) != n {
				t.Errorf("producer %d: Reserve(%d) gave %d bytes, capacity %d", p.id, n, len(v.Bytes()), cap(v.Bytes()))
				return Reservation{}, false
			}
			return v, true
		}
		if !errors.Is(err, ErrFull) {
			t.Errorf("producer %d: Reserve(%d): %v", p.id, n, err)
			return Reservation{}, false
		}
		if !retry {
			p.fulls++
			return Reservation{}, true
		}
		if !p.full() {
			return Reservation{}, false
		}
	}
}

// runFlags produces cfg.records records in batches: a batch reserves up to
// six records and outputs some more in between, stopping early when the ring
// is full, then commits or discards the reservations in random order. Flags
// are random, under one rule that keeps every wake-up owed: NoWakeup is used
// only while the producer still holds a reservation, and the batch's last
// commit or discard then uses ForceWakeup. (A kernel BPF program that uses
// BPF_RB_NO_WAKEUP must likewise force a wake-up later.) So the consumer
// must never sleep past a committed record: if it does, a wake-up was lost.
func (p *stressProducer) runFlags(t *testing.T) {
	type open struct {
		v   Reservation
		seq uint64
	}
	var held []open
	for p.seq < uint64(p.cfg.records) {
		held = held[:0]
		owed := false // a NoWakeup was used in this batch
		for k := 1 + p.rng.IntN(6); k > 0 && p.seq < uint64(p.cfg.records); k-- {
			n := p.size()
			if len(held) > 0 && p.rng.IntN(3) == 0 {
				// Output in the middle of a batch, any flags.
				b := p.buf[:n]
				stressFill(b, p.id, p.seq)
				flags := []uint64{0, NoWakeup, ForceWakeup}[p.rng.IntN(3)]
				if err := p.ring.Output(b, flags); errors.Is(err, ErrFull) {
					p.fulls++
					break
				} else if err != nil {
					t.Errorf("producer %d: Output: %v", p.id, err)
					return
				}
				owed = owed || flags == NoWakeup
				p.committed = append(p.committed, p.seq)
				p.seq++
				continue
			}
			// Hold on to what is reserved: waiting for space with a
			// reservation open could hold the consumer back for ever.
			v, ok := p.reserve(t, n, len(held) == 0)
			if !ok {
				return
			}
			if v.ring == nil {
				break // full, with reservations held
			}
			stressFill(v.Bytes(), p.id, p.seq)
			held = append(held, open{v, p.seq})
			p.seq++
		}
		if len(held) > 0 {
			p.hold()
		}
		p.rng.Shuffle(len(held), func(i, j int) { held[i], held[j] = held[j], held[i] })
		for i, o := range held {
			flags := []uint64{0, NoWakeup, ForceWakeup}[p.rng.IntN(3)]
			if i == len(held)-1 {
				flags = []uint64{0, ForceWakeup}[p.rng.IntN(2)]
				if owed || flags == NoWakeup {
					flags = ForceWakeup
				}
			}
			owed = owed || flags == NoWakeup
			var err error
			if p.rng.IntN(5) == 0 {
				err = p.ring.Discard(o.v, flags)
			} else if err = p.ring.Commit(o.v, flags); err == nil {
				p.committed = append(p.committed, o.seq)
			}
			if err != nil {
				t.Errorf("producer %d: commit or discard of seq %d: %v", p.id, o.seq, err)
				return
			}
		}
	}
	slices.Sort(p.committed) // commits were out of order within a batch
}

// stressChecker is the consumer's bookkeeping: it checks each record as it
// arrives and collects what the producers' commit lists are compared with.
type stressChecker struct {
	producers int // ids 0..producers-1, and id producers for the tiny one
	next      []uint64
	got       [][]uint64
	tiny      [][]byte
	sentinel  bool
	records   int
	havePos   bool
	lastPos   uint64
	lastTotal uint64
}

func newStressChecker(producers int) *stressChecker {
	return &stressChecker{
		producers: producers,
		next:      make([]uint64, producers),
		got:       make([][]uint64, producers),
	}
}

// check checks one delivered record: positions only move forwards, past
// the previous record; no record follows the sentinel; a record of 16 bytes
// or more carries a known producer, the next sequence number of that
// producer or a later one, its own length and its pattern.
func (c *stressChecker) check(rec Record) error {
	d := rec.Data
	if c.sentinel {
		return fmt.Errorf("record at %d (%d bytes) after the end-of-run record", rec.Pos, len(d))
	}
	if c.havePos {
		if gap := rec.Pos - c.lastPos; gap < c.lastTotal || gap >= 1<<62 {
			return fmt.Errorf("record at position %d follows the %d-byte record at %d", rec.Pos, c.lastTotal, c.lastPos)
		}
	}
	c.havePos, c.lastPos, c.lastTotal = true, rec.Pos, recordSize(uint64(len(d)))
	c.records++
	if len(d) < stressHeader {
		c.tiny = append(c.tiny, bytes.Clone(d))
		return nil
	}
	id := binary.LittleEndian.Uint32(d[0:])
	seq := binary.LittleEndian.Uint64(d[4:])
	if id == stressSentinel {
		c.sentinel = true
		return nil
	}
	if id >= uint32(c.producers) {
		return fmt.Errorf("record at %d: producer id %d (%d bytes) is no producer's", rec.Pos, id, len(d))
	}
	if seq < c.next[id] {
		return fmt.Errorf("record at %d: producer %d seq %d after seq %d: duplicate or out of order", rec.Pos, id, seq, c.next[id]-1)
	}
	if l := binary.LittleEndian.Uint32(d[12:]); l != uint32(len(d)) {
		return fmt.Errorf("record at %d: producer %d seq %d is %d bytes long but says %d", rec.Pos, id, seq, len(d), l)
	}
	if !bytes.Equal(d[stressHeader:], stressPattern(id, seq, len(d)-stressHeader)) {
		return fmt.Errorf("record at %d: producer %d seq %d: payload corrupt", rec.Pos, id, seq)
	}
	c.next[id] = seq + 1
	c.got[id] = append(c.got[id], seq)
	return nil
}

// finish compares what arrived with what the producers committed: every
// committed record exactly once, in order, and no discarded one.
func (c *stressChecker) finish(t *testing.T, prods []*stressProducer) {
	t.Helper()
	for _, p := range prods {
		if p.tiny {
			var want [][]byte
			for _, seq := range p.committed {
				want = append(want, stressPattern(p.id, seq, stressTinyLen(p.id, seq)))
			}
			if !slices.EqualFunc(c.tiny, want, bytes.Equal) {
				t.Errorf("tiny producer: %d records arrived, %d committed, or their order or bytes differ", len(c.tiny), len(want))
			}
			continue
		}
		got, want := c.got[p.id], p.committed
		if !slices.Equal(got, want) {
			i := 0
			for i < len(got) && i < len(want) && got[i] == want[i] {
				i++
			}
			t.Errorf("producer %d: %d records arrived, %d committed; they first differ at index %d", p.id, len(got), len(want), i)
		}
	}
}

// stressConsumer is one way of consuming: it calls check for each record
// until check has seen the sentinel, or returns an error.
type stressConsumer func(ctx context.Context, rd *Reader, check func(Record) error) error

// runStress runs the producers and the end-of-run record in goroutines and
// the consumer in the test goroutine, then checks the outcome and the ring's
// final positions.
func runStress(t *testing.T, cfg stressConfig, consume stressConsumer) {
	var opts []Option
	if cfg.overwrite {
		opts = append(opts, WithOverwrite())
	}
	r := newRing(t, cfg.ringSize, opts...)
	rd := newReader(t, r)

	var quit atomic.Bool
	var producing, all sync.WaitGroup
	// If the consumer fails, stop the producers (which may spin on a full
	// ring) before the cleanups close the ring.
	defer func() {
		quit.Store(true)
		waitfor.Group(t, &all, waitfor.Short, "the producers to stop")
	}()

	tiny := 1
	if cfg.overwrite {
		tiny = 0
	}
	prods := make([]*stressProducer, cfg.producers+tiny)
	for i := range prods {
		prods[i] = &stressProducer{
			id:   uint32(i),
			tiny: i == cfg.producers,
			rng:  rand.New(rand.NewPCG(uint64(i), 0x5ca1ab1e)),
			ring: r,
			cfg:  cfg,
			quit: &quit,
			buf:  make([]byte, cfg.maxSize),
		}
	}
	start := time.Now()
	for _, p := range prods {
		producing.Add(1)
		all.Add(1)
		go func() {
			defer all.Done()
			defer producing.Done()
			if cfg.flags {
				p.runFlags(t)
			} else {
				p.runPlain(t)
			}
		}()
	}
	// The end-of-run record, committed with the adaptive default once every
	// producer is done: it must wake a consumer that has caught up.
	all.Add(1)
	go func() {
		defer all.Done()
		producing.Wait()
		b := make([]byte, stressHeader)
		binary.LittleEndian.PutUint32(b, stressSentinel)
		for {
			err := r.Output(b, 0)
			if err == nil {
				return
			}
			if !errors.Is(err, ErrFull) {
				t.Errorf("end-of-run record: %v", err)
				return
			}
			if quit.Load() {
				return
			}
			runtime.Gosched()
		}
	}()

	c := newStressChecker(cfg.producers)
	var arrived atomic.Uint64 // records checked, for the watchdog
	check := func(rec Record) error {
		arrived.Add(1)
		if err := c.check(rec); err != nil {
			return fmt.Errorf("after %d good records: %w", c.records, err)
		}
		return nil
	}
	// A cancellation, not a deadline: a Reader woken by its deadline
	// would look again and find the records a lost wake-up left behind,
	// hiding the bug; a cancelled one returns at once. It comes when no
	// record has arrived for stressWait, however long the whole run takes.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer waitfor.Watchdog(stressWait, arrived.Load, cancel)()
	if err := consume(ctx, rd, check); err != nil {
		if errors.Is(err, context.Canceled) {
			t.Fatalf("consumer blocked for %v (lost wake-up?) after %d records: %s", stressWait, c.records, stressState(r))
		}
		t.Fatalf("consumer: %v (%s)", err, stressState(r))
	}
	if !c.sentinel {
		t.Fatal("consumer returned before the end-of-run record")
	}
	waitfor.Group(t, &all, waitfor.Short, "the producers, whose end-of-run record arrived, to return")
	elapsed := time.Since(start)
	if cfg.overwrite {
		c.finishOverwrite(t, prods, r)
	} else {
		c.finish(t, prods)
	}

	// Nothing follows the end-of-run record, and everything is consumed.
	if n, err := rd.Consume(func(rec Record) error { return fmt.Errorf("record at %d after the end", rec.Pos) }); n != 0 || err != nil {
		t.Errorf("final Consume = %d, %v", n, err)
	}
	p := r.Positions()
	if p.Consumer != p.Producer {
		t.Errorf("drained ring: positions %+v, want consumer == producer", p)
	}
	// One more reservation walks pending_pos over every finished record.
	v, err := r.Reserve(0)
	if err != nil {
		t.Fatalf("Reserve on a drained ring: %v", err)
	}
	if q := r.Positions(); q.Pending != p.Producer || q.Producer != p.Producer+HeaderSize {
		t.Errorf("after one more Reserve: positions %+v, want pending %d, producer %d", q, p.Producer, p.Producer+HeaderSize)
	}
	if err := r.Discard(v, 0); err != nil {
		t.Fatal(err)
	}
	if n, err := rd.Consume(func(Record) error { return nil }); n != 0 || err != nil {
		t.Errorf("Consume of a discarded record = %d, %v", n, err)
	}
	if q := r.Positions(); q.Consumer != q.Producer {
		t.Errorf("positions %+v after consuming the discarded record", q)
	}
	if avail, _ := r.Query(AvailData); avail != 0 {
		t.Errorf("AvailData = %d on a drained ring", avail)
	}

	fulls := 0
	for _, p := range prods {
		fulls += p.fulls
	}
	t.Logf("%d records (%d bytes of positions, %d laps of the ring) in %v; %d ErrFull; %d producer wake-ups, %d reader wake-ups",
		c.records, p.Producer, p.Producer/uint64(cfg.ringSize), elapsed.Round(time.Millisecond), fulls, r.wakeups.Load(), rd.Wakeups())
}

// stressState describes the ring for a failure message: its positions and
// the length word of the header at the consumer position.
func stressState(r *Ring) string {
	p := r.Positions()
	s := fmt.Sprintf("positions %+v, %d ring wake-ups", p, r.wakeups.Load())
	if p.Consumer != p.Producer {
		s += fmt.Sprintf(", header at the consumer position %#x", r.mem.lenWord(p.Consumer&r.mem.mask).Load())
	}
	return s
}

// stressRecords is the number of records per producer.
func stressRecords() int {
	if testing.Short() {
		return 2000
	}
	return 20000
}

// TestStressManyProducers: four producers of 16..4096-byte records and a
// tiny producer of 0..15-byte ones, mixing Output, Reserve+Commit and
// Reserve+Discard on a 64 KiB ring that wraps and fills all the time, with
// each way of consuming in turn.
func TestStressManyProducers(t *testing.T) {
	cfg := stressConfig{ringSize: 1 << 16, producers: 4, records: stressRecords(), maxSize: 4096}

	t.Run("Records", func(t *testing.T) {
		runStress(t, cfg, func(ctx context.Context, rd *Reader, check func(Record) error) error {
			for rec, err := range rd.Records(ctx) {
				if err != nil {
					return err
				}
				if err := check(rec); err != nil {
					return err
				}
				if isStressEnd(rec) {
					return nil
				}
			}
			return errors.New("Records ended without an error")
		})
	})

	// Consume until it finds nothing, then block in Read, which the next
	// commit must wake. Now and then Peek first: Consume must then hand out
	// the very records Peek saw.
	t.Run("ConsumeRead", func(t *testing.T) {
		runStress(t, cfg, func(ctx context.Context, rd *Reader, check func(Record) error) error {
			done := false
			checkDone := func(rec Record) error {
				if err := check(rec); err != nil {
					return err
				}
				done = done || isStressEnd(rec)
				return nil
			}
			type seen struct {
				pos  uint64
				data []byte
			}
			var peeked []seen
			errEnough := errors.New("enough")
			for i := 0; !done; i++ {
				peeked = peeked[:0]
				if i%8 == 0 {
					if _, err := rd.peek(func(rec Record) error {
						if len(peeked) == 4 {
							return errEnough
						}
						peeked = append(peeked, seen{rec.Pos, bytes.Clone(rec.Data)})
						return nil
					}); err != nil && err != errEnough {
						return fmt.Errorf("Peek: %w", err)
					}
				}
				k := 0
				n, err := rd.Consume(func(rec Record) error {
					if k < len(peeked) {
						if p := peeked[k]; p.pos != rec.Pos || !bytes.Equal(p.data, rec.Data) {
							return fmt.Errorf("Consume handed out record %d at %d (%d bytes), Peek saw it at %d (%d bytes)", k, rec.Pos, len(rec.Data), p.pos, len(p.data))
						}
					}
					k++
					return checkDone(rec)
				})
				if err != nil {
					return fmt.Errorf("Consume: %w", err)
				}
				if k < len(peeked) {
					return fmt.Errorf("Peek saw %d records, then Consume handed out %d", len(peeked), k)
				}
				if n == 0 && !done {
					rec, err := rd.Read(ctx)
					if err != nil {
						return err
					}
					if err := checkDone(rec); err != nil {
						return err
					}
				}
			}
			return nil
		})
	})

	t.Run("ReadInto", func(t *testing.T) {
		runStress(t, cfg, func(ctx context.Context, rd *Reader, check func(Record) error) error {
			var rec Record
			for {
				if err := rd.ReadInto(ctx, &rec); err != nil {
					return err
				}
				if err := check(rec); err != nil {
					return err
				}
				if isStressEnd(rec) {
					return nil
				}
			}
		})
	})
}

// TestStressWakeupFlags: producers commit in batches, out of order, with
// random NoWakeup and ForceWakeup flags (see runFlags for the rule that keeps
// a wake-up owed), and the consumer blocks in Read. It must never sleep
// through a record: that would be a lost wake-up, caught by the deadline.
func TestStressWakeupFlags(t *testing.T) {
	cfg := stressConfig{ringSize: 1 << 16, producers: 4, records: stressRecords(), maxSize: 1024, flags: true}
	runStress(t, cfg, func(ctx context.Context, rd *Reader, check func(Record) error) error {
		for {
			rec, err := rd.Read(ctx)
			if err != nil {
				return err
			}
			if err := check(rec); err != nil {
				return err
			}
			if isStressEnd(rec) {
				return nil
			}
		}
	})
}

// hookCtx is a context that runs hook the first time its deadline is asked
// for. Reader.wait asks right before it spins and announces that it sleeps,
// after next() has found the ring's head busy: the hook lets a producer act
// at exactly that moment.
type hookCtx struct {
	context.Context
	once sync.Once
	hook func()
}

func (c *hookCtx) Deadline() (time.Time, bool) {
	c.once.Do(c.hook)
	return c.Context.Deadline()
}

// TestDiscardAtHeadWhileReaderGoesToSleep is the deterministic form of a
// lost wake-up that TestStressManyProducers found: the record at the head is
// discarded while the Reader is on its way to sleep (so that discard's
// wake-up is elided: nobody waits yet), and the next record is committed
// later with the adaptive default. That commit wakes the Reader only if
// consumer_pos has moved past the discarded record before the Reader slept.
func TestDiscardAtHeadWhileReaderGoesToSleep(t *testing.T) {
	r := newRing(t, 4096)
	rd := newReader(t, r)
	x, err := r.Reserve(8) // position 0: the head
	if err != nil {
		t.Fatal(err)
	}
	y, err := r.Reserve(8) // position 16
	if err != nil {
		t.Fatal(err)
	}
	asleep := watchSleep(rd)
	// Cancelled rather than timed out: see TestStressManyProducers.
	discarded := make(chan error, 1)
	ctx := &hookCtx{Context: t.Context(), hook: func() { discarded <- r.Discard(x, 0) }}
	done := readAsync(ctx, rd)
	if err := waitfor.Recv(t, discarded, waitfor.Short, "the Reader to find the head busy and start its wait"); err != nil {
		t.Fatal(err)
	}
	asleep.wait(t, "past the discarded record, on the busy one after it")
	if c := r.Positions().Consumer; c != 16 {
		t.Fatalf("the Reader sleeps with consumer_pos %d, want 16: past the discarded record, or no commit wakes it", c)
	}
	if err := r.Commit(y, 0); err != nil {
		t.Fatal(err)
	}
	res := waitfor.Recv(t, done, waitfor.Short, "Read to return the record committed after the discarded one (did its commit not wake the Reader?)")
	if res.err != nil {
		t.Fatalf("Read: %v (positions %+v)", res.err, r.Positions())
	}
	if res.rec.Pos != 16 {
		t.Fatalf("Read returned the record at %d, want 16", res.rec.Pos)
	}
}
