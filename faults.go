package ringo

import (
	"fmt"
	"runtime/debug"
)

// Faults of a shared ring's memory. Anyone who may write a shared ring's
// file may also truncate it; every access to the pages past its new end then
// raises SIGBUS, which Go makes a fatal error of, unless the goroutine asked
// for a panic instead (debug.SetPanicOnFault). The methods that touch a
// shared ring's memory ask for one while they run, and catchFault turns a
// panic whose address lies in a ring's mapping into an error wrapping
// ErrCorrupt; any other panic goes on. In-process and kernel rings cannot be
// truncated by others (an in-process ring's memory file is sealed, a kernel
// ring's pages are the kernel's), so their methods pay nothing for this.

// faulted is a memory fault's panic value (a runtime.Error).
type faulted interface{ Addr() uintptr }

// guardFaults makes a memory fault in this goroutine a panic and returns
// what the setting was, for catchFault.
func guardFaults() bool { return debug.SetPanicOnFault(true) }

// faultError restores the fault setting old and returns the error for a
// recovered panic p: the fault in a ring's memory (mine reports whether the
// address is in one of those rings' mappings), or nil for no panic. Any
// other panic is raised again.
func faultError(old bool, p any, mine func(uintptr) bool) error {
	debug.SetPanicOnFault(old)
	if p == nil {
		return nil
	}
	if f, ok := p.(faulted); ok && mine(f.Addr()) {
		return fmt.Errorf("%w: the ring's memory faulted at %#x (its file was truncated while mapped?): %v", ErrCorrupt, f.Addr(), p)
	}
	panic(p)
}

// catchFault is deferred by a method of a ring that called guardFaults.
func (v *ringMem) catchFault(old bool, err *error) {
	p := recover()
	if p == nil {
		debug.SetPanicOnFault(old)
		return
	}
	// (v.mapping only now: Close may be clearing it meanwhile.)
	*err = fmt.Errorf("ringo: ring %q: %w", v.label, faultError(old, p, v.mapping.Contains))
}

// catchFault is deferred by a Reader method that called guardFaults.
func (r *Reader) catchFault(old bool, err *error) {
	if e := faultError(old, recover(), r.mapped); e != nil {
		*err = e
	}
}

// mapped reports whether addr lies in the mapping of one of the Reader's
// shared rings.
func (r *Reader) mapped(addr uintptr) bool {
	for _, rr := range r.rings {
		if v := rr.src.ringView(); v.guarded && v.mapping.Contains(addr) {
			return true
		}
	}
	return false
}
