package ringo

import (
	"fmt"
	"strings"
	"testing"
)

// A ring's identity names its incarnation: a ring created again under the
// same name is another, and a process opening a shared ring sees the
// creator's.
func TestIdentify(t *testing.T) {
	a, b := newRing(t, 4096, WithName("x")), newRing(t, 4096, WithName("x"))
	ia, ib := Identify(a), Identify(b)
	if ia.Kind != "memory" || ia.Name != "x" || ia.Incarnation == ib.Incarnation {
		t.Fatalf("identities %v and %v: want kind memory, name x, two incarnations", ia, ib)
	}
	dir := t.TempDir()
	c, err := Create("s", 4096, WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	o, err := Open("s", WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	ic, io := Identify(c), Identify(o)
	o.Close()
	c.Close()
	if ic != io || ic.Kind != "shared" || ic.Name != "s" {
		t.Fatalf("creator sees %v, opener %v: want one shared identity", ic, io)
	}
	Remove("s", WithDir(dir))
	d, err := Create("s", 4096, WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { d.Close(); Remove("s", WithDir(dir)) }()
	if id := Identify(d); id.Incarnation == ic.Incarnation {
		t.Fatalf("a ring created again under the same name has the old incarnation %s", id.Incarnation)
	}
}

// A kernel ring's incarnation is its map ID within this boot.
func TestIdentifyKernelRing(t *testing.T) {
	a, b := newKernelRing(t, 4096), newKernelRing(t, 4096)
	ia, ib := Identify(a), Identify(b)
	if ia.Kind != "kernel" || ia.Name != a.info.Name || ia.Incarnation == ib.Incarnation ||
		!strings.HasSuffix(ia.Incarnation, fmt.Sprintf("-%d", a.ID())) || strings.HasPrefix(ia.Incarnation, "noboot") {
		t.Fatalf("identities %v and %v of maps %d and %d: want kind kernel, boot ID and map ID", ia, ib, a.ID(), b.ID())
	}
}
