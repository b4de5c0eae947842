package main

import (
	"bufio"
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
	args:    "TARGET [--count N --size BYTES | --stdin] [--json]",
	summary: "write records into a shared ring or a user_ringbuf map",
	help: `With --count and --size, each record starts with its sequence number (8 bytes,
little-endian; fewer when --size is under 8) and goes on with byte i&0xff at
offset i. With --stdin, each line of input is one record, without its newline.
A full ring is waited on until it has room (Ctrl-C stops); the number of
times it was found full is reported. Kernel ringbuf maps are written by BPF
programs only.`,
	define: func(fs *flag.FlagSet) func(*env, []string) error {
		count := fs.Int("count", 0, "number of records to write")
		var size sizeValue
		fs.Var(&size, "size", "payload bytes of each record (with --count)")
		stdin := fs.Bool("stdin", false, "write one record per line of standard input")
		asJSON := jsonFlag(fs)
		return func(e *env, args []string) error {
			switch {
			case *stdin && (*count != 0 || size.n != 0):
				return usagef("--stdin and --count/--size exclude each other")
			case !*stdin && *count <= 0:
				return usagef("give --count N (N > 0) and --size BYTES, or --stdin")
			}
			t, err := oneTarget(args)
			if err != nil {
				return err
			}
			defer t.Close()
			if t.kernel != nil {
				return fmt.Errorf("%s is a ringbuf map: only BPF programs produce into it; produce writes into shared rings and user_ringbuf maps", t.spec)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			p := producer{t: t, ctx: ctx}
			if *stdin {
				sc := bufio.NewScanner(e.stdin)
				sc.Buffer(make([]byte, 64*1024), t.ring().Size())
				for sc.Scan() {
					if err := p.write(sc.Bytes()); err != nil {
						return err
					}
				}
				if err := sc.Err(); err != nil {
					return fmt.Errorf("read standard input: %w (a line longer than the ring cannot be a record)", err)
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
				return writeJSON(e.stdout, map[string]uint64{"records": p.records, "bytes": p.bytes, "full": p.full})
			}
			_, err = fmt.Fprintf(e.stdout, "wrote %d records (%d bytes) into %s; found it full %d times\n", p.records, p.bytes, t.spec, p.full)
			return err
		}
	},
}

// producer writes records into a shared or user ring, waiting while it is
// full.
type producer struct {
	t                    *target
	ctx                  context.Context
	records, bytes, full uint64
}

func (p *producer) write(b []byte) error {
	for {
		var err error
		if p.t.user != nil {
			err = p.writeUser(b)
		} else {
			err = p.t.shared.Output(b, 0)
		}
		if err == nil {
			p.records++
			p.bytes += uint64(len(b))
			return nil
		}
		if !errors.Is(err, ringo.ErrFull) {
			return fmt.Errorf("record %d: %w", p.records, err)
		}
		p.full++
		select {
		case <-p.ctx.Done():
			return fmt.Errorf("interrupted after %d records while %s was full", p.records, p.t.spec)
		case <-time.After(time.Millisecond):
		}
	}
}

func (p *producer) writeUser(b []byte) error {
	rec, err := p.t.user.Reserve(len(b))
	if errors.Is(err, ringo.ErrNoSpace) {
		p.full++
		rec, err = p.t.user.ReserveWait(p.ctx, len(b))
		if p.ctx.Err() != nil {
			return fmt.Errorf("interrupted after %d records while %s was full", p.records, p.t.spec)
		}
	}
	if err != nil {
		return err
	}
	copy(rec.Bytes(), b)
	return p.t.user.Submit(rec)
}
