package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/ringo-bpf/ringo"
)

// The ring-file fuzzer. The README promises that a ring's memory, which
// every process with access to the file can write, is untrusted: reading
// it never panics, never reads outside the mapping, never loops. Here a
// scribbler writes random bytes into a shared ring's file (through its own
// mapping, racing with everyone, and with pwrite), biased to the words of
// the two position pages and to the record headers around the positions,
// while ringo show, stat, peek, dump and produce run against it in loops,
// and a Go producer in this process writes records. Every command must
// exit within scribbleBound with status 0 or 1 (never 2 for these valid
// command lines, never by a signal: no SIGBUS, no panic, no "fatal error"),
// and the Go producer must never stop making progress for that long.
//
// A short run is part of the normal tests; RINGO_SCRIBBLE=10m runs it for
// that long (RINGO_SCRIBBLE_KEEP=DIR keeps a copy of the ring file of each
// failure there).
func TestScribble(t *testing.T) {
	total := 3 * time.Second
	if v := os.Getenv("RINGO_SCRIBBLE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("RINGO_SCRIBBLE=%q: %v", v, err)
		}
		total = d
	}
	if testing.Short() && os.Getenv("RINGO_SCRIBBLE") == "" {
		total = time.Second
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("RINGO_SCRIBBLE_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (RINGO_SCRIBBLE_SEED), for %v", seed, total)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	dir := t.TempDir()
	st := &scribbleStats{counts: map[string]int{}}
	deadline := time.Now().Add(total)
	for run := 0; time.Now().Before(deadline); run++ {
		sc := newScribbleRun(t, dir, run, rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())), st)
		sc.run(min(time.Until(deadline), time.Duration(200+rng.IntN(800))*time.Millisecond))
		if t.Failed() {
			break
		}
	}
	t.Logf("%s", st)
	if st.failures > 0 {
		t.Fatalf("%d failures", st.failures)
	}
}

// scribbleBound is how long any one command may take.
const scribbleBound = 10 * time.Second

// scribbleStats counts what the fuzzer did, across runs.
type scribbleStats struct {
	mu              sync.Mutex
	runs, writes    int
	commands        int
	counts          map[string]int // "show exit 0"
	goRecords       int
	goErrors        map[string]int
	failures        int
	failureMessages []string
	reasons         map[string]int // of exit 1, by reasonOf
}

func (s *scribbleStats) count(key string) {
	s.mu.Lock()
	s.commands++
	s.counts[key]++
	s.mu.Unlock()
}

func (s *scribbleStats) fail(t *testing.T, format string, a ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, a...)
	s.mu.Lock()
	s.failures++
	if len(s.failureMessages) < 20 {
		s.failureMessages = append(s.failureMessages, msg)
	}
	s.mu.Unlock()
	t.Error(msg)
}

func (s *scribbleStats) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.counts))
	for k := range s.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%d runs, %d scribbles, %d commands, %d failures; Go producer: %d records", s.runs, s.writes, s.commands, s.failures, s.goRecords)
	for k, n := range s.goErrors {
		fmt.Fprintf(&b, ", %d %q", n, k)
	}
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %-30s %d", k, s.counts[k])
	}
	type reason struct {
		msg string
		n   int
	}
	var rs []reason
	for m, n := range s.reasons {
		rs = append(rs, reason{m, n})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].n > rs[j].n })
	fmt.Fprintf(&b, "\nerrors (exit 1), the most frequent of %d kinds:", len(rs))
	for _, r := range rs[:min(len(rs), 25)] {
		fmt.Fprintf(&b, "\n  %6d  %s", r.n, r.msg)
	}
	return b.String()
}

// scribbleRun is one ring, scribbled on for a while.
type scribbleRun struct {
	t         *testing.T
	dir, name string
	path      string
	size      int
	overwrite bool
	rng       *rand.Rand
	rngMu     sync.Mutex
	st        *scribbleStats
	mem       []byte
	file      *os.File
	stop      chan struct{}
	seen      []uint64 // values read from the hot words, for replays
	// How hard this run scribbles: up to pause µs between bursts, and
	// heal percent of the writes make the positions consistent again.
	pause, heal int
	ident       []byte   // the identity block as created
	pids        sync.Map // uint32 PIDs of the processes that have the ring open, or may
}

// identAt is the offset of the identity block in the ring file.
const identAt = 2048

