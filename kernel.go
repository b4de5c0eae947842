package ringo

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ringo-bpf/ringo/internal/sys"
	"golang.org/x/sys/unix"
)

// KernelRing is a BPF_MAP_TYPE_RINGBUF map of the kernel, mapped for
// consuming: the records BPF programs write with bpf_ringbuf_output and
// bpf_ringbuf_reserve/submit. A Reader consumes it like any other ring.
type KernelRing struct {
	mem     *memory
	mapping *sys.Mapping
	fd      int
	info    sys.MapInfo
	drops   dropCounter // see loss.go

	attached atomic.Bool
	closed   atomic.Bool
}

// FDer is anything with a BPF object file descriptor, such as cilium/ebpf's
// *ebpf.Map.
type FDer interface{ FD() int }

// OpenMap maps the ring buffer map m, for example an *ebpf.Map of
// cilium/ebpf loaded from a bpf2go object. ringo duplicates the descriptor:
// m stays the caller's to close.
func OpenMap(m FDer) (*KernelRing, error) { return OpenMapFD(m.FD()) }

// OpenMapFD maps the ring buffer map behind fd, which it duplicates: fd
// stays the caller's.
func OpenMapFD(fd int) (*KernelRing, error) {
	fd, what, err := dupMapFD(fd)
	if err != nil {
		return nil, err
	}
	return openKernelRing(fd, what)
}

// OpenPinned maps the ring buffer map pinned at path in a BPF file system.
func OpenPinned(path string) (*KernelRing, error) {
	fd, what, err := pinnedMapFD(path)
	if err != nil {
		return nil, err
	}
	return openKernelRing(fd, what)
}

// OpenMapID maps the ring buffer map with the given ID.
func OpenMapID(id uint32) (*KernelRing, error) {
	fd, what, err := mapFDByID(id)
	if err != nil {
		return nil, err
	}
	return openKernelRing(fd, what)
}

// The ways of getting a map's descriptor that kernel and user rings share:
// each returns the descriptor (owned by the caller), how to name the map
// in errors, and an error that says what failed.

func dupMapFD(fd int) (int, string, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, "", fmt.Errorf("ringo: duplicate map fd %d: %w", fd, err)
	}
	return dup, fmt.Sprintf("fd %d", fd), nil
}

func pinnedMapFD(path string) (int, string, error) {
	fd, err := sys.ObjGet(path)
	if err != nil {
		return -1, "", pinError(path, err)
	}
	return fd, path, nil
}

// pinError explains why the pinned object at path could not be opened.
// The kernel answers EACCES ("permission denied", even to root) for a path
// that is not a pinned object: a file outside a BPF file system, or a
// directory in one.
func pinError(path string, err error) error {
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) {
		var sfs unix.Statfs_t
		if unix.Statfs(path, &sfs) == nil && sfs.Type != unix.BPF_FS_MAGIC {
			return fmt.Errorf("ringo: %s is not on a BPF file system, so it is not a pinned map (pins live in one, usually /sys/fs/bpf: mount -t bpf bpf /sys/fs/bpf): %w", path, err)
		}
		var st unix.Stat_t
		if unix.Stat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return fmt.Errorf("ringo: %s is a directory of the BPF file system, not a pinned map: %w", path, err)
		}
	}
	return fmt.Errorf("ringo: open pinned map %s: %w", path, bpfError(err))
}

// mapInfo describes the map behind fd, what naming it in errors: a
// descriptor of another BPF object (a program, a link) or of no BPF object
// is refused, saying what it is.
func mapInfo(fd int, what string) (sys.MapInfo, error) {
	info, err := sys.GetMapInfo(fd)
	if err == nil {
		return info, nil
	}
	var nm *sys.NotMapError
	switch {
	case errors.As(err, &nm):
		return info, fmt.Errorf("ringo: %s is %w", what, err)
	case errors.Is(err, unix.EINVAL):
		return info, fmt.Errorf("ringo: %s is not a BPF map: %w", what, err)
	}
	return info, fmt.Errorf("ringo: %s: read map info: %w", what, bpfError(err))
}

func mapFDByID(id uint32) (int, string, error) {
	fd, err := sys.MapFDByID(id)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return -1, "", fmt.Errorf("ringo: open map id %d: no such map: %w", id, err)
		}
		return -1, "", fmt.Errorf("ringo: open map id %d: %w", id, bpfError(err))
	}
	return fd, fmt.Sprintf("map id %d", id), nil
}

// CreateKernelRing creates a BPF_MAP_TYPE_RINGBUF map with a data area of
// size bytes (a power of two, a multiple of the page size) and maps it. BPF
// programs can use it once it is given to them (for instance through a pin,
// or as a map replacement when loading a collection).
func CreateKernelRing(size int, name string) (*KernelRing, error) {
	if err := ValidateSize(int64(size)); err != nil {
		return nil, err
	}
	fd, err := sys.MapCreate(uint32(RingBuf), 0, 0, uint32(size), 0, name)
	if err != nil {
		return nil, fmt.Errorf("ringo: create ringbuf map %q: %w", name, bpfError(err))
	}
	return openKernelRing(fd, name)
}

