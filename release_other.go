//go:build !amd64

package ringo

import "sync/atomic"

// storeRelease stores v to *p with (at least) release ordering.
func storeRelease(p *atomic.Uint64, v uint64) { p.Store(v) }

// storeRelease32 stores v to *p with (at least) release ordering.
func storeRelease32(p *atomic.Uint32, v uint32) { p.Store(v) }
