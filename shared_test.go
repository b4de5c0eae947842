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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo/internal/waitfor"
)

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
	ctx, cancel := context.WithTimeout(context.Background(), waitfor.Short)
	defer cancel()
	rec, err := rd.Read(ctx)
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
	// A test that fails early leaves no producer behind, spinning on a
	// full ring. (Killing one that exited already does nothing.)
	t.Cleanup(func() {
		for _, cmd := range cmds {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
		}
	})
	// Cancelled, not timed out: a Reader woken by its deadline would find
	// the records a lost wake-up left behind.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer time.AfterFunc(waitfor.Long, cancel).Stop()
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
	for id, cmd := range cmds {
		if err := waitfor.Process(t, cmd, waitfor.Short, fmt.Sprintf("producer process %d, whose records all arrived, to exit", id)); err != nil {
			t.Fatalf("producer process %d: %v", id, err)
		}
	}
	if n, _ := rd.Consume(func(Record) error { return nil }); n != 0 {
		t.Fatalf("%d records too many", n)
	}
	t.Logf("dropped (refused while full, retried): %d, reader woken %d times", r.dropped(), rd.Wakeups())
}

func TestDroppedCounter(t *testing.T) {
	r := newRing(t, 4096)
	for r.Output(make([]byte, 100), 0) == nil {
	}
	for i := 0; i < 4; i++ {
		r.Output(make([]byte, 100), 0)
		r.Reserve(100)
	}
	if d := r.dropped(); d != 9 {
		t.Fatalf("Dropped() = %d, want 9", d)
	}
}

// Another local user makes the directory of named rings before root does:
// world-writable, or its own. Root must refuse it rather than create rings
// that user can replace or read.
func TestSharedDirOfAnotherUser(t *testing.T) {
	needRoot(t, "to act as the nobody user")
	base := sharedBase(t)
	open := filepath.Join(base, "open")
	own := filepath.Join(base, "own")
	asNobody(t, "mkdir -m 0777 "+open+" && chmod 0777 "+open+" && mkdir -m 0755 "+own)
	for dir, want := range map[string]string{open: "writable by every user", own: "belongs to uid 65534"} {
		if _, err := Create("events", 4096, WithDir(dir)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Create in %s: %v, want %q", dir, err, want)
		}
		if _, err := Open("events", WithDir(dir)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open in %s: %v, want %q", dir, err, want)
		}
	}
	// A symbolic link as the directory is not followed.
	link := filepath.Join(base, "link")
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	if _, err := Create("events", 4096, WithDir(link)); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Create in a symlinked directory: %v", err)
	}
}

// A member of the group a ring directory is shared with plants links where a
// ring and its pipe would be: neither is followed, and no byte of what they
// point at is shown.
func TestSharedPlantedLinks(t *testing.T) {
	needRoot(t, "to act as the nobody user")
	base := sharedBase(t)
	dir := filepath.Join(base, "rings")
	if err := os.Mkdir(dir, 0o770); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 0, nobody); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o770)
	secret := filepath.Join(base, "secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("TOPSECRET", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	asNobody(t, "ln -s "+secret+" "+dir+"/events && ln -s /dev/zero "+dir+"/pipe.wake")
	_, err := Open("events", WithDir(dir))
	if err == nil || !strings.Contains(err.Error(), "symbolic link") || strings.Contains(err.Error(), "TOPSECRET") || strings.Contains(err.Error(), "0x") {
		t.Fatalf("Open of a planted link: %v", err)
	}
	// A link in the pipe's place is neither followed nor removed.
	if _, err := Create("pipe", 4096, WithDir(dir), WithGroupAccess()); err == nil || !strings.Contains(err.Error(), "is in the way") {
		t.Fatalf("Create with a link where its pipe goes: %v", err)
	}
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Fatal("/dev/zero is gone")
	}
	os.Remove(filepath.Join(dir, "pipe.wake"))
	r, err := Create("pipe", 4096, WithDir(dir), WithGroupAccess())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// A planted link in place of an existing ring's pipe.
	os.Remove(filepath.Join(dir, "pipe.wake"))
	asNobody(t, "ln -s /dev/zero "+dir+"/pipe.wake")
	rd := newReader(t, r) // a consumer runs: the pipe cannot be made anew
	if _, err := Open("pipe", WithDir(dir)); err == nil || !strings.Contains(err.Error(), "pipe.wake is a symbolic link") {
		t.Fatalf("Open with a link for a pipe: %v", err)
	}
	rd.Close()
}