func newScribbleRun(t *testing.T, dir string, run int, rng *rand.Rand, st *scribbleStats) *scribbleRun {
	t.Helper()
	sc := &scribbleRun{t: t, dir: dir, name: fmt.Sprintf("s%d", run), size: 4096 << rng.IntN(5), overwrite: rng.IntN(2) == 0, rng: rng, st: st, stop: make(chan struct{})}
	sc.pause = []int{500, 2000, 20000, 100000}[rng.IntN(4)]
	sc.heal = []int{0, 2, 10, 30}[rng.IntN(4)]
	var opts []ringo.Option
	opts = append(opts, ringo.WithDir(dir))
	if sc.overwrite {
		opts = append(opts, ringo.WithOverwrite())
	}
	r, err := ringo.Create(sc.name, sc.size, opts...)
	if err != nil {
		t.Fatal(err)
	}
	sc.path = r.Path()
	// Some records to start with.
	for i := range rng.IntN(50) {
		r.Output(make([]byte, 1+i%100), 0)
	}
	r.Close()
	sc.file, err = os.OpenFile(sc.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	sc.mem, err = syscall.Mmap(int(sc.file.Fd()), 0, dataStart+sc.size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	sc.ident = bytes.Clone(sc.mem[identAt : identAt+48])
	return sc
}

func (sc *scribbleRun) intn(n int) int {
	sc.rngMu.Lock()
	defer sc.rngMu.Unlock()
	return sc.rng.IntN(n)
}

func (sc *scribbleRun) u64() uint64 {
	sc.rngMu.Lock()
	defer sc.rngMu.Unlock()
	return sc.rng.Uint64()
}

// run scribbles for d while the commands and the Go producer run, then
// waits for them all (each bounded) and removes the ring.
func (sc *scribbleRun) run(d time.Duration) {
	t := sc.t
	sc.st.mu.Lock()
	sc.st.runs++
	sc.st.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sc.scribble() }()
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); sc.commands() }()
	}
	progress := new(atomic.Int64)
	progress.Store(time.Now().UnixNano())
	producerDone := make(chan struct{})
	go func() { defer close(producerDone); sc.goProducer(progress) }()

	timer := time.NewTimer(d)
	watch := time.NewTicker(100 * time.Millisecond)
	defer watch.Stop()
	for stopped := false; !stopped; {
		select {
		case <-timer.C:
			stopped = true
		case <-watch.C:
			if since := time.Since(time.Unix(0, progress.Load())); since > scribbleBound {
				sc.st.fail(t, "run %s: the Go producer made no progress for %v%s", sc.name, since.Round(time.Millisecond), sc.describe())
				stopped = true
			}
		}
	}
	close(sc.stop)
	wg.Wait() // every command is bounded: see runOne
	select {
	case <-producerDone:
	case <-time.After(scribbleBound):
		sc.st.fail(t, "run %s: the Go producer did not return within %v of the end of the run%s", sc.name, scribbleBound, sc.describe())
		// Its goroutine is stuck in the library: leave the mapping
		// and file to it.
		return
	}
	sc.keepIfFailed()
	syscall.Munmap(sc.mem)
	sc.file.Close()
	if err := ringo.Remove(sc.name, ringo.WithDir(sc.dir)); err != nil {
		// Its identity block may be scribbled over: remove the files.
		os.Remove(sc.path)
		os.Remove(sc.path + ".wake")
	}
}

// describe is the ring's state for a failure message.
func (sc *scribbleRun) describe() string {
	return fmt.Sprintf(" (ring %s, %d bytes, overwrite %v: consumer_pos %#x producer_pos %#x pending_pos %#x overwrite_pos %#x lock %#x)",
		sc.path, sc.size, sc.overwrite, get64(sc.mem, consumerPosAt), get64(sc.mem, producerPosAt), get64(sc.mem, pendingPosAt),
		get64(sc.mem, overwritePosAt), get64(sc.mem, pageSize+64))
}

// keepIfFailed copies the ring file to RINGO_SCRIBBLE_KEEP after a failure.
func (sc *scribbleRun) keepIfFailed() {
	keep := os.Getenv("RINGO_SCRIBBLE_KEEP")
	if keep == "" || !sc.t.Failed() {
		return
	}
	dst := filepath.Join(keep, fmt.Sprintf("%s-%d", sc.name, time.Now().UnixNano()))
	if err := os.WriteFile(dst, sc.mem, 0o600); err == nil {
		sc.t.Logf("ring file kept at %s", dst)
	}
}

