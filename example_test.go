package ringo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ringo-bpf/ringo"
)

// Produce records the way a BPF program does, and consume them.
func Example() {
	ring, err := ringo.New(64 * 1024) // a power of two, a multiple of the page size
	if err != nil {
		panic(err)
	}
	defer ring.Close()
	rd, err := ringo.NewReader(ring)
	if err != nil {
		panic(err)
	}
	defer rd.Close()

	// bpf_ringbuf_output: copy and commit.
	ring.Output([]byte("hello"), 0)

	// bpf_ringbuf_reserve + bpf_ringbuf_submit: write in place.
	res, _ := ring.Reserve(5)
	copy(res.Bytes(), "world")
	ring.Commit(res, 0)

	// Read blocks until a record arrives: give it a deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 2; i++ {
		rec, err := rd.Read(ctx)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s at position %d\n", rec.Data, rec.Pos)
	}
	// Output:
	// hello at position 0
	// world at position 16
}

// Consume hands out zero-copy views in batches without blocking.
func ExampleReader_Consume() {
	ring, _ := ringo.New(4096)
	defer ring.Close()
	rd, _ := ringo.NewReader(ring)
	defer rd.Close()

	for _, s := range []string{"a", "bb", "ccc"} {
		ring.Output([]byte(s), 0)
	}
	n, err := rd.Consume(func(rec ringo.Record) error {
		fmt.Println(string(rec.Data)) // valid only inside the callback
		return nil
	})
	fmt.Println(n, err)
	// Output:
	// a
	// bb
	// ccc
	// 3 <nil>
}

// ConsumeBatch hands a ring's records over at once; the loop over All is
// inlined into the caller's.
func ExampleReader_ConsumeBatch() {
	ring, _ := ringo.New(4096)
	defer ring.Close()
	rd, _ := ringo.NewReader(ring)
	defer rd.Close()

	for _, s := range []string{"a", "bb", "ccc", "dddd"} {
		ring.Output([]byte(s), 0)
	}
	total := 0
	n, err := rd.ConsumeBatch(func(src ringo.Source, b *ringo.Batch) error {
		for data := range b.All() { // no call per record
			if len(data) == 4 {
				break // "dddd" stays in the ring
			}
			total += len(data)
		}
		return nil
	})
	fmt.Println(n, total, err)
	n, _ = rd.ConsumeBatch(func(src ringo.Source, b *ringo.Batch) error {
		for data := range b.All() {
			fmt.Println(string(data), src == ring)
		}
		return nil
	})
	fmt.Println(n)
	// Output:
	// 3 6 <nil>
	// dddd true
	// 1
}

// Records is a Go iterator over records as they arrive.
func ExampleReader_Records() {
	ring, _ := ringo.New(4096)
	defer ring.Close()
	rd, _ := ringo.NewReader(ring)
	defer rd.Close()

	go func() {
		for i := 0; i < 3; i++ {
			ring.Output([]byte{byte('x' + i)}, 0)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n := 0
	for rec, err := range rd.Records(ctx) {
		if err != nil {
			panic(err)
		}
		fmt.Println(string(rec.Data))
		if n++; n == 3 {
			break
		}
	}
	// Output:
	// x
	// y
	// z
}

// Reserve and Discard: a record can be dropped after it was reserved; the
// consumer never sees it.
func ExampleRing_Discard() {
	ring, _ := ringo.New(4096)
	defer ring.Close()
	rd, _ := ringo.NewReader(ring)
	defer rd.Close()

	res, _ := ring.Reserve(8)
	ring.Discard(res, 0)
	ring.Output([]byte("kept"), 0)

	rd.Consume(func(rec ringo.Record) error {
		fmt.Println(string(rec.Data))
		return nil
	})
	// Output: kept
}

// A full ring is ErrFull, which also matches EAGAIN like bpf_ringbuf_output.
func ExampleErrFull() {
	ring, _ := ringo.New(4096)
	defer ring.Close()
	var err error
	n := 0
	for err == nil {
		if err = ring.Output(make([]byte, 100), 0); err == nil {
			n++
		}
	}
	fmt.Println(n, errors.Is(err, ringo.ErrFull))
	// Output: 36 true
}

// Query reads the properties bpf_ringbuf_query returns.
func ExampleRing_Query() {
	ring, _ := ringo.New(8192)
	defer ring.Close()
	ring.Output(make([]byte, 10), 0) // 8-byte header + 10, rounded up to 24

	avail, _ := ring.Query(ringo.AvailData)  // BPF_RB_AVAIL_DATA
	size, _ := ring.Query(ringo.RingSize)    // BPF_RB_RING_SIZE
	cons, _ := ring.Query(ringo.ConsumerPos) // BPF_RB_CONS_POS
	prod, _ := ring.Query(ringo.ProducerPos) // BPF_RB_PROD_POS
	fmt.Println(avail, size, cons, prod)
	// Output: 24 8192 0 24
}

// Invalid sizes are refused with the rule that failed and the nearest valid size.
func ExampleNew_invalidSize() {
	_, err := ringo.New(5000)
	fmt.Println(err)
	// Output: ringo: ring size 5000 is not a power of two: the nearest valid size is 4096: invalid argument
}

// With explicit release, records stay in the ring until released: a
// consumer that sends them on frees them only once the far side has them,
// and hands the rest out again when it fails.
func ExampleReader_Release() {
	ring, _ := ringo.New(4096)
	defer ring.Close()
	rd, _ := ringo.NewReader(ring)
	defer rd.Close()
	rd.SetExplicitRelease(true)

	for _, s := range []string{"a", "b", "c"} {
		ring.Output([]byte(s), 0)
	}
	var sent []ringo.Record
	rd.Consume(func(rec ringo.Record) error {
		sent = append(sent, ringo.Record{Source: rec.Source, Pos: rec.Pos, Data: bytes.Clone(rec.Data)})
		return nil
	})
	// The far side acknowledged "a" only.
	rd.Release(sent[0])
	fmt.Println("consumer_pos", ring.Positions().Consumer)
	rd.Rewind()
	rd.Consume(func(rec ringo.Record) error {
		fmt.Println("again:", string(rec.Data))
		return nil
	})
	// Output:
	// consumer_pos 16
	// again: b
	// again: c
}
