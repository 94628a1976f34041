package enginectl

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// TestAlive checks that a running process is alive and that one that has
// exited but is not yet reaped (a zombie, as dockerd is after a stop until
// init reaps it) is not.
func TestAlive(t *testing.T) {
	if !alive(os.Getpid()) {
		t.Fatal("this process is not alive")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatal("an exited child still counts as alive")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
		t.Fatalf("the zombie should still be in /proc before Wait: %v", err)
	}
	_ = cmd.Wait()
	if alive(pid) {
		t.Fatal("a reaped child counts as alive")
	}
}
