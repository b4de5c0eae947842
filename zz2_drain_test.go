package ringo

import "testing"

type zzSink struct{ records, bytes, csum, bad uint64 }

func (s *zzSink) add(b []byte) {
	if len(b) < 16 {
		s.bad++
		return
	}
	head := uint64(b[0]) | uint64(b[1])<<8
	tail := uint64(b[len(b)-1])
	s.records++
	s.bytes += uint64(len(b))
	s.csum += head ^ tail + uint64(len(b))
}

func BenchmarkZZBatch(b *testing.B) {
	r, _ := New(32 << 20)
	defer r.Close()
	rd, _ := NewReader(r)
	defer rd.Close()
	p := make([]byte, 16)
	s := &zzSink{}
	fn := func(_ Source, bt *Batch) error {
		for data := range bt.All() {
			s.add(data)
		}
		return nil
	}
	recs := 0
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for {
			if err := r.Output(p, NoWakeup); err != nil {
				break
			}
		}
		ev := make([]byte, 64<<20)
		for i := 0; i < len(ev); i += 64 {
			ev[i] = 1
		}
		b.StartTimer()
		for {
			n, _ := rd.ConsumeBatch(fn)
			if n == 0 {
				break
			}
			recs += n
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(recs), "ns/rec")
}
