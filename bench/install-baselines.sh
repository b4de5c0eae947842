#!/usr/bin/env bash
# Installs what the benchmark suite's baselines need on Debian or Ubuntu:
# gcc and libbpf-dev for the libbpf driver (built by `ringo bench` itself
# from bench/baseline/libbpf/driver.c), bpftool for the kernel tests.
# cilium/ebpf's readers come with `go build`. Does nothing when all is there.
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need=()
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v bpftool >/dev/null 2>&1 || need+=(bpftool)
[ -e /usr/include/bpf/libbpf.h ] || need+=(libbpf-dev)
if [ ${#need[@]} -gt 0 ]; then
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
mountpoint -q /sys/fs/bpf || as_root mount -t bpf bpf /sys/fs/bpf
