package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/ringo-bpf/ringo"
	"github.com/ringo-bpf/ringo/cmd/ringo/internal/snoop"
	"github.com/ringo-bpf/ringo/internal/waitfor"
)

// ringoBin is the command under test, built once by TestMain.
var ringoBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ringo-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ringoBin = filepath.Join(dir, "ringo")
	build := exec.Command("go", "build", "-o", ringoBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ringo:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what a run of the command gave.
type result struct {
	stdout, stderr string
	code           int
}

// ringoCmd prepares a run of the built command with RINGO_DIR set to dir.
func ringoCmd(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command(ringoBin, args...)
	cmd.Env = append(os.Environ(), "RINGO_DIR="+dir)
	return cmd
}

// run runs the command and returns its output and exit status.
func runRingo(t *testing.T, dir string, args ...string) result {
	t.Helper()
	return runCmd(t, ringoCmd(dir, args...))
}

// runCmd runs cmd to its end, at most waitfor.Long, and returns its
// output and exit status.
func runCmd(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("run %v: %v", cmd.Args, err)
	}
	err := waitfor.Process(t, cmd, waitfor.Long, fmt.Sprintf("%q to exit", cmd.Args))
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", cmd.Args, err)
	}
	return result{out.String(), errOut.String(), code}
}

// ok runs the command and fails the test unless it succeeds.
func ok(t *testing.T, dir string, args ...string) string {
	t.Helper()
	r := runRingo(t, dir, args...)
	if r.code != 0 {
		t.Fatalf("ringo %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// fails runs the command and checks it fails with code and one line on
// stderr that contains want.
func fails(t *testing.T, dir string, code int, want string, args ...string) {
	t.Helper()
	failedWith(t, runRingo(t, dir, args...), code, want, args)
}

// failedWith checks that the command run with args failed with code and
// one line on stderr that contains want.
func failedWith(t testing.TB, r result, code int, want string, args []string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("ringo %s: exit %d, want %d (stderr %q)", strings.Join(args, " "), r.code, code, r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Fatalf("ringo %s: stderr %q does not say %q", strings.Join(args, " "), r.stderr, want)
	}
	if code == 1 && strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("ringo %s: want one line of error, got %q", strings.Join(args, " "), r.stderr)
	}
}

// bounded is a started command that is killed if it runs past its bound,
// so that a test reading its output as it comes cannot hang.
type bounded struct {
	cmd    *exec.Cmd
	what   string
	d      time.Duration
	timer  *time.Timer
	killed atomic.Bool
	waited bool
}

// startBounded starts cmd, what says what it should do, and kills it if
// it has not exited after d (and at the end of the test).
func startBounded(t *testing.T, cmd *exec.Cmd, d time.Duration, what string) *bounded {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	b := &bounded{cmd: cmd, what: what, d: d}
	b.timer = time.AfterFunc(d, func() {
		b.killed.Store(true)
		cmd.Process.Kill()
	})
	t.Cleanup(func() {
		b.timer.Stop()
		if !b.waited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return b
}

// note says, for a failure message, whether the command was killed at its
// bound.
func (b *bounded) note() string {
	if b.killed.Load() {
		return fmt.Sprintf(" (killed after %v: it should %s)", b.d, b.what)
	}
	return ""
}

// wait waits for the command to exit, once its output has been read, and
// returns Wait's error; it fails t if the command was killed at its bound.
func (b *bounded) wait(t *testing.T) error {
	t.Helper()
	err := b.cmd.Wait()
	b.waited = true
	b.timer.Stop()
	if b.killed.Load() {
		t.Fatalf("%v%s", b.cmd.Args, b.note())
	}
	return err
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad JSON %q: %v", s, err)
	}
	return v
}

// lines decodes one JSON object per line.
func lines[T any](t *testing.T, s string) []T {
	t.Helper()
	var out []T
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			out = append(out, decode[T](t, l))
		}
	}
	return out
}

func TestHelpAndUsage(t *testing.T) {
	dir := t.TempDir()
	out := ok(t, dir, "help")
	for _, c := range commands {
		if !strings.Contains(out, "  "+c.name+" ") {
			t.Errorf("ringo help does not list %s", c.name)
		}
		h := ok(t, dir, c.name, "--help")
		if !strings.Contains(h, "usage: ringo "+c.name) || !strings.Contains(h, "-json") {
			t.Errorf("ringo %s --help:\n%s", c.name, h)
		}
		if h2 := ok(t, dir, "help", c.name); h2 != h {
			t.Errorf("ringo help %s differs from ringo %s --help", c.name, c.name)
		}
	}
	if h := ok(t, dir, "dump", "--help"); !strings.Contains(h, "MOVES the consumer position") {
		t.Errorf("dump's help does not warn that it consumes:\n%s", h)
	}
	fails(t, dir, 2, "no command", "frobnicate")
	fails(t, dir, 2, "usage: ringo COMMAND")
	fails(t, dir, 2, "missing TARGET", "show")
	fails(t, dir, 2, "flag provided but not defined: -bogus", "show", "x", "--bogus")
	fails(t, dir, 2, "one TARGET only", "show", "a", "b")
	fails(t, dir, 2, "choose one of --json, --hex and --raw", "peek", "x", "--json", "--hex")
	fails(t, dir, 2, "not a byte count", "create", "x", "--size", "12Q")
	fails(t, dir, 2, "missing --size", "create", "x")
	fails(t, dir, 2, "give --count N", "produce", "x")
	fails(t, dir, 2, "-n must be 0 or more", "dump", "x", "-n", "-1")
	fails(t, dir, 2, "bad target", "show", "id:zero")
	fails(t, dir, 2, "--interval must be", "stat", "x", "--interval", "1ms")
}

// ringJSON mirrors the list and show contract.
type ringJSON struct {
	ID          *uint32 `json:"id"`
	Name        string  `json:"name"`
	Type        string  `json:"type"`
	Size        int     `json:"size"`
	AvailData   uint64  `json:"avail_data"`
	ConsumerPos uint64  `json:"consumer_pos"`
	ProducerPos uint64  `json:"producer_pos"`
	PendingPos  uint64  `json:"pending_pos"`
	Path        string  `json:"path"`
	Dropped     *uint64 `json:"dropped"`
	Abandoned   *uint64 `json:"abandoned"`
	Overwrite   bool    `json:"overwrite"`
	Overwritten *uint64 `json:"overwritten"`
}

type recJSON struct {
	Pos  uint64 `json:"pos"`
	Len  int    `json:"len"`
	Data string `json:"data"`
}

func TestSharedRingCommands(t *testing.T) {
	dir := t.TempDir()
	created := decode[ringJSON](t, ok(t, dir, "create", "events", "--size", "16K", "--json"))
	if created.Name != "events" || created.Type != "shared" || created.Size != 16384 || created.Path != filepath.Join(dir, "events") || created.ID != nil {
		t.Fatalf("create --json: %+v", created)
	}
	fails(t, dir, 1, "nearest valid size is 4096", "create", "odd", "--size", "5000")
	fails(t, dir, 1, "exists", "create", "events", "--size", "4K")

	if out := ok(t, dir, "produce", "events", "--count", "5", "--size", "16"); !strings.Contains(out, "wrote 5 records (80 bytes)") {
		t.Fatalf("produce: %q", out)
	}
	prod := ringoCmd(dir, "produce", "events", "--stdin", "--json")
	prod.Stdin = strings.NewReader("hello\nworld\n")
	if r := runCmd(t, prod); r.code != 0 || !strings.Contains(r.stdout, `"written":2`) {
		t.Fatalf("produce --stdin: %+v", r)
	}

	list := decode[[]ringJSON](t, ok(t, dir, "list", "--json"))
	var found *ringJSON
	for i := range list {
		if list[i].Type == "shared" && list[i].Name == "events" {
			found = &list[i]
		}
	}
	// 5 records of 16+8 bytes, two of 5+8 rounded to 16.
	if found == nil || found.ProducerPos != 5*24+2*16 || found.AvailData != 152 || found.ConsumerPos != 0 || found.Size != 16384 {
		t.Fatalf("list --json: %+v", list)
	}
	if !strings.Contains(ok(t, dir, "list"), "shared") {
		t.Fatal("list does not show the shared ring")
	}

	// peek: everything, nothing consumed.
	peeked := lines[recJSON](t, ok(t, dir, "peek", "events", "--json"))
	if len(peeked) != 7 || peeked[1].Pos != 24 || peeked[1].Len != 16 || peeked[1].Data != "0100000000000000"+"08090a0b0c0d0e0f" || peeked[6].Data != hex.EncodeToString([]byte("world")) {
		t.Fatalf("peek --json: %+v", peeked)
	}
	if n := len(lines[recJSON](t, ok(t, dir, "peek", "events", "--json", "-n", "2"))); n != 2 {
		t.Fatalf("peek -n 2 printed %d records", n)
	}
	show := decode[ringJSON](t, ok(t, dir, "show", "events", "--json"))
	if show.ConsumerPos != 0 || show.Dropped == nil || show.Abandoned == nil || *show.Dropped != 0 {
		t.Fatalf("show after peek: %+v", show)
	}

	// dump: consumes.
	dumped := lines[recJSON](t, ok(t, dir, "dump", "events", "-n", "2", "--json"))
	if len(dumped) != 2 || dumped[0].Pos != 0 || dumped[1].Pos != 24 {
		t.Fatalf("dump -n 2: %+v", dumped)
	}
	if show := decode[ringJSON](t, ok(t, dir, "show", "--json", "events")); show.ConsumerPos != 48 {
		t.Fatalf("dump -n 2 left consumer_pos at %d, want 48", show.ConsumerPos)
	}
	if h := ok(t, dir, "peek", "events", "--hex", "-n", "1"); !strings.HasPrefix(h, "pos 48 len 16\n00000000  02 00 00 00") {
		t.Fatalf("peek --hex:\n%s", h)
	}
	// --raw: length-prefixed payloads, the rest of the ring.
	raw := []byte(ok(t, dir, "dump", "events", "--raw"))
	var payloads []string
	for len(raw) >= 4 {
		n := binary.LittleEndian.Uint32(raw)
		payloads = append(payloads, string(raw[4:4+n]))
		raw = raw[4+n:]
	}
	if len(payloads) != 5 || payloads[3] != "hello" || payloads[4] != "world" || len(raw) != 0 {
		t.Fatalf("dump --raw: %q", payloads)
	}
	if out := ok(t, dir, "dump", "events"); out != "" {
		t.Fatalf("dump of an empty ring printed %q", out)
	}
	if text := ok(t, dir, "show", "events"); !strings.Contains(text, "consumer_pos: 152") {
		t.Fatalf("show:\n%s", text)
	}

	// A second consumer is refused while dump --follow consumes.
	follow := ringoCmd(dir, "dump", "events", "--follow", "--json", "-n", "3")
	stdout, _ := follow.StdoutPipe()
	fb := startBounded(t, follow, waitfor.Long, "print 3 records and exit")
	sc := bufio.NewScanner(stdout)
	ok(t, dir, "produce", "events", "--count", "1", "--size", "8")
	if !sc.Scan() {
		t.Fatalf("dump --follow printed nothing%s", fb.note())
	}
	fails(t, dir, 1, "consum", "dump", "events")
	ok(t, dir, "produce", "events", "--count", "2", "--size", "8")
	got := 1
	for sc.Scan() {
		got++
	}
	if err := fb.wait(t); err != nil || got != 3 {
		t.Fatalf("dump --follow -n 3: %d records, %v", got, err)
	}

	ok(t, dir, "rm", "events")
	fails(t, dir, 1, `no shared ring named "events"`, "show", "events")
	fails(t, dir, 1, "remove ring", "rm", "events")
}

// TestFlightRecorderCommands: a shared ring made with --overwrite keeps the
// newest records, and dump gives them in order.
func TestFlightRecorderCommands(t *testing.T) {
	dir := t.TempDir()
	ok(t, dir, "create", "recorder", "--size", "4K", "--overwrite")
	// 1000 records of 56+8 bytes: a 4096-byte ring keeps the last 63.
	ok(t, dir, "produce", "recorder", "--count", "1000", "--size", "56")
	show := decode[ringJSON](t, ok(t, dir, "show", "recorder", "--json"))
	if !show.Overwrite || show.Overwritten == nil || *show.Overwritten != 937 || show.AvailData != 63*64 {
		t.Fatalf("show --json: %+v", show)
	}
	if text := ok(t, dir, "show", "recorder"); !strings.Contains(text, "mode:") || !strings.Contains(text, "overwritten:  937 records") {
		t.Fatalf("show:\n%s", text)
	}
	recs := lines[recJSON](t, ok(t, dir, "dump", "recorder", "--json"))
	if len(recs) != 63 {
		t.Fatalf("dump gave %d records, want 63", len(recs))
	}
	for i, r := range recs {
		b, err := hex.DecodeString(r.Data)
		if err != nil || len(b) != 56 {
			t.Fatalf("record %d: %+v", i, r)
		}
		if seq := binary.LittleEndian.Uint64(b); seq != uint64(937+i) {
			t.Fatalf("record %d is seq %d, want %d", i, seq, 937+i)
		}
	}
	if show := decode[ringJSON](t, ok(t, dir, "show", "recorder", "--json")); *show.Overwritten != 937 || show.AvailData != 0 {
		t.Fatalf("show after dump: %+v", show)
	}
}

func TestStat(t *testing.T) {
	dir := t.TempDir()
	ok(t, dir, "create", "busy", "--size", "64K")
	r, err := ringo.Open("busy", ringo.WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	rd, err := ringo.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for range 100 {
				r.Output(make([]byte, 40), 0)
			}
			rd.Consume(func(ringo.Record) error { return nil })
			time.Sleep(time.Millisecond)
		}
	}()
	out := ok(t, dir, "stat", "busy", "--json", "--watch", "--count", "2", "--interval", "200ms")
	close(stop)
	waitfor.Closed(t, done, waitfor.Short, "the producer and consumer of the ring to stop")
	rd.Close()
	r.Close()
	type statJSON struct {
		Time          string   `json:"time"`
		RecordsPerSec float64  `json:"records_per_sec"`
		BytesPerSec   float64  `json:"bytes_per_sec"`
		AvailData     *uint64  `json:"avail_data"`
		Size          int      `json:"size"`
		Fill          *float64 `json:"fill"`
		Estimated     bool     `json:"estimated"`
		Dropped       *uint64  `json:"dropped"`
		DropsPerSec   *float64 `json:"drops_per_sec"`
	}
	stats := lines[statJSON](t, out)
	if len(stats) != 2 {
		t.Fatalf("stat --watch --count 2 printed %d lines", len(stats))
	}
	for _, s := range stats {
		if s.Estimated {
			// Only if the machine stalled stat for a lap of the ring.
			t.Logf("estimated: %+v", s)
			s.BytesPerSec = 40 * s.RecordsPerSec
		}
		if s.RecordsPerSec <= 0 || math.Abs(s.BytesPerSec-40*s.RecordsPerSec) > 1e-6*s.BytesPerSec || s.Size != 65536 || s.AvailData == nil || s.Fill == nil || s.Dropped == nil || s.DropsPerSec == nil || s.Time == "" {
			t.Fatalf("stat: %+v", s)
		}
	}
	if text := ok(t, dir, "stat", "busy", "--interval", "50ms"); !strings.Contains(text, "rec/s") || !strings.Contains(text, "[") {
		t.Fatalf("stat: %q", text)
	}
}

