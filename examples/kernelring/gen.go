package main

// The BPF objects and their Go loaders (ringbuf_bpfel.go, ringbuf_bpfel.o)
// are committed, so building and testing need no clang. To rebuild them
// after changing ringbuf.bpf.c, install clang, llvm and libbpf-dev
// (Debian: apt-get install clang llvm libbpf-dev) and run
//
//	go generate ./examples/kernelring
//
//go:generate sh -c "go tool bpf2go -target bpfel -cflags \"-O2 -g -Wall -Werror -I/usr/include/$(uname -m)-linux-gnu\" ringbuf ringbuf.bpf.c"
