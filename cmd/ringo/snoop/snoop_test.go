package snoop

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ringo-bpf/ringo"
)

func start(t *testing.T, opts Options) *Snooper {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		if os.Getenv("RINGO_REQUIRE_KERNEL") != "1" && os.Geteuid() != 0 {
			t.Skip("snoop needs root:", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A ring nobody reads fills up; the BPF program counts every event the
// full ring refused, and what it wrote is all there, decodable.
func TestDropsAreCounted(t *testing.T) {
	s := start(t, Options{Open: true, RingSize: 4096})
	file := filepath.Join(t.TempDir(), "opened")
	os.WriteFile(file, nil, 0o644)
	for range 100 {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	events, drops, err := s.Counts()
	if err != nil {
		t.Fatal(err)
	}
	// 4096 bytes hold 13 records of 312 bytes; other processes' opens
	// may take some of them.
	if events > 13 || drops < 100-13 {
		t.Fatalf("%d events written and %d dropped, want at most 13 and at least 87", events, drops)
	}
	rd, err := ringo.NewReader(s.Ring())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var read uint64
	_, err = rd.Consume(func(rec ringo.Record) error {
		ev, err := Decode(rec.Data)
		if err != nil || ev.Kind != Open || ev.Comm == "" {
			t.Errorf("record %d: %+v, %v", read, ev, err)
		}
		read++
		return nil
	})
	if err != nil || read != events {
		t.Fatalf("read %d records (%v), the program counted %d", read, err, events)
	}
}

func TestDecodeChecksSize(t *testing.T) {
	if _, err := Decode(make([]byte, eventSize-1)); err == nil {
		t.Fatal("a short record decoded")
	}
	b := make([]byte, eventSize)
	b[0] = byte(Exec)
	copy(b[32:], "comm\x00junk")
	copy(b[48:], "/bin/x")
	ev, err := Decode(b)
	if err != nil || ev.Kind != Exec || ev.Comm != "comm" || ev.Path != "/bin/x" || ev.Kind.String() != "exec" {
		t.Fatalf("Decode = %+v, %v", ev, err)
	}
}
