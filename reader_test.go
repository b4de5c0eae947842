package ringo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo/internal/waitfor"
)

// sleepWatch reports each time a Reader is about to sleep in epoll_wait
// (Reader.sleeping): what a test commits after a report must wake it. It
// holds one report at most.
type sleepWatch chan struct{}

// watchSleep makes rd report to the returned sleepWatch; call it before rd
// is used by another goroutine.
func watchSleep(rd *Reader) sleepWatch {
	w := make(sleepWatch, 1)
	rd.sleeping = func() {
		select {
		case w <- struct{}{}:
		default:
		}
	}
	return w
}

// wait waits until the Reader is about to sleep, failing t if it does not
// get there: what says what the Reader should be blocked on.
func (w sleepWatch) wait(t testing.TB, what string) {
	t.Helper()
	waitfor.Recv(t, w, waitfor.Short, "the Reader to sleep "+what)
}

// drain forgets reports of earlier sleeps: call it once the read that
// slept has returned.
func (w sleepWatch) drain() {
	for len(w) > 0 {
		<-w
	}
}

// readResult is a Read run in another goroutine.
type readResult struct {
	rec Record
	err error
}

// readAsync runs rd.Read(ctx) in a goroutine; receive its result with
// waitfor.Recv.
func readAsync(ctx context.Context, rd *Reader) <-chan readResult {
	out := make(chan readResult, 1)
	go func() {
		rec, err := rd.Read(ctx)
		out <- readResult{rec, err}
	}()
	return out
}

func TestReadBlocksUntilCommit(t *testing.T) {
	r := newRing(t, 4096)
	rd := newReader(t, r)
	asleep := watchSleep(rd)
	v, err := r.Reserve(5)
	if err != nil {
		t.Fatal(err)
	}
	copy(v.Bytes(), "later")
	// The record at the head is busy: Read must sleep, not spin (else it
	// never reports that it sleeps), and wake on the commit, once. (No
	// deadline: a Reader that wakes at its deadline would find the record
	// and hide a lost wake-up.)
	done := readAsync(t.Context(), rd)
	asleep.wait(t, "on the busy record at the head")
	if err := r.Commit(v, 0); err != nil {
		t.Fatal(err)
	}
	res := waitfor.Recv(t, done, waitfor.Short, "Read to return the committed record")
	if res.err != nil {
		t.Fatal(res.err)
	}
	if rec := res.rec; string(rec.Data) != "later" || rec.Source != r || rec.Pos != 0 {
		t.Fatalf("got %+v", rec)
	}
	if w := rd.Wakeups(); w != 1 {
		t.Fatalf("reader woke %d times for one commit it slept for, want 1", w)
	}
	if w := r.wakeups.Load(); w != 1 {
		t.Fatalf("the commit decided %d wake-ups, want 1", w)
	}
}

