// Command opensnoop prints the files processes open and the programs they
// execute, from BPF programs on raw tracepoints writing into a ring buffer
// map: the BPF object of `ringo snoop` (cmd/ringo/internal/snoop, built with
// bpf2go; no clang needed here), loaded with cilium/ebpf.
//
// It is written against cilium/ebpf's ringbuf package, and reads with
// ringo's drop-in for it: the import of ringbuf below is the only line
// that differs from the cilium/ebpf program (main_test.go builds both and
// runs them side by side). Run it as root:
//
//	go run ./example/opensnoop -match /etc/
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/ringo-bpf/ringo/ringbuf"
	"golang.org/x/sys/unix"
)

func main() {
	log.SetFlags(0)
	var o options
	flag.StringVar(&o.object, "object", defaultObject(), "the BPF object of ringo snoop")
	flag.StringVar(&o.match, "match", "", "print only events whose path contains this")
	flag.IntVar(&o.count, "n", 0, "stop after this many matching events (0: on SIGINT)")
	flag.BoolVar(&o.quiet, "quiet", false, "count events, print only the summary")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, o); err != nil {
		log.Fatal(err)
	}
}

type options struct {
	object string
	match  string
	count  int
	quiet  bool
	ready  func() // called once the programs are attached (tests)
}

// defaultObject is the snoop object of this source tree for this machine.
func defaultObject() string {
	_, file, _, _ := runtime.Caller(0)
	arch := map[string]string{"amd64": "x86", "arm64": "arm64"}[runtime.GOARCH]
	return filepath.Join(filepath.Dir(file), "../../../cmd/ringo/internal/snoop", "snoop_"+arch+"_bpfel.o")
}

// Layout of struct event of cmd/ringo/internal/snoop/snoop.bpf.c.
const (
	kindExec  = 1
	commLen   = 16
	eventSize = 32 + commLen + 256
)

func run(ctx context.Context, out io.Writer, o options) error {
	spec, err := ebpf.LoadCollectionSpec(o.object)
	if err != nil {
		return fmt.Errorf("read the BPF object: %w", err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return fmt.Errorf("load the BPF programs (root, or CAP_BPF and CAP_PERFMON): %w", err)
	}
	defer coll.Close()
	for prog, tp := range map[string]string{"on_exec": "sched_process_exec", "on_sys_enter": "sys_enter"} {
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: coll.Programs[prog]})
		if err != nil {
			return fmt.Errorf("attach to %s: %w", tp, err)
		}
		defer l.Close()
	}

	rd, err := ringbuf.NewReader(coll.Maps["events"])
	if err != nil {
		return fmt.Errorf("open the ring buffer: %w", err)
	}
	defer rd.Close()
	go func() {
		<-ctx.Done()
		rd.Close() // ends the loop below with ringbuf.ErrClosed
	}()
	fmt.Fprintln(os.Stderr, "opensnoop: tracing")
	if o.ready != nil {
		o.ready()
	}

	start := time.Now()
	var cpu0 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &cpu0)
	var rec ringbuf.Record
	events, matched := 0, 0
	for o.count == 0 || matched < o.count {
		if err := rd.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				break
			}
			return err
		}
		b := rec.RawSample
		if len(b) != eventSize {
			return fmt.Errorf("an event of %d bytes, want %d", len(b), eventSize)
		}
		events++
		path := cString(b[32+commLen:])
		if o.match != "" && !strings.Contains(path, o.match) {
			continue
		}
		matched++
		if !o.quiet {
			what := "open"
			if binary.LittleEndian.Uint32(b) == kindExec {
				what = "exec"
			}
			fmt.Fprintf(out, "%-7d %-16s %s %s\n", binary.LittleEndian.Uint32(b[4:]), cString(b[32:32+commLen]), what, path)
		}
	}
	elapsed := time.Since(start)
	var cpu1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &cpu1)
	cpu := time.Duration(cpu1.Utime.Nano() + cpu1.Stime.Nano() - cpu0.Utime.Nano() - cpu0.Stime.Nano())
	var dropped uint64
	var drops []struct{ Drops, Bytes uint64 } // per CPU (bpf/ringo.h's counter)
	if err := coll.Maps["events_drops"].Lookup(uint32(0), &drops); err == nil {
		for _, d := range drops {
			dropped += d.Drops
		}
	}
	fmt.Fprintf(out, "events %d matched %d dropped %d in %v, CPU %v (%.0f ns/event)\n",
		events, matched, dropped, elapsed.Round(time.Millisecond), cpu.Round(time.Millisecond), float64(cpu.Nanoseconds())/float64(max(events, 1)))
	return nil
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
