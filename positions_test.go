package ringo

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Positions is one snapshot: for a healthy ring under load, the consumer
// (or overwrite) position is never past the producer's, and never more
// than the size behind it. Read consumer first and producer after, an
// overwrite ring showed 100.2% full: producers had moved both in between.
func TestPositionsSnapshot(t *testing.T) {
	for _, overwrite := range []bool{false, true} {
		var opts []Option
		if overwrite {
			opts = append(opts, WithOverwrite())
		}
		r, err := New(4096, opts...)
		if err != nil {
			t.Fatal(err)
		}
		rd, err := NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { // producer: as fast as it can
			defer wg.Done()
			buf := make([]byte, 40)
			for !stop.Load() {
				r.Output(buf, NoWakeup)
			}
		}()
		go func() { // consumer: takes what is there, in bursts
			defer wg.Done()
			for !stop.Load() {
				rd.Consume(func(Record) error { return nil })
			}
		}()
		deadline := time.Now().Add(300 * time.Millisecond)
		reads, size := 0, uint64(r.Size())
		for time.Now().Before(deadline) {
			for range 1000 {
				p := r.Positions()
				reads++
				from := p.Consumer
				if overwrite && int64(p.Overwrite-from) > 0 {
					from = p.Overwrite
				}
				if d := int64(p.Producer - from); d < 0 || uint64(d) > size {
					stop.Store(true)
					wg.Wait()
					t.Fatalf("overwrite %v: after %d reads, positions %+v: producer %d bytes past the consumer in a %d-byte ring", overwrite, reads, p, d, size)
				}
			}
		}
		stop.Store(true)
		wg.Wait()
		rd.Close()
		r.Close()
		t.Logf("overwrite %v: %d reads, all within the ring", overwrite, reads)
	}
}
