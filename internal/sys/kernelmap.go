package sys

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// MapKernelRing maps the ring of a BPF ring buffer map, as libbpf's
// ring_buffer__add and user_ring_buffer__new do. The kernel lays the data
// pages out twice after the two position pages, so one mapping of
// PageSize + 2*size bytes at offset PageSize gives the producer page and the
// doubled data. A BPF_MAP_TYPE_RINGBUF lets user space write only the
// consumer page; a BPF_MAP_TYPE_USER_RINGBUF (userProduces) only the
// producer page and the data. The data is pre-faulted (MAP_POPULATE) so the
// first lap pays no page faults.
func MapKernelRing(fd int, size int, userProduces bool) (*Mapping, error) {
	page := PageSize
	consProt, prodProt := ReadWrite, ReadOnly
	if userProduces {
		consProt, prodProt = ReadOnly, ReadWrite
	}
	cons, err := unix.Mmap(fd, 0, page, consProt, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map consumer page: %w", err)
	}
	prod, err := unix.Mmap(fd, int64(page), page+2*size, prodProt, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		unix.Munmap(cons)
		return nil, fmt.Errorf("map producer page and data: %w", err)
	}
	return &Mapping{
		Consumer: cons[:page:page],
		Producer: prod[:page:page],
		Data:     prod[page : page+2*size : page+2*size],
		region:   cons,
		extra:    prod,
	}, nil
}
