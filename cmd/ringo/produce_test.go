package main

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ringo-bpf/ringo"
)

// produce --size is checked against the ring before the buffer is made:
// --size 1024G died "out of memory" (and 1G made 1 GiB resident for a 4
// KiB ring) before the record was found too large.
func TestProduceSizeCheckedFirst(t *testing.T) {
	dir := t.TempDir()
	okWithin(t, dir, "create", "small", "--size", "4K")
	for _, size := range []string{"1024G", "1G", "4081"} {
		start := time.Now()
		failsWithin(t, dir, 1, "cannot fit in small, a 4 KiB ring: its records hold at most 4080 bytes", "produce", "small", "--count", "1", "--size", size)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("produce --size %s took %v to refuse", size, d)
		}
	}
	// The largest record fits.
	okWithin(t, dir, "produce", "small", "--count", "1", "--size", "4080")
	if show := decode[ringJSON](t, okWithin(t, dir, "show", "small", "--json")); show.ProducerPos != 4088 {
		t.Fatalf("after a 4080-byte record: %+v", show)
	}
	// A line longer than the largest record is refused, with its number.
	okWithin(t, dir, "create", "lines", "--size", "4K")
	p := ringoCmd(dir, "produce", "lines", "--stdin")
	p.Stdin = strings.NewReader("ok\n" + strings.Repeat("x", 4081) + "\n")
	if r := runWithin(t, 20*time.Second, p); r.code != 1 || !strings.Contains(r.stderr, "line 2 of standard input is longer than 4080 bytes") {
		t.Fatalf("produce --stdin of a long line: %+v", r)
	}
}

// produce --stdin splits at \n only: a \r is part of the record (it was
// dropped, as bufio.ScanLines does), and so is the last line without \n.
func TestProduceStdinKeepsCR(t *testing.T) {
	dir := t.TempDir()
	okWithin(t, dir, "create", "lines", "--size", "4K")
	p := ringoCmd(dir, "produce", "lines", "--stdin")
	p.Stdin = strings.NewReader("dos\r\n\r\nmid\rdle\n\nlast")
	if r := runWithin(t, 20*time.Second, p); r.code != 0 {
		t.Fatalf("produce --stdin: %+v", r)
	}
	var got []string
	for _, rec := range lines[recJSON](t, okWithin(t, dir, "peek", "lines", "--json")) {
		b, _ := hex.DecodeString(rec.Data)
		got = append(got, string(b))
	}
	if want := []string{"dos\r", "\r", "mid\rdle", "", "last"}; fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Fatalf("records %q, want %q", got, want)
	}
	if h := okWithin(t, dir, "produce", "--help"); !strings.Contains(h, `lines end at \n only`) {
		t.Errorf("produce --help does not say how lines are split:\n%s", h)
	}
}

// A user ring takes records up to its size minus the header.
func TestProduceUserRingLargest(t *testing.T) {
	requireKernel(t)
	u, err := ringo.CreateUserRing(4096, "cmd_largest")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	dir := t.TempDir()
	id := fmt.Sprintf("id:%d", u.ID())
	failsWithin(t, dir, 1, "its records hold at most 4088 bytes", "produce", id, "--count", "1", "--size", "1024G")
	okWithin(t, dir, "produce", id, "--count", "1", "--size", "4088")
}