// Hot words of the two position pages: offsets in the consumer page and
// in the producer page (see layout.go).
var (
	consumerHot = []int{0, 64, 128, 2112, 2176, 2184, 2240, 2248, 2256, 2304, 2312, 2320, 2328}
	identHot    = []int{2048, 2056, 2060, 2064, 2072, 2080, 2088}
	producerHot = []int{0, 8, 16, 64, 128, 136, 256, 264, 272, 280, 288, 296}
)

// scribble writes into the ring file until the run stops.
func (sc *scribbleRun) scribble() {
	for {
		select {
		case <-sc.stop:
			return
		default:
		}
		n := 1 + sc.intn(4)
		for range n {
			sc.scribbleOnce()
		}
		sc.st.mu.Lock()
		sc.st.writes += n
		sc.st.mu.Unlock()
		time.Sleep(time.Duration(sc.intn(sc.pause)) * time.Microsecond)
	}
}

func (sc *scribbleRun) scribbleOnce() {
	if sc.intn(100) < sc.heal {
		// Make the positions consistent again (as if nothing had
		// happened, but the records in between are gone), so that
		// what follows starts from a ring that looks healthy.
		prod := get64(sc.mem, producerPosAt) &^ 7
		for _, at := range []int{consumerPosAt, pendingPosAt, producerPosAt, overwritePosAt} {
			sc.store64(at, prod)
		}
		sc.file.WriteAt(sc.ident, identAt)
		return
	}
	var off int
	switch r := sc.intn(100); {
	case r < 34:
		off = consumerPosAt + consumerHot[sc.intn(len(consumerHot))]
	case r < 35:
		if sc.intn(4) == 0 {
			off = consumerPosAt + identHot[sc.intn(len(identHot))]
		} else {
			sc.file.WriteAt(sc.ident, identAt) // back as it was
			return
		}
	case r < 70:
		off = producerPosAt + producerHot[sc.intn(len(producerHot))]
	case r < 95:
		// A record header near a position: the consumer's, the
		// producer's or pending's, a few records either way.
		pos := get64(sc.mem, []int{consumerPosAt, producerPosAt, pendingPosAt, overwritePosAt}[sc.intn(4)])
		pos += uint64(sc.intn(64)-32) * 8
		off = dataStart + int(pos&uint64(sc.size-1)&^7)
		if sc.intn(2) == 0 {
			sc.store32(off+4*sc.intn(2), sc.headerWord())
			return
		}
	default:
		off = sc.intn(len(sc.mem))
		if off >= identAt-8 && off < identAt+len(sc.ident) && sc.intn(8) != 0 {
			return // (mostly not the identity block: a ring no command opens tells little)
		}
	}
	off &^= 7
	if sc.intn(5) == 0 {
		// Random bytes, at any alignment, by pwrite.
		b := make([]byte, 1+sc.intn(32))
		for i := range b {
			b[i] = byte(sc.intn(256))
		}
		at := off + sc.intn(8)
		if at+len(b) > len(sc.mem) {
			b = b[:len(sc.mem)-at]
		}
		sc.file.WriteAt(b, int64(at))
		return
	}
	sc.store64(off, sc.value(off))
}

// value is what to write into the word at off: mostly a value near the
// one there (a position moved by a few records or a ring, a bit flipped),
// or one seen before elsewhere (a token, a position), or anything.
func (sc *scribbleRun) value(off int) uint64 {
	cur := atomic.LoadUint64((*uint64)(unsafe.Pointer(&sc.mem[off])))
	if len(sc.seen) < 64 {
		sc.seen = append(sc.seen, cur)
	} else {
		sc.seen[sc.intn(len(sc.seen))] = cur
	}
	size := uint64(sc.size)
	if owner := off == producerPosAt+64 || off == consumerPosAt+128 || off >= producerPosAt+256 && off < producerPosAt+512 && off%16 == 8; owner && sc.intn(3) == 0 {
		if tok, ok := sc.liveToken(); ok {
			return tok // a live handle's token: the lock, a claim or a slot "held" by it
		}
	}
	switch sc.intn(12) {
	case 0:
		return cur + uint64(sc.intn(16))*8
	case 1:
		return cur - uint64(sc.intn(16))*8
	case 2:
		return cur + size
	case 3:
		return cur - size + 8
	case 4:
		return cur ^ 1<<sc.intn(64)
	case 5:
		return sc.seen[sc.intn(len(sc.seen))] // a replay: a token, a position
	case 6:
		return 0
	case 7:
		return ^uint64(0) - uint64(sc.intn(16))*8
	case 8:
		return 1<<63 + uint64(sc.intn(16))*8
	case 9:
		return cur + 1 + uint64(sc.intn(7)) // unaligned
	case 10:
		return cur
	}
	return sc.u64()
}

