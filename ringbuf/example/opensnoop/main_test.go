package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// requireKernel skips when BPF is unavailable, unless RINGO_REQUIRE_KERNEL=1.
func requireKernel(t *testing.T) {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: uint32(os.Getpagesize())})
	if err == nil {
		m.Close()
		return
	}
	msg := "BPF is not available here (" + err.Error() + ")"
	if os.Getenv("RINGO_REQUIRE_KERNEL") == "1" {
		t.Fatal(msg + " and RINGO_REQUIRE_KERNEL=1")
	}
	t.Skip(msg)
}

// opens opens path n times.
func opens(t *testing.T, path string, n int) {
	for range n {
		fd, err := unix.Open(path, unix.O_RDONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		unix.Close(fd)
	}
}

// TestOpensnoop: the tracer, reading with the drop-in, sees every open of
// a file of the test's.
func TestOpensnoop(t *testing.T) {
	requireKernel(t)
	path := filepath.Join(t.TempDir(), "opensnoop-probe")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, &out, options{object: defaultObject(), match: path, count: 100, ready: func() { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	case <-ctx.Done():
		t.Fatal("the tracer did not attach within 30s")
	}
	opens(t, path, 100)
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		cancel() // some were dropped (see below): stop it
		err = <-done
	}
	if err != nil {
		t.Fatal(err)
	}
	text := strings.TrimSpace(out.String())
	summary := text[strings.LastIndex(text, "\n")+1:]
	var events, matched, dropped int
	if _, err := fmt.Sscanf(summary, "events %d matched %d dropped %d", &events, &matched, &dropped); err != nil {
		t.Fatalf("summary %q: %v", summary, err)
	}
	printed := strings.Count(text, " open "+path+"\n")
	if printed != matched || (matched != 100 && matched+dropped < 100) {
		t.Fatalf("%d opens of %s printed, %s: want 100, or the missing ones dropped by the full ring:\n%s", printed, path, summary, text)
	}
	t.Log(summary)
}

// TestSwitchedByImport: the same source with cilium/ebpf's import path in
// place of the drop-in's (the only line changed) builds and traces the
// same opens; both binaries run in turn on the same load, and their CPU
// per event is logged.
func TestSwitchedByImport(t *testing.T) {
	requireKernel(t)
	if testing.Short() {
		t.Skip("builds two programs")
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	const ours, theirs = `"github.com/ringo-bpf/ringo/ringbuf"`, `"github.com/cilium/ebpf/ringbuf"`
	if bytes.Count(src, []byte(ours)) != 1 {
		t.Fatalf("main.go imports %s %d times, want once", ours, bytes.Count(src, []byte(ours)))
	}
	cil := bytes.Replace(src, []byte(ours), []byte(theirs), 1)

	dir := t.TempDir()
	gosum, err := os.ReadFile("../../go.sum")
	if err != nil {
		t.Fatal(err)
	}
	gomod := "module opensnoop\n\ngo 1.26.0\n\nrequire (\n\tgithub.com/cilium/ebpf v0.22.0\n\tgolang.org/x/sys v0.49.0\n)\n"
	for name, data := range map[string][]byte{"main.go": cil, "go.mod": []byte(gomod), "go.sum": gosum} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bins := map[string]string{"cilium": filepath.Join(dir, "opensnoop-cilium"), "ringo": filepath.Join(dir, "opensnoop-ringo")}
	build := func(name, in, pkg string) {
		cmd := exec.Command("go", "build", "-o", bins[name], pkg)
		cmd.Dir = in
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build the %s variant: %v\n%s", name, err, out)
		}
	}
	build("cilium", dir, ".")
	build("ringo", ".", ".")

	path := filepath.Join(t.TempDir(), "opensnoop-probe")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	const n = 50000
	for _, name := range []string{"cilium", "ringo"} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, bins[name], "-object", defaultObject(), "-match", path, "-n", fmt.Sprint(n), "-quiet")
		stderr, _ := cmd.StderrPipe()
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stderr)
		for sc.Scan() && sc.Text() != "opensnoop: tracing" {
		}
		opens(t, path, n)
		go func() {
			for sc.Scan() {
			}
		}()
		// It stops by itself after n events; if the full ring refused
		// some (a busy machine opens files too), it stops on SIGINT.
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		var err error
		select {
		case err = <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Signal(os.Interrupt)
			err = <-exited
		}
		cancel()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out.String())
		}
		summary := strings.TrimSpace(out.String())
		var events, matched, dropped int
		if _, err := fmt.Sscanf(summary, "events %d matched %d dropped %d", &events, &matched, &dropped); err != nil {
			t.Fatalf("%s: summary %q: %v", name, summary, err)
		}
		if matched != n && (matched > n || matched+dropped < n) {
			t.Fatalf("%s: %s: want %d matched, or the missing ones dropped by the full ring", name, summary, n)
		}
		t.Logf("%s: %s", name, summary)
	}
}
