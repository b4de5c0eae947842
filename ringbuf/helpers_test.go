package ringbuf_test

import (
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// requireKernel skips a test that needs BPF when the kernel refuses it (not
// root, no BPF), unless RINGO_REQUIRE_KERNEL=1, under which it fails, as
// the root package's kernel tests do: CI sets it so that these tests can
// never pass by skipping.
func requireKernel(tb testing.TB) {
	tb.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: uint32(os.Getpagesize())})
	if err == nil {
		m.Close()
		return
	}
	msg := "BPF ring buffers are not available here (" + err.Error() + ")"
	if os.Getenv("RINGO_REQUIRE_KERNEL") == "1" {
		tb.Fatal(msg + " and RINGO_REQUIRE_KERNEL=1")
	}
	tb.Skip(msg + "; run as root, or set RINGO_REQUIRE_KERNEL=1 to make this a failure")
}
