package ringo

import "testing"

// TestGatherBatch: a cursor that finds only a record or two waits for more
// only while the producer moves on: one wait when producer_pos stays put
// (a producer that writes now and then is left at once), one more each
// time it moved, and never more than gatherSteps.
func TestGatherBatch(t *testing.T) {
	r := newRing(t, 4096)
	m := r.mem
	for _, tc := range []struct {
		name       string
		moves      int // the producer moves 8 bytes in each of the first moves waits
		wantSteps  int
		wantPassed uint64
	}{
		{"still", 0, 1, 0},
		{"moves three times", 3, 4, 24},
		{"never stops", 1 << 20, gatherSteps, gatherSteps * 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := m.producerPos.Load()
			steps := 0
			m.gatherStepped = func() {
				steps++
				if steps <= tc.moves {
					m.producerPos.Add(8)
				}
			}
			got := gatherBatch(m, start)
			if steps != tc.wantSteps || got != start+tc.wantPassed {
				t.Fatalf("gatherBatch waited %d times and returned producer_pos %d; want %d waits and %d", steps, got, tc.wantSteps, start+tc.wantPassed)
			}
		})
	}
}

// BenchmarkPause times the spin-wait steps the figures in gatherBatch's
// comment and the README quote: one gatherStep (0.2 µs on the AMD EPYC VM)
// and a whole gatherBatch wait on a producer that keeps moving
// (gatherSteps of them, the 1.6 µs the old fixed pause took every time).
func BenchmarkPause(b *testing.B) {
	b.Run("step", func(b *testing.B) {
		for b.Loop() {
			cpuPause(gatherStep)
		}
	})
	b.Run("gather", func(b *testing.B) {
		for b.Loop() {
			cpuPause(gatherSteps * gatherStep)
		}
	})
}
