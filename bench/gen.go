package bench

// The BPF objects and their Go loaders (producer_bpfel.go, producer_bpfel.o)
// are committed, so building and running the benchmarks need no clang. To
// rebuild them after changing producer.bpf.c, install clang, llvm and
// libbpf-dev (Debian: apt-get install clang llvm libbpf-dev) and run
//
//	go generate ./bench
//
//go:generate sh -c "go tool bpf2go -target bpfel -cflags \"-O2 -g -Wall -Werror -I/usr/include/$(uname -m)-linux-gnu -I../bpf\" producer producer.bpf.c"
