package sys

import (
	"golang.org/x/sys/unix"
)

// FIFO is a named pipe used as a doorbell between processes: any process
// may open it and write a byte; the consumer polls it readable. Opened
// read-write and non-blocking by everyone, so that opening never waits for
// the other end and a write to a full pipe (the consumer has not looked for
// a while) fails quietly instead of blocking: the pipe is readable already.
type FIFO struct{ fd int }

// NewFIFO wraps fd, a named pipe open read-write and non-blocking.
func NewFIFO(fd int) *FIFO { return &FIFO{fd: fd} }

// FD returns the descriptor to poll.
func (f *FIFO) FD() int { return f.fd }

var ding = []byte{1}

// Signal writes one byte, waking whoever polls the pipe.
func (f *FIFO) Signal() error {
	_, err := unix.Write(f.fd, ding)
	if err == unix.EAGAIN {
		return nil
	}
	return err
}

// Drain empties the pipe, so that the next Signal is a new edge for an
// edge-triggered poller even after many unread signals.
func (f *FIFO) Drain() error {
	var buf [256]byte
	for {
		n, err := unix.Read(f.fd, buf[:])
		if err == unix.EAGAIN || n < len(buf) && err == nil {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Close closes the descriptor.
func (f *FIFO) Close() error { return unix.Close(f.fd) }
