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
