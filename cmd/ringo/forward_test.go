package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ringo-bpf/ringo"
	"github.com/ringo-bpf/ringo/forward"
	"github.com/ringo-bpf/ringo/internal/natstest"
	"github.com/ringo-bpf/ringo/internal/waitfor"
)

type forwardJSON struct {
	Forwarded  uint64 `json:"forwarded"`
	Duplicates uint64 `json:"duplicates"`
	Failures   uint64 `json:"failures"`
	Dropped    uint64 `json:"dropped"`
	Counted    bool   `json:"drops_counted"`
}

// forwardUntil runs ringo forward with args until drained reports that
// every record has been acknowledged and released, then stops it with
// SIGINT, as a user would, and returns what it printed. (A --duration would
// decide whether a slow machine forwarded everything in time.)
func forwardUntil(t *testing.T, dir string, drained func() bool, args ...string) result {
	t.Helper()
	cmd := ringoCmd(dir, append([]string{"forward"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill() // if the test failed before it exited
		<-exited
	})
	var err error
	gone := false
	waitfor.Until(t, waitfor.Long, "ringo forward to have every record acknowledged and released", func() bool {
		select {
		case err = <-exited:
			gone = true // failed, surely: its exit code and stderr say why
			return true
		default:
			return drained()
		}
	})
	if !gone {
		cmd.Process.Signal(os.Interrupt)
		err = waitfor.Recv(t, exited, waitfor.Short, "ringo forward to stop at SIGINT")
	}
	exited <- err // for the cleanup
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("ringo forward: %v", err)
	}
	return result{out.String(), errOut.String(), code}
}

// released reports whether every record of the ring has been consumed
// (released, for a forwarder).
func released(p ringo.Positions) bool { return p.Consumer == p.Producer }

// ringo forward: what a shared ring holds reaches the stream, with the
// documented headers, and the ring is consumed; errors leave the ring as it
// was.
func TestForward(t *testing.T) {
	dir := t.TempDir()
	srv := natstest.Start(t)
	srv.CreateStream("RINGO", false, 0, "ringo.>")
	ok(t, dir, "create", "events", "--size", "16K")
	ok(t, dir, "produce", "events", "--count", "100", "--size", "32")
	consumer := func() uint64 { return decode[ringJSON](t, ok(t, dir, "show", "events", "--json")).ConsumerPos }

	// Errors first: nothing may be consumed by a forward that fails.
	fails(t, dir, 1, "no NATS server answers at nats://127.0.0.1:1", "forward", "events", "--nats", "nats://127.0.0.1:1", "--subject", "ringo.x")
	fails(t, dir, 1, `stream "NOPE" does not exist`, "forward", "events", "--nats", srv.URL(), "--subject", "ringo.x", "--stream", "NOPE")
	fails(t, dir, 1, `no stream on `+srv.URL()+` captures subject "other.x"`, "forward", "events", "--nats", srv.URL(), "--subject", "other.x")
	fails(t, dir, 1, "no shared ring named \"nosuch\"", "forward", "nosuch", "--nats", srv.URL(), "--subject", "ringo.x")
	fails(t, dir, 2, "--nats URL and --subject S are required", "forward", "events")
	fails(t, dir, 2, "no TARGET", "forward", "--nats", srv.URL(), "--subject", "ringo.x")
	if c := consumer(); c != 0 {
		t.Fatalf("failed forwards moved consumer_pos to %d", c)
	}

	ring, err := ringo.Open("events", ringo.WithDir(dir)) // to watch its positions
	if err != nil {
		t.Fatal(err)
	}
	defer ring.Close()
	drained := func() bool { return released(ring.Positions()) }
	r := forwardUntil(t, dir, drained, "events", "--nats", srv.URL(), "--subject", "ringo.{host}.{ring}", "--host", "h1", "--json")
	if r.code != 0 {
		t.Fatalf("forward: exit %d: %s", r.code, r.stderr)
	}
	st := decode[forwardJSON](t, r.stdout)
	if st.Forwarded != 100 || st.Failures != 0 || !st.Counted || st.Dropped != 0 {
		t.Fatalf("forward --json: %+v (stderr %s)", st, r.stderr)
	}
	if !strings.Contains(r.stderr, "forwarding") || !strings.Contains(r.stderr, "stream=RINGO") {
		t.Errorf("forward's log does not say what it forwards where: %q", r.stderr)
	}
	key := forward.RingKey("h1", ringo.Identify(ring))
	msgs := srv.Messages("RINGO")
	if len(msgs) != 100 {
		t.Fatalf("the stream holds %d messages, want 100", len(msgs))
	}
	for i, m := range msgs {
		pos := strconv.Itoa(i * 40) // 32-byte records and their headers
		if m.Subject != "ringo.h1.events" || m.Header.Get("Ringo-Host") != "h1" || m.Header.Get("Ringo-Ring") != "events" || m.Header.Get("Ringo-Pos") != pos ||
			m.Header.Get("Nats-Msg-Id") != key+"."+strconv.FormatInt(int64(i*40), 36) || len(m.Data) != 32 {
			t.Fatalf("message %d: subject %s, headers %v, %d bytes", i, m.Subject, m.Header, len(m.Data))
		}
	}
	if c, p := consumer(), decode[ringJSON](t, ok(t, dir, "show", "events", "--json")).ProducerPos; c != p {
		t.Fatalf("after forward, consumer_pos %d, producer_pos %d", c, p)
	}

	// A second run goes on where the first stopped.
	ok(t, dir, "produce", "events", "--count", "5", "--size", "32")
	r = forwardUntil(t, dir, drained, "events", "--nats", srv.URL(), "--subject", "ringo.{host}.{ring}", "--host", "h1", "--json")
	if r.code != 0 {
		t.Fatalf("second forward: exit %d: %s", r.code, r.stderr)
	}
	st = decode[forwardJSON](t, r.stdout)
	if st.Forwarded != 5 || st.Duplicates != 0 {
		t.Fatalf("second forward: %+v", st)
	}
	if n := srv.Count("RINGO"); n != 105 {
		t.Fatalf("the stream holds %d messages, want 105", n)
	}
}

