package sys

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// PageSize is the machine's page size, the unit of every ring mapping.
var PageSize = os.Getpagesize()

// Mapping is the memory of one ring: two position pages followed by the data
// pages mapped twice, back to back, so that a record that wraps past the end
// of the data area can still be read and written as one contiguous slice.
type Mapping struct {
	// Consumer and Producer are the two position pages.
	Consumer []byte
	Producer []byte
	// Data is the data area twice over: Data[i] and Data[i+size] are the same
	// byte of memory.
	Data []byte

	// region is the whole reservation, released by Unmap; a kernel ring
	// has a second mapping of its own, extra.
	region []byte
	extra  []byte
}

// Protections of a ring's pages. A kernel RINGBUF lets user space write only
// the consumer page; a USER_RINGBUF only the producer page and the data.
const (
	ReadOnly  = unix.PROT_READ
	ReadWrite = unix.PROT_READ | unix.PROT_WRITE
)

// MapRing maps a ring whose file fd holds the consumer page at offset 0, the
// producer page at offset PageSize and size bytes of data at offset
// 2*PageSize. consProt applies to the consumer page, prodProt to the producer
// page and to both views of the data. With populate, the data pages are
// pre-faulted so that the first lap pays no page faults.
//
// It reserves the whole span first, then places three fixed shared mappings
// inside it: position pages plus data, and the data again right after.
func MapRing(fd int, size int, consProt, prodProt int, populate bool) (*Mapping, error) {
	page := PageSize
	span := 2*page + 2*size
	region, err := unix.Mmap(-1, 0, span, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("reserve %d bytes of address space: %w", span, err)
	}
	m := &Mapping{region: region}
	flags := unix.MAP_SHARED | unix.MAP_FIXED
	if populate {
		flags |= unix.MAP_POPULATE
	}
	base := addr(region)
	steps := []struct {
		at, len, off, prot int
		what               string
	}{
		{0, page, 0, consProt, "consumer page"},
		{page, page + size, page, prodProt, "producer page and data"},
		{2*page + size, size, 2 * page, prodProt, "second view of the data"},
	}
	for _, s := range steps {
		if err := mmapFixed(base+uintptr(s.at), s.len, s.prot, flags, fd, int64(s.off)); err != nil {
			unix.Munmap(region)
			return nil, fmt.Errorf("map %s: %w", s.what, err)
		}
	}
	m.Consumer = region[:page:page]
	m.Producer = region[page : 2*page : 2*page]
	m.Data = region[2*page : span : span]
	return m, nil
}

// Unmap releases the mapping. The slices of m must not be used afterwards.
func (m *Mapping) Unmap() error {
	if m == nil || m.region == nil {
		return nil
	}
	err := unix.Munmap(m.region)
	if m.extra != nil {
		if err2 := unix.Munmap(m.extra); err == nil {
			err = err2
		}
	}
	m.region, m.extra, m.Consumer, m.Producer, m.Data = nil, nil, nil, nil, nil
	return err
}

// Retire replaces every page of the mapping with blank private anonymous
// memory, releasing the file's pages while keeping the addresses valid, so
// that a late access by another goroutine reads zeros instead of faulting.
// Unmap still releases the addresses.
func (m *Mapping) Retire() error {
	if m == nil || m.region == nil {
		return nil
	}
	err := mmapFixed(addr(m.region), len(m.region), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED|unix.MAP_NORESERVE, -1, 0)
	if err != nil {
		return fmt.Errorf("retire ring mapping: %w", err)
	}
	return nil
}

// MemFile creates an anonymous memory file of the given length, for a ring
// that lives in this process only.
func MemFile(name string, length int) (int, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(length)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("size memory file to %d bytes: %w", length, err)
	}
	// Its size is final: nobody who gets hold of the file (through
	// /proc/PID/fd) can truncate it under the mapping.
	unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL)
	return fd, nil
}

// Contains reports whether addr lies in the mapping.
func (m *Mapping) Contains(p uintptr) bool {
	if m == nil || m.region == nil {
		return false
	}
	base := addr(m.region)
	return p >= base && p-base < uintptr(len(m.region))
}
