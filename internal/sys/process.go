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

// Alive reports whether the process named by token still runs. A process
// is dead once every one of its threads has exited: a zombie (killed, not
// yet reaped) whose thread group is empty. A thread group leader that has
// exited before the other threads is a zombie too while they still run
// (they may be in the middle of a reservation, holding the lock or writing
// a record), so a zombie with threads left is alive. A process whose
// liveness cannot be read (no /proc) is taken to be alive, so that nothing
// is ever recovered from under a live owner.
func Alive(token uint64) bool {
	pid := int(token >> 32)
	if pid <= 0 {
		return false
	}
	st, err := readStat(pid)
	if os.IsNotExist(err) {
		return false
	}
	if err != nil {
		return true
	}
	if uint32(token) != 0 && uint32(st.start) != uint32(token) {
		return false // the PID is another process's now
	}
	// The leader of an exiting group counts itself among its threads
	// until it is reaped: one thread left is the zombie leader alone.
	return !((st.state == 'Z' || st.state == 'X') && st.threads <= 1)
}

// processStart reads the start time and state of process pid.
func processStart(pid int) (start uint64, state byte, err error) {
	st, err := readStat(pid)
	return st.start, st.state, err
}

// procStat is what ringo reads of /proc/PID/stat.
type procStat struct {
	state   byte   // field 3
	threads uint64 // field 20, num_threads
	start   uint64 // field 22, starttime
}

// readStat reads /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold
// spaces and parentheses, so fields are counted from the last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	fields := bytes.Fields(b[i+1:])
	// fields[0] is field 3, so field N is fields[N-3].
	if len(fields) < 20 || len(fields[0]) != 1 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields after comm", pid, len(fields))
	}
	st := procStat{state: fields[0][0]}
	if st.threads, err = strconv.ParseUint(string(fields[17]), 10, 64); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: num_threads: %w", pid, err)
	}
	if st.start, err = strconv.ParseUint(string(fields[19]), 10, 64); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: starttime: %w", pid, err)
	}
	return st, nil
}