// liveToken is the token of a handle of a running process (this one, or a
// command's), as the presence table says (from offset 2304 of the consumer
// page: entry i holds a generation in its high 32 bits and the process ID
// in the low ones, and the token is i+1 in the high bits and the
// generation in the low ones; see liveness.go), if any is: what a hostile
// process that knows the PIDs can write.
func (sc *scribbleRun) liveToken() (uint64, bool) {
	var toks []uint64
	for i := range (pageSize - 2304) / 8 {
		e := get64(sc.mem, consumerPosAt+2304+8*i)
		if _, running := sc.pids.Load(uint32(e)); running && e>>32 != 0 {
			toks = append(toks, uint64(i+1)<<32|e>>32)
		}
	}
	if len(toks) == 0 {
		return 0, false
	}
	return toks[sc.intn(len(toks))], true
}

// headerWord is a record header's length word or page offset, as producers
// write them or not.
func (sc *scribbleRun) headerWord() uint32 {
	n := uint32(sc.intn(sc.size + 64))
	switch sc.intn(6) {
	case 0:
		return n | 1<<31 // the busy bit
	case 1:
		return n | 1<<30 // the discard bit
	case 2:
		return uint32(sc.u64())
	case 3:
		return uint32(sc.intn(64))
	}
	return n
}

func (sc *scribbleRun) store64(off int, v uint64) {
	atomic.StoreUint64((*uint64)(unsafe.Pointer(&sc.mem[off])), v)
}

func (sc *scribbleRun) store32(off int, v uint32) {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&sc.mem[off])), v)
}

// commands runs commands against the ring until the run stops.
func (sc *scribbleRun) commands() {
	for {
		select {
		case <-sc.stop:
			return
		default:
		}
		sc.runOne(sc.pick())
	}
}

// pick chooses a command line.
func (sc *scribbleRun) pick() []string {
	n := sc.name
	switch sc.intn(11) {
	case 0:
		return []string{"show", n}
	case 1:
		return []string{"show", n, "--json"}
	case 2:
		return []string{"stat", n, "--interval", "20ms"}
	case 3:
		return []string{"stat", n, "--watch", "--count", "3", "--interval", "10ms", "--json"}
	case 4:
		return []string{"peek", n, "-n", strconv.Itoa(sc.intn(300))}
	case 5:
		return []string{"peek", n, "--hex", "-n", "5"}
	case 6:
		return []string{"dump", n, "-n", strconv.Itoa(sc.intn(500))}
	case 7:
		return []string{"dump", n, "--json"}
	case 8:
		return []string{"list"}
	}
	return []string{"produce", n, "--count", strconv.Itoa(1 + sc.intn(200)), "--size", strconv.Itoa(sc.intn(sc.size / 8))}
}

// runOne runs one command line and checks how it ended. A produce still
// waiting on a full ring when the run ends is interrupted (Ctrl-C), as a
// person would; nothing else is.
func (sc *scribbleRun) runOne(args []string) {
	t := sc.t
	cmd := ringoCmd(sc.dir, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		sc.st.fail(t, "start ringo %s: %v", strings.Join(args, " "), err)
		return
	}
	pid := uint32(cmd.Process.Pid)
	sc.pids.Store(pid, true)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); sc.pids.Delete(pid) }()
	interrupted, killed := false, false
	stopC := sc.stop
	if args[0] != "produce" {
		stopC = nil
	}
	bound := time.NewTimer(scribbleBound)
	defer bound.Stop()
	var err error
	for waiting := true; waiting; {
		select {
		case err = <-done:
			waiting = false
		case <-stopC:
			cmd.Process.Signal(os.Interrupt)
			interrupted, stopC = true, nil
		case <-bound.C:
			cmd.Process.Signal(syscall.SIGQUIT) // its goroutines on stderr
			time.Sleep(200 * time.Millisecond)
			cmd.Process.Kill()
			killed = true
		}
	}
	took := time.Since(start)
	line := "ringo " + strings.Join(args, " ")
	errOut := stderr.String()
	if killed {
		sc.st.fail(t, "%s did not exit within %v%s; its goroutines in ringo (SIGQUIT):\n%s", line, scribbleBound, sc.describe(), ringoStacks(errOut))
		return
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		sc.st.fail(t, "%s: %v", line, err)
		return
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	code := cmd.ProcessState.ExitCode()
	switch {
	case ws.Signaled() && interrupted && ws.Signal() == syscall.SIGINT:
		// (Interrupted before it set up its handler.)
	case ws.Signaled():
		sc.st.fail(t, "%s: killed by %v after %v%s; stderr:\n%s", line, ws.Signal(), took, sc.describe(), tail(errOut, 4000))
		return
	case code != 0 && code != 1:
		sc.st.fail(t, "%s: exit %d after %v%s; stderr:\n%s", line, code, took, sc.describe(), tail(errOut, 4000))
		return
	}
	for _, bad := range []string{"panic", "fatal error", "SIGBUS", "SIGSEGV", "goroutine "} {
		if strings.Contains(errOut, bad) {
			sc.st.fail(t, "%s: exit %d, stderr has %q%s:\n%s", line, code, bad, sc.describe(), tail(errOut, 4000))
			return
		}
	}
	if code == 1 && args[0] != "list" && args[0] != "stat" && (!strings.HasPrefix(errOut, "ringo "+args[0]+": ") || strings.Count(errOut, "\n") != 1) {
		sc.st.fail(t, "%s: exit 1 without a one-line error: %q", line, errOut)
		return
	}
	sc.st.count(fmt.Sprintf("%s exit %d", args[0], code))
	if code == 1 {
		sc.st.reason(errOut)
	}
}