// ringo forward of a kernel ringbuf (by ID) and a ring set (by its pinned
// path) together: every record written by BPF programs reaches the stream,
// each ring's under its own subject.
func TestForwardKernelRings(t *testing.T) {
	requireKernel(t)
	pins := bpffsDir(t)
	srv := natstest.Start(t)
	srv.CreateStream("K", false, 0, "k.>")
	ring, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 1 << 14, Name: "cmd_fwd_ring"})
	if err != nil {
		t.Fatal(err)
	}
	defer ring.Close()
	info, _ := ring.Info()
	id, _ := info.ID()
	set, err := ringo.CreateRingSet(ringo.RingSetSpec{Name: "cmd_fwd_set", Shards: 2, Size: 1 << 12})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	setPin := filepath.Join(pins, "set")
	if err := set.Pin(setPin); err != nil {
		t.Fatal(err)
	}
	run := func(m *ebpf.Map, n int) {
		prog := outputProgram(t, m)
		for range n {
			if ret, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, 14)}); err != nil || ret != 0 {
				t.Fatalf("output program: %d, %v", ret, err)
			}
		}
	}
	run(ring, 50)
	names := map[string]int{"cmd_fwd_ring": 50}
	for _, key := range set.Keys() {
		k := set.Ring(key)
		fd, err := syscall.Dup(k.FD())
		if err != nil {
			t.Fatal(err)
		}
		m, err := ebpf.NewMapFromFD(fd)
		if err != nil {
			t.Fatal(err)
		}
		run(m, 10+int(key))
		names[k.Name()] = 10 + int(key)
		m.Close()
	}
	watch, err := ringo.OpenMap(ring) // to watch its positions
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	drained := func() bool {
		if !released(watch.Positions()) {
			return false
		}
		for _, key := range set.Keys() {
			if !released(set.Ring(key).Positions()) {
				return false
			}
		}
		return true
	}
	r := forwardUntil(t, t.TempDir(), drained, fmt.Sprintf("id:%d", id), setPin, "--nats", srv.URL(), "--subject", "k.{ring}", "--json")
	if r.code != 0 {
		t.Fatalf("forward: exit %d: %s", r.code, r.stderr)
	}
	st := decode[forwardJSON](t, r.stdout)
	if st.Forwarded != 71 || st.Failures != 0 {
		t.Fatalf("forward: %+v, want 71 records forwarded", st)
	}
	got := map[string]int{}
	for _, m := range srv.Messages("K") {
		r := m.Header.Get("Ringo-Ring")
		if m.Subject != "k."+r || binary.LittleEndian.Uint64(m.Data) != 0x0807060504030201 {
			t.Fatalf("message %d: subject %s, ring %s, data %x", m.Seq, m.Subject, r, m.Data)
		}
		got[r]++
	}
	if fmt.Sprint(got) != fmt.Sprint(names) {
		t.Fatalf("records per ring in the stream: %v, want %v", got, names)
	}
	if show := decode[ringJSON](t, ok(t, t.TempDir(), "show", fmt.Sprintf("id:%d", id), "--json")); show.ConsumerPos != show.ProducerPos {
		t.Fatalf("after forward: %+v", show)
	}
}
