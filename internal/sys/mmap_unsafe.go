package sys

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// addr is the address of the first byte of b, which must be a mapping: it is
// only used to place further fixed mappings inside a reserved region.
func addr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// mmapFixed places a mapping at exactly at. x/sys/unix exposes no MAP_FIXED
// variant that takes an address, so this is the raw system call; the region
// it replaces was reserved by MapRing and stays owned by it.
func mmapFixed(at uintptr, length, prot, flags, fd int, off int64) error {
	r, _, errno := unix.Syscall6(unix.SYS_MMAP, at, uintptr(length), uintptr(prot), uintptr(flags), uintptr(fd), uintptr(off))
	if errno != 0 {
		return errno
	}
	if r != at {
		return unix.EINVAL
	}
	return nil
}
