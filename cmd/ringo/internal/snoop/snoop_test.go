package snoop

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"

	"github.com/ringo-bpf/ringo"
	"github.com/ringo-bpf/ringo/internal/waitfor"
	"golang.org/x/sys/unix"
)

func start(t *testing.T, opts Options) *Snooper {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		if os.Getenv("RINGO_REQUIRE_KERNEL") != "1" && os.Geteuid() != 0 {
			t.Skip("snoop needs root (RINGO_REQUIRE_KERNEL=1 makes this a failure):", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A ring nobody reads fills up; the BPF program counts every event the
// full ring refused, and what it wrote is all there, decodable.
func TestDropsAreCounted(t *testing.T) {
	s := start(t, Options{Open: true, RingSize: 4096})
	file := filepath.Join(t.TempDir(), "opened")
	os.WriteFile(file, nil, 0o644)
	for range 100 {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	// Other processes go on opening files: detach the programs, and wait
	// out the runs already under way (a global membarrier is an RCU grace
	// period, and BPF programs run inside RCU read-side sections), so that
	// what was written and what was counted stay put while they are read.
	for _, l := range s.links {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s.links = nil
	const membarrierCmdGlobal = 1 // MEMBARRIER_CMD_GLOBAL: synchronize_rcu()
	if _, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0); errno != 0 {
		t.Fatalf("membarrier(MEMBARRIER_CMD_GLOBAL): %v", errno)
	}
	events, drops, err := s.Counts()
	if err != nil {
		t.Fatal(err)
	}
	// 4096 bytes hold 13 records of 312 bytes; other processes' opens
	// may take some of them.
	if events > 13 || drops < 100-13 {
		t.Fatalf("%d events written and %d dropped, want at most 13 and at least 87", events, drops)
	}
	rd, err := ringo.NewReader(s.Ring())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var read uint64
	_, err = rd.Consume(func(rec ringo.Record) error {
		ev, err := Decode(rec.Data)
		if err != nil || ev.Kind != Open || ev.Comm == "" {
			t.Errorf("record %d: %+v, %v", read, ev, err)
		}
		read++
		return nil
	})
	if err != nil || read != events {
		t.Fatalf("read %d records (%v), the program counted %d", read, err, events)
	}
}

func TestDecodeChecksSize(t *testing.T) {
	if _, err := Decode(make([]byte, eventSize-1)); err == nil {
		t.Fatal("a short record decoded")
	}
	b := make([]byte, eventSize)
	b[0] = byte(Exec)
	copy(b[32:], "comm\x00junk")
	copy(b[48:], "/bin/x")
	ev, err := Decode(b)
	if err != nil || ev.Kind != Exec || ev.Comm != "comm" || ev.Path != "/bin/x" || ev.Kind.String() != "exec" || ev.PathErr != 0 || ev.PathOrError() != "/bin/x" {
		t.Fatalf("Decode = %+v, %v", ev, err)
	}
	// A path the program could not read: path_err holds -EFAULT.
	b = make([]byte, eventSize)
	b[0] = byte(Open)
	efault := int32(-int32(syscall.EFAULT))
	binary.LittleEndian.PutUint32(b[20:], uint32(efault))
	ev, err = Decode(b)
	if err != nil || ev.Path != "" || ev.PathErr != syscall.EFAULT || ev.PathOrError() != "(path unreadable: EFAULT)" {
		t.Fatalf("Decode of an unreadable path = %+v (%q), %v", ev, ev.PathOrError(), err)
	}
}

// TestPathsAreRead: an open whose path lies in a page the process has not
// touched yet (so the BPF program may not read it at sys_enter: it must not
// fault a page in) still reports its path, read again at sys_exit; and an
// open of memory nobody can read reports why its path is missing, EFAULT,
// rather than an empty path.
func TestPathsAreRead(t *testing.T) {
	s := start(t, Options{Open: true})
	rd, err := ringo.NewReader(s.Ring())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var retried0 uint64
	if err := s.objs.Counters.Lookup(uint32(1), &retried0); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	target := filepath.Join(dir, "opened-through-an-untouched-page")
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The path, NUL-terminated, in a file mapped and never touched: no
	// page of it is in this process's page tables when openat reads it.
	holder := filepath.Join(dir, "path")
	if err := os.WriteFile(holder, append([]byte(target), 0), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(holder)
	if err != nil {
		t.Fatal(err)
	}
	page, err := unix.Mmap(int(f.Fd()), 0, os.Getpagesize(), unix.PROT_READ, unix.MAP_PRIVATE)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(page)
	at := uintptr(unsafe.Pointer(unsafe.SliceData(page))) // not page[0]: that would touch it
	fdcwd := unix.AT_FDCWD
	atFDCWD := uintptr(fdcwd) // a negative int: not a constant conversion
	fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, atFDCWD, at, unix.O_RDONLY|unix.O_CLOEXEC, 0, 0, 0)
	if errno != 0 {
		t.Fatalf("openat through the mapped path: %v", errno)
	}
	unix.Close(int(fd))
	// And a path at an address nothing is mapped at: the open fails with
	// EFAULT, and so does every read of the path. Its flags tell it apart.
	const badFlags = unix.O_RDONLY | unix.O_NOCTTY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if _, _, errno := unix.Syscall6(unix.SYS_OPENAT, atFDCWD, 16, badFlags, 0, 0, 0); errno != unix.EFAULT {
		t.Fatalf("openat of address 16: %v, want EFAULT", errno)
	}

	var mapped, bad *Event
	pid := uint32(os.Getpid())
	waitfor.Until(t, waitfor.Short, "both opens to arrive from the ring", func() bool {
		_, err := rd.Consume(func(rec ringo.Record) error {
			ev, err := Decode(rec.Data)
			if err != nil {
				return err
			}
			if ev.Kind != Open || ev.PID != pid {
				return nil
			}
			if ev.Path == "" && ev.PathErr == 0 {
				t.Errorf("an open of this process with an empty path and no error: %+v", ev)
			}
			if ev.Path == target {
				mapped = &ev
			} else if ev.Flags == badFlags {
				bad = &ev
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return mapped != nil && bad != nil
	})
	if mapped.PathErr != 0 {
		t.Errorf("the open through an untouched page: %+v", *mapped)
	}
	if bad.Path != "" || bad.PathErr != syscall.EFAULT || bad.PathOrError() != "(path unreadable: EFAULT)" {
		t.Errorf("the open of an unmapped address: %+v, shown as %q; want no path and EFAULT", *bad, bad.PathOrError())
	}
	var retried uint64
	if err := s.objs.Counters.Lookup(uint32(1), &retried); err != nil {
		t.Fatal(err)
	}
	if retried < retried0+2 {
		t.Errorf("sys_exit read %d paths again, want both of these opens' at least", retried-retried0)
	}
}
