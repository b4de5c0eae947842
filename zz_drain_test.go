package ringo

import "testing"

func BenchmarkZZDrain(b *testing.B) {
	r, _ := New(32 << 20)
	defer r.Close()
	rd, _ := NewReader(r)
	defer rd.Close()
	p := make([]byte, 16)
	var sum uint64
	fn := func(rec Record) error { sum += uint64(len(rec.Data)) + uint64(rec.Data[0]); return nil }
	b.ResetTimer()
	recs := 0
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for {
			if err := r.Output(p, NoWakeup); err != nil {
				break
			}
		}
		b.StartTimer()
		for {
			n, _ := rd.Consume(fn)
			if n == 0 {
				break
			}
			recs += n
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(recs), "ns/rec")
}
