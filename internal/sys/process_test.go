package sys

import (
	"os"
	"os/exec"
	"testing"
)

func TestProcessTokens(t *testing.T) {
	me := SelfToken()
	if int(me>>32) != os.Getpid() || !Alive(me) {
		t.Fatalf("own token %#x: alive %v", me, Alive(me))
	}
	if Alive(0) {
		t.Fatal("token 0 is alive")
	}
	// The same PID with another start time is another process.
	if Alive(me ^ 1) {
		t.Fatal("a reused PID counts as the same process")
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep binary:", err)
	}
	start, _, err := processStart(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	child := uint64(cmd.Process.Pid)<<32 | uint64(uint32(start))
	if !Alive(child) {
		t.Fatal("running child is dead")
	}
	cmd.Process.Kill()
	// Killed but not reaped: a zombie, dead for our purposes.
	for i := 0; Alive(child) && i < 1000; i++ {
		_, state, _ := processStart(cmd.Process.Pid)
		if state == 'Z' {
			break
		}
	}
	if Alive(child) {
		t.Fatal("killed child (zombie) is alive")
	}
	cmd.Wait()
	if Alive(child) {
		t.Fatal("reaped child is alive")
	}
}

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string]int{"0": 1, "0-1": 2, "0-3,5,7-8": 9, "0,2": 3} {
		if got, err := parseCPUList(in); err != nil || got != want {
			t.Errorf("parseCPUList(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "0-y"} {
		if _, err := parseCPUList(bad); err == nil {
			t.Errorf("parseCPUList(%q) succeeded", bad)
		}
	}
	if n, err := PossibleCPUs(); err != nil || n < 1 {
		t.Fatalf("PossibleCPUs() = %d, %v", n, err)
	}
}
