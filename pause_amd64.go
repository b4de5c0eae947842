package ringo

// cpuPause executes the PAUSE spin-wait hint n times (n > 0).
//
//go:noescape
func cpuPause(n uint32)