// requireKernel skips a test that needs BPF, or fails it when
// RINGO_REQUIRE_KERNEL=1.
func requireKernel(t *testing.T) {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err == nil {
		m.Close()
		return
	}
	skipUnlessRequired(t, fmt.Sprintf("BPF is not available here (%v); run as root", err))
}

// skipUnlessRequired skips the test for the reason given (something this
// machine lacks), or fails it if RINGO_REQUIRE_KERNEL=1, as in CI, where
// nothing may pass by skipping.
func skipUnlessRequired(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("RINGO_REQUIRE_KERNEL") == "1" {
		t.Fatal(reason + ", and RINGO_REQUIRE_KERNEL=1")
	}
	t.Skip(reason + " (RINGO_REQUIRE_KERNEL=1 makes this a failure)")
}

// outputProgram is a socket filter that writes one 8-byte record,
// 0x0807060504030201 little-endian, into ring with bpf_ringbuf_output.
func outputProgram(t *testing.T, ring *ebpf.Map) *ebpf.Program {
	t.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SocketFilter,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadImm(asm.R1, 0x0807060504030201, asm.DWord),
			asm.StoreMem(asm.RFP, -8, asm.R1, asm.DWord),
			asm.LoadMapPtr(asm.R1, ring.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -8),
			asm.Mov.Imm(asm.R3, 8),
			asm.Mov.Imm(asm.R4, 0),
			asm.FnRingbufOutput.Call(),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func bpffsDir(t *testing.T) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(bpffs, &st); err != nil || st.Type != 0xcafe4a11 {
		skipUnlessRequired(t, "no BPF file system at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)")
	}
	dir, err := os.MkdirTemp(bpffs, "ringo-cmd-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestKernelRingCommands(t *testing.T) {
	requireKernel(t)
	dir := t.TempDir()
	pins := bpffsDir(t)
	ring, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 1 << 14, Name: "cmd_test_ring"})
	if err != nil {
		t.Fatal(err)
	}
	defer ring.Close()
	info, _ := ring.Info()
	id, _ := info.ID()
	target := fmt.Sprintf("id:%d", id)
	prog := outputProgram(t, ring)
	for range 3 {
		if ret, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, 14)}); err != nil || ret != 0 {
			t.Fatalf("output program: %d, %v", ret, err)
		}
	}
	pin := filepath.Join(pins, "ring")
	if err := ring.Pin(pin); err != nil {
		t.Fatal(err)
	}

	show := decode[ringJSON](t, ok(t, dir, "show", target, "--json"))
	if show.ID == nil || *show.ID != uint32(id) || show.Type != "ringbuf" || show.Name != "cmd_test_ring" || show.Size != 1<<14 ||
		show.ProducerPos != 48 || show.PendingPos != 32 || show.AvailData != 48 || show.Dropped != nil {
		t.Fatalf("show %s: %+v", target, show)
	}
	if byPath := decode[ringJSON](t, ok(t, dir, "show", pin, "--json")); *byPath.ID != uint32(id) || byPath.Path != pin {
		t.Fatalf("show %s: %+v", pin, byPath)
	}
	var listed *ringJSON
	list := decode[[]ringJSON](t, ok(t, dir, "list", "--json"))
	for i := range list {
		if list[i].ID != nil && *list[i].ID == uint32(id) {
			listed = &list[i]
		}
	}
	if listed == nil || listed.Path != pin || listed.Type != "ringbuf" || listed.AvailData != 48 {
		t.Fatalf("list --json: %+v", list)
	}

	peeked := lines[recJSON](t, ok(t, dir, "peek", target, "--json"))
	if len(peeked) != 3 || peeked[2].Pos != 32 || peeked[2].Data != "0102030405060708" {
		t.Fatalf("peek: %+v", peeked)
	}
	if c := decode[ringJSON](t, ok(t, dir, "show", target, "--json")).ConsumerPos; c != 0 {
		t.Fatalf("peek moved consumer_pos to %d", c)
	}
	if d := lines[recJSON](t, ok(t, dir, "dump", pin, "--json", "-n", "1")); len(d) != 1 || d[0].Pos != 0 {
		t.Fatalf("dump -n 1: %+v", d)
	}
	if c := decode[ringJSON](t, ok(t, dir, "show", target, "--json")).ConsumerPos; c != 16 {
		t.Fatalf("dump -n 1 left consumer_pos at %d, want 16", c)
	}
	fails(t, dir, 1, "only BPF programs produce", "produce", target, "--count", "1", "--size", "8")

	// A map of another type is refused with its type named.
	hash, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer hash.Close()
	hinfo, _ := hash.Info()
	hid, _ := hinfo.ID()
	fails(t, dir, 1, "a hash map", "show", fmt.Sprintf("id:%d", hid))
	fails(t, dir, 1, "no map with id", "peek", "id:2147483647")

	// A user ring: produce into it, peek what the kernel has not drained,
	// dump is refused.
	u, err := ringo.CreateUserRing("cmd_test_uring", 1<<13)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	utarget := fmt.Sprintf("id:%d", u.ID())
	ok(t, dir, "produce", utarget, "--count", "3", "--size", "12")
	us := decode[ringJSON](t, ok(t, dir, "show", utarget, "--json"))
	if us.Type != "user_ringbuf" || us.ProducerPos != 3*24 || us.Name != "cmd_test_uring" {
		t.Fatalf("show user ring: %+v", us)
	}
	if p := lines[recJSON](t, ok(t, dir, "peek", utarget, "--json")); len(p) != 3 || p[2].Data != "02000000000000000809"+"0a0b" {
		t.Fatalf("peek user ring: %+v", p)
	}
	fails(t, dir, 1, "the kernel consumes it", "dump", utarget)
}

