//go:build !amd64 || race

package ringbuf

import "sync/atomic"

// storeRelease stores v to *p with (at least) release ordering. Under the
// race detector too, which would report amd64's plain store as a race with
// the atomic loads of the word.
func storeRelease(p *atomic.Uint64, v uint64) { p.Store(v) }
