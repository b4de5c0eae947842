package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ringo-bpf/ringo"
	"github.com/ringo-bpf/ringo/internal/natstest"
)

// forward gives every ring a subject of its own and a valid one: kernel
// maps "fwd.a" and "fwd_a" were both published to k.fwd_a (as shared rings
// "w*" and "w>" were to one subject), and an unnamed map to "k.", which
// the server refuses: published again and again, for ever.
func TestForwardSubjects(t *testing.T) {
	requireKernel(t)
	srv := natstest.Start(t)
	srv.CreateStream("K", false, 0, "k.>")
	var targets []string
	want := map[string]int{} // subject: records
	for i, name := range []string{"fwd.a", "fwd_a", ""} {
		k, err := ringo.CreateKernelRing(name, 4096)
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		fd, err := syscall.Dup(k.FD())
		if err != nil {
			t.Fatal(err)
		}
		m, err := ebpf.NewMapFromFD(fd)
		if err != nil {
			t.Fatal(err)
		}
		prog := outputProgram(t, m)
		for range i + 1 {
			if ret, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, 14)}); err != nil || ret != 0 {
				t.Fatalf("output program: %d, %v", ret, err)
			}
		}
		m.Close()
		targets = append(targets, fmt.Sprintf("id:%d", k.ID()))
		want[map[string]string{"fwd.a": "k.fwd%2Ea", "fwd_a": "k.fwd_a", "": "k.%"}[name]] = i + 1
	}
	dir := t.TempDir()
	args := append(targets, "--nats", srv.URL(), "--subject", "k.{ring}", "--duration", "1s", "--json")
	st := decode[forwardJSON](t, okWithin(t, dir, append([]string{"forward"}, args...)...))
	if st.Forwarded != 6 || st.Failures != 0 {
		t.Fatalf("forward: %+v, want 6 records forwarded, no failures", st)
	}
	got := map[string]int{}
	for _, m := range srv.Messages("K") {
		got[m.Subject]++
		for h := range m.Header {
			if !strings.HasPrefix(h, "Ringo-") && h != "Nats-Msg-Id" {
				t.Errorf("message with an undocumented header %s", h)
			}
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("records per subject: %v, want %v", got, want)
	}

	// The help says what is sent: each header, and no other.
	help := okWithin(t, dir, "forward", "--help")
	sent := map[string]bool{}
	for _, m := range srv.Messages("K") {
		for h := range m.Header {
			sent[h] = true
			if !strings.Contains(help, h) {
				t.Errorf("forward --help does not name the header %s", h)
			}
		}
	}
	for _, w := range strings.Fields(strings.NewReplacer(",", " ", ".", " ", "(", " ", ")", " ").Replace(help)) {
		if strings.HasPrefix(w, "Ringo-") && !sent[w] {
			t.Errorf("forward --help names a header %s that is never sent", w)
		}
	}
	for _, s := range []string{"RINGKEY.POS", "base 36", "%2E"} {
		if !strings.Contains(help, s) {
			t.Errorf("forward --help does not say %q", s)
		}
	}
}