func TestReadDeadlineAndCancel(t *testing.T) {
	r := newRing(t, 4096)
	rd := newReader(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	deadline, _ := ctx.Deadline()
	if _, err := rd.Read(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read past its deadline: %v", err)
	}
	// Against the deadline itself: a clock read after making ctx would be
	// late by however long this goroutine was preempted in between.
	if early := time.Until(deadline); early > 0 {
		t.Fatalf("Read returned %v before its deadline", early)
	}
	// Cancelled while it sleeps.
	asleep := watchSleep(rd)
	ctx, cancel = context.WithCancel(context.Background())
	done := readAsync(ctx, rd)
	asleep.wait(t, "on the empty ring")
	cancel()
	if res := waitfor.Recv(t, done, waitfor.Short, "the cancelled Read to return"); !errors.Is(res.err, context.Canceled) {
		t.Fatalf("Read cancelled: %v", res.err)
	}
	// A record produced meanwhile is still there for the next Read.
	r.Output([]byte("x"), 0)
	ctx, cancel = context.WithTimeout(context.Background(), waitfor.Short)
	defer cancel()
	rec, err := rd.Read(ctx)
	if err != nil || string(rec.Data) != "x" {
		t.Fatalf("Read after cancel: %q, %v", rec.Data, err)
	}
}

func TestCloseInterruptsRead(t *testing.T) {
	r := newRing(t, 4096)
	rd, err := NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	asleep := watchSleep(rd)
	done := readAsync(context.Background(), rd)
	asleep.wait(t, "on the empty ring")
	rd.Close()
	if res := waitfor.Recv(t, done, waitfor.Short, "Close to interrupt the blocked Read"); !errors.Is(res.err, ErrClosed) {
		t.Fatalf("Read after Close: %v", res.err)
	}
	// The reader let go of the ring: another may take it.
	rd2 := newReader(t, r)
	if _, err := rd2.Consume(func(Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Consume(func(Record) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Consume on a closed reader: %v", err)
	}
}

// TestReaderParksWhileEveryRingIsInProcess: a Reader of in-process rings
// only sleeps on its channel (parked), and a commit wakes it with a send;
// once a shared ring joins, it sleeps in epoll_wait and the in-process
// ring's commits wake it through the ring's eventfd; once the shared ring
// has gone it parks again. A ring the Reader let go of sends to nobody. A
// Reader of Shards (in-process rings, a set that never changes) parks.
func TestReaderParksWhileEveryRingIsInProcess(t *testing.T) {
	in := newRing(t, 4096)
	sh := newSharedRing(t, "park", 4096)
	rd := newReader(t, in)
	asleep := watchSleep(rd)
	sleep := func(parked bool, what string) {
		t.Helper()
		if rd.parked != parked || (in.park.Load() != nil) != parked {
			t.Fatalf("%s: the Reader parks %v, the ring sends %v; want %v", what, rd.parked, in.park.Load() != nil, parked)
		}
		woken := rd.Wakeups()
		done := readAsync(t.Context(), rd)
		asleep.wait(t, what)
		if err := in.Output([]byte(what), 0); err != nil {
			t.Fatal(err)
		}
		res := waitfor.Recv(t, done, waitfor.Short, "the commit to wake the Reader sleeping "+what)
		if res.err != nil || string(res.rec.Data) != what {
			t.Fatalf("%s: read %q, %v", what, res.rec.Data, res.err)
		}
		if w := rd.Wakeups(); w != woken+1 {
			t.Fatalf("%s: %d wake-ups for one sleep", what, w-woken)
		}
		asleep.drain()
	}
	sleep(true, "parked")
	if err := rd.Add(sh); err != nil {
		t.Fatal(err)
	}
	sleep(false, "in epoll_wait, beside a shared ring")
	if err := rd.Remove(sh); err != nil {
		t.Fatal(err)
	}
	sleep(true, "parked again, the shared ring gone")
	rd.Close()
	if in.park.Load() != nil {
		t.Fatal("the ring still wakes the Reader that let it go")
	}

	// Shards never change: a Reader of them parks.
	set, err := NewShards(2, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	srd := newReader(t)
	if err := srd.AddSet(set); err != nil {
		t.Fatal(err)
	}
	if !srd.parked || set.Ring(1).park.Load() == nil {
		t.Fatal("a Reader of Shards sleeps in epoll_wait")
	}
	srd.Close()
}

// TestReaderWaitsInRuntimeAfterALongSleep: a Reader that slept in
// epoll_wait for runtimeWaitAfter or longer sleeps next in the runtime's
// poller (a blocking system call that long costs the runtime more than the
// poller's wake-up path), and a commit still wakes it there. (A shared
// ring: its Reader sleeps in epoll_wait.) The first sleep is held until the
// Reader measured it long enough, however the machine delays the Reader.
func TestReaderWaitsInRuntimeAfterALongSleep(t *testing.T) {
	sh := newSharedRing(t, "longsleep", 4096)
	rd := newReader(t, sh)
	asleep := watchSleep(rd)
	round := func(hold time.Duration) {
		t.Helper()
		done := readAsync(t.Context(), rd)
		asleep.wait(t, "on the empty shared ring")
		time.Sleep(hold) // the sleep lasts about this long
		if err := sh.Output([]byte("x"), 0); err != nil {
			t.Fatal(err)
		}
		if res := waitfor.Recv(t, done, waitfor.Short, "the commit to wake the Reader"); res.err != nil {
			t.Fatal(res.err)
		}
		asleep.drain()
	}
	for hold := 2 * runtimeWaitAfter; rd.slept < runtimeWaitAfter; hold *= 2 {
		if hold > waitfor.Short {
			t.Fatalf("sleeps held up to %v measured %v at most", hold/2, rd.slept)
		}
		round(hold)
	}
	before := rd.runtimeWaits
	round(0)
	if rd.runtimeWaits != before+1 {
		t.Fatalf("%d sleeps in the runtime's poller after a long one, want 1", rd.runtimeWaits-before)
	}
}

func TestCloseFromCallback(t *testing.T) {
	r := newRing(t, 4096)
	rd, err := NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	r.Output([]byte("a"), 0)
	r.Output([]byte("b"), 0)
	n, err := rd.Consume(func(Record) error { return rd.Close() })
	if n != 1 || err != nil {
		t.Fatalf("Consume = %d, %v", n, err)
	}
	// Freed on the way out: the ring is free for another reader.
	rd2 := newReader(t, r)
	got := 0
	rd2.Consume(func(Record) error { got++; return nil })
	if got != 1 {
		t.Fatalf("%d records left, want 1", got)
	}
}

func TestOneReaderPerRing(t *testing.T) {
	r := newRing(t, 4096)
	newReader(t, r)
	if _, err := NewReader(r); err == nil {
		t.Fatal("a second Reader took the same ring")
	}
}

func TestConsumeErrorKeepsRecord(t *testing.T) {
	r := newRing(t, 4096)
	rd := newReader(t, r)
	for i := 0; i < 5; i++ {
		r.Output([]byte{byte(i)}, 0)
	}
	stop := errors.New("stop")
	var seen []byte
	n, err := rd.Consume(func(rec Record) error {
		if rec.Data[0] == 2 {
			return stop
		}
		seen = append(seen, rec.Data[0])
		return nil
	})
	if n != 2 || err != stop || !bytes.Equal(seen, []byte{0, 1}) {
		t.Fatalf("Consume = %d, %v, saw %v", n, err, seen)
	}
	if p := r.Positions(); p.Consumer != 32 {
		t.Fatalf("consumer_pos = %d, want 32 (two records)", p.Consumer)
	}
	seen = nil
	n, err = rd.Consume(func(rec Record) error { seen = append(seen, rec.Data[0]); return nil })
	if n != 3 || err != nil || !bytes.Equal(seen, []byte{2, 3, 4}) {
		t.Fatalf("second Consume = %d, %v, saw %v", n, err, seen)
	}
}

func TestPeekDoesNotConsume(t *testing.T) {
	r := newRing(t, 4096)
	rd := newReader(t, r)
	for i := 0; i < 3; i++ {
		r.Output([]byte{byte(i)}, 0)
	}
	for round := 0; round < 2; round++ {
		var seen []byte
		n, err := rd.peek(func(rec Record) error { seen = append(seen, rec.Data[0]); return nil })
		if n != 3 || err != nil || !bytes.Equal(seen, []byte{0, 1, 2}) {
			t.Fatalf("Peek = %d, %v, %v", n, err, seen)
		}
		if p := r.Positions(); p.Consumer != 0 {
			t.Fatalf("Peek moved consumer_pos to %d", p.Consumer)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Short)
	defer cancel()
	rec, err := rd.Read(ctx)
	if err != nil {
		t.Fatalf("Read of a ring holding 3 records: %v", err)
	}
	var seen []byte
	rd.peek(func(rec Record) error { seen = append(seen, rec.Data[0]); return nil })
	if rec.Data[0] != 0 || !bytes.Equal(seen, []byte{1, 2}) {
		t.Fatalf("after one Read, Peek saw %v", seen)
	}
}

func TestRecordsIterator(t *testing.T) {
	r := newRing(t, 4096)
	rd := newReader(t, r)
	go func() {
		for i := 0; i < 100; i++ {
			for errors.Is(r.Output([]byte(fmt.Sprint(i)), 0), ErrFull) {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Long)
	defer cancel()
	i := 0
	for rec, err := range rd.Records(ctx) {
		if err != nil {
			t.Fatalf("waiting for record %d: %v", i, err)
		}
		if string(rec.Data) != fmt.Sprint(i) {
			t.Fatalf("record %d is %q", i, rec.Data)
		}
		i++
		if i == 60 {
			break
		}
	}
	// Breaking consumed the records seen, the 60th included.
	for rec, err := range rd.Records(ctx) {
		if err != nil {
			t.Fatalf("waiting for record %d after the break: %v", i, err)
		}
		if string(rec.Data) != fmt.Sprint(i) {
			t.Fatalf("after break, record %d is %q", i, rec.Data)
		}
		if i++; i == 100 {
			break
		}
	}
	short, cancel2 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel2()
	for _, err := range rd.Records(short) {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("iterator on an empty ring ended with %v", err)
		}
	}
}

// A flooding ring does not starve the others: rings take turns.
func TestReaderIsFairBetweenRings(t *testing.T) {
	flood := newRing(t, 1<<20)
	quiet := newRing(t, 4096)
	rd := newReader(t, flood, quiet)
	for flood.Output(make([]byte, 8), 0) == nil {
	}
	quiet.Output([]byte("quiet"), 0)
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Short)
	defer cancel()
	var rec Record
	for i := 0; ; i++ {
		if err := rd.ReadInto(ctx, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Source == quiet {
			if i > batchRecords {
				t.Fatalf("the quiet ring's record came after %d flood records", i)
			}
			break
		}
		if i > 10000 {
			t.Fatal("the quiet ring starved")
		}
	}
	// Consume interleaves too, and one call ends even though the flood
	// ring holds far more than one batch.
	quiet.Output([]byte("again"), 0)
	var order []Source
	n, err := rd.Consume(func(rec Record) error {
		if len(order) == 0 || order[len(order)-1] != rec.Source {
			order = append(order, rec.Source)
		}
		return nil
	})
	if err != nil || n < batchRecords {
		t.Fatalf("Consume = %d, %v", n, err)
	}
	if len(order) < 2 {
		t.Fatalf("Consume took only from %v", order)
	}
}

func TestReaderOverManyRings(t *testing.T) {
	var rings []*Ring
	var srcs []Source
	for i := 0; i < 5; i++ {
		r := newRing(t, 4096)
		rings = append(rings, r)
		srcs = append(srcs, r)
	}
	rd := newReader(t, srcs[:2]...)
	for _, s := range srcs[2:] {
		if err := rd.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		for i := 0; i < 50; i++ {
			time.Sleep(time.Millisecond) // records now and then, while the Reader sleeps or not
			rings[i%5].Output([]byte{byte(i)}, 0)
		}
	}()
	count := map[Source]int{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer time.AfterFunc(waitfor.Short, cancel).Stop()
	for i := 0; i < 50; i++ {
		rec, err := rd.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for record %d of 50 (a lost wake-up?): %v", i, err)
		}
		if int(rec.Data[0])%5 != indexOf(rings, rec.Source) {
			t.Fatalf("record %d tagged with ring %v", rec.Data[0], rec.Source)
		}
		count[rec.Source]++
	}
	for _, r := range rings {
		if count[r] != 10 {
			t.Fatalf("ring %v delivered %d records, want 10", r, count[r])
		}
	}
}

func indexOf(rings []*Ring, s Source) int {
	for i, r := range rings {
		if r == s {
			return i
		}
	}
	return -1
}

func TestCorruptRingIsAnError(t *testing.T) {
	r := newRing(t, 4096)
	rd := newReader(t, r)
	r.Output(make([]byte, 16), 0)
	// A header claiming more than was published.
	r.mem.lenWord(0).Store(1000)
	_, err := rd.Consume(func(Record) error { return nil })
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Consume of a corrupt header: %v", err)
	}
	t.Log(err)
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Short)
	defer cancel()
	_, err = rd.Read(ctx)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read of a corrupt header: %v", err)
	}
}

func TestZeroAllocationsPerRecord(t *testing.T) {
	r := newRing(t, 1<<16)
	rd := newReader(t, r)
	payload := make([]byte, 64)
	// Cancelled, not timed out, so that a blocking wait takes the
	// cancellable path (registered once); bounded all the same.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer time.AfterFunc(waitfor.Long, cancel).Stop()
	var readErr error
	sink := 0
	count := func(rec Record) error { sink += len(rec.Data); return nil }

	if a := testing.AllocsPerRun(100, func() {
		for i := 0; i < 100; i++ {
			r.Output(payload, 0)
		}
		rd.Consume(count)
	}); a != 0 {
		t.Errorf("Output + Consume: %v allocations per 100 records", a)
	}
	if a := testing.AllocsPerRun(100, func() {
		for i := 0; i < 100; i++ {
			v, _ := r.Reserve(64)
			copy(v.Bytes(), payload)
			r.Commit(v, 0)
		}
		rd.Consume(count)
	}); a != 0 {
		t.Errorf("Reserve + Commit + Consume: %v allocations per 100 records", a)
	}
	var rec Record
	if a := testing.AllocsPerRun(1000, func() {
		r.Output(payload, 0)
		if err := rd.ReadInto(ctx, &rec); err != nil && readErr == nil {
			readErr = err
		}
	}); a != 0 {
		t.Errorf("Output + ReadInto: %v allocations per record", a)
	}
	if readErr != nil {
		t.Fatalf("ReadInto of the record just written: %v", readErr)
	}
	// A blocking wait with a cancellable context registers it once.
	// AllocsPerRun runs its function once more than asked: 1001 ReadInto
	// calls, then 21 times 50 records from Records. (It counts the whole
	// process's allocations, in whole allocations per run: when the
	// Reader sleeps, the runtime may create a thread to take its P, a
	// few objects that many runs spread thin.)
	go func() {
		for i := 0; i < 1001+21*50; i++ {
			for errors.Is(r.Output(payload, 0), ErrFull) {
			}
		}
	}()
	if a := testing.AllocsPerRun(1000, func() {
		if err := rd.ReadInto(ctx, &rec); err != nil && readErr == nil {
			readErr = err
		}
	}); a != 0 {
		t.Errorf("blocking ReadInto: %v allocations per record", a)
	}
	if readErr != nil {
		t.Fatalf("blocking ReadInto (bounded by %v): %v", waitfor.Long, readErr)
	}
	if a := testing.AllocsPerRun(20, func() {
		n := 0
		for _, err := range rd.Records(ctx) {
			if err != nil {
				t.Fatalf("Records, record %d of 50 (bounded by %v): %v", n, waitfor.Long, err)
			}
			if n++; n == 50 {
				break
			}
		}
	}); a > 2 {
		t.Errorf("Records: %v allocations per 50 records (the iterator may take 2)", a)
	}
	_ = sink
}

// A Reader returns a deadline's error only once ctx says so: code that
// tells an interruption from a failure by ctx.Err() (as ringo snoop does)
// must never see a deadline error while ctx.Err() is still nil.
func TestDeadlineErrorIsCtxErr(t *testing.T) {
	r := newRing(t, 4096)
	rd := newReader(t, r)
	for i := range 300 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%7)*100*time.Microsecond)
		_, err := rd.Read(ctx)
		if err == nil {
			t.Fatal("Read of an empty ring returned a record")
		}
		if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
			t.Fatalf("Read returned %v while ctx.Err() = %v", err, ctx.Err())
		}
		cancel()
	}
}

// TestStoreIntervalFollowsFill: while it reads on, the Reader stores
// consumer_pos once it has passed a quarter of the space producers see free:
// every quarter ring when it keeps up, every storeMin bytes when the ring is
// full (the README's "an interval that follows the producers' rate").
func TestStoreIntervalFollowsFill(t *testing.T) {
	const size = 1 << 16
	r := newRing(t, size)
	rd := newReader(t, r)
	rr := rd.rings[0]
	for _, c := range []struct {
		fill, want uint64
	}{
		{0, size / 4},        // empty: a quarter ring
		{size / 2, size / 8}, // half full: a quarter of the other half
		{size - 2048, storeMin},
		{size, storeMin}, // full: every storeMin bytes
	} {
		if got := rr.storeAt(rr.stored+c.fill) - rr.stored; got != c.want {
			t.Errorf("with %d of %d bytes filled, the next store is %d bytes on, want %d", c.fill, size, got, c.want)
		}
	}
}