// Without privileges, commands that need BPF say what is needed.
func TestWithoutPrivileges(t *testing.T) {
	requireKernel(t)
	if os.Getuid() != 0 {
		skipUnlessRequired(t, "running the command as another user needs root")
	}
	// A directory nobody may read, like /dev/shm/ringo.
	dir, err := os.MkdirTemp("", "ringo-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(ringoBin), 0o755)
	asNobody := func(args ...string) *exec.Cmd {
		cmd := ringoCmd(dir, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		return cmd
	}
	r := runCmd(t, asNobody("snoop", "--duration", "1s"))
	if r.code != 1 || !strings.Contains(r.stderr, "needs root, or the CAP_BPF and CAP_PERFMON capabilities") {
		t.Fatalf("snoop as nobody: %+v", r)
	}
	r = runCmd(t, asNobody("show", "id:1"))
	if r.code != 1 || !strings.Contains(r.stderr, "CAP_BPF") {
		t.Fatalf("show id:1 as nobody: %+v", r)
	}
	r = runCmd(t, asNobody("list", "--json"))
	if r.code != 0 || !strings.Contains(r.stderr, "kernel maps not listed") || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("list as nobody: %+v", r)
	}
}

// snoop streams a program it sees executed and a file it sees opened, and
// on SIGINT prints its summary.
func TestSnoop(t *testing.T) {
	requireKernel(t)
	dir := t.TempDir()
	probe := filepath.Join(dir, "ringoprobe")
	tru, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(probe, tru, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "snooped-file")
	os.WriteFile(file, []byte("x"), 0o644)

	cmd := ringoCmd(dir, "snoop", "--json")
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	snooping := startBounded(t, cmd, waitfor.Long, "report the probe and end with a summary at SIGINT")
	type event struct {
		Type      string `json:"type"`
		PID       uint32 `json:"pid"`
		PPID      uint32 `json:"ppid"`
		Comm      string `json:"comm"`
		Filename  string `json:"filename"`
		Path      string `json:"path"`
		PathError string `json:"path_error"`
		Time      string `json:"time"`
		// summary
		Events        *uint64  `json:"events"`
		Drops         *uint64  `json:"drops"`
		Wakeups       *uint64  `json:"wakeups"`
		PeakAvailData *uint64  `json:"peak_avail_data"`
		PeakFill      *float64 `json:"peak_fill"`
		bad           error    // a line that was no event
	}
	events := make(chan event)
	ended := make(chan struct{}) // the test is over: stop sending
	t.Cleanup(func() { close(ended) })
	go func() {
		defer close(events)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev.bad = fmt.Errorf("snoop printed %q: %v", sc.Text(), err)
			}
			select {
			case events <- ev:
			case <-ended:
				return
			}
		}
	}()
	var sawExec, sawOpen bool
	var seen uint64
	check := func(ev event) {
		t.Helper()
		if ev.bad != nil {
			t.Fatal(ev.bad)
		}
		// An open of this test's or of a probe's shows its path or why
		// it could not be read, never a blank (the probe's first opens,
		// its loader's, are of pages not faulted in yet).
		me := uint32(os.Getpid())
		if ev.Type == "open" && (ev.PID == me || ev.PPID == me) && ev.Path == "" && ev.PathError == "" {
			t.Errorf("an open with neither a path nor a path_error: %+v", ev)
		}
	}
	deadline := time.After(waitfor.Long)
	poke := time.NewTicker(200 * time.Millisecond)
	defer poke.Stop()
	for !sawExec || !sawOpen {
		select {
		case <-deadline:
			t.Fatalf("snoop did not report the probe within %v (exec %v, open %v); stderr %q", waitfor.Long, sawExec, sawOpen, stderr.String())
		case <-poke.C:
			// Until snoop is attached these go unseen: do them again.
			ctx, cancel := context.WithTimeout(context.Background(), waitfor.Short)
			exec.CommandContext(ctx, probe).Run()
			cancel()
			if f, err := os.Open(file); err == nil {
				f.Close()
			}
		case ev, more := <-events:
			if !more {
				t.Fatalf("snoop ended%s: %s", snooping.note(), stderr.String())
			}
			check(ev)
			seen++
			if ev.Time == "" || ev.PID == 0 {
				t.Fatalf("event without time or pid: %+v", ev)
			}
			switch {
			case ev.Type == "exec" && ev.Filename == probe:
				sawExec = ev.Comm == "ringoprobe" && ev.PPID == uint32(os.Getpid())
				if !sawExec {
					t.Fatalf("exec of the probe: %+v (test pid %d)", ev, os.Getpid())
				}
			case ev.Type == "open" && ev.Path == file:
				sawOpen = ev.PID == uint32(os.Getpid())
			}
		}
	}
	cmd.Process.Signal(os.Interrupt)
	var last event
	for ev := range events {
		check(ev)
		seen++
		last = ev
	}
	if err := snooping.wait(t); err != nil {
		t.Fatalf("snoop after SIGINT: %v (%s)", err, stderr.String())
	}
	if last.Type != "summary" || last.Events == nil || last.Drops == nil || last.Wakeups == nil || last.PeakFill == nil {
		t.Fatalf("no summary at the end: %+v", last)
	}
	// (Not that it woke: while other processes open files without a
	// pause the reader need never sleep.)
	if *last.Events != seen-1 {
		t.Fatalf("summary: %d events, %d drops, %d wake-ups; %d events printed", *last.Events, *last.Drops, *last.Wakeups, seen-1)
	}
}

