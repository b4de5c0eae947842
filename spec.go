package ringo

import (
	"fmt"
	"math/bits"
	"syscall"

	"github.com/ringo-bpf/ringo/internal/bpfmap"
	"github.com/ringo-bpf/ringo/internal/sys"
)

// MapType is a BPF map type, as in enum bpf_map_type.
type MapType uint32

// The two ring buffer map types.
const (
	// RingBuf is BPF_MAP_TYPE_RINGBUF: BPF programs produce, user space
	// consumes.
	RingBuf MapType = 27
	// UserRingBuf is BPF_MAP_TYPE_USER_RINGBUF: user space produces, a BPF
	// program drains.
	UserRingBuf MapType = 31
)

// String names the type as bpftool does: "ringbuf", "user_ringbuf", "hash".
func (t MapType) String() string { return bpfmap.TypeName(uint32(t)) }

// Map flags a ring buffer accepts. The kernel's RINGBUF_CREATE_FLAG_MASK is
// BPF_F_NUMA_NODE alone (checked on Linux 6.18: every other bit is refused).
const (
	// FlagNUMANode is BPF_F_NUMA_NODE: place the ring on a given NUMA node.
	FlagNUMANode uint32 = 1 << 2
	// FlagOverwrite is BPF_F_RB_OVERWRITE: a ring that, when full,
	// overwrites its oldest committed records instead of refusing new
	// ones. Mainline kernels after 6.18 accept it for ringbuf maps; Linux
	// 6.18 refuses it (see KernelSupportsOverwrite). ringo's user-space and
	// shared rings have the same mode (WithOverwrite, NewFromSpec).
	FlagOverwrite uint32 = 1 << 19

	ringFlagMask = FlagNUMANode
)

// MapSpec mirrors the attributes of BPF_MAP_CREATE for a ring buffer map.
// Validate checks them as the kernel does.
type MapSpec struct {
	Type       MapType
	KeySize    uint32
	ValueSize  uint32
	MaxEntries uint32 // the data size in bytes
	Flags      uint32
}

// Validate reports whether the kernel would accept spec in BPF_MAP_CREATE,
// with the same rules in the same order as ringbuf_map_alloc: only the
// NUMA node flag, key and value size zero, max_entries a power of two and a
// multiple of the page size. Its errors wrap syscall.EINVAL, the kernel's
// answer, and say which rule failed.
func (s MapSpec) Validate() error {
	if s.Type != RingBuf && s.Type != UserRingBuf {
		return invalid("map type is %v, not ringbuf (27) or user_ringbuf (31)", s.Type)
	}
	if s.Flags&FlagOverwrite != 0 && s.Type == RingBuf {
		return invalid("map flag BPF_F_RB_OVERWRITE (%#x) is refused by Linux 6.18 and earlier (mainline kernels after 6.18 accept it): use a user-space ring in overwrite mode (NewFromSpec or WithOverwrite), or CreateKernelRingFromSpec on a kernel that has it", FlagOverwrite)
	}
	if extra := s.Flags &^ ringFlagMask; extra != 0 {
		return invalid("map flags %#x are not accepted by a %v map: only BPF_F_NUMA_NODE (%#x) is", extra, s.Type, FlagNUMANode)
	}
	if s.KeySize != 0 {
		return invalid("key size is %d: a %v map takes key size 0", s.KeySize, s.Type)
	}
	if s.ValueSize != 0 {
		return invalid("value size is %d: a %v map takes value size 0", s.ValueSize, s.Type)
	}
	return validateSize(int64(s.MaxEntries))
}

// validateSize reports whether size can be the data size of a ring: a power
// of two, a multiple of the page size, at most maxSize. The error wraps
// syscall.EINVAL and names the nearest valid size.
func validateSize(size int64) error {
	page := int64(sys.PageSize)
	switch {
	case size <= 0:
		return invalid("ring size %d is not positive: use a power of two of at least the page size, such as %d", size, page)
	case size > maxSize:
		return invalid("ring size %d is over the largest ring, %d (max_entries is a u32 power of two): use %d", size, int64(maxSize), int64(maxSize))
	case size&(size-1) != 0:
		return invalid("ring size %d is not a power of two: the nearest valid size is %d", size, nearestSize(size))
	case size%page != 0:
		return invalid("ring size %d is not a multiple of the page size (%d): the nearest valid size is %d", size, page, page)
	}
	return nil
}

// nearestSize is the valid ring size closest to size (the larger on a tie).
func nearestSize(size int64) int64 {
	page := int64(sys.PageSize)
	if size <= page {
		return page
	}
	if size >= maxSize {
		return maxSize
	}
	hi := int64(1) << bits.Len64(uint64(size))
	lo := hi / 2
	if size-lo < hi-size {
		return lo
	}
	return hi
}

// invalid returns an error that wraps syscall.EINVAL.
func invalid(format string, args ...any) error {
	return fmt.Errorf("ringo: "+format+": %w", append(args, syscall.EINVAL)...)
}
