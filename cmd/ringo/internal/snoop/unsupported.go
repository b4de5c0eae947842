//go:build !386 && !amd64 && !arm64

package snoop

import (
	"fmt"
	"runtime"

	"github.com/cilium/ebpf"
)

// snoopObjects stands in for bpf2go's output on architectures the BPF
// program has no system call table for.
type snoopObjects struct {
	OnExec, OnSysEnter *ebpf.Program
	Events, Counters   *ebpf.Map
}

func (o *snoopObjects) Close() error { return nil }

func loadSnoop() (*ebpf.CollectionSpec, error) {
	return nil, fmt.Errorf("snoop supports amd64 and arm64, not %s", runtime.GOARCH)
}
