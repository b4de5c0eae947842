//go:build amd64 && !race

package ringbuf

import (
	"sync/atomic"
	"unsafe"
)

// storeRelease stores v to *p with release ordering. Every amd64 store
// has it (TSO), and the compiler keeps the loads before it in order, so a
// plain store does: atomic.Store would add a full barrier (XCHG), which
// cilium/ebpf pays on every record.
func storeRelease(p *atomic.Uint64, v uint64) { *(*uint64)(unsafe.Pointer(p)) = v }