// reasonOf is the kind of an error message: its words without numbers,
// quotes or paths.
func reasonOf(msg string) string {
	var words []string
	for _, w := range strings.Fields(msg) {
		if strings.ContainsAny(w, "0123456789/\"") {
			w = "_"
		}
		words = append(words, w)
	}
	r := strings.Join(words, " ")
	if len(r) > 110 {
		r = r[:110]
	}
	return r
}

func (s *scribbleStats) reason(msg string) {
	s.mu.Lock()
	if s.reasons == nil {
		s.reasons = map[string]int{}
	}
	s.reasons[reasonOf(msg)]++
	s.mu.Unlock()
}

// ringoStacks is the part of a goroutine dump that matters: the first
// line, and the goroutines with a frame of ringo's.
func ringoStacks(dump string) string {
	blocks := strings.Split(dump, "\n\n")
	out := []string{firstLine(dump)}
	for _, b := range blocks {
		if strings.Contains(b, "ringo-bpf/ringo") {
			out = append(out, b)
		}
	}
	return tail(strings.Join(out, "\n\n"), 8000)
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// goProducer writes records into the ring from this process until the
// run stops, storing the time of each return from the library in
// progress.
func (sc *scribbleRun) goProducer(progress *atomic.Int64) {
	sc.pids.Store(uint32(os.Getpid()), true)
	r, err := ringo.Open(sc.name, ringo.WithDir(sc.dir))
	progress.Store(time.Now().UnixNano())
	if err != nil {
		sc.goError(err)
		return
	}
	defer r.Close()
	buf := make([]byte, sc.size)
	for i := 0; ; i++ {
		select {
		case <-sc.stop:
			return
		default:
		}
		n := sc.intn(sc.size / 4)
		if i%3 == 0 {
			res, err := r.Reserve(n)
			if err == nil {
				copy(res.Bytes(), buf[:n])
				if i%6 == 0 {
					err = r.Discard(res, 0)
				} else {
					err = r.Commit(res, 0)
				}
			}
			sc.goResult(err)
		} else {
			sc.goResult(r.Output(buf[:n], 0))
		}
		progress.Store(time.Now().UnixNano())
		if i%16 == 0 {
			time.Sleep(time.Duration(sc.intn(500)) * time.Microsecond)
		}
	}
}

func (sc *scribbleRun) goResult(err error) {
	if err == nil {
		sc.st.mu.Lock()
		sc.st.goRecords++
		sc.st.mu.Unlock()
		return
	}
	sc.goError(err)
}

func (sc *scribbleRun) goError(err error) {
	kind := "other"
	for _, e := range []error{ringo.ErrFull, ringo.ErrCorrupt, ringo.ErrBusy, ringo.ErrTooLarge, ringo.ErrClosed} {
		if errors.Is(err, e) {
			kind = e.Error()
			break
		}
	}
	if kind == "other" {
		sc.st.reason("go producer: " + err.Error())
	}
	sc.st.mu.Lock()
	if sc.st.goErrors == nil {
		sc.st.goErrors = map[string]int{}
	}
	sc.st.goErrors[kind]++
	sc.st.mu.Unlock()
}
