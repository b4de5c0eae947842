package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ringo-bpf/ringo"
)

var produceCmd = &command{
	name:    "produce",
	args:    "TARGET [--count N --size BYTES | --stdin] [--no-wait | --timeout D] [--json]",
	summary: "write records into a shared ring or a user_ringbuf map",
	help: `With --count and --size, each record starts with its sequence number (8 bytes,
little-endian; fewer when --size is under 8) and goes on with byte i&0xff at
offset i. With --stdin, each line of input is one record, without its
newline: lines end at \n only, so a \r before it (or anywhere) stays in the
record, and a last line without \n is a record too. A record holds at most
the ring's size minus 16 bytes (a shared ring) or minus 8 (a user_ringbuf);
a larger --size, or line, is an error before anything is written.
A full ring is waited on until the consumer makes room (sleeping: no CPU
is spent), as a channel send waits; Ctrl-C stops. With --timeout, a record
that cannot be written within that time ends the run with an error (exit
status 1). With --no-wait, records that find the ring full are dropped
rather than waited for: produce writes what fits, counts the rest as
dropped (and so does the ring's drop counter), and exits 0. Kernel ringbuf
maps are written by BPF programs only.`,
	define: func(fs *flag.FlagSet) func(*env, []string) error {
		count := fs.Int("count", 0, "number of records to write")
		var size sizeValue
		fs.Var(&size, "size", "payload bytes of each record (with --count)")
		stdin := fs.Bool("stdin", false, "write one record per line of standard input")
		noWait := fs.Bool("no-wait", false, "drop the records that find the ring full instead of waiting")
		timeout := fs.Duration("timeout", 0, "give up on a record that cannot be written in this time (exit 1)")
		asJSON := jsonFlag(fs)
		return func(e *env, args []string) error {
			switch {
			case *stdin && (*count != 0 || size.n != 0):
				return usagef("--stdin and --count/--size exclude each other")
			case !*stdin && *count <= 0:
				return usagef("give --count N (N > 0) and --size BYTES, or --stdin")
			case *noWait && *timeout != 0:
				return usagef("--no-wait and --timeout exclude each other: one drops at once, the other waits")
			case *timeout < 0:
				return usagef("--timeout %v: give a positive duration, such as 2s", *timeout)
			}
			t, err := oneTarget(args)
			if err != nil {
				return err
			}
			defer t.Close()
			if t.kernel != nil {
				return fmt.Errorf("%s is a ringbuf map: only BPF programs produce into it; produce writes into shared rings and user_ringbuf maps", t.spec)
			}
			largest := maxPayload(t)
			if !*stdin && size.n > largest {
				// Before the buffer is made: --size 1024G is a
				// mistake to point out, not memory to allocate.
				return fmt.Errorf("a record of %d bytes cannot fit in %s, a %s ring: its records hold at most %d bytes", size.n, cell(t.spec), human(uint64(t.ring.Size())), largest)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			p := producer{t: t, ctx: ctx, noWait: *noWait, timeout: *timeout}
			if *stdin {
				sc := bufio.NewScanner(e.stdin)
				sc.Buffer(make([]byte, min(64*1024, largest+1)), int(largest)+1)
				sc.Split(scanLines)
				for sc.Scan() {
					if err := p.write(sc.Bytes()); err != nil {
						return err
					}
				}
				if err := sc.Err(); err != nil {
					if errors.Is(err, bufio.ErrTooLong) {
						return fmt.Errorf("line %d of standard input is longer than %d bytes, the largest record of %s: %w", p.written+1, largest, cell(t.spec), err)
					}
					return fmt.Errorf("read standard input: %w", err)
				}
			} else {
				buf := make([]byte, size.n)
				for i := range buf {
					buf[i] = byte(i)
				}
				var seq [8]byte
				for i := 0; i < *count; i++ {
					binary.LittleEndian.PutUint64(seq[:], uint64(i))
					copy(buf, seq[:])
					if err := p.write(buf); err != nil {
						return err
					}
				}
			}
			if *asJSON {
				return writeJSON(e.stdout, map[string]uint64{"written": p.written, "bytes": p.bytes, "dropped": p.dropped})
			}
			dropped := ""
			if *noWait {
				dropped = fmt.Sprintf("; %d dropped: the ring was full", p.dropped)
			}
			_, err = fmt.Fprintf(e.stdout, "wrote %d records (%d bytes) into %s%s\n", p.written, p.bytes, t.spec, dropped)
			return err
		}
	},
}

// producer writes records into a shared or user ring: waiting while it is
// full (for at most timeout, if set), or, with noWait, dropping what does
// not fit.
type producer struct {
	t                       *target
	ctx                     context.Context
	noWait                  bool
	timeout                 time.Duration
	written, bytes, dropped uint64
}

func (p *producer) write(b []byte) error {
	ctx := p.ctx
	if p.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(p.ctx, p.timeout)
		defer cancel()
	}
	var err error
	switch {
	case p.t.user != nil:
		err = p.writeUser(ctx, b)
	case p.noWait:
		err = p.t.shared.Output(b, 0)
	default:
		err = p.t.shared.OutputWait(ctx, b, 0)
	}
	switch {
	case err == nil:
		p.written++
		p.bytes += uint64(len(b))
		return nil
	case p.noWait && errors.Is(err, ringo.ErrFull):
		p.dropped++
		return nil
	case p.ctx.Err() != nil:
		return fmt.Errorf("interrupted after %d records while %s was full", p.written, p.t.spec)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s stayed full for %v: record %d was not written (%d were); its consumer is slower than this, or gone", p.t.spec, p.timeout, p.written+1, p.written)
	}
	return fmt.Errorf("record %d: %w", p.written+1, err)
}

func (p *producer) writeUser(ctx context.Context, b []byte) error {
	var rec ringo.Reservation
	var err error
	if p.noWait {
		rec, err = p.t.user.Reserve(len(b))
		if errors.Is(err, ringo.ErrFull) {
			return ringo.ErrFull
		}
	} else {
		rec, err = p.t.user.ReserveWait(ctx, len(b))
	}
	if err != nil {
		return err
	}
	copy(rec.Bytes(), b)
	return p.t.user.Commit(rec)
}

// maxPayload is the largest record the target's ring takes: a shared ring
// keeps a record's header, rounded up to 8 bytes, below its size (as the
// kernel does), a user ring within it.
func maxPayload(t *target) int64 {
	size := int64(t.ring.Size())
	if t.user != nil {
		return size - ringo.HeaderSize
	}
	return size - 2*ringo.HeaderSize
}

// scanLines splits standard input into records at each \n, and nothing
// else (bufio.ScanLines drops a \r before it too).
func scanLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
