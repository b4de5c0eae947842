//go:build !amd64 || race

package ringo

import "sync/atomic"

// storeRelease stores v to *p with (at least) release ordering. Under the
// race detector too: it would report amd64's plain store as a race with
// the atomic loads of the word (which it is, by the Go memory model, and
// harmless on amd64, whose stores are all release stores).
func storeRelease(p *atomic.Uint64, v uint64) { p.Store(v) }

// storeRelease32 is storeRelease for a 32-bit word.
func storeRelease32(p *atomic.Uint32, v uint32) { p.Store(v) }