// CreateKernelRingFromSpec creates a ring buffer map with the attributes of
// spec, flags included, and maps it. Unlike MapSpec.Validate it leaves
// FlagOverwrite to the kernel, which refuses it before mainline's
// BPF_F_RB_OVERWRITE: the error then says so.
func CreateKernelRingFromSpec(spec MapSpec, name string) (*KernelRing, error) {
	check := spec
	check.Flags &^= FlagOverwrite
	if err := check.Validate(); err != nil {
		return nil, err
	}
	if spec.Type != RingBuf {
		return nil, invalid("map type is %v: CreateKernelRingFromSpec makes ringbuf maps (for a user_ringbuf, CreateUserRing)", spec.Type)
	}
	fd, err := sys.MapCreate(uint32(RingBuf), 0, 0, spec.MaxEntries, spec.Flags, name)
	if err != nil {
		if spec.Flags&FlagOverwrite != 0 && errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("ringo: create ringbuf map %q with BPF_F_RB_OVERWRITE: this kernel refuses the flag (it came after Linux 6.18); a user-space ring has the same mode: NewFromSpec or WithOverwrite: %w", name, err)
		}
		return nil, fmt.Errorf("ringo: create ringbuf map %q: %w", name, bpfError(err))
	}
	return openKernelRing(fd, name)
}

var overwriteSupport struct {
	sync.Once
	ok bool
}

// KernelSupportsOverwrite reports whether the running kernel creates ring
// buffer maps with FlagOverwrite (BPF_F_RB_OVERWRITE), by creating (and
// closing) a one-page one, once per process. It reports false where BPF is
// not usable at all.
func KernelSupportsOverwrite() bool {
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
	info, err := mapInfo(fd, what)
	if err != nil {
		closeFD(fd)
		return nil, err
	}
	if t := MapType(info.Type); t != RingBuf {
		closeFD(fd)
		if t == UserRingBuf {
			return nil, fmt.Errorf("ringo: map %d (%s) is a user_ringbuf, which user space produces into: open it with a user ring writer, not as a ring to consume", info.ID, what)
		}
		return nil, fmt.Errorf("ringo: map %d (%s) is a %s map, not a ringbuf", info.ID, what, mapTypeName(info.Type))
	}
	if err := ValidateSize(int64(info.MaxEntries)); err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("ringo: map %d (%s): %w", info.ID, what, err)
	}
	size := int(info.MaxEntries)
	m, err := sys.MapKernelRing(fd, size, false)
	if err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("ringo: map %d (%s): %w", info.ID, what, bpfError(err))
	}
	mem := newKernelMemory(m, size)
	if info.Flags&FlagOverwrite != 0 {
		// The kernel keeps overwrite_pos at producer page offset 16, as
		// ringo's rings do, but no record counts: what the consumer loses
		// is counted in bytes only.
		mem.enableOverwrite(m, false)
	}
	return &KernelRing{mem: mem, mapping: m, fd: fd, info: info}, nil
}

// bpfError explains the errors every BPF call can give.
func bpfError(err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("%w: BPF needs CAP_BPF (with CAP_PERFMON for tracing programs) or root", err)
	}
	return err
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

// Overwrite reports whether the map was created with FlagOverwrite.
func (k *KernelRing) Overwrite() bool { return k.mem.overwritePos != nil }

// FD returns the map's descriptor, owned by the KernelRing.
func (k *KernelRing) FD() int { return k.fd }

// ID returns the map's ID.
func (k *KernelRing) ID() uint32 { return k.info.ID }

// Name returns the map's name.
func (k *KernelRing) Name() string { return k.info.Name }

// String describes the ring for records and errors.
func (k *KernelRing) String() string {
	return fmt.Sprintf("ringbuf %d (%s)", k.info.ID, k.info.Name)
}

// Size returns the size of the data area in bytes.
func (k *KernelRing) Size() int { return int(k.mem.size()) }

// Pin pins the map at path, inside a BPF file system, where bpftool and other
// processes find it.
func (k *KernelRing) Pin(path string) error {
	if err := sys.ObjPin(k.fd, path); err != nil {
		return fmt.Errorf("ringo: pin map %d at %s: %w", k.info.ID, path, bpfError(err))
	}
	return nil
}

// Query returns a property of the ring as bpf_ringbuf_query would, read
// from user space.
func (k *KernelRing) Query(p Prop) (uint64, error) { return k.mem.query(p) }

// Positions returns the consumer, producer and pending positions. The kernel
// keeps pending_pos right after producer_pos in the producer page, which
// user space maps read-only.
func (k *KernelRing) Positions() Positions { return k.mem.positions() }

func (k *KernelRing) ringMemory() *memory         { return k.mem }
func (k *KernelRing) pollFD() int                 { return k.fd }
func (k *KernelRing) notified()                   {}
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

// mapTypeName names the BPF map types (enum bpf_map_type) in errors.
func mapTypeName(t uint32) string {
	names := [...]string{"unspec", "hash", "array", "prog_array", "perf_event_array", "percpu_hash",
		"percpu_array", "stack_trace", "cgroup_array", "lru_hash", "lru_percpu_hash", "lpm_trie",
		"array_of_maps", "hash_of_maps", "devmap", "sockmap", "cpumap", "xskmap", "sockhash",
		"cgroup_storage", "reuseport_sockarray", "percpu_cgroup_storage", "queue", "stack",
		"sk_storage", "devmap_hash", "struct_ops", "ringbuf", "inode_storage", "task_storage",
		"bloom_filter", "user_ringbuf", "cgrp_storage", "arena"}
	if int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("type %d", t)
}
