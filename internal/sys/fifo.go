package sys

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// FIFO is a named pipe used as a doorbell between processes: any process
// may open it and write a byte; the consumer polls it readable. Opened
// read-write and non-blocking by everyone, so that opening never waits for
// the other end and a write to a full pipe (the consumer has not looked for
// a while) fails quietly instead of blocking: the pipe is readable already.
type FIFO struct{ fd int }

// OpenFIFO opens the named pipe at path, creating it with mode perm if it
// does not exist.
func OpenFIFO(path string, perm uint32) (*FIFO, error) {
	if err := unix.Mkfifo(path, perm); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("mkfifo %s: %w", path, err)
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		unix.Close(fd)
		return nil, fmt.Errorf("%s is not a named pipe", path)
	}
	return &FIFO{fd: fd}, nil
}

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
