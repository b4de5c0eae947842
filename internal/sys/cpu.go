package sys

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// PossibleCPUs returns how many CPUs the kernel may ever bring online, the
// number of slots a per-CPU structure needs: the highest CPU number in
// /sys/devices/system/cpu/possible, plus one.
func PossibleCPUs() (int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return 0, fmt.Errorf("possible CPUs: %w", err)
	}
	return parseCPUList(strings.TrimSpace(string(b)))
}

// parseCPUList reads a list like "0-3,5,7-8" and returns its highest CPU
// number plus one.
func parseCPUList(s string) (int, error) {
	n := -1
	for _, part := range strings.Split(s, ",") {
		last := part
		if i := strings.IndexByte(part, '-'); i >= 0 {
			last = part[i+1:]
		}
		v, err := strconv.Atoi(last)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("possible CPUs: cannot read %q", s)
		}
		n = max(n, v)
	}
	return n + 1, nil
}
