package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The layout of a shared ring's file, as tests that write into it need it:
// the consumer page, the producer page, then the data area.
var (
	pageSize  = os.Getpagesize()
	dataStart = 2 * pageSize
)

// Offsets of the positions in the file.
var (
	consumerPosAt  = 0
	producerPosAt  = pageSize
	pendingPosAt   = pageSize + 8
	overwritePosAt = pageSize + 16
)

// mapRingFile maps the file at path read-write and shared, as a hostile
// process with access to it would, for the rest of the test.
func mapRingFile(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Munmap(b) })
	return b
}

func put64(b []byte, off int, v uint64) { binary.LittleEndian.PutUint64(b[off:], v) }
func get64(b []byte, off int) uint64    { return binary.LittleEndian.Uint64(b[off:]) }

// runWithin runs cmd like runCmd, but kills it and fails the test if it
// has not exited after d.
func runWithin(t testing.TB, d time.Duration, cmd *exec.Cmd) result {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v did not exit within %v; stdout %q, stderr %q", cmd.Args, d, out.String(), errOut.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", cmd.Args, err)
	}
	return result{out.String(), errOut.String(), code}
}

// within runs the command in dir like runRingo, bounded by 20 s.
func within(t testing.TB, dir string, args ...string) result {
	t.Helper()
	return runWithin(t, 20*time.Second, ringoCmd(dir, args...))
}

// okWithin is ok, bounded by 20 s.
func okWithin(t testing.TB, dir string, args ...string) string {
	t.Helper()
	r := within(t, dir, args...)
	if r.code != 0 {
		t.Fatalf("ringo %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// failsWithin is fails, bounded by 20 s.
func failsWithin(t testing.TB, dir string, code int, want string, args ...string) {
	t.Helper()
	failedWith(t, within(t, dir, args...), code, want, args)
}
