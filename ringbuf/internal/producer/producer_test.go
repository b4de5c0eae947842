package producer

import (
	"bytes"
	"os"
	"testing"

	"github.com/ringo-bpf/ringo"
)

// TestSmoke: both programs load and write the records Payload says.
func TestSmoke(t *testing.T) {
	m, err := NewRing(1 << 16)
	if err != nil {
		if os.Getenv("RINGO_REQUIRE_KERNEL") == "1" {
			t.Fatalf("%v and RINGO_REQUIRE_KERNEL=1", err)
		}
		t.Skipf("BPF ring buffers are not available here (%v); run as root, or set RINGO_REQUIRE_KERNEL=1 to make this a failure", err)
	}
	defer m.Close()
	p, err := Messages(m, Message{Size: 5}, Message{Size: 10, Discard: true}, Message{Size: 15, Output: true}, Message{Size: 24, Flags: NoWakeup})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if ret, err := Run(p, -1, 100); err != nil || ret != 0 {
		t.Fatal(ret, err)
	}
	l, err := Loop(m, 64, false, true)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if ret, err := Run(l, 0, 10, 0, 1000); err != nil || ret != 0 {
		t.Fatal(ret, err)
	}
	kr, _ := ringo.OpenMap(m)
	rd, _ := ringo.NewReader(kr)
	defer kr.Close()
	defer rd.Close()
	var got [][]byte
	rd.Consume(func(r ringo.Record) error { got = append(got, bytes.Clone(r.Data)); return nil })
	want := [][]byte{Payload(100, 5), Payload(102, 15), Payload(103, 24)}
	for i := range 10 {
		want = append(want, Payload(uint64(1000+i), 64))
	}
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("record %d: %x want %x", i, got[i], want[i])
		}
	}
}

func TestSeqOf(t *testing.T) {
	for _, s := range []uint64{0, 1, 77, 1 << 40, ^uint64(0) - 3} {
		if got := SeqOf(Payload(s, 8)); got != s {
			t.Errorf("SeqOf(Payload(%d)) = %d", s, got)
		}
	}
}