// TestShowKernelDrops: show and stat report the drops of a kernel ring
// whose program counts them with bpf/ringo.h (here snoop's, on a ring
// nobody reads), and say when nothing counts them.
func TestShowKernelDrops(t *testing.T) {
	requireKernel(t)
	s, err := snoop.Start(snoop.Options{Open: true, RingSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "opened")
	os.WriteFile(file, nil, 0o644)
	for range 100 {
		if f, err := os.Open(file); err == nil {
			f.Close()
		}
	}
	id := fmt.Sprintf("id:%d", s.Ring().ID())
	show := decode[ringJSON](t, ok(t, dir, "show", id, "--json"))
	if show.Dropped == nil || *show.Dropped < 80 {
		t.Fatalf("show --json of snoop's full ring: %+v", show)
	}
	if text := ok(t, dir, "show", id); !strings.Contains(text, "refused while the ring was full") {
		t.Fatalf("show:\n%s", text)
	}
	if line := ok(t, dir, "stat", id, "--interval", "20ms"); !strings.Contains(line, "drops ") || strings.Contains(line, "drops -") {
		t.Fatalf("stat: %q", line)
	}
	k, err := ringo.CreateKernelRing("ringo_nocount", 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if text := ok(t, dir, "show", fmt.Sprintf("id:%d", k.ID())); !strings.Contains(text, "not counted (no ringo_nocount_d map") {
		t.Fatalf("show of a ring without a counter:\n%s", text)
	}
}

// libbpfBaseline says why ringo bench cannot measure its libbpf baseline
// here, or "" if it can: the baseline is built as bench builds it (gcc
// against libbpf-dev) and finds the benchmark's maps through pins in
// /sys/fs/bpf.
func libbpfBaseline(t *testing.T) string {
	t.Helper()
	var why []string
	var st syscall.Statfs_t
	if err := syscall.Statfs(bpffs, &st); err != nil || st.Type != 0xcafe4a11 {
		why = append(why, "no BPF file system at /sys/fs/bpf, where the libbpf baseline finds the benchmark's maps (mount -t bpf bpf /sys/fs/bpf)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Long)
	defer cancel()
	out, err := exec.CommandContext(ctx, "gcc", "-O2", "-o", filepath.Join(t.TempDir(), "driver"), "../../bench/baseline/libbpf/driver.c", "-lbpf").CombinedOutput()
	if err != nil {
		first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		why = append(why, fmt.Sprintf("the libbpf baseline does not build here (it needs gcc and libbpf-dev: apt-get install gcc libbpf-dev): %v: %s", err, first))
	}
	return strings.Join(why, "; ")
}

// TestBench runs a small part of the benchmark suite through the command:
// the JSON contract, the files --out writes, and a bad scenario refused.
// Where the libbpf baseline cannot be built (no libbpf-dev) the rest is
// checked and the libbpf part skips, saying why, unless
// RINGO_REQUIRE_KERNEL=1.
func TestBench(t *testing.T) {
	requireKernel(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	type report struct {
		Machine struct {
			Kernel string `json:"kernel"`
			CPUs   int    `json:"cpus"`
			Libbpf string `json:"libbpf"`
		} `json:"machine"`
		Results []map[string]any `json:"results"`
	}
	noLib := ""
	if os.Getenv("RINGO_REQUIRE_KERNEL") != "1" {
		noLib = libbpfBaseline(t)
	}
	args := []string{"bench", "--quick", "--sizes", "64", "--scenarios", "drain,user_spsc", "--json", "--out", out}
	var stdout string
	if noLib == "" {
		stdout = ok(t, dir, args...)
	} else {
		// bench measures the rest, says what it left out, and exits 1.
		r := runRingo(t, dir, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "libbpf baseline") {
			t.Fatalf("ringo bench without the libbpf baseline (%s): exit %d, want 1 and the baseline named; stderr:\n%s", noLib, r.code, r.stderr)
		}
		stdout = r.stdout
	}
	rep := decode[report](t, stdout)
	if rep.Machine.Kernel == "" || rep.Machine.CPUs == 0 {
		t.Fatalf("machine: %+v", rep.Machine)
	}
	impls := map[string]bool{}
	for _, r := range rep.Results {
		for _, k := range []string{"scenario", "impl", "record_size", "records", "records_per_sec", "ns_per_record", "cpu_ns_per_record", "allocs_per_record", "drops"} {
			if _, ok := r[k]; !ok {
				t.Fatalf("result without %q: %v", k, r)
			}
		}
		impls[r["scenario"].(string)+"/"+r["impl"].(string)] = true
		// The span counts the process's allocations while the consumer
		// runs, so a stray one of the runtime's may land in it: a
		// consumer that allocates per record (or per batch) shows as
		// far more than one per thousand. That ringo's reader allocates
		// nothing at all is TestRingoDrainAllocatesNothing's (package
		// bench), which counts the consumer's own loop only.
		if r["impl"] == "ringo" && r["scenario"] == "drain" && r["allocs_per_record"].(float64) >= 1e-3 {
			t.Errorf("ringo allocates in drain: %v", r)
		}
	}
	for _, want := range []string{"drain/ringo", "drain/cilium_read", "drain/cilium_readinto", "user_spsc/ringo", "user_spsc/chan"} {
		if !impls[want] {
			t.Errorf("no result for %s: %v", want, impls)
		}
	}
	for _, f := range []string{"results.json", "results.md", "drain.png", "user_spsc.png"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	fails(t, dir, 2, `no scenario "bogus"`, "bench", "--scenarios", "bogus")
	t.Run("libbpf", func(t *testing.T) {
		if noLib != "" {
			skipUnlessRequired(t, noLib)
		}
		if !impls["drain/libbpf"] || rep.Machine.Libbpf == "" {
			t.Fatalf("no libbpf result, or no libbpf version (%q): %v", rep.Machine.Libbpf, impls)
		}
	})
}
