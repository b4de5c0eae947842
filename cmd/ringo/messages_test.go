package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nobodyCmd runs the command as the nobody user, with env as its
// environment (RINGO_DIR, or none).
func nobodyCmd(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("RINGO_REQUIRE_KERNEL") == "1" {
			t.Fatal("needs root to run the command as the nobody user, and RINGO_REQUIRE_KERNEL=1")
		}
		t.Skip("needs root to run the command as the nobody user")
	}
	os.Chmod(filepath.Dir(ringoBin), 0o755)
	cmd := exec.Command(ringoBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RINGO_DIR=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd
}

// list as a user without shared rings, or with a directory of rings it may
// not read (root's), shows what it can and says what it cannot: exit 0.
// It exited 1 ("open /dev/shm/ringo: permission denied").
func TestListWithoutSharedRings(t *testing.T) {
	rootOnly := t.TempDir() // 0700, root's
	okWithin(t, rootOnly, "create", "secret", "--size", "4K")
	for what, env := range map[string][]string{
		"another user's directory": {"RINGO_DIR=" + rootOnly},
		"no directory":             {"RINGO_DIR=" + filepath.Join(rootOnly, "nothing-here")},
		"the default directory":    nil,
	} {
		for _, args := range [][]string{{"list"}, {"list", "--json"}} {
			r := runWithin(t, 20*time.Second, nobodyCmd(t, env, args...))
			if r.code != 0 {
				t.Errorf("%s: ringo %s as nobody: exit %d, stderr %q", what, strings.Join(args, " "), r.code, r.stderr)
				continue
			}
			if strings.Contains(r.stdout, "secret") {
				t.Errorf("%s: nobody's list shows root's ring: %q", what, r.stdout)
			}
			if args[len(args)-1] == "--json" && strings.TrimSpace(r.stdout) != "[]" {
				t.Errorf("%s: list --json as nobody: %q", what, r.stdout)
			}
			if what == "another user's directory" && !strings.Contains(r.stderr, "shared rings not listed") {
				t.Errorf("%s: list as nobody does not say the shared rings are not listed: %q", what, r.stderr)
			}
			if strings.Contains(r.stderr, "ringo: ") {
				t.Errorf("%s: a message repeats the ringo prefix: %q", what, r.stderr)
			}
		}
	}
}

// Errors carry "ringo CMD: " once: library errors wrapped by the command
// said "ringo list: skipping bad: ringo: open ring ..." and "ringo: corrupt
// ring".
func TestMessagesPrefixedOnce(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad"), make([]byte, 3*pageSize), 0o600); err != nil {
		t.Fatal(err)
	}
	r := within(t, dir, "list")
	if r.code != 0 || !strings.Contains(r.stderr, "ringo list: skipping bad: ") || strings.Contains(r.stderr, "ringo: ") {
		t.Errorf("list with a file that is no ring: %+v", r)
	}
	for _, args := range [][]string{{"show", "bad"}, {"produce", "bad", "--count", "1", "--size", "8"}, {"rm", "bad"}} {
		r := within(t, dir, args...)
		if r.code != 1 || !strings.HasPrefix(r.stderr, "ringo "+args[0]+": ") || strings.Contains(r.stderr, "ringo: ") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("ringo %s: exit %d, stderr %q: want one line with one ringo prefix", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	for in, want := range map[string]string{
		"ringo: x":                              "x",
		"record 3: ringo: ring \"a\" is busy":   "record 3: ring \"a\" is busy",
		"a: ringo: b: ringo: c\nd":              "a: b: c d",
		"ring \"ringo: x\" is gone":             "ring \"ringo: x\" is gone",
		"open ring \"x\": ringo: closed: ringo": "open ring \"x\": closed: ringo",
	} {
		if got := message(errors.New(in)); got != want {
			t.Errorf("message(%q) = %q, want %q", in, got, want)
		}
	}
}
