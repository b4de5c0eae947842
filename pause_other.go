//go:build !amd64

package ringo

import "sync/atomic"

// pauseSink is what cpuPause reads: a word of its own, so that pausing
// touches no cache line that producers write.
var pauseSink atomic.Uint32

// cpuPause waits for about n spin-wait steps.
func cpuPause(n uint32) {
	for range n * 8 {
		pauseSink.Load()
	}
}

// prefetchWrite is a hint that only amd64 implements.
func prefetchWrite(p *byte) {}

// prefetchRead is a hint that only amd64 implements.
func prefetchRead(p *byte) {}
