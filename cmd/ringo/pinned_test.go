package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ringo-bpf/ringo"
)

// A pinned BPF program (or link) is not a map. Its info was read as a
// map's: a syscall program (type 31) became a user_ringbuf (map type 31)
// whose map ID was the program's ID, so ringo produce wrote into whichever
// user ring had that ID, and list showed that map under the program's path.
func TestPinnedProgram(t *testing.T) {
	requireKernel(t)
	pins := bpffsDir(t)
	ret0 := asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Syscall, Flags: unix.BPF_F_SLEEPABLE, License: "GPL", Instructions: ret0})
	if err != nil {
		t.Logf("no syscall program (%v): a socket filter instead", err)
		prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "GPL", Instructions: ret0})
		if err != nil {
			t.Fatal(err)
		}
	}
	defer prog.Close()
	progPin := filepath.Join(pins, "prog")
	if err := prog.Pin(progPin); err != nil {
		t.Fatal(err)
	}
	// A user ring with the program's ID as its map ID, where IDs allow:
	// what produce wrote into.
	pinfo, _ := prog.Info()
	pid, _ := pinfo.ID()
	var victim *ringo.UserRing
	for range 2000 {
		u, err := ringo.CreateUserRing("cmd_victim", 4096)
		if err != nil {
			t.Fatal(err)
		}
		if u.ID() == uint32(pid) {
			victim = u
			break
		}
		u.Close()
		if u.ID() > uint32(pid) {
			break // map IDs are past the program's: no collision to make
		}
	}
	if victim != nil {
		defer victim.Close()
		t.Logf("user ring %d has the program's ID", victim.ID())
	}

	dir := t.TempDir()
	const want = "is a BPF program, not a map"
	for _, args := range [][]string{
		{"show", progPin}, {"peek", progPin}, {"dump", progPin}, {"stat", progPin, "--interval", "20ms"},
		{"produce", progPin, "--count", "1", "--size", "8"},
	} {
		failsWithin(t, dir, 1, progPin+" "+want, args...)
	}
	if victim != nil {
		if p := victim.Positions(); p.Producer != 0 {
			t.Errorf("produce wrote into user ring %d, whose ID is the program's: %+v", victim.ID(), p)
		}
	}

	// A link too.
	raw, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.RawTracepoint, License: "GPL", Instructions: ret0})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sys_enter", Program: raw})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	linkPin := filepath.Join(pins, "link")
	if err := l.Pin(linkPin); err != nil {
		t.Fatal(err)
	}
	defer l.Unpin()
	failsWithin(t, dir, 1, linkPin+" is a BPF link, not a map", "show", linkPin)

	// list shows maps under their pins only: no ring under the program's.
	ring, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 4096, Name: "cmd_pin_ring"})
	if err != nil {
		t.Fatal(err)
	}
	defer ring.Close()
	if err := ring.Pin(filepath.Join(pins, "ring")); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range decode[[]ringJSON](t, okWithin(t, dir, "list", "--json")) {
		if r.Path == progPin || r.Path == linkPin {
			t.Errorf("list shows map %d under %s", *r.ID, r.Path)
		}
		found = found || r.Path == filepath.Join(pins, "ring")
	}
	if !found {
		t.Errorf("list does not show the ring pinned at %s", filepath.Join(pins, "ring"))
	}
}

// A TARGET path outside a BPF file system: the kernel says "permission
// denied", even to root; ringo says what is wrong.
func TestTargetOutsideBPFFS(t *testing.T) {
	requireKernel(t)
	dir := t.TempDir()
	okWithin(t, dir, "create", "events", "--size", "4K")
	for _, path := range []string{filepath.Join(dir, "events"), "/etc/passwd"} {
		failsWithin(t, dir, 1, path+" is not on a BPF file system", "show", path)
		r := within(t, dir, "peek", path)
		if strings.Contains(r.stderr, "permission denied") && !strings.Contains(r.stderr, "not on a BPF file system") {
			t.Errorf("peek %s: %q", path, r.stderr)
		}
		if !strings.Contains(r.stderr, "a shared ring is given by its name") {
			t.Errorf("peek %s does not say how to name a shared ring: %q", path, r.stderr)
		}
	}
	pins := bpffsDir(t)
	failsWithin(t, dir, 1, pins+" is a directory of the BPF file system", "show", pins)
	failsWithin(t, dir, 1, "no such file", "show", filepath.Join(pins, "nothing"))
	if _, err := os.Stat(filepath.Join(dir, "events")); err != nil {
		t.Fatal(err)
	}
}
