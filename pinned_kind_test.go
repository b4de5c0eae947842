package ringo

import (
	"errors"
	"github.com/ringo-bpf/ringo/internal/bpfmap"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ringo-bpf/ringo/internal/sys"
)

// A pinned BPF program is not a map: BPF_OBJ_GET_INFO_BY_FD describes it
// too, in a layout whose first words (the program's type and ID) read as a
// map's. A syscall program (type 31) read so is a user_ringbuf (map type
// 31) with the program's ID as its map ID: ringo produced into whichever
// map had that ID. Every way of opening a pin must say what it is instead.
func TestPinnedProgramIsNotAMap(t *testing.T) {
	requireKernel(t)
	prog, err := sys.ProgLoad(progTypeSocketFilter, []sys.Instruction{insn(opMovImm, 0, 0, 0, 0), insn(opExit, 0, 0, 0, 0)}, "GPL")
	if err != nil {
		t.Fatal(err)
	}
	defer closeFD(prog)
	dir := bpffsDir(t)
	pin := filepath.Join(dir, "prog")
	if err := sys.ObjPin(prog, pin); err != nil {
		t.Fatal(err)
	}
	const want = "is a BPF program, not a map"
	check := func(what string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), pin+" "+want) || !errors.Is(err, syscall.EINVAL) {
			t.Errorf("%s of a pinned program: %v, want %q (and EINVAL)", what, err, pin+" "+want)
		}
	}
	_, err = bpfmap.Describe(0, pin)
	check("Describe", err)
	_, err = OpenPinned(pin)
	check("OpenPinned", err)
	_, err = OpenUserRingPinned(pin)
	check("OpenUserRingPinned", err)
	_, err = OpenRingSetPinned(pin, 0)
	check("OpenRingSetPinned", err)
	_, err = OpenMap(bpfmap.FD(prog))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("OpenMap of a program: %v", err)
	}
	// PinnedMaps lists maps only: the program's ID is no map's.
	k, err := CreateKernelRing("pin_kind_ring", 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if err := k.Pin(filepath.Join(dir, "ring")); err != nil {
		t.Fatal(err)
	}
	pins, err := bpfmap.PinnedMaps(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(pins) != 1 || pins[k.ID()] != filepath.Join(dir, "ring") {
		t.Errorf("PinnedMaps(%s) = %v, want only map %d at ring", dir, pins, k.ID())
	}
	if got := sys.ObjKind(k.FD()); got != "map" {
		t.Errorf("ObjKind of a map: %q", got)
	}
	if got := sys.ObjKind(int(os.Stdin.Fd())); got != "not a BPF object" {
		t.Errorf("ObjKind of stdin: %q", got)
	}
}

// The kernel says "permission denied" (EACCES), even to root, for a path
// outside a BPF file system: ringo says what is wrong.
func TestPinOutsideBPFFS(t *testing.T) {
	requireKernel(t)
	f := filepath.Join(t.TempDir(), "ring")
	if err := os.WriteFile(f, []byte("not a pin"), 0o600); err != nil {
		t.Fatal(err)
	}
	for what, open := range map[string]func() error{
		"Describe":   func() error { _, err := bpfmap.Describe(0, f); return err },
		"OpenPinned": func() error { _, err := OpenPinned(f); return err },
	} {
		err := open()
		if err == nil || !strings.Contains(err.Error(), f+" is not on a BPF file system") {
			t.Errorf("%s of %s: %v", what, f, err)
		}
	}
	dir := bpffsDir(t)
	if _, err := bpfmap.Describe(0, dir); err == nil || !strings.Contains(err.Error(), "is a directory of the BPF file system") {
		t.Errorf("Describe of a bpffs directory: %v", err)
	}
}
