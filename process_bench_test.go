package ringo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// BenchmarkProcessTransfer moves 64-byte records from one producer process
// to one consumer process (this one) through a shared ring and, side by side
// in the same run, through a Unix domain socket (SOCK_SEQPACKET, a message
// per record) and a pipe (a write per record; the consumer reads in bulk).
// Compare the records/s metrics.
func BenchmarkProcessTransfer(b *testing.B) {
	for _, kind := range []string{"ring", "seqpacket", "pipe"} {
		b.Run(kind+"/size=64", func(b *testing.B) { benchProcessTransfer(b, kind, 64) })
	}
}

func benchProcessTransfer(b *testing.B, kind string, size int) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	n := b.N
	cmd := exec.Command(exe)
	cmd.Stderr = os.Stderr
	var sum uint64
	var read func() error
	switch kind {
	case "ring":
		dir := b.TempDir()
		r, err := Create("bench", 1<<20, WithDir(dir))
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		rd, err := NewReader(r)
		if err != nil {
			b.Fatal(err)
		}
		defer rd.Close()
		cmd.Env = append(os.Environ(), fmt.Sprintf("RINGO_BENCH_PRODUCER=ring|%s|%d|%d", dir, n, size))
		read = func() error {
			got := 0
			for rec, err := range rd.Records(context.Background()) {
				if err != nil {
					return err
				}
				sum += uint64(rec.Data[0])
				if got++; got == n {
					break
				}
			}
			return nil
		}
	case "seqpacket":
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		mine, theirs := os.NewFile(uintptr(fds[0]), "seqpacket"), os.NewFile(uintptr(fds[1]), "seqpacket")
		defer mine.Close()
		cmd.ExtraFiles = []*os.File{theirs}
		defer theirs.Close()
		cmd.Env = append(os.Environ(), fmt.Sprintf("RINGO_BENCH_PRODUCER=fd|-|%d|%d", n, size))
		read = func() error {
			buf := make([]byte, size)
			for i := 0; i < n; i++ {
				if _, err := mine.Read(buf); err != nil {
					return err
				}
				sum += uint64(buf[0])
			}
			return nil
		}
	case "pipe":
		pr, pw, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		defer pr.Close()
		cmd.ExtraFiles = []*os.File{pw}
		defer pw.Close()
		cmd.Env = append(os.Environ(), fmt.Sprintf("RINGO_BENCH_PRODUCER=fd|-|%d|%d", n, size))
		read = func() error {
			br := bufio.NewReaderSize(pr, 1<<16)
			buf := make([]byte, size)
			for i := 0; i < n; i++ {
				if _, err := io.ReadFull(br, buf); err != nil {
					return err
				}
				sum += uint64(buf[0])
			}
			return nil
		}
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	if err := read(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if err := cmd.Wait(); err != nil {
		b.Fatal(err)
	}
	if want := uint64(n) * uint64(n-1) / 2 % 256; sum%256 != want%256 {
		// Record i carries byte(i): the sum of what arrived must match.
		b.Fatalf("checksum %d, want %d (mod 256)", sum%256, want)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// runBenchProducer is the producer process of BenchmarkProcessTransfer:
// "ring|dir|n|size" or "fd|-|n|size" (writing to fd 3).
func runBenchProducer(spec string) error {
	f := strings.Split(spec, "|")
	n, _ := strconv.Atoi(f[2])
	size, _ := strconv.Atoi(f[3])
	payload := make([]byte, size)
	switch f[0] {
	case "ring":
		r, err := Open("bench", WithDir(f[1]))
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			payload[0] = byte(i)
			for {
				err := r.Output(payload, 0)
				if err == nil {
					break
				}
				if !errors.Is(err, ErrFull) {
					return err
				}
				runtime.Gosched()
			}
		}
		return r.Close()
	default:
		out := os.NewFile(3, "out")
		for i := 0; i < n; i++ {
			payload[0] = byte(i)
			if _, err := out.Write(payload); err != nil {
				return err
			}
		}
		return out.Close()
	}
}
