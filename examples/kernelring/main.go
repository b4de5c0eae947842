// Command kernelring loads BPF programs built with bpf2go (committed
// objects, no clang needed), hands their ring buffer maps to ringo and
// moves records both ways: BPF programs write events with every ring
// buffer helper and ringo reads them; ringo writes commands into a user
// ring buffer and a BPF program drains them. Run it as root (or with
// CAP_BPF):
//
//	sudo go run ./examples/kernelring
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/ringo-bpf/ringo"
)

func main() {
	log.SetFlags(0)
	if err := run(os.Stdout, 1000); err != nil {
		log.Fatal(err)
	}
}

// event mirrors struct event of ringbuf.bpf.c.
type event struct {
	Seq       uint64
	Kind      uint32
	Dropped   uint32
	AvailData uint64
	RingSize  uint64
	ConsPos   uint64
	ProdPos   uint64
}

func run(out io.Writer, count uint32) error {
	var objs ringbufObjects
	if err := loadRingbufObjects(&objs, nil); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("load BPF programs: %w (run as root, or with CAP_BPF)", err)
		}
		return fmt.Errorf("load BPF programs: %w", err)
	}
	defer objs.Close()

	// The BPF program's ring, consumed by ringo.
	events, err := ringo.OpenMap(objs.Events)
	if err != nil {
		return err
	}
	defer events.Close()
	rd, err := ringo.NewReader(events)
	if err != nil {
		return err
	}
	defer rd.Close()

	args := make([]byte, 24)
	binary.LittleEndian.PutUint32(args, count)
	if _, err := objs.Produce.Run(&ebpf.RunOptions{Context: args, ContextOut: args}); err != nil {
		return fmt.Errorf("run produce: %w", err)
	}
	written := binary.LittleEndian.Uint32(args[8:])
	discarded := binary.LittleEndian.Uint32(args[12:])
	dropped := binary.LittleEndian.Uint32(args[16:])

	kinds := map[uint32]int{}
	var last event
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var rec ringo.Record
	for i := uint32(0); i < written; i++ {
		if err := rd.ReadInto(ctx, &rec); err != nil {
			return fmt.Errorf("read event %d of %d: %w", i, written, err)
		}
		var e event
		if _, err := binary.Decode(rec.Data, binary.LittleEndian, &e); err != nil {
			return err
		}
		if e.Seq <= last.Seq && i > 0 {
			return fmt.Errorf("event %d after %d", e.Seq, last.Seq)
		}
		kinds[e.Kind]++
		last = e
	}
	if written+discarded+dropped != count {
		return fmt.Errorf("produce accounted for %d+%d+%d events of %d", written, discarded, dropped, count)
	}
	fmt.Fprintf(out, "produce: %d events written (%d by output, %d by reserve, %d by dynptr), %d discarded, %d dropped\n",
		written, kinds[0], kinds[1], kinds[2], discarded, dropped)
	fmt.Fprintf(out, "the last event saw: avail %d, size %d, consumer %d, producer %d\n",
		last.AvailData, last.RingSize, last.ConsPos, last.ProdPos)

	// ringo's writer, drained by a BPF program.
	commands, err := ringo.OpenUserRing(objs.Commands)
	if err != nil {
		return err
	}
	defer commands.Close()
	var want uint64
	for i := uint64(1); i <= 100; i++ {
		rec, err := commands.Reserve(8)
		if err != nil {
			return err
		}
		binary.LittleEndian.PutUint64(rec.Bytes(), i)
		if err := commands.Commit(rec); err != nil {
			return err
		}
		want += i
	}
	dargs := make([]byte, 16)
	if _, err := objs.DrainCommands.Run(&ebpf.RunOptions{Context: dargs, ContextOut: dargs}); err != nil {
		return fmt.Errorf("run drain_commands: %w", err)
	}
	drained := int64(binary.LittleEndian.Uint64(dargs))
	sum := binary.LittleEndian.Uint64(dargs[8:])
	fmt.Fprintf(out, "drain_commands: drained %d commands, sum %d (sent %d)\n", drained, sum, want)
	if drained != 100 || sum != want {
		return fmt.Errorf("the BPF program drained %d commands summing %d, want 100 summing %d", drained, sum, want)
	}
	return nil
}
