// Command pipeline runs a user-space BPF ring buffer between goroutines:
// several producers write sequence-numbered records with the producer API
// of a BPF program (Output, Reserve/Commit/Discard), one Reader consumes
// them, checks that every committed record arrived once and in order, and
// prints what the ring did.
//
//	go run ./examples/pipeline -producers 4 -records 1000000
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"sync"
	"time"

	"github.com/ringo-bpf/ringo"
)

func main() {
	log.SetFlags(0)
	if err := run(os.Args[1:], os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("pipeline", flag.ContinueOnError)
	producers := fs.Int("producers", 4, "producer goroutines")
	records := fs.Int("records", 1_000_000, "records per producer")
	size := fs.Int("size", 64, "payload bytes per record (at least 16)")
	ringSize := fs.Int("ring", 1<<20, "ring size in bytes: a power of two, a multiple of the page size")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *size < 16 {
		return errors.New("-size must be at least 16: a record carries a producer id and a sequence number")
	}

	ring, err := ringo.New(*ringSize, ringo.WithName("pipeline"))
	if err != nil {
		return err
	}
	rd, err := ringo.NewReader(ring)
	if err != nil {
		return err
	}

	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	discarded := make([]int, *producers)
	for p := 0; p < *producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, *size)
			for seq := 0; seq < *records; seq++ {
				binary.LittleEndian.PutUint64(payload, uint64(p))
				binary.LittleEndian.PutUint64(payload[8:], uint64(seq))
				// A full ring makes the producers wait, like a channel
				// send: nothing is dropped.
				if seq%2 == 0 {
					if err := ring.OutputWait(ctx, payload, 0); err != nil {
						panic(err) // never, for a valid size and no deadline
					}
					continue
				}
				// Odd records are written in place; every 100th is discarded.
				res, err := ring.ReserveWait(ctx, *size)
				if err != nil {
					panic(err)
				}
				copy(res.Bytes(), payload)
				if seq%100 == 99 {
					ring.Discard(res, 0)
					discarded[p]++
				} else {
					ring.Commit(res, 0)
				}
			}
		}()
	}

	next := make([]uint64, *producers)
	got := 0
	go func() { wg.Wait(); rd.Close() }()
	for rec, err := range rd.Records(context.Background()) {
		if errors.Is(err, ringo.ErrClosed) {
			break
		}
		if err != nil {
			return err
		}
		p := binary.LittleEndian.Uint64(rec.Data)
		seq := binary.LittleEndian.Uint64(rec.Data[8:])
		if seq < next[p] {
			return fmt.Errorf("producer %d: record %d after %d", p, seq, next[p])
		}
		next[p] = seq + 1
		got++
	}
	// The producers are done: what is left in the ring is read after Close
	// by a fresh reader.
	rd2, err := ringo.NewReader(ring)
	if err != nil {
		return err
	}
	n, err := rd2.Consume(func(ringo.Record) error { return nil })
	if err != nil {
		return err
	}
	got += n
	elapsed := time.Since(start)
	rd2.Close()
	want := *producers * *records // the producers are done: discarded is final
	for _, d := range discarded {
		want -= d
	}

	fmt.Fprintf(out, "%d producers, %d records of %d bytes, ring of %d bytes\n", *producers, *producers**records, *size, *ringSize)
	fmt.Fprintf(out, "delivered %d records (%d discarded by their producers), %s, %.1f M records/s\n",
		got, *producers**records-want, elapsed.Round(time.Millisecond), float64(got)/elapsed.Seconds()/1e6)
	fmt.Fprintf(out, "reader woken: %d times\n", rd.Wakeups())
	if got != want {
		return fmt.Errorf("delivered %d records, want %d", got, want)
	}
	return ring.Close()
}
