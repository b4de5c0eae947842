package ringo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo/internal/sys"
	"github.com/ringo-bpf/ringo/internal/waitfor"
)

// loadDrain loads drainProgram: main at instruction 0, the callback at 8.
func loadDrain(t testing.TB, userFD, outFD int, flags int32) *prog {
	return loadProgFuncs(t, drainProgram(userFD, outFD, flags), 0, 8)
}

// drained reads what the drain program's callback copied out.
func drained(t *testing.T, k *KernelRing) []uint64 {
	t.Helper()
	rd, err := NewReader(k)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var got []uint64
	rd.Consume(func(rec Record) error { got = append(got, le64(rec.Data)); return nil })
	return got
}

func TestUserRingDrainedByBPF(t *testing.T) {
	t.Run("locked", func(t *testing.T) { testUserRingDrainedByBPF(t) })
	t.Run("single", func(t *testing.T) { testUserRingDrainedByBPF(t, WithSingleProducer()) })
}

func testUserRingDrainedByBPF(t *testing.T, opts ...Option) {
	u := newUserRing(t, 4096, opts...)
	out := newKernelRing(t, 16384)
	drain := loadDrain(t, u.FD(), out.FD(), 0)

	for i := 0; i < 10; i++ {
		rec, err := u.Reserve(16)
		if err != nil {
			t.Fatal(err)
		}
		binary.LittleEndian.PutUint64(rec.Bytes(), uint64(i))
		if i == 3 {
			u.Discard(rec)
		} else {
			u.Commit(rec)
		}
	}
	// The layout is libbpf's: header len 16, pad 0, 24 bytes a record.
	if l, pad := binary.NativeEndian.Uint32(u.mapping.Data), binary.NativeEndian.Uint32(u.mapping.Data[4:]); l != 16 || pad != 0 {
		t.Fatalf("header %d %d", l, pad)
	}
	if n, d, err := u.Verify(); n != 9 || d != 1 || err != nil {
		t.Fatalf("Verify = %d, %d, %v", n, d, err)
	}
	if ret := drain.run(); ret != 9 {
		t.Fatalf("drain returned %d, want 9 (10 samples, 1 discarded)", ret)
	}
	got := drained(t, out)
	want := []uint64{0, 1, 2, 4, 5, 6, 7, 8, 9}
	if len(got) != len(want) {
		t.Fatalf("drained %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("drained %v, want %v", got, want)
		}
	}
	if p := u.Positions(); p.Consumer != p.Producer || p.Producer != 240 {
		t.Fatalf("positions after the drain %+v", p)
	}
	// A record the drain already passed cannot be submitted again.
	rec, _ := u.Reserve(16)
	u.Commit(rec)
	drain.run()
	if err := u.Commit(rec); !errors.Is(err, ErrNotReserved) {
		t.Fatalf("second Commit: %v", err)
	}
}

// The drain stops at a busy record and goes on once it is submitted.
func TestUserRingBusyRecordHoldsTheDrain(t *testing.T) {
	t.Run("locked", func(t *testing.T) { testUserRingBusyRecordHoldsTheDrain(t) })
	t.Run("single", func(t *testing.T) { testUserRingBusyRecordHoldsTheDrain(t, WithSingleProducer()) })
}

func testUserRingBusyRecordHoldsTheDrain(t *testing.T, opts ...Option) {
	u := newUserRing(t, 4096, opts...)
	out := newKernelRing(t, 4096)
	drain := loadDrain(t, u.FD(), out.FD(), 0)
	a, _ := u.Reserve(16)
	b, _ := u.Reserve(16)
	binary.LittleEndian.PutUint64(a.Bytes(), 1)
	binary.LittleEndian.PutUint64(b.Bytes(), 2)
	u.Commit(b)
	if ret := drain.run(); ret != 0 {
		t.Fatalf("drain past a busy record: %d", ret)
	}
	u.Commit(a)
	if ret := drain.run(); ret != 2 {
		t.Fatalf("drain after the submit: %d", ret)
	}
}

// A user ring fills to the last byte (unlike a kernel ring), ReserveWait
// waits for the BPF program's drain, and many goroutines may write at once.
func TestUserRingFullAndWait(t *testing.T) {
	u := newUserRing(t, 4096)
	out := newKernelRing(t, 1<<20)
	drain := loadDrain(t, u.FD(), out.FD(), 0)
	n := 0
	for {
		rec, err := u.Reserve(24) // 32 bytes a record
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		binary.LittleEndian.PutUint64(rec.Bytes(), ^uint64(0)) // not a writer's
		u.Commit(rec)
		n++
	}
	if n != 128 {
		t.Fatalf("%d records of 32 bytes fit in 4096 bytes, want 128", n)
	}
	if _, err := u.Reserve(0); !errors.Is(err, ErrFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Reserve in a full user ring: %v", err)
	}
	if _, err := u.Reserve(4096); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Reserve(4096): %v", err)
	}
	if _, err := u.Reserve(4088); !errors.Is(err, ErrFull) {
		t.Fatalf("Reserve(size-8) fits an empty user ring, so it is no space now: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	if _, err := u.ReserveWait(ctx, 8); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReserveWait on a full ring: %v", err)
	}
	cancel()

	// Writers block; a drain in the background frees space.
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				drain.run()
				time.Sleep(time.Millisecond)
			}
		}
	}()
	defer close(stop)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), waitfor.Long)
			defer cancel()
			for i := 0; i < 500; i++ {
				rec, err := u.ReserveWait(ctx, 16)
				if err != nil {
					errs <- fmt.Errorf("writer %d, record %d: ReserveWait, with a drain running: %w", g, i, err)
					return
				}
				binary.LittleEndian.PutUint64(rec.Bytes(), uint64(g)<<32|uint64(i))
				if err := u.Commit(rec); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	waitfor.Group(t, &wg, waitfor.Long, "the writers to write 500 records each")
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Every record the writers submitted reached the BPF program, each
	// goroutine's in order.
	waitfor.Until(t, waitfor.Short, "the drain program to drain the user ring", func() bool {
		p := u.Positions()
		return p.Consumer == p.Producer
	})
	next := map[uint64]uint64{}
	count := 0
	for _, v := range drained(t, out) {
		if v>>32 >= 4 {
			continue // the 128 records of the fill
		}
		g, i := v>>32, v&0xffffffff
		if i != next[g] {
			t.Fatalf("writer %d: record %d after %d", g, i, next[g])
		}
		next[g]++
		count++
	}
	if count != 2000 {
		t.Fatalf("the BPF program drained %d of 2000 records", count)
	}
}

