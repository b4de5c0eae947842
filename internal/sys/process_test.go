package sys

import (
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
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

// zombieLeaderEnv makes the test binary a process whose first thread, the
// thread group leader, exits while another thread goes on running.
const zombieLeaderEnv = "RINGO_SYS_TEST_ZOMBIE_LEADER"

func init() {
	if os.Getenv(zombieLeaderEnv) != "" {
		// Keep the main goroutine on the leader thread, for TestMain.
		runtime.LockOSThread()
	}
}

func TestMain(m *testing.M) {
	if os.Getenv(zombieLeaderEnv) != "" {
		go func() {
			for {
				runtime.Gosched() // another thread, still running
			}
		}()
		// Exit the leader thread alone (exit, not exit_group).
		syscall.Syscall(syscall.SYS_EXIT, 0, 0, 0)
	}
	os.Exit(m.Run())
}

// A thread group whose leader has exited while another thread runs shows the
// leader as a zombie: that process is alive, since its other thread may be
// in the middle of a reservation.
func TestZombieLeaderWithThreadsIsAlive(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), zombieLeaderEnv+"=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	var st procStat
	for deadline := time.Now().Add(10 * time.Second); ; {
		var err error
		if st, err = readStat(pid); err != nil {
			t.Fatal(err)
		}
		if st.state == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child's leader thread did not exit in 10s (state %c, %d threads)", st.state, st.threads)
		}
		time.Sleep(time.Millisecond)
	}
	token := uint64(pid)<<32 | uint64(uint32(st.start))
	if st.threads < 2 {
		t.Fatalf("zombie leader with %d threads: the other thread is gone", st.threads)
	}
	if !Alive(token) {
		t.Fatalf("a process whose leader exited but %d threads run is dead", st.threads)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if Alive(token) {
		t.Fatal("killed and reaped process is alive")
	}
}
