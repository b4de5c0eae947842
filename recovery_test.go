package ringo

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo/internal/waitfor"
)

func TestLockOfDeadProcessIsTakenOver(t *testing.T) {
	r, err := Create("lock", 4096, WithDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.mem.lockWord.Store(deadToken(t, r))
	start := time.Now()
	if err := r.Output([]byte("after"), 0); err != nil {
		t.Fatal(err)
	}
	t.Logf("lock of a dead process taken over after %v", time.Since(start))
}

func TestRecordOfDeadProcessIsAbandoned(t *testing.T) {
	r, err := Create("abandon", 4096, WithDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rd := newReader(t, r)
	res, err := r.Reserve(16)
	if err != nil {
		t.Fatal(err)
	}
	r.Output([]byte("after the dead one"), 0)
	// The reservation's owner dies.
	r.mem.slots[res.slot].owner.Store(deadToken(t, r))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	rec, err := rd.Read(ctx)
	if err != nil {
		t.Fatalf("Read: %v (positions %+v)", err, r.Positions())
	}
	t.Logf("record of a dead process abandoned after %v", time.Since(start))
	if string(rec.Data) != "after the dead one" {
		t.Fatalf("got %q", rec.Data)
	}
	if r.abandoned() != 1 {
		t.Fatalf("Abandoned() = %d", r.abandoned())
	}
	// The owner's late commit (it was not dead after all) is refused.
	if err := r.Commit(res, 0); !errors.Is(err, ErrNotReserved) {
		t.Fatalf("commit of an abandoned record: %v", err)
	}
	// A live owner's busy record is left alone.
	live, _ := r.Reserve(8)
	if r.recoverHead(live.pos) {
		t.Fatal("recovered the record of a live process")
	}
	r.Commit(live, 0)
}

// A producer that died holding the lock inside claimSlot leaves a slot naming
// itself at producer_pos, where its successor then reserves. The successor's
// live record must not be taken for the dead one's: neither the slot left
// behind nor one that names a dead owner beside the live owner's may make a
// stalled consumer discard it.
func TestDeadReserverSlotDoesNotDoomSuccessor(t *testing.T) {
	r, err := Create("successor", 4096, WithDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	dead := deadToken(t, r)
	prod := r.mem.producerPos.Load()
	start := int(prod/8) % len(r.mem.slots)
	// The dead holder's state: the lock, and the slot it claimed first.
	r.mem.slots[start].pos.Store(prod)
	r.mem.slots[start].owner.Store(dead)
	r.mem.lockWord.Store(dead)
	res, err := r.Reserve(16) // takes the lock over
	if err != nil {
		t.Fatal(err)
	}
	if res.pos != prod {
		t.Fatalf("reserved at %d, want the dead holder's %d", res.pos, prod)
	}
	if r.recoverHead(res.pos) {
		t.Fatal("the live successor's record was recovered as the dead holder's")
	}
	if err := r.Commit(res, 0); err != nil {
		t.Fatalf("commit of the successor's record: %v", err)
	}

	// A slot naming a dead owner for the same position, found before the
	// live owner's: the live one wins.
	live, err := r.Reserve(8)
	if err != nil {
		t.Fatal(err)
	}
	if live.slot == 0 {
		t.Fatalf("test needs the live slot after slot 0")
	}
	r.mem.slots[0].pos.Store(live.pos)
	r.mem.slots[0].owner.Store(dead)
	if r.recoverHead(live.pos) {
		t.Fatal("a dead owner's slot for the position doomed the live owner's record")
	}
	if err := r.Commit(live, 0); err != nil {
		t.Fatalf("commit of the live record: %v", err)
	}
	if r.abandoned() != 0 {
		t.Fatalf("Abandoned() = %d, want 0", r.abandoned())
	}
}

func TestOneConsumerProcess(t *testing.T) {
	dir := t.TempDir()
	r, err := Create("cons", 4096, WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	other, err := Open("cons", WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	rd := newReader(t, r)
	if _, err := NewReader(other); err == nil || !strings.Contains(err.Error(), "consumed by process") {
		t.Fatalf("second consumer: %v", err)
	}
	rd.Close()
	rd2, err := NewReader(other)
	if err != nil {
		t.Fatalf("after the first reader closed: %v", err)
	}
	rd2.Close()
	// A consumer that died leaves its claim behind; the next one takes it.
	r.mem.consumerOwner.Store(deadToken(t, r))
	rd3, err := NewReader(r)
	if err != nil {
		t.Fatalf("after the consumer died: %v", err)
	}
	rd3.Close()
}

// Real processes killed with SIGKILL while holding the lock and while
// holding a reservation: the ring goes on.
func TestKilledProducerProcesses(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r, err := Create("killed", 8192, WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rd := newReader(t, r)
	for _, mode := range []string{"hold-lock", "hold-reservation"} {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), "RINGO_TEST_HOLD="+dir+"|killed|"+mode)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "holding\n" {
			t.Fatalf("%s child: %q %v", mode, line, err)
		}
		cmd.Process.Kill()
		cmd.Wait()
		start := time.Now()
		if err := r.Output([]byte(mode), 0); err != nil {
			t.Fatalf("after a child killed in %s: %v", mode, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		rec, err := rd.Read(ctx)
		cancel()
		if err != nil || string(rec.Data) != mode {
			t.Fatalf("after a child killed in %s: %q, %v (positions %+v)", mode, rec.Data, err, r.Positions())
		}
		t.Logf("%s: ring going again %v after the kill", mode, time.Since(start))
	}
	if r.abandoned() != 1 {
		t.Fatalf("Abandoned() = %d, want 1", r.abandoned())
	}
}

// A consumer and a producer in another PID namespace (as in a container
// sharing the host's /dev/shm) are told apart from dead processes: their
// PIDs mean nothing here, the kernel's file locks do.
func TestSharedAcrossPIDNamespaces(t *testing.T) {
	if err := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "true").Run(); err != nil {
		msg := fmt.Sprintf("cannot make a PID namespace (unshare --pid: %v)", err)
		if os.Getenv("RINGO_REQUIRE_KERNEL") == "1" {
			t.Fatal(msg + " and RINGO_REQUIRE_KERNEL=1")
		}
		t.Skip(msg + "; run as root, or set RINGO_REQUIRE_KERNEL=1 to make this a failure")
	}
	dir := t.TempDir()
	r, err := Create("ns", 8192, WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	consumer := startHolder(t, dir, "ns", "consume", true)
	if _, err := NewReader(r); err == nil || !strings.Contains(err.Error(), "consumed by process") {
		t.Fatalf("a second consumer beside one in another PID namespace: %v", err)
	}
	// unshare goes at once; the consumer it forked a moment later.
	claim := r.mem.consumerOwner.Load()
	consumer.Process.Kill()
	waitfor.Process(t, consumer, waitfor.Short, "the killed consumer to exit")
	waitfor.Until(t, waitfor.Short, "the killed consumer's handle to close", func() bool { return !r.mem.alive(claim) })

	startHolder(t, dir, "ns", "hold-reservation", true)
	pos := r.Positions().Pending
	if r.recoverHead(pos) {
		t.Fatal("the live reservation of a producer in another PID namespace was recovered as abandoned")
	}
	rd := newReader(t, r) // the consumer's claim died with it
	if n, err := rd.Consume(func(Record) error { return nil }); n != 0 || err != nil {
		t.Fatalf("Consume over a live busy head: %d records, %v", n, err)
	}
	if r.abandoned() != 0 {
		t.Fatalf("Abandoned() = %d, want 0", r.abandoned())
	}
}

// A producer killed between Reserve and Commit while the consumer sleeps on
// an empty ring: the commits after its record wake the consumer, which
// recovers the dead record and delivers the rest. Consume, which never
// sleeps, recovers too, once the head has been busy for a moment.
func TestKilledProducerWhileConsumerSleeps(t *testing.T) {
	dir := t.TempDir()
	r, err := Create("asleep", 4096, WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rd := newReader(t, r)
	got := make(chan string, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		rec, err := rd.Read(ctx)
		got <- fmt.Sprintf("%s %v", rec.Data, err)
	}()
	waitfor.Until(t, waitfor.Short, "the Reader to sleep on the empty ring", func() bool { return r.mem.waiter.Load() != 0 })
	holder := startHolder(t, dir, "asleep", "hold-reservation", false)
	holder.Process.Kill()
	waitfor.Process(t, holder, waitfor.Short, "the killed holder to exit")
	if err := r.Output([]byte("after"), 0); err != nil {
		t.Fatal(err)
	}
	if g := waitfor.Recv(t, got, waitfor.Short, "the Read asleep on the ring"); g != "after <nil>" {
		t.Fatalf("Read: %s (positions %+v, abandoned %d)", g, r.Positions(), r.abandoned())
	}

	// Consume, which never sleeps.
	holder = startHolder(t, dir, "asleep", "hold-reservation", false)
	holder.Process.Kill()
	waitfor.Process(t, holder, waitfor.Short, "the killed holder to exit")
	r.Output([]byte("after again"), 0)
	var recs []string
	waitfor.Until(t, waitfor.Short, "Consume to recover the dead record", func() bool {
		if _, err := rd.Consume(func(rec Record) error { recs = append(recs, string(rec.Data)); return nil }); err != nil {
			t.Fatal(err)
		}
		return len(recs) > 0
	})
	if len(recs) != 1 || recs[0] != "after again" {
		t.Fatalf("Consume after a killed producer: %q (abandoned %d)", recs, r.abandoned())
	}
	if r.abandoned() != 2 {
		t.Fatalf("Abandoned() = %d, want 2", r.abandoned())
	}
}

// A producer process stopped (SIGSTOP) while it holds the reservation lock
// keeps it for as long as it is stopped. Producers give up on it after a
// bound, sleeping rather than spinning meanwhile, or as soon as their
// context ends; handles that never reserve (a reader, `ringo show`) never
// wait for it.
func TestStoppedLockHolder(t *testing.T) {
	dir := t.TempDir()
	r, err := Create("stopped", 8192, WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	holder := startHolder(t, dir, "stopped", "hold-lock", false)
	if err := holder.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer holder.Process.Signal(syscall.SIGCONT)

	// Handles that only look or consume are not held up.
	done := make(chan error, 1)
	go func() {
		h, err := Open("stopped", WithDir(dir))
		if err != nil {
			done <- err
			return
		}
		if _, err := h.Query(AvailData); err != nil {
			done <- err
			return
		}
		rd, err := NewReader(h)
		if err != nil {
			done <- err
			return
		}
		if _, err := rd.Consume(func(Record) error { return nil }); err != nil {
			done <- err
			return
		}
		done <- errors.Join(rd.Close(), h.Close())
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("opening, reading and closing a ring waited for a stopped process's lock (20s)")
	}

	// A producer without a context gives up, having slept.
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	start := time.Now()
	err = r.Output([]byte("x"), 0)
	waited := time.Since(start)
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	if !errors.Is(err, ErrBusy) || !errors.Is(err, syscall.EBUSY) || !strings.Contains(err.Error(), "held by process") {
		t.Fatalf("Output while a stopped process holds the lock: %v", err)
	}
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
	t.Logf("Output gave up after %v, using %v of CPU: %v", waited, cpu, err)
	if cpu > waited/2 {
		t.Fatalf("the waiting producer spun: %v of CPU in %v", cpu, waited)
	}
	// One with a context gives up when it ends.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.mem.lock(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lock with a context that ends: %v", err)
	}
	// Once the holder goes on (and dies), producers do too.
	holder.Process.Signal(syscall.SIGCONT)
	holder.Process.Kill()
	waitfor.Process(t, holder, waitfor.Short, "the killed holder to exit")
	if err := r.Output([]byte("after"), 0); err != nil {
		t.Fatalf("Output after the holder died: %v", err)
	}
}

// A producer process closes its handle of a shared ring while another
// process holds a reservation: the other's reservation is not its own, so
// Close succeeds (it used to refuse, counting every busy record), and its
// own open reservations still stop it.
func TestCloseCountsOwnReservationsOnly(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r, err := Create("closing", 8192, WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "RINGO_TEST_HOLD="+dir+"|closing|hold-reservation")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "holding\n" {
		t.Fatalf("child: %q %v", line, err)
	}
	p, err := Open("closing", WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Output([]byte("mine"), 0); err != nil {
		t.Fatal(err)
	}
	res, err := p.Reserve(8)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err == nil || !strings.Contains(err.Error(), "1 reservations") {
		t.Fatalf("Close with its own open reservation: %v", err)
	}
	if err := p.Commit(res, 0); err != nil {
		t.Fatalf("Commit after a refused Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close while another process holds a reservation: %v", err)
	}
}

// A process with write access that scribbles over the producer page must
// not make producers walk or write outside the ring.
func TestProducersRefuseGarbagePositions(t *testing.T) {
	r, err := Create("garbage", 4096, WithDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.mem.producerPos.Store(1 << 40)
	if err := r.Output([]byte("x"), 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Output on garbage positions: %v", err)
	}
	if _, err := r.Reserve(1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Reserve on garbage positions: %v", err)
	}
	if !strings.Contains(fmt.Sprint(r.Output(nil, 0)), "producer position 1099511627776") {
		t.Fatal("the error does not name the bad position")
	}

	// A consumer position past the producer's, or a lap behind it, is
	// garbage too, not a full ring to wait on for ever.
	for _, cons := range []uint64{64, 1 << 40} {
		r.mem.producerPos.Store(0)
		r.mem.pendingPos.Store(0)
		r.mem.consumerPos.Store(cons)
		if err := r.Output([]byte("x"), 0); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "consumer position") {
			t.Fatalf("Output with consumer position %d past producer position 0: %v", cons, err)
		}
	}
	r.mem.consumerPos.Store(0)
	r.mem.producerPos.Store(8192)
	r.mem.pendingPos.Store(8192)
	if err := r.Output([]byte("x"), 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Output with the consumer a lap behind: %v", err)
	}
}

// A corrupt overwrite_pos must not send a producer of an overwrite ring into
// an endless walk with the lock held.
func TestCorruptOverwritePosition(t *testing.T) {
	r, err := Create("overgarbage", 4096, WithDir(t.TempDir()), WithOverwrite())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fill := make([]byte, 1000)
	for i := 0; i < 8; i++ { // laps the ring: overwriting from here on
		if err := r.Output(fill, 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, over := range []uint64{r.mem.producerPos.Load() + 64, 1 << 62, 3, r.mem.producerPos.Load() - 5} {
		r.mem.setOverwriteMark(over, 0)
		done := make(chan error, 1)
		go func() { done <- r.Output(fill, 0) }()
		select {
		case err := <-done:
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Output with overwrite_pos %d: %v", over, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Output with overwrite_pos %d did not return in 10s", over)
		}
	}
}

func checkSharedFile(t *testing.T, file []byte, at, val uint16) {
	b := append([]byte(nil), file...)
	if int(at)+2 <= len(b) {
		binary.LittleEndian.PutUint16(b[at:], val)
	}
	d := t.TempDir()
	if err := os.WriteFile(d+"/f", b, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Open("f", WithDir(d))
	if err != nil {
		return
	}
	defer r.Close()
	// A lock word naming a live process (garbage can name one) keeps
	// producers waiting, as a live holder would: that is the lock working,
	// not a fault. Free it to fuzz what producers do next.
	r.mem.lockWord.Store(0)
	r.Output([]byte("fuzz"), 0)
	if res, err := r.Reserve(10); err == nil {
		r.Commit(res, 0)
	}
	rd, err := NewReader(r)
	if err != nil {
		return
	}
	defer rd.Close()
	calls := 0
	rd.Consume(func(rec Record) error {
		if calls++; calls > r.Size()/8 || len(rec.Data) > r.Size()-8 {
			t.Fatalf("callback %d with %d bytes", calls, len(rec.Data))
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	var rec Record
	rd.ReadInto(ctx, &rec)
}
