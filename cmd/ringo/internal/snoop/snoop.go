// Package snoop loads ringo's demo BPF programs: process execs and file
// opens, caught on raw tracepoints (no kprobes, no tracefs needed) and
// written into a BPF ring buffer for ringo to consume. The C source is
// snoop.bpf.c; bpf2go builds it (see gen.go).
package snoop

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/ringo-bpf/ringo"
	"github.com/ringo-bpf/ringo/internal/bpfmap"
	"golang.org/x/sys/unix"
)

// Kind is what an Event reports.
type Kind uint32

// The kinds of events, as enum kind of snoop.bpf.c.
const (
	Exec Kind = 1 // a process executed a program
	Open Kind = 2 // a process opened a file
)

func (k Kind) String() string {
	switch k {
	case Exec:
		return "exec"
	case Open:
		return "open"
	}
	return fmt.Sprintf("kind %d", uint32(k))
}

// Event is one record of the ring, decoded.
type Event struct {
	Kind  Kind
	PID   uint32 // process ID
	PPID  uint32 // parent process ID
	UID   uint32
	Flags int32 // open flags (O_*), for Open
	Time  time.Time
	Comm  string // the task's command name
	Path  string // the program (Exec) or file (Open)
	// PathErr is why Path could not be read (then empty): the error the
	// BPF program's read of it failed with, EFAULT for memory it could
	// not read even at the system call's end (the open itself failed
	// with EFAULT, then). 0 when Path was read.
	PathErr syscall.Errno
}

// PathOrError is Path, or what kept it from being read.
func (e Event) PathOrError() string {
	if e.PathErr != 0 {
		return fmt.Sprintf("(path unreadable: %s)", ErrnoName(e.PathErr))
	}
	return e.Path
}

// ErrnoName is the name of an errno, as EFAULT, or its number.
func ErrnoName(e syscall.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d", int(e))
}

// Layout of struct event.
const (
	commLen   = 16
	pathLen   = 256
	eventSize = 32 + commLen + pathLen
)

// Decode decodes a record of the snoop ring. The record comes from
// kernel memory a BPF program wrote, so its size is checked.
func Decode(b []byte) (Event, error) {
	if len(b) != eventSize {
		return Event{}, fmt.Errorf("snoop: record of %d bytes, want %d", len(b), eventSize)
	}
	le := binary.LittleEndian
	e := Event{
		Kind:  Kind(le.Uint32(b[0:])),
		PID:   le.Uint32(b[4:]),
		PPID:  le.Uint32(b[8:]),
		UID:   le.Uint32(b[12:]),
		Flags: int32(le.Uint32(b[16:])),
		Time:  bootTime(le.Uint64(b[24:])),
		Comm:  cString(b[32 : 32+commLen]),
		Path:  cString(b[32+commLen:]),
	}
	if n := int32(le.Uint32(b[20:])); n < 0 {
		e.PathErr = syscall.Errno(-n)
	}
	return e, nil
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// bootTime turns a CLOCK_MONOTONIC reading into wall-clock time.
func bootTime(ns uint64) time.Time {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	now := time.Now()
	return now.Add(-time.Duration(ts.Nano() - int64(ns)))
}

// Options chooses what a Snooper watches.
type Options struct {
	Exec, Open bool // the events to catch; both false means both
	// RingSize is the ring's data size in bytes (a power of two, a page
	// multiple); 0 keeps the program's 1 MiB.
	RingSize int
}

// A Snooper is the loaded programs, attached, and their ring.
type Snooper struct {
	objs  snoopObjects
	links []link.Link
	ring  *ringo.KernelRing
}

// Start loads and attaches the programs. It needs root, or CAP_BPF and
// CAP_PERFMON; without them the error says so.
func Start(opts Options) (*Snooper, error) {
	if !opts.Exec && !opts.Open {
		opts.Exec, opts.Open = true, true
	}
	spec, err := loadSnoop()
	if err != nil {
		return nil, fmt.Errorf("snoop: read the BPF object: %w", err)
	}
	if opts.RingSize != 0 {
		if err := (ringo.MapSpec{Type: ringo.RingBuf, MaxEntries: uint32(opts.RingSize)}).Validate(); err != nil {
			return nil, err
		}
		spec.Maps["events"].MaxEntries = uint32(opts.RingSize)
	}
	s := &Snooper{}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("snoop: loading BPF programs needs root, or the CAP_BPF and CAP_PERFMON capabilities (try sudo): %w", err)
		}
		return nil, fmt.Errorf("snoop: load BPF programs: %w", err)
	}
	attach := func(name string, prog *ebpf.Program) error {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: name, Program: prog})
		if err != nil {
			return fmt.Errorf("snoop: attach to raw tracepoint %s: %w", name, err)
		}
		s.links = append(s.links, l)
		return nil
	}
	if opts.Exec {
		err = attach("sched_process_exec", s.objs.OnExec)
	}
	if err == nil && opts.Open {
		// sys_exit reads the paths sys_enter could not (snoop.bpf.c).
		if err = attach("sys_exit", s.objs.OnSysExit); err == nil {
			err = attach("sys_enter", s.objs.OnSysEnter)
		}
	}
	if err == nil {
		s.ring, err = ringo.OpenMap(s.objs.Events)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Ring is the ring buffer the programs write events into.
func (s *Snooper) Ring() *ringo.KernelRing { return s.ring }

// Counts returns how many events the programs wrote, and how many they
// dropped because the ring was full (counted by bpf/ringo.h's
// RINGO_DROP_COUNTER, read through the ring's Loss).
func (s *Snooper) Counts() (events, drops uint64, err error) {
	if err := s.objs.Counters.Lookup(uint32(0), &events); err != nil {
		return 0, 0, fmt.Errorf("snoop: read counters: %w", err)
	}
	loss, err := s.ring.Loss()
	if err != nil {
		return 0, 0, err
	}
	if !loss.Counted {
		return 0, 0, fmt.Errorf("snoop: the drop counter %s of the ring was not found", bpfmap.DropCounterName("events"))
	}
	return events, loss.Dropped, nil
}

// Close detaches and unloads the programs. Close the Reader over Ring
// first.
func (s *Snooper) Close() error {
	var errs []error
	for _, l := range s.links {
		errs = append(errs, l.Close())
	}
	s.links = nil
	if s.ring != nil {
		errs = append(errs, s.ring.Close())
		s.ring = nil
	}
	errs = append(errs, s.objs.Close())
	return errors.Join(errs...)
}
