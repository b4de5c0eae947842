// Helpers the tests of the root package share: rings and readers that
// close themselves, skips that name their reason, another user to act as,
// child processes holding a ring.

package ringo

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo/internal/bpfmap"
	"github.com/ringo-bpf/ringo/internal/sys"
	"github.com/ringo-bpf/ringo/internal/waitfor"
)

func newRing(t testing.TB, size int, opts ...Option) *Ring {
	t.Helper()
	r, err := New(size, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close ring: %v", err)
		}
	})
	return r
}

// drain consumes every available record of r with a fresh Reader and returns
// copies of their payloads.
func drain(t testing.TB, r *Ring) [][]byte {
	t.Helper()
	rd, err := NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var got [][]byte
	if _, err := rd.Consume(func(rec Record) error {
		got = append(got, bytes.Clone(rec.Data))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// newSharedRing creates a shared ring of size bytes in a directory of the
// test's, closed when the test ends (after the Readers made since).
func newSharedRing(t testing.TB, name string, size int) *Ring {
	t.Helper()
	r, err := Create(name, size, WithDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func newReader(t testing.TB, rings ...Source) *Reader {
	t.Helper()
	rd, err := NewReader(rings...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return rd
}

// dropped and abandoned are the ring's Loss counters, for tests.
func (r *Ring) dropped() uint64 {
	l, _ := r.Loss()
	return l.Dropped
}

func (r *Ring) abandoned() uint64 {
	l, _ := r.Loss()
	return l.Abandoned
}

func newKernelRing(t testing.TB, size int) *KernelRing {
	t.Helper()
	requireKernel(t)
	k, err := CreateKernelRing("ringo_test", size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := k.Close(); err != nil {
			t.Errorf("close kernel ring: %v", err)
		}
	})
	return k
}

// bpffsDir returns a fresh directory in the BPF file system, removed with
// everything in it at the end of the test.
func bpffsDir(t testing.TB) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/bpf", &st); err != nil || st.Type != 0xcafe4a11 {
		skipUnlessRequired(t, "no BPF file system at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)")
	}
	dir, err := os.MkdirTemp("/sys/fs/bpf", "ringo-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func newUserRing(t testing.TB, size int, opts ...Option) *UserRing {
	t.Helper()
	requireKernel(t)
	u, err := CreateUserRing("ringo_user", size, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

// requireKernel skips a test that needs BPF when the kernel refuses it (no
// privileges, no BPF), unless RINGO_REQUIRE_KERNEL=1, under which it fails:
// CI sets it so that kernel tests can never pass by skipping.
func requireKernel(t testing.TB) {
	t.Helper()
	fd, err := sys.MapCreate(uint32(RingBuf), 0, 0, uint32(sys.PageSize), 0, "probe")
	if err == nil {
		closeFD(fd)
		return
	}
	skipUnlessRequired(t, "BPF ring buffers are not available here ("+bpfmap.Err(err).Error()+"); run as root")
}

// skipUnlessRequired skips the test for the reason given (something the
// machine lacks), or fails it if RINGO_REQUIRE_KERNEL=1, as in CI, where
// nothing may pass by skipping.
func skipUnlessRequired(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("RINGO_REQUIRE_KERNEL") == "1" {
		t.Fatal(reason + ", and RINGO_REQUIRE_KERNEL=1")
	}
	t.Skip(reason + " (RINGO_REQUIRE_KERNEL=1 makes this a failure)")
}

// needRoot skips a test that needs root (to act as another user, or to
// mount), naming why, unless RINGO_REQUIRE_KERNEL=1, under which it fails.
func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "needs root " + why
	if os.Getenv("RINGO_REQUIRE_KERNEL") == "1" {
		t.Fatal(msg + ", and RINGO_REQUIRE_KERNEL=1")
	}
	t.Skip(msg + "; run as root, or set RINGO_REQUIRE_KERNEL=1 to make this a failure")
}

// nobody is the uid and gid of the unprivileged user the hostile tests act
// as (the nobody user and nogroup group of Debian).
const nobody = 65534

// sharedBase makes a directory that other users may enter, for tests in
// which another user acts: t.TempDir is root's alone.
func sharedBase(t *testing.T) string {
	t.Helper()
	base, err := os.MkdirTemp("", "ringo-hostile-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// Like /dev/shm and /tmp: anyone may make files, none may remove
	// another's.
	if err := os.Chmod(base, 0o1777); err != nil {
		t.Fatal(err)
	}
	return base
}

// asNobody runs sh -c script as the nobody user and fails the test if it
// fails.
func asNobody(t *testing.T, script string) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("as nobody: %s: %v: %s", script, err, out)
	}
}

// deadToken returns the token of a handle of shared ring r that was opened
// and is gone: as a process that died leaves it.
func deadToken(t *testing.T, r *Ring) uint64 {
	t.Helper()
	h, err := Open(filepath.Base(r.path), WithDir(filepath.Dir(r.path)))
	if err != nil {
		t.Fatal(err)
	}
	token := h.mem.self
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if r.mem.alive(token) {
		t.Fatal("a closed handle's token is alive")
	}
	return token
}

// startHolder starts a child that opens the shared ring name in dir and
// holds what mode says (runHold), in a PID namespace of its own if newPIDNS;
// it returns once the child says it holds it. The child is killed when the
// test ends.
func startHolder(t *testing.T, dir, name, mode string, newPIDNS bool) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	if newPIDNS {
		// The child is PID 1 of a new PID namespace, with its own
		// /proc (as in a container); --kill-child
		// kills it with unshare.
		cmd = exec.Command("unshare", "--pid", "--fork", "--mount-proc", "--kill-child", exe)
	}
	cmd.Env = append(os.Environ(), "RINGO_TEST_HOLD="+dir+"|"+name+"|"+mode)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if l != "holding\n" {
			t.Fatalf("%s child: said %q (its error is above)", mode, l)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s child: did not say it holds in 30s", mode)
	}
	return cmd
}

// fill fills r with records of 100 bytes, then empty ones, until not even
// an empty record fits (two refusals), and returns how many it wrote.
func fill(t *testing.T, r *Ring) int {
	t.Helper()
	n := 0
	for _, size := range []int{100, 0} {
		for {
			err := r.Output(make([]byte, size), 0)
			if errors.Is(err, ErrFull) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	return n
}

// drainAll consumes everything in rd now, and returns the records that are
// not fill's.
func drainAll(t *testing.T, rd *Reader) []string {
	t.Helper()
	var got []string
	_, err := rd.Consume(func(rec Record) error {
		if len(rec.Data) != 0 && len(rec.Data) != 100 {
			got = append(got, string(rec.Data))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// bounded runs f and fails the test if it has not returned within
// waitfor.Short: the calls tested here used to hang.
func bounded(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	waitfor.Closed(t, done, waitfor.Short, what+" to return")
}
