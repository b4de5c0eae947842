package ringo

import (
	"fmt"

	"github.com/ringo-bpf/ringo/internal/bpfmap"
	"github.com/ringo-bpf/ringo/internal/sys"
)

// kernelMap is what the two kinds of kernel ring, KernelRing and UserRing,
// share: the map's descriptor, owned by the ring, and its info, with the
// accessors both kinds have.
type kernelMap struct {
	fd   int
	info sys.MapInfo
}

// FD returns the map's descriptor, owned by the ring: give it to BPF
// programs (a map replacement) or cilium/ebpf, but do not close it.
func (k *kernelMap) FD() int { return k.fd }

// ID returns the map's ID, as bpftool map list shows it.
func (k *kernelMap) ID() uint32 { return k.info.ID }

// Name returns the map's name (up to 15 characters, as the kernel keeps it).
func (k *kernelMap) Name() string { return k.info.Name }

// Pin pins the map at path, inside a BPF file system, where bpftool and other
// processes find it.
func (k *kernelMap) Pin(path string) error {
	if err := sys.ObjPin(k.fd, path); err != nil {
		return fmt.Errorf("ringo: pin map %d at %s: %w", k.info.ID, path, bpfmap.Err(err))
	}
	return nil
}