// The wake-up pipe deleted or replaced: while a consumer runs, Open refuses
// (producers signalling another pipe would never wake it); with none, the
// pipe is made anew with the ring file's mode and group, and a consumer
// started then is woken through it. Under a umask that would narrow the
// modes (022), a group ring's directory, file and pipe keep the group's
// access.
func TestSharedWakePipeLostAndModes(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "rings")
	r, err := Create("w", 4096, WithDir(dir), WithGroupAccess())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	mode := func(p string) fs.FileMode {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode().Perm()
	}
	if m := mode(dir); m != 0o770 {
		t.Errorf("directory mode %v, want 0770", m)
	}
	for _, f := range []string{"w", "w.wake"} {
		if m := mode(filepath.Join(dir, f)); m != 0o660 {
			t.Errorf("%s mode %v, want 0660", f, m)
		}
	}
	wake := filepath.Join(dir, "w.wake")
	rd := newReader(t, r)
	for what, spoil := range map[string]func(){
		"is missing":   func() { os.Remove(wake) },
		"was replaced": func() { os.Remove(wake); syscall.Mkfifo(wake, 0o600) },
	} {
		spoil()
		if _, err := Open("w", WithDir(dir)); err == nil || !strings.Contains(err.Error(), what+" while process") {
			t.Errorf("Open when the pipe %s under a live consumer: %v", what, err)
		}
	}
	rd.Close()
	os.Remove(wake)
	p, err := Open("w", WithDir(dir)) // makes the pipe anew
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if m := mode(wake); m != 0o660 {
		t.Errorf("pipe made anew has mode %v, want the ring file's 0660", m)
	}
	c, err := Open("w", WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rd2 := newReader(t, c)
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := rd2.Read(ctx)
		got <- err
	}()
	waitfor.Until(t, waitfor.Short, "the new consumer to sleep", func() bool { return c.mem.waiter.Load() != 0 })
	p.Output([]byte("through the new pipe"), 0)
	if err := waitfor.Recv(t, got, waitfor.Short, "the consumer on the pipe made anew to be woken"); err != nil {
		t.Fatalf("a consumer on the pipe made anew was not woken: %v", err)
	}
}

// Create allocates the ring's memory: on a file system without the room it
// fails, naming the free space, instead of leaving producers to die of
// SIGBUS later.
func TestSharedCreateWithoutRoom(t *testing.T) {
	needRoot(t, "to mount a small tmpfs")
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Fatal(err)
	}
	defer syscall.Unmount(dir, syscall.MNT_DETACH)
	_, err := Create("big", 1<<20, WithDir(filepath.Join(dir, "rings")))
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "KiB free") {
		t.Fatalf("Create of 1 MiB on a 256 KiB tmpfs: %v", err)
	}
	if names, _ := SharedRings(WithDir(filepath.Join(dir, "rings"))); len(names) != 0 {
		t.Fatalf("a ring is left behind: %v", names)
	}
	r, err := Create("small", 64<<10, WithDir(filepath.Join(dir, "rings")))
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}

// Names: one rule, said in the error.
func TestRingNames(t *testing.T) {
	for _, ok := range []string{"events", "a", "x.y_z-1", strings.Repeat("n", maxNameLen)} {
		if err := checkName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "..", ".hidden", "-flag", "x.wake", "id:2742", "new\nline", "tab\t", "w*", "w>", "sp ace", strings.Repeat("n", maxNameLen+1)} {
		err := checkName(bad)
		if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "a name is 1 to 200 letters") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// Remove deletes rings only, and an orphan pipe.
func TestRemoveOnlyRings(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "passwd")
	os.WriteFile(plain, []byte("root:x:0:0"), 0o600)
	if err := Remove("passwd", WithDir(dir)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Remove of a plain file: %v", err)
	}
	if _, err := os.Stat(plain); err != nil {
		t.Fatal("a plain file was removed")
	}
	os.Symlink(plain, filepath.Join(dir, "link"))
	if err := Remove("link", WithDir(dir)); err == nil {
		t.Fatal("Remove of a symbolic link succeeded")
	}
	os.Mkdir(filepath.Join(dir, "empty"), 0o700)
	if err := Remove("empty", WithDir(dir)); err == nil {
		t.Fatal("Remove of a directory succeeded")
	}
	syscall.Mkfifo(filepath.Join(dir, "orphan.wake"), 0o600)
	if err := Remove("orphan", WithDir(dir)); err != nil {
		t.Fatalf("Remove of an orphan pipe: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "orphan.wake")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the orphan pipe is still there: %v", err)
	}
}

// Truncating a shared ring's file under its mappings (anyone who may write
// the file can) makes every access to the lost pages fault: the methods
// that touch the ring return an error wrapping ErrCorrupt instead of the
// process dying of SIGBUS.
func TestSharedRingTruncatedWhileMapped(t *testing.T) {
	dir := t.TempDir()
	r, err := Create("trunc", 1<<16, WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Open("trunc", WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		p.Output([]byte("before the truncation"), 0)
	}
	rd := newReader(t, r)
	for _, size := range []int64{3 * 4096, 0} { // the data pages, then the positions too
		if err := os.Truncate(filepath.Join(dir, "trunc"), size); err != nil {
			t.Fatal(err)
		}
		isFault := func(what string, err error) {
			t.Helper()
			// Cut to three pages, what lies in the first data page
			// is still there: only no crash is asked for.
			if size == 0 && (!errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "faulted")) {
				t.Errorf("truncated to %d: %s: %v", size, what, err)
			}
		}
		_, err := rd.Consume(func(Record) error { return nil })
		isFault("Consume", err)
		_, err = rd.peek(func(Record) error { return nil })
		isFault("Reader.Peek", err)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		var rec Record
		isFault("ReadInto", rd.ReadInto(ctx, &rec))
		for _, err := range rd.Records(ctx) {
			isFault("Records", err)
			break
		}
		cancel()
		isFault("Output", p.Output([]byte("after"), 0))
		_, err = p.Reserve(8)
		isFault("Reserve", err)
		_, err = Peek(p, func(Record) error { return nil })
		isFault("Peek", err)
		NewMeter(p).Sample()
		r.Positions()
		p.dropped()
		r.abandoned()
	}
	rd.Close()
	p.Close()
	r.Close()

	// An in-process ring's memory file cannot be truncated at all (it is
	// sealed), even by whoever gets hold of it through /proc/PID/fd.
	in := newRing(t, 4096)
	if err := syscall.Ftruncate(in.file, 0); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("truncating an in-process ring's memory file: %v", err)
	}
}
