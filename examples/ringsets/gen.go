package main

// The BPF object and its Go loader (ringsets_bpfel.go, ringsets_bpfel.o)
// are committed. To rebuild them after changing ringsets.bpf.c, install
// clang, llvm and libbpf-dev (Debian: apt-get install clang llvm
// libbpf-dev) and run
//
//	go generate ./examples/ringsets
//
//go:generate sh -c "go tool bpf2go -target bpfel -cflags \"-O2 -g -Wall -Werror -I../../bpf -I/usr/include/$(uname -m)-linux-gnu\" ringsets ringsets.bpf.c"
