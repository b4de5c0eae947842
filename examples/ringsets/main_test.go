package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
)

func TestRingSetsExample(t *testing.T) {
	var out strings.Builder
	err := run(&out, 300)
	if errors.Is(err, os.ErrPermission) && os.Getenv("RINGO_REQUIRE_KERNEL") != "1" {
		t.Skip("BPF needs root here:", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	// Every CPU's events in its own ring; keys 0, 1, 2 each a third.
	for cpu := range runtime.NumCPU() {
		if want := fmt.Sprintf("ring of CPU %d: 300 events\n", cpu); !strings.Contains(out.String(), want) {
			t.Errorf("missing %q", want)
		}
	}
	for key := range 3 {
		if want := fmt.Sprintf("ring of key %d: %d events\n", key, 100*runtime.NumCPU()); !strings.Contains(out.String(), want) {
			t.Errorf("missing %q", want)
		}
	}
	t.Log(out.String())
}
