package ringo

// cpuPause executes the PAUSE spin-wait hint n times (n > 0).
//
//go:noescape
func cpuPause(n uint32)

// prefetchWrite asks for the cache line at p in the exclusive state, ready
// to be written (PREFETCHW). It is a hint: it never faults, even on an
// address that is not mapped, and changes no memory.
//
//go:noescape
func prefetchWrite(p *byte)

// prefetchRead asks for the cache line at p, to be read (PREFETCHT0). A
// hint like prefetchWrite.
//
//go:noescape
func prefetchRead(p *byte)
