package snoop

// The BPF objects and their Go loaders (snoop_x86_bpfel.go and .o,
// snoop_arm64_bpfel.go and .o) are committed, so building ringo needs no
// clang. To rebuild them after changing snoop.bpf.c, install clang, llvm
// and libbpf-dev (Debian: apt-get install clang llvm libbpf-dev) and run
//
//	go generate ./cmd/ringo/internal/snoop
//
//go:generate sh -c "go tool bpf2go -target amd64,arm64 -cflags \"-O2 -g -Wall -Werror -I/usr/include/$(uname -m)-linux-gnu -I../../../../bpf\" snoop snoop.bpf.c"
