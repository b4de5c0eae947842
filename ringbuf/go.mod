module github.com/ringo-bpf/ringo/ringbuf

go 1.26.0

require (
	github.com/cilium/ebpf v0.22.0
	github.com/ringo-bpf/ringo v0.0.0
	golang.org/x/sys v0.49.0
)

replace github.com/ringo-bpf/ringo => ../
