package main

import (
	"strings"
	"testing"

	"github.com/ringo-bpf/ringo/internal/waitfor"
)

func TestPipeline(t *testing.T) {
	var out strings.Builder
	done := make(chan error, 1)
	go func() {
		done <- run([]string{"-producers", "3", "-records", "20000", "-ring", "65536", "-size", "40"}, &out)
	}()
	if err := waitfor.Recv(t, done, waitfor.Long, "the pipeline to deliver every record"); err != nil {
		t.Fatal(err)
	}
	// 3 x 20000 records, every 100th odd one discarded: 600 of them.
	if !strings.Contains(out.String(), "delivered 59400 records (600 discarded") {
		t.Fatalf("unexpected report:\n%s", out.String())
	}
}

func TestPipelineRefusesBadSizes(t *testing.T) {
	var out strings.Builder
	if err := run([]string{"-size", "8"}, &out); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("-size 8: %v", err)
	}
	if err := run([]string{"-ring", "5000"}, &out); err == nil || !strings.Contains(err.Error(), "nearest valid size is 4096") {
		t.Fatalf("-ring 5000: %v", err)
	}
}
