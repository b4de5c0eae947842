package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// ringo rm removes rings and nothing else: RINGO_DIR=/etc ringo rm passwd
// would have deleted /etc/passwd. What is not a ring stays, with exit
// status 1 and a message; a ring's orphan pipe can be removed, by the
// ring's name or its own.
func TestRmOnlyRings(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "passwd")
	if err := os.WriteFile(file, make([]byte, 3*pageSize), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(file, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	failsWithin(t, dir, 1, "not a ringo ring", "rm", "passwd")
	failsWithin(t, dir, 1, "symbolic link", "rm", "link")
	failsWithin(t, dir, 1, "is a directory", "rm", "empty")
	failsWithin(t, dir, 1, "is not a regular file", "rm", "fifo")
	failsWithin(t, dir, 1, "a name is 1 to 200 letters", "rm", "../passwd")
	for _, n := range []string{"passwd", "link", "empty", "fifo"} {
		if _, err := os.Lstat(filepath.Join(dir, n)); err != nil {
			t.Errorf("ringo rm %s removed it: %v", n, err)
		}
	}

	// A ring's pipe goes with it, not alone.
	okWithin(t, dir, "create", "r", "--size", "4K")
	failsWithin(t, dir, 1, "r.wake is the wake-up pipe of ring r, which is still there", "rm", "r.wake")
	if _, err := os.Lstat(filepath.Join(dir, "r.wake")); err != nil {
		t.Fatalf("rm r.wake removed the pipe of a live ring: %v", err)
	}
	// An orphan pipe (its ring gone: a process died in Remove) goes, by
	// either name.
	for _, arg := range []string{"gone", "gone.wake"} {
		okWithin(t, dir, "create", "gone", "--size", "4K")
		if err := os.Remove(filepath.Join(dir, "gone")); err != nil {
			t.Fatal(err)
		}
		if out := okWithin(t, dir, "rm", arg); out != "removed gone.wake, the wake-up pipe left behind by ring gone\n" {
			t.Errorf("rm %s of an orphan pipe: %q", arg, out)
		}
		if _, err := os.Lstat(filepath.Join(dir, "gone.wake")); err == nil {
			t.Errorf("rm %s left the orphan pipe", arg)
		}
	}
	failsWithin(t, dir, 1, "no such file", "rm", "gone.wake")
	if out := okWithin(t, dir, "rm", "r"); out != "removed r\n" {
		t.Errorf("rm r: %q", out)
	}
	for _, n := range []string{"r", "r.wake"} {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			t.Errorf("rm r left %s", n)
		}
	}
}
