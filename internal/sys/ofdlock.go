package sys

import (
	"golang.org/x/sys/unix"
)

// Open file description locks (F_OFD_SETLK) on single bytes of a file: the
// kernel drops such a lock when the last reference to the open file
// description goes, which for a process that dies is only once every one of
// its threads has exited and its mappings of the file are gone. Whether a
// byte is locked is therefore whether its holder can still run, whatever
// PID namespace it and the asker are in.

// TryLockByte takes a write lock on byte off of the file open as fd, without
// waiting. It reports false if another open file description holds it.
func TryLockByte(fd int, off int64) (bool, error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: off, Len: 1}
	switch err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk); err {
	case nil:
		return true, nil
	case unix.EAGAIN, unix.EACCES:
		return false, nil
	default:
		return false, err
	}
}

// ByteLocked reports whether an open file description other than fd's holds
// a lock on byte off of the file.
func ByteLocked(fd int, off int64) (bool, error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: off, Len: 1}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &lk); err != nil {
		return false, err
	}
	return lk.Type != unix.F_UNLCK, nil
}
