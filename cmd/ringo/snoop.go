package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/ringo-bpf/ringo"
	"github.com/ringo-bpf/ringo/cmd/ringo/internal/snoop"
)

var snoopCmd = &command{
	name:    "snoop",
	args:    "[--json] [--events exec,open] [--duration D] [--ring-size BYTES]",
	summary: "stream live process execs and file opens through a kernel ring buffer (needs root)",
	help: `snoop loads ringo's BPF programs (built with bpf2go, in cmd/ringo/internal/snoop) on
the raw tracepoints sched_process_exec and sys_enter (no kprobes, no tracefs),
and prints each event as the ring delivers it. On Ctrl-C (or after
--duration) it prints a summary: events read, events the BPF program dropped
because the ring was full, reader wake-ups, and the peak fill of the ring.

A path the BPF program could not read (user memory it may not fault in is
read again when the open returns, so this is rare: the open itself failed)
shows as "(path unreadable: EFAULT)".

--json prints one object per line: {"time", "type": "exec"|"open", "pid",
"ppid", "uid", "comm", and "filename" (exec) or "path" and "flags" (open),
and "filename_error" or "path_error" (an errno name such as "EFAULT") when
it could not be read}, then {"type": "summary", "events", "drops",
"wakeups", "peak_avail_data", "peak_fill", "seconds"}.`,
	define: func(fs *flag.FlagSet) func(*env, []string) error {
		asJSON := jsonFlag(fs)
		events := fs.String("events", "exec,open", "events to watch: exec, open, or both")
		duration := fs.Duration("duration", 0, "stop after this long (0: at Ctrl-C)")
		var size sizeValue
		fs.Var(&size, "ring-size", "ring buffer size (default 1M)")
		return func(e *env, args []string) error {
			if len(args) != 0 {
				return usagef("snoop takes no arguments, got %q", args[0])
			}
			var opts snoop.Options
			switch *events {
			case "exec":
				opts.Exec = true
			case "open":
				opts.Open = true
			case "exec,open", "open,exec", "all":
				opts.Exec, opts.Open = true, true
			default:
				return usagef("--events is exec, open or exec,open, not %q", *events)
			}
			opts.RingSize = int(size.n)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if *duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, *duration)
				defer cancel()
			}
			return runSnoop(ctx, e, opts, *asJSON)
		}
	},
}

// snoopEvent is an event in --json output: a contract.
type snoopEvent struct {
	Time     string `json:"time"`
	Type     string `json:"type"`
	PID      uint32 `json:"pid"`
	PPID     uint32 `json:"ppid"`
	UID      uint32 `json:"uid"`
	Comm     string `json:"comm"`
	Filename string `json:"filename,omitempty"`
	Path     string `json:"path,omitempty"`
	Flags    *int32 `json:"flags,omitempty"`
	// Why filename or path is missing: the errno name of the BPF
	// program's failed read.
	FilenameError string `json:"filename_error,omitempty"`
	PathError     string `json:"path_error,omitempty"`
}

// snoopSummary ends the output.
type snoopSummary struct {
	Type          string  `json:"type"` // "summary"
	Events        uint64  `json:"events"`
	Drops         uint64  `json:"drops"`
	Wakeups       uint64  `json:"wakeups"`
	PeakAvailData uint64  `json:"peak_avail_data"`
	PeakFill      float64 `json:"peak_fill"`
	Seconds       float64 `json:"seconds"`
}

func runSnoop(ctx context.Context, e *env, opts snoop.Options, asJSON bool) error {
	s, err := snoop.Start(opts)
	if err != nil {
		return err
	}
	defer s.Close()
	rd, err := ringo.NewReader(s.Ring())
	if err != nil {
		return err
	}
	defer rd.Close()
	// Events are flushed ten times a second, not one write each: at
	// thousands of opens a second that is most of the cost.
	w := &lockedWriter{w: bufio.NewWriter(e.stdout)}
	flushed := make(chan struct{})
	flushCtx, stopFlush := context.WithCancel(ctx)
	go func() {
		defer close(flushed)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-flushCtx.Done():
				return
			case <-t.C:
				w.Flush()
			}
		}
	}()
	defer func() { stopFlush(); <-flushed; w.Flush() }()
	if !asJSON {
		fmt.Fprintf(w, "%-8s %-5s %7s %7s %5s %-16s %s\n", "TIME", "TYPE", "PID", "PPID", "UID", "COMM", "FILE")
	}
	start := time.Now()
	sum := snoopSummary{Type: "summary"}
	size := uint64(s.Ring().Size())
	for rec, err := range rd.Records(ctx) {
		if err != nil {
			if ctx.Err() != nil {
				break // interrupted or --duration: the summary follows
			}
			return err
		}
		if a, err := s.Ring().Query(ringo.AvailData); err == nil && a > sum.PeakAvailData {
			sum.PeakAvailData = a
		}
		ev, err := snoop.Decode(rec.Data)
		if err != nil {
			return err
		}
		sum.Events++
		if err := printEvent(w, ev, asJSON); err != nil {
			return err
		}
	}
	_, drops, err := s.Counts()
	if err != nil {
		return err
	}
	sum.Drops = drops
	sum.Wakeups = rd.Wakeups()
	sum.PeakFill = float64(sum.PeakAvailData) / float64(size)
	sum.Seconds = time.Since(start).Seconds()
	if asJSON {
		return writeJSON(w, sum)
	}
	_, err = fmt.Fprintf(w, "\n%d events in %.1fs, %d dropped by the BPF program (ring full), %d wake-ups, peak fill %.1f%% of %s\n",
		sum.Events, sum.Seconds, sum.Drops, sum.Wakeups, 100*sum.PeakFill, human(size))
	return err
}

// lockedWriter is a buffered writer that a ticker flushes.
type lockedWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Flush()
}

func printEvent(w io.Writer, ev snoop.Event, asJSON bool) error {
	if asJSON {
		j := snoopEvent{Time: ev.Time.UTC().Format(time.RFC3339Nano), Type: ev.Kind.String(),
			PID: ev.PID, PPID: ev.PPID, UID: ev.UID, Comm: ev.Comm}
		var why string
		if ev.PathErr != 0 {
			why = snoop.ErrnoName(ev.PathErr)
		}
		if ev.Kind == snoop.Exec {
			j.Filename, j.FilenameError = ev.Path, why
		} else {
			j.Path, j.Flags, j.PathError = ev.Path, &ev.Flags, why
		}
		return writeJSON(w, j)
	}
	_, err := fmt.Fprintf(w, "%s %-5s %7d %7d %5d %-16s %s\n", ev.Time.Format("15:04:05"), ev.Kind, ev.PID, ev.PPID, ev.UID, ev.Comm, ev.PathOrError())
	return err
}
