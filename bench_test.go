package ringo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
)

var benchSizes = []int{8, 64, 512, 4096}

// drainInline consumes everything with the given reader; the producer
// benchmarks call it when the ring is full, so they measure producing plus
// a zero-copy consume, with no second goroutine.
func drainInline(rd *Reader) {
	rd.Consume(func(Record) error { return nil })
}

func BenchmarkOutput(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			r := newRing(b, 1<<20)
			rd := newReader(b, r)
			payload := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				for {
					err := r.Output(payload, 0)
					if err == nil {
						break
					}
					if !errors.Is(err, ErrFull) {
						b.Fatal(err)
					}
					drainInline(rd)
				}
			}
		})
	}
}

func BenchmarkReserveCommit(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			r := newRing(b, 1<<20)
			rd := newReader(b, r)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				for {
					v, err := r.Reserve(size)
					if err == nil {
						v.Bytes()[0] = 1
						r.Commit(v, 0)
						break
					}
					if !errors.Is(err, ErrFull) {
						b.Fatal(err)
					}
					drainInline(rd)
				}
			}
		})
	}
}

// BenchmarkTransfer moves records from one producer goroutine to one
// consumer goroutine, through a ring and, side by side, through buffered
// channels of the same capacity in records carrying the same payloads: as
// fixed-size arrays by value (chan-array, the best a channel can do, but
// only for one record size) and as slices copied per record (chan-slice,
// what variable-length records over a channel cost: the producer's buffer
// is reused, so each record needs its own copy). ring is a ring any number
// of goroutines may produce into; ring-single one made WithSingleProducer,
// which this benchmark's one producer allows. Compare the records/s
// metrics in one run.
func BenchmarkTransfer(b *testing.B) {
	b.Run("ring/size=16", func(b *testing.B) { benchRingTransfer(b, 16) })
	b.Run("ring-single/size=16", func(b *testing.B) { benchRingTransfer(b, 16, WithSingleProducer()) })
	b.Run("chan-array/size=16", func(b *testing.B) { benchChanTransfer[[16]byte](b, 16) })
	b.Run("chan-slice/size=16", func(b *testing.B) { benchSliceChanTransfer(b, 16) })
	b.Run("ring/size=64", func(b *testing.B) { benchRingTransfer(b, 64) })
	b.Run("ring-single/size=64", func(b *testing.B) { benchRingTransfer(b, 64, WithSingleProducer()) })
	b.Run("chan-array/size=64", func(b *testing.B) { benchChanTransfer[[64]byte](b, 64) })
	b.Run("chan-slice/size=64", func(b *testing.B) { benchSliceChanTransfer(b, 64) })
	b.Run("ring/size=256", func(b *testing.B) { benchRingTransfer(b, 256) })
	b.Run("ring-single/size=256", func(b *testing.B) { benchRingTransfer(b, 256, WithSingleProducer()) })
	b.Run("chan-array/size=256", func(b *testing.B) { benchChanTransfer[[256]byte](b, 256) })
	b.Run("chan-slice/size=256", func(b *testing.B) { benchSliceChanTransfer(b, 256) })
}

func benchSliceChanTransfer(b *testing.B, size int) {
	ch := make(chan []byte, transferRingSize/int(recordSize(uint64(size))))
	done := make(chan uint64)
	n := b.N
	go func() {
		var sum uint64
		for i := 0; i < n; i++ {
			v := <-ch
			sum += uint64(v[0]) + uint64(v[len(v)-1])
		}
		done <- sum
	}()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	payload := make([]byte, size)
	var want uint64
	for i := 0; i < n; i++ {
		payload[0], payload[size-1] = byte(i), byte(i>>8)
		want += uint64(byte(i)) + uint64(byte(i>>8))
		ch <- bytes.Clone(payload)
	}
	if sum := <-done; sum != want {
		b.Fatalf("checksum %d, want %d", sum, want)
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

const transferRingSize = 1 << 20

func benchRingTransfer(b *testing.B, size int, opts ...Option) {
	r := newRing(b, transferRingSize, opts...)
	rd := newReader(b, r)
	payload := make([]byte, size)
	done := make(chan uint64)
	n := b.N
	go func() {
		var sum uint64
		got := 0
		for rec, err := range rd.Records(context.Background()) {
			if err != nil {
				panic(err)
			}
			sum += uint64(rec.Data[0]) + uint64(rec.Data[len(rec.Data)-1])
			if got++; got == n {
				break
			}
		}
		done <- sum
	}()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	var want uint64
	for i := 0; i < n; i++ {
		payload[0], payload[size-1] = byte(i), byte(i>>8)
		want += uint64(byte(i)) + uint64(byte(i>>8))
		for r.Output(payload, 0) != nil {
			runtime.Gosched()
		}
	}
	if sum := <-done; sum != want {
		b.Fatalf("checksum %d, want %d", sum, want)
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(rd.Wakeups())*1000/float64(n), "wakeups/krec")
}

func benchChanTransfer[T ~[16]byte | ~[64]byte | ~[256]byte](b *testing.B, size int) {
	ch := make(chan T, transferRingSize/int(recordSize(uint64(size))))
	done := make(chan uint64)
	n := b.N
	go func() {
		var sum uint64
		for i := 0; i < n; i++ {
			v := <-ch
			sum += uint64(v[0]) + uint64(v[size-1])
		}
		done <- sum
	}()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	var payload T
	var want uint64
	for i := 0; i < n; i++ {
		payload[0], payload[size-1] = byte(i), byte(i>>8)
		want += uint64(byte(i)) + uint64(byte(i>>8))
		ch <- payload
	}
	if sum := <-done; sum != want {
		b.Fatalf("checksum %d, want %d", sum, want)
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}
