package ringo

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"sync"
)

// Identity names one incarnation of a ring: what a record's position is a
// position in. Positions start at 0 when a ring is created, so a ring
// removed and created again under the same name reuses them; Incarnation
// tells the two apart. Forwarders build message IDs from it (see package
// forward), so that a record sent twice is recognised downstream and a new
// ring's records are never taken for an old one's.
type Identity struct {
	// Kind is "kernel" for a BPF map, "shared" for a named ring in shared
	// memory, "memory" for an in-process ring.
	Kind string
	// Name is the map's name, or the ring's name.
	Name string
	// Incarnation is unique to this ring among the rings ever created on
	// the machine under Name: the boot and the map ID for a kernel ring,
	// a random number drawn at creation for the others.
	Incarnation string
}

// Identify returns the identity of a ring a Reader can consume.
func Identify(src Source) Identity { return src.identity() }

func (k *KernelRing) identity() Identity {
	// Map IDs are allocated cyclically and unique within a boot.
	return Identity{Kind: "kernel", Name: k.info.Name, Incarnation: fmt.Sprintf("%s-%d", bootID(), k.ID())}
}

func (r *Ring) identity() Identity {
	kind := "memory"
	if r.path != "" {
		kind = "shared"
	}
	return Identity{Kind: kind, Name: r.name, Incarnation: fmt.Sprintf("%016x", identity(r.mapping).nonce)}
}

// bootID is the kernel's random ID of this boot (its first 8 hex digits),
// or "noboot" if /proc does not say.
var bootID = sync.OnceValue(func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	id := strings.ReplaceAll(strings.TrimSpace(string(b)), "-", "")
	if err != nil || len(id) < 8 {
		return "noboot"
	}
	return id[:8]
})

// newNonce draws the random number that identifies a new ring.
func newNonce() uint64 {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather)
	if n := binary.LittleEndian.Uint64(b[:]); n != 0 {
		return n
	}
	return 1
}
