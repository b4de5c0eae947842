//go:build amd64 && !race

package ringo

import (
	"sync/atomic"
	"unsafe"
)

// storeRelease stores v to *p with release ordering: stores before it are
// visible to whoever sees v. On amd64 every store has release ordering (TSO)
// and the Go compiler keeps stores in program order, so a plain store does;
// atomic.Store would add a full barrier (XCHG) that stalls the producer until
// its store buffer drains. Used only for words that one writer, holding the
// reservation lock, stores and others load atomically.
func storeRelease(p *atomic.Uint64, v uint64) {
	*(*uint64)(unsafe.Pointer(p)) = v
}

// storeRelease32 is storeRelease for a 32-bit word: a header's length word
// that only its record's producer writes.
func storeRelease32(p *atomic.Uint32, v uint32) {
	*(*uint32)(unsafe.Pointer(p)) = v
}
