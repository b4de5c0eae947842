package ringo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary act as a producer process for the
// cross-process tests: see runChild.
func TestMain(m *testing.M) {
	for env, child := range map[string]func(string) error{
		"RINGO_TEST_CHAOS_PRODUCER": runChaosProducer,
		"RINGO_TEST_CHAOS_CONSUMER": runChaosConsumer,
		"RINGO_BENCH_PRODUCER":      runBenchProducer,
	} {
		if spec := os.Getenv(env); spec != "" {
			if err := child(spec); err != nil {
				fmt.Fprintln(os.Stderr, "child:", err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	if spec := os.Getenv("RINGO_TEST_HOLD"); spec != "" {
		if err := runHold(spec); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if spec := os.Getenv("RINGO_TEST_CHILD"); spec != "" {
		if err := runChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild produces count records into a shared ring, each carrying the
// producer id and a sequence number: spec is "dir|name|id|count|size".
func runChild(spec string) error {
	f := strings.Split(spec, "|")
	if len(f) != 5 {
		return fmt.Errorf("bad child spec %q", spec)
	}
	id, _ := strconv.Atoi(f[2])
	count, _ := strconv.Atoi(f[3])
	size, _ := strconv.Atoi(f[4])
	r, err := Open(f[1], WithDir(f[0]))
	if err != nil {
		return err
	}
	payload := make([]byte, size)
	for seq := 0; seq < count; seq++ {
		binary.LittleEndian.PutUint32(payload, uint32(id))
		binary.LittleEndian.PutUint32(payload[4:], uint32(seq))
		for i := 8; i < size; i++ {
			payload[i] = byte(id + seq + i)
		}
		for {
			err := r.Output(payload, 0)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrFull) {
				return err
			}
			time.Sleep(10 * time.Microsecond)
		}
	}
	return r.Close()
}

func TestSharedCreateOpenRemove(t *testing.T) {
	dir := t.TempDir()
	r, err := Create("events", 8192, WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	st, err := os.Stat(filepath.Join(dir, "events"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Size() != 2*4096+8192 {
		t.Fatalf("ring file mode %v size %d", st.Mode(), st.Size())
	}
	if r.Path() != filepath.Join(dir, "events") {
		t.Fatalf("Path() = %q", r.Path())
	}
	if _, err := Create("events", 8192, WithDir(dir)); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Create: %v", err)
	}
	// A second mapping of the same ring, as another process would have.
	r2, err := Open("events", WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	if r2.Size() != 8192 {
		t.Fatalf("opened size %d", r2.Size())
	}
	r2.Output([]byte("from the second mapping"), 0)
	rd := newReader(t, r)
	rec, err := rd.Read(context.Background())
	if err != nil || string(rec.Data) != "from the second mapping" {
		t.Fatalf("Read: %q %v", rec.Data, err)
	}
	r2.Close()

	t.Setenv("RINGO_DIR", dir)
	g, err := Create("group", 4096, WithGroupAccess())
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	if st, _ := os.Stat(filepath.Join(dir, "group")); st.Mode().Perm() != 0o660 {
		t.Fatalf("group ring mode %v", st.Mode())
	}
	if err := Remove("group"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open("group"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open after Remove: %v", err)
	}
	if err := Remove("group"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("second Remove: %v", err)
	}
}

func TestSharedRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"", "a/b", "..", "x.wake"} {
		if _, err := Create(name, 4096, WithDir(dir)); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("Create(%q): %v", name, err)
		}
	}
	if _, err := Create("odd", 5000, WithDir(dir)); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("Create with size 5000: %v", err)
	}
	r, err := Create("good", 4096, WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	good, _ := os.ReadFile(filepath.Join(dir, "good"))
	cases := map[string]func([]byte) []byte{
		"truncated":      func(b []byte) []byte { return b[:len(b)-4096] },
		"fewer than":     func(b []byte) []byte { return b[:100] },
		"not a ringo":    func(b []byte) []byte { b[identOffset] ^= 0xff; return b },
		"format version": func(b []byte) []byte { b[identOffset+8] = 9; return b },
		"recorded data":  func(b []byte) []byte { b[identOffset+16] = 1; return b },
		"byte pages":     func(b []byte) []byte { b[identOffset+13] = 0x20; return b },
	}
	for want, mangle := range cases {
		name := strings.ReplaceAll(want, " ", "-")
		b := mangle(append([]byte(nil), good...))
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(name, WithDir(dir))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Open = %v", want, err)
		}
	}
	if _, err := Open("missing", WithDir(dir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing ring: %v", err)
	}
}

// Producer processes feed one consumer through a shared ring: every record
// arrives once, intact, in per-producer order, and the consumer sleeps in
// epoll and is woken across processes.
func TestSharedAcrossProcesses(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r, err := Create("xproc", 16384, WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rd := newReader(t, r)
	const producers, count, size = 3, 5000, 40
	var cmds []*exec.Cmd
	for id := 0; id < producers; id++ {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), fmt.Sprintf("RINGO_TEST_CHILD=%s|xproc|%d|%d|%d", dir, id, count, size))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	next := make([]uint32, producers)
	var rec Record
	for got := 0; got < producers*count; got++ {
		if err := rd.ReadInto(ctx, &rec); err != nil {
			t.Fatalf("after %d records: %v (positions %+v)", got, err, r.Positions())
		}
		id := binary.LittleEndian.Uint32(rec.Data)
		seq := binary.LittleEndian.Uint32(rec.Data[4:])
		if int(id) >= producers || seq != next[id] || len(rec.Data) != size {
			t.Fatalf("record from producer %d seq %d (want %d), %d bytes", id, seq, next[id], len(rec.Data))
		}
		for i := 8; i < size; i++ {
			if rec.Data[i] != byte(int(id)+int(seq)+i) {
				t.Fatalf("producer %d record %d corrupt at byte %d", id, seq, i)
			}
		}
		next[id]++
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("producer process: %v", err)
		}
	}
	if n, _ := rd.Consume(func(Record) error { return nil }); n != 0 {
		t.Fatalf("%d records too many", n)
	}
	t.Logf("dropped (refused while full, retried): %d, reader woken %d times", r.Dropped(), rd.Wakeups())
}

func TestDroppedCounter(t *testing.T) {
	r := newRing(t, 4096)
	for r.Output(make([]byte, 100), 0) == nil {
	}
	for i := 0; i < 4; i++ {
		r.Output(make([]byte, 100), 0)
		r.Reserve(100)
	}
	if d := r.Dropped(); d != 9 {
		t.Fatalf("Dropped() = %d, want 9", d)
	}
}
