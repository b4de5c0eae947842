// Command ringsets shows ring sets from both sides: Go creates a ring per
// CPU and rings by key (ringo.CreateRingSet), hands the outer maps to a BPF
// program built with bpf2go (which picks its ring with bpf/ringo.h), and
// one Reader consumes every ring, telling each record's ring. Run it as
// root (or with CAP_BPF):
//
//	sudo go run ./examples/ringsets
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/ringo-bpf/ringo"
	"golang.org/x/sys/unix"
)

func main() {
	log.SetFlags(0)
	if err := run(os.Stdout, 1000); err != nil {
		log.Fatal(err)
	}
}

// asEbpfMap gives cilium/ebpf its own descriptor of a ringo map.
func asEbpfMap(fd int) (*ebpf.Map, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return ebpf.NewMapFromFD(dup)
}

// run emits perCPU events from every CPU, keyed 0, 1 and 2 in turn, and
// reports where they arrived.
func run(out io.Writer, perCPU int) error {
	perCPUSet, err := ringo.CreateRingSet(ringo.RingSetSpec{Name: "per_cpu", Size: 1 << 16})
	if err != nil {
		return err
	}
	defer perCPUSet.Close()
	byKey, err := ringo.CreateRingSet(ringo.RingSetSpec{Name: "by_key", Keyed: true, MaxKeys: 64, Size: 1 << 16})
	if err != nil {
		return err
	}
	defer byKey.Close()
	for key := range uint32(3) {
		if _, err := byKey.Add(key, 1<<16); err != nil {
			return err
		}
	}

	spec, err := loadRingsets()
	if err != nil {
		return err
	}
	// The object declares a one-ring array; the set has one per CPU.
	spec.Maps["per_cpu"].MaxEntries = uint32(len(perCPUSet.Keys()))
	m1, err := asEbpfMap(perCPUSet.FD())
	if err != nil {
		return err
	}
	defer m1.Close()
	m2, err := asEbpfMap(byKey.FD())
	if err != nil {
		return err
	}
	defer m2.Close()
	var objs ringsetsObjects
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{"per_cpu": m1, "by_key": m2}}
	if err := spec.LoadAndAssign(&objs, opts); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("load BPF program: %w (run as root, or with CAP_BPF)", err)
		}
		return fmt.Errorf("load BPF program: %w", err)
	}
	defer objs.Close()

	rd, err := ringo.NewReader()
	if err != nil {
		return err
	}
	defer rd.Close()
	if err := rd.AddSet(perCPUSet); err != nil {
		return err
	}
	if err := rd.AddSet(byKey); err != nil {
		return err
	}

	// Run the program on every CPU at once.
	cpus := runtime.NumCPU()
	var wg sync.WaitGroup
	errs := make(chan error, cpus)
	for cpu := range cpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				errs <- err
				return
			}
			// Socket filters see the packet after its 14-byte Ethernet header.
			pkt := make([]byte, 64)
			for i := range perCPU {
				binary.LittleEndian.PutUint32(pkt[14:], uint32(i%3))
				if _, err := objs.Emit.Run(&ebpf.RunOptions{Data: pkt}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("run program: %w", err)
	}

	// One reader, every ring: count where each record came from.
	fromCPURing := map[uint32]int{}
	fromKeyRing := map[uint32]int{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for got := 0; got < 2*cpus*perCPU; got++ {
		rec, err := rd.Read(ctx)
		if err != nil {
			return fmt.Errorf("after %d records: %w", got, err)
		}
		cpu := binary.LittleEndian.Uint32(rec.Data)
		key := binary.LittleEndian.Uint32(rec.Data[4:])
		if ring, ok := perCPUSet.Key(rec.Source); ok {
			if ring != cpu {
				return fmt.Errorf("an event of CPU %d in the ring of CPU %d", cpu, ring)
			}
			fromCPURing[ring]++
		} else if ring, ok := byKey.Key(rec.Source); ok {
			if ring != key {
				return fmt.Errorf("an event of key %d in the ring of key %d", key, ring)
			}
			fromKeyRing[ring]++
		}
	}
	report := func(what string, m map[uint32]int) {
		keys := make([]int, 0, len(m))
		for k := range m {
			keys = append(keys, int(k))
		}
		sort.Ints(keys)
		for _, k := range keys {
			fmt.Fprintf(out, "%s %d: %d events\n", what, k, m[uint32(k)])
		}
	}
	report("ring of CPU", fromCPURing)
	report("ring of key", fromKeyRing)
	return nil
}