// Malformed layouts (which Reserve and Submit never write, but another
// producer could) are refused by the kernel's drain exactly as Verify
// predicts.
func TestUserRingMalformedLayouts(t *testing.T) {
	for name, mangle := range map[string]func(u *UserRing){
		"unaligned producer position": func(u *UserRing) {
			u.mem.producerPos.Store(u.mem.producerPos.Load() + 4)
		},
		"record longer than published": func(u *UserRing) {
			u.mem.lenWord(24).Store(100) // the second record claims 100 bytes
		},
		"record longer than the ring": func(u *UserRing) {
			u.mem.producerPos.Store(8192) // publish everything...
			u.mem.lenWord(0).Store(5000)  // ...and claim more than the ring
		},
		"busy record": func(u *UserRing) {
			u.mem.lenWord(24).Store(16 | busyBit)
		},
		"discarded record": func(u *UserRing) {
			u.mem.lenWord(24).Store(16 | discardBit)
		},
	} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			u := newUserRing(t, 4096)
			out := newKernelRing(t, 4096)
			drain := loadDrain(t, u.FD(), out.FD(), 0)
			for i := 0; i < 3; i++ {
				rec, _ := u.Reserve(16)
				u.Commit(rec)
			}
			mangle(u)
			records, discarded, verr := u.Verify()
			ret := drain.run()
			var errno syscall.Errno
			switch {
			case errors.As(verr, &errno):
				if ret != -int32(errno) {
					t.Fatalf("Verify predicted %v, the drain returned %d", verr, ret)
				}
			case verr != nil:
				t.Fatalf("Verify: %v", verr)
			default:
				if ret != int32(records) {
					t.Fatalf("Verify predicted %d records (%d discarded), the drain returned %d", records, discarded, ret)
				}
			}
			t.Logf("drain returned %d; Verify said %d records, %d discarded, %v", ret, records, discarded, verr)
		})
	}
	t.Run("bad_flags", func(t *testing.T) {
		u := newUserRing(t, 4096)
		out := newKernelRing(t, 4096)
		if ret := loadDrain(t, u.FD(), out.FD(), 4).run(); ret != -int32(syscall.EINVAL) {
			t.Fatalf("drain with flags 4 returned %d", ret)
		}
	})
}

func TestUserRingErrors(t *testing.T) {
	k := newKernelRing(t, 4096)
	if _, err := OpenUserRing(k); err == nil || !strings.Contains(err.Error(), "is a ringbuf") {
		t.Fatalf("ringbuf as a user ring: %v", err)
	}
	u := newUserRing(t, 4096)
	v, err := OpenUserRing(u)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	rec, _ := v.Reserve(8)
	if err := u.Commit(rec); !errors.Is(err, ErrNotReserved) {
		t.Fatalf("Commit to the wrong writer: %v", err)
	}
	v.Commit(rec)
}

// TestUserRingSingleWriter: a user ring opened WithSingleProducer writes
// the same bytes as one that locks, refuses other options, and Close,
// racing the writer's reservations, never unmaps the memory under one.
func TestUserRingSingleWriter(t *testing.T) {
	locked, single := newUserRing(t, 1<<16), newUserRing(t, 1<<16, WithSingleProducer())
	if !single.single && sys.ProcessBarrierAvailable() {
		t.Fatal("WithSingleProducer did not make a single writer")
	}
	for i := 0; i < 300; i++ {
		for _, u := range []*UserRing{locked, single} {
			rec, err := u.Reserve(8 + i%5*8)
			if err != nil {
				t.Fatal(err)
			}
			binary.LittleEndian.PutUint64(rec.Bytes(), uint64(i))
			if i%7 == 3 {
				err = u.Discard(rec)
			} else {
				err = u.Commit(rec)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := u.Commit(rec); !errors.Is(err, ErrNotReserved) {
				t.Fatalf("second Commit: %v", err)
			}
		}
	}
	if string(locked.mapping.Data[:1<<16]) != string(single.mapping.Data[:1<<16]) || locked.Positions() != single.Positions() {
		t.Fatal("the single writer's ring differs from the locked one's")
	}
	if _, err := CreateUserRing("x", 4096, WithOverwrite()); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("CreateUserRing took WithOverwrite: %v", err)
	}

	// Close racing the writer's reservations: the writer sees ErrClosed,
	// never a fault (the ring fills, then refuses: nothing drains it).
	for round := 0; round < 20; round++ {
		u := newUserRing(t, 4096, WithSingleProducer())
		done := make(chan error)
		go func() {
			for {
				_, err := u.Reserve(16)
				if errors.Is(err, ErrClosed) {
					done <- nil
					return
				}
				if err != nil && !errors.Is(err, ErrFull) {
					done <- err
					return
				}
			}
		}()
		time.Sleep(time.Duration(round%4) * 100 * time.Microsecond)
		u.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
