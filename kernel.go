package ringo

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ringo-bpf/ringo/internal/bpfmap"
	"github.com/ringo-bpf/ringo/internal/sys"
	"golang.org/x/sys/unix"
)

// KernelRing is a BPF_MAP_TYPE_RINGBUF map of the kernel, mapped for
// consuming: the records BPF programs write with bpf_ringbuf_output and
// bpf_ringbuf_reserve/submit. A Reader consumes it like any other ring.
type KernelRing struct {
	kernelMap
	ringMem
	drops dropCounter // see loss.go

	attached atomic.Bool
	closed   atomic.Bool
}

// OpenMap maps the ring buffer map m: anything with the map's descriptor as
// FD() int, for example an *ebpf.Map of cilium/ebpf loaded from a bpf2go
// object. ringo duplicates the descriptor: m stays the caller's to close.
// (A raw descriptor fd: type fd int; func (f fd) FD() int { return int(f) }.)
func OpenMap(m interface{ FD() int }) (*KernelRing, error) {
	fd, what, err := bpfmap.Dup(m.FD())
	if err != nil {
		return nil, fmt.Errorf("ringo: %w", err)
	}
	return openKernelRing(fd, what)
}

// OpenPinned maps the ring buffer map pinned at path in a BPF file system.
func OpenPinned(path string) (*KernelRing, error) {
	fd, what, err := bpfmap.Pinned(path)
	if err != nil {
		return nil, fmt.Errorf("ringo: %w", err)
	}
	return openKernelRing(fd, what)
}

// CreateKernelRing creates a BPF_MAP_TYPE_RINGBUF map named name with a
// data area of size bytes (a power of two, a multiple of the page size) and
// maps it. BPF programs can use it once it is given to them (for instance
// through a pin, or as a map replacement when loading a collection).
// WithOverwrite asks for BPF_F_RB_OVERWRITE, which kernels before mainline's
// refuse: the error then says so.
func CreateKernelRing(name string, size int, opts ...Option) (*KernelRing, error) {
	o, err := gather("CreateKernelRing", optOverwrite, opts)
	if err != nil {
		return nil, err
	}
	if err := validateSize(int64(size)); err != nil {
		return nil, err
	}
	var flags uint32
	if o.overwrite {
		flags = FlagOverwrite
	}
	fd, err := sys.MapCreate(uint32(RingBuf), 0, 0, uint32(size), flags, name)
	if err != nil {
		if o.overwrite && errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("ringo: create ringbuf map %q with BPF_F_RB_OVERWRITE: this kernel refuses the flag (it came after Linux 6.18); a user-space ring has the same mode (New or Create WithOverwrite): %w", name, err)
		}
		return nil, fmt.Errorf("ringo: create ringbuf map %q: %w", name, bpfmap.Err(err))
	}
	return openKernelRing(fd, name)
}

var overwriteSupport struct {
	sync.Once
	ok bool
}

// kernelSupportsOverwrite reports whether the running kernel creates ring
// buffer maps with FlagOverwrite (BPF_F_RB_OVERWRITE), by creating (and
// closing) a one-page one, once per process. It reports false where BPF is
// not usable at all.
func kernelSupportsOverwrite() bool {
	overwriteSupport.Do(func() {
		fd, err := sys.MapCreate(uint32(RingBuf), 0, 0, uint32(sys.PageSize), FlagOverwrite, "ringo_probe")
		if err == nil {
			closeFD(fd)
			overwriteSupport.ok = true
		}
	})
	return overwriteSupport.ok
}

// openKernelRing maps the ring behind fd, which it owns from here on.
func openKernelRing(fd int, what string) (*KernelRing, error) {
	info, err := bpfmap.Info(fd, what)
	if err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("ringo: %w", err)
	}
	if t := MapType(info.Type); t != RingBuf {
		closeFD(fd)
		if t == UserRingBuf {
			return nil, fmt.Errorf("ringo: map %d (%s) is a user_ringbuf, which user space produces into: open it with a user ring writer, not as a ring to consume", info.ID, what)
		}
		return nil, fmt.Errorf("ringo: map %d (%s) is a %s map, not a ringbuf", info.ID, what, bpfmap.TypeName(info.Type))
	}
	if err := validateSize(int64(info.MaxEntries)); err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("ringo: map %d (%s): %w", info.ID, what, err)
	}
	size := int(info.MaxEntries)
	m, err := sys.MapKernelRing(fd, size, false)
	if err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("ringo: map %d (%s): %w", info.ID, what, bpfmap.Err(err))
	}
	mem := newKernelMemory(m, size)
	if info.Flags&FlagOverwrite != 0 {
		// The kernel keeps overwrite_pos at producer page offset 16, as
		// ringo's rings do, but no record counts: what the consumer loses
		// is counted in bytes only.
		mem.enableOverwrite(m, false)
	}
	return &KernelRing{kernelMap: kernelMap{fd: fd, info: info}, ringMem: ringMem{mem: mem, mapping: m, label: fmt.Sprintf("ringbuf %d (%s)", info.ID, info.Name)}}, nil
}

// Close unmaps the ring and closes its descriptor. It fails while a Reader
// holds the ring.
func (k *KernelRing) Close() error {
	if k.attached.Load() {
		return fmt.Errorf("ringo: close kernel ring %q: a Reader still consumes it: close the Reader first", k.info.Name)
	}
	if k.closed.Swap(true) {
		return nil
	}
	err := k.mapping.Unmap()
	closeFD(k.fd)
	k.drops.mu.Lock()
	if k.drops.fd > 0 {
		closeFD(k.drops.fd)
		k.drops.fd = -1
	}
	k.drops.mu.Unlock()
	return err
}

func (k *KernelRing) pollFD() int                 { return k.fd }
func (k *KernelRing) notified()                   {}
func (k *KernelRing) parkOn(*chan struct{}) bool  { return false }
func (k *KernelRing) recoverHead(pos uint64) bool { return false }
func (k *KernelRing) attach() error {
	if k.closed.Load() {
		return fmt.Errorf("ringo: kernel ring %q: %w", k.info.Name, ErrClosed)
	}
	if !k.attached.CompareAndSwap(false, true) {
		return fmt.Errorf("ringo: kernel ring %q already has a Reader in this process: a ring has one consumer", k.info.Name)
	}
	return nil
}
func (k *KernelRing) detach() { k.attached.Store(false) }
