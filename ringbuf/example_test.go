package ringbuf_test

import (
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/ringo-bpf/ringo/ringbuf"
)

// events stands for the ring buffer map of a loaded BPF collection (a
// bpf2go object's objs.Events, say).
var events *ebpf.Map

// Read records until another goroutine closes the reader: the loop of most
// programs written against cilium/ebpf's ringbuf, unchanged.
func ExampleReader() {
	rd, err := ringbuf.NewReader(events)
	if err != nil {
		log.Fatalf("open the ring buffer: %v", err)
	}
	go func() {
		time.Sleep(time.Second) // or: <-ctx.Done(), a signal, ...
		rd.Close()
	}()
	for {
		rec, err := rd.Read()
		if errors.Is(err, ringbuf.ErrClosed) {
			return
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d bytes, %d more in the ring\n", len(rec.RawSample), rec.Remaining)
	}
}

// ReadInto reuses one record's memory: no allocation per record once it is
// large enough.
func ExampleReader_ReadInto() {
	rd, err := ringbuf.NewReader(events)
	if err != nil {
		log.Fatal(err)
	}
	defer rd.Close()
	var rec ringbuf.Record
	for {
		if err := rd.ReadInto(&rec); err != nil {
			log.Fatal(err)
		}
		fmt.Println(len(rec.RawSample))
	}
}

// A deadline ends a wait; Flush makes a waiting read return what is in the
// ring (records written with BPF_RB_NO_WAKEUP, say) and then ErrFlushed.
func ExampleReader_Flush() {
	rd, err := ringbuf.NewReader(events)
	if err != nil {
		log.Fatal(err)
	}
	defer rd.Close()
	go func() {
		for range time.Tick(100 * time.Millisecond) {
			rd.Flush() // at least every 100ms, whatever the producers' flags
		}
	}()
	rd.SetDeadline(time.Now().Add(time.Minute))
	for {
		rec, err := rd.Read()
		switch {
		case errors.Is(err, ringbuf.ErrFlushed):
			continue // the ring was empty at the flush
		case errors.Is(err, os.ErrDeadlineExceeded):
			fmt.Println("a minute is up")
			return
		case err != nil:
			log.Fatal(err)
		}
		fmt.Println(len(rec.RawSample))
	}
}

// A lease reads samples in place, without copying, and frees their space
// in the ring once, with Commit, for a whole batch.
func ExampleRawReader_WithLease() {
	rr, err := ringbuf.NewRawReader(events)
	if err != nil {
		log.Fatal(err)
	}
	defer rr.Close()
	total := 0
	err = rr.WithLease(func(l ringbuf.Lease) error {
		for {
			data, remain, err := l.ReadSample()
			if err != nil {
				return err
			}
			total += len(data) // nil for a discarded sample
			if remain == 0 {
				break // the ring is empty: commit what was read
			}
		}
		l.Commit() // data must not be used from here on
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(total, "bytes")
}
