//go:build !amd64

package ringo

import "sync/atomic"

// storeRelease stores v to *p with (at least) release ordering.
func storeRelease(p *atomic.Uint64, v uint64) { p.Store(v) }
