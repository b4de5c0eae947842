package sys

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
)

// A process token names a process in a way that survives PID reuse: its PID
// in the high 32 bits and the low 32 bits of its start time (clock ticks
// since boot, from /proc/PID/stat) in the low ones. Zero names no process.

var self struct {
	once  sync.Once
	token uint64
}

// SelfToken returns this process's token.
func SelfToken() uint64 {
	self.once.Do(func() {
		pid := os.Getpid()
		start, _, err := processStart(pid)
		if err != nil {
			// /proc is not mounted: the PID alone still tells a dead
			// process from a live one, if not from its successor.
			start = 0
		}
		self.token = uint64(pid)<<32 | uint64(uint32(start))
	})
	return self.token
}

// Alive reports whether the process named by token still runs. A zombie
// (killed, not yet reaped) is dead: its memory is gone. A process whose
// liveness cannot be read (no /proc) is taken to be alive, so that nothing
// is ever recovered from under a live owner.
func Alive(token uint64) bool {
	pid := int(token >> 32)
	if pid <= 0 {
		return false
	}
	start, state, err := processStart(pid)
	if os.IsNotExist(err) {
		return false
	}
	if err != nil {
		return true
	}
	if state == 'Z' || state == 'X' {
		return false
	}
	return uint32(token) == 0 || uint32(start) == uint32(token)
}

// processStart reads the state and start time of process pid from
// /proc/PID/stat: "pid (comm) state ppid ... starttime" with starttime the
// 22nd field; comm may hold spaces and parentheses, so fields are counted
// from the last ')'.
func processStart(pid int) (start uint64, state byte, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	fields := bytes.Fields(b[i+1:])
	// fields[0] is the state (field 3); starttime is field 22.
	if len(fields) < 20 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields after comm", pid, len(fields))
	}
	start, err = strconv.ParseUint(string(fields[19]), 10, 64)
	return start, fields[0][0], err
}
