package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/ringo-bpf/ringo"
)

var peekCmd = &command{
	name:    "peek",
	args:    "TARGET [-n N] [--json|--hex|--raw]",
	summary: "print the records not consumed yet, without consuming them",
	help: `peek leaves the consumer position where it is: it works beside a running
consumer (records that it consumes meanwhile end the output) and on user
rings, whose records the kernel has not drained yet. It stops at a record
still being written.

--json prints one object per line: {"pos": N, "len": N, "data": "hex"}, pos being
the position of the record's header in the ring.`,
	define: func(fs *flag.FlagSet) func(*env, []string) error {
		open := recordFlags(fs, "print at most N records (0: all)")
		return func(e *env, args []string) error {
			f, n, t, err := open(args)
			if err != nil {
				return err
			}
			defer t.Close()
			w := bufio.NewWriter(e.stdout)
			defer w.Flush()
			seen := 0
			_, err = ringo.Peek(t.ring, func(rec ringo.Record) error {
				if n > 0 && seen == n {
					return errEnough
				}
				seen++
				return printRecord(w, f, rec)
			})
			if errors.Is(err, errEnough) {
				err = nil
			}
			return err
		}
	},
}

// recordFlags defines the flags peek and dump share, -n (described by
// nUsage) and the output format, and returns what checks them and opens
// the TARGET.
func recordFlags(fs *flag.FlagSet, nUsage string) func(args []string) (recordFormat, int, *target, error) {
	n := fs.Int("n", 0, nUsage)
	format := formatFlags(fs)
	return func(args []string) (recordFormat, int, *target, error) {
		f, err := format()
		if err != nil {
			return 0, 0, nil, err
		}
		if *n < 0 {
			return 0, 0, nil, usagef("-n must be 0 or more")
		}
		t, err := oneTarget(args)
		return f, *n, t, err
	}
}

// errEnough stops a walk once -n records are printed.
var errEnough = errors.New("enough records")

var dumpCmd = &command{
	name:    "dump",
	args:    "TARGET [-n N] [--follow] [--json|--hex|--raw]",
	summary: "consume records and print them (this MOVES the consumer position)",
	help: `dump is a consumer: the records it prints are gone from the ring, and a
program consuming the same ring will not see them. For a shared ring it
takes the consumer's place, and fails if another process consumes the ring.
Use peek to look without consuming. User rings are consumed by the kernel
(bpf_user_ringbuf_drain), not by dump.

Without --follow, dump prints what the ring held when it started (the
records below the producer position it found then) and exits, however fast
producers add more; with --follow it waits for more until Ctrl-C (or until
-n records).`,
	define: func(fs *flag.FlagSet) func(*env, []string) error {
		open := recordFlags(fs, "consume at most N records (0: all)")
		follow := fs.Bool("follow", false, "keep waiting for records until interrupted")
		fs.BoolVar(follow, "f", false, "short for --follow")
		return func(e *env, args []string) error {
			f, n, t, err := open(args)
			if err != nil {
				return err
			}
			defer t.Close()
			src, err := t.source()
			if err != nil {
				return err
			}
			rd, err := ringo.NewReader(src)
			if err != nil {
				return err
			}
			defer rd.Close()
			w := bufio.NewWriter(e.stdout)
			defer w.Flush()
			if !*follow {
				return drain(rd, w, f, n, t.ring.Positions().Producer)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			got := 0
			for rec, err := range rd.Records(ctx) {
				if err != nil {
					if ctx.Err() != nil {
						return nil // interrupted: done
					}
					return err
				}
				if err := printRecord(w, f, rec); err != nil {
					return err
				}
				// Flush as records come: someone is watching.
				if err := w.Flush(); err != nil {
					return err
				}
				if got++; got == n {
					break
				}
			}
			return nil
		}
	},
}

// drain consumes the records before position end (what the ring held when
// dump started), at most max records (0: all).
func drain(rd *ringo.Reader, w *bufio.Writer, f recordFormat, max int, end uint64) error {
	got := 0
	for {
		n, err := rd.Consume(func(rec ringo.Record) error {
			if max > 0 && got == max || int64(rec.Pos-end) >= 0 {
				return errEnough // stays in the ring
			}
			got++
			return printRecord(w, f, rec)
		})
		if errors.Is(err, errEnough) {
			return nil
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}
