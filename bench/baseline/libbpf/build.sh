#!/bin/sh
# Builds the libbpf baseline driver: sh build.sh [OUTPUT]
# OUTPUT (default ./ringo-libbpf-bench in this directory) is taken relative
# to the caller's working directory. Needs gcc and libbpf-dev.
set -eu
out=${1:-ringo-libbpf-bench}
case $out in
/*) ;;
*) [ -n "${1:-}" ] && out=$(pwd)/$out ;;
esac
cd "$(dirname "$0")"
exec gcc -O2 -Wall -Werror -o "$out" driver.c -lbpf
