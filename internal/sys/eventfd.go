package sys

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// EventFD is a counter in the kernel that polls readable while non-zero: the
// doorbell of a user-space ring and of a Poller's interruption.
type EventFD struct{ fd int }

// NewEventFD returns a non-blocking eventfd with a zero count.
func NewEventFD() (*EventFD, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &EventFD{fd: fd}, nil
}

// FD returns the descriptor to poll.
func (e *EventFD) FD() int { return e.fd }

var one = binary.NativeEndian.AppendUint64(nil, 1)

// Signal adds one to the count, waking whoever polls the descriptor. A count
// that is already at its maximum (EAGAIN) has readers pending anyway.
func (e *EventFD) Signal() error {
	_, err := unix.Write(e.fd, one)
	if err == unix.EAGAIN {
		return nil
	}
	return err
}

// Drain resets the count to zero.
func (e *EventFD) Drain() error {
	var buf [8]byte
	_, err := unix.Read(e.fd, buf[:])
	if err == unix.EAGAIN {
		return nil
	}
	return err
}

// Close closes the descriptor.
func (e *EventFD) Close() error { return unix.Close(e.fd) }
