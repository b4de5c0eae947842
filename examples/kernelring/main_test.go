package main

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestKernelRingExample(t *testing.T) {
	var out strings.Builder
	err := run(&out, 5000)
	if errors.Is(err, os.ErrPermission) && os.Getenv("RINGO_REQUIRE_KERNEL") != "1" {
		t.Skip("BPF needs root here:", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	// 5000 events of 56 bytes do not fit a 64 KiB ring read only at the
	// end: the program counts what the full ring refused.
	if !strings.Contains(out.String(), "dropped") || strings.Contains(out.String(), " 0 dropped") {
		t.Fatalf("expected drops with a full ring:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "drained 100 commands, sum 5050") {
		t.Fatalf("unexpected output:\n%s", out.String())
	}
	t.Log(out.String())
}
