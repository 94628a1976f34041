// Package enginectl stops and starts this machine's Docker engine (dockerd
// started by images/engine.sh, no systemd) and holds the engine lock that
// orders engine tests and the soak run across processes. It serves the
// fault tests (through internal/dockertest) and cmd/pyexec-soak, never the
// service.
package enginectl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/client"
)

// LockPath is the file whose flock orders engine users: tests hold it
// shared, fault tests and the soak run exclusively.
const LockPath = "/tmp/pyexec-engine.lock"

// Lock takes the engine lock, shared or exclusive, waiting as long as it
// takes; waiting is called once before blocking, when the lock is busy.
// Locks are per open file: a process holding one kind must not ask for the
// other. The returned function releases it.
func Lock(exclusive bool, waiting func()) (release func(), err error) {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	f, err := os.OpenFile(LockPath, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("engine lock: %w", err)
	}
	err = syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		if waiting != nil {
			waiting()
		}
		for err = syscall.Flock(int(f.Fd()), how); errors.Is(err, syscall.EINTR); {
			err = syscall.Flock(int(f.Fd()), how)
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("engine lock: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// Answers reports whether the engine answers a ping within limit.
func Answers(limit time.Duration) bool {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return false
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	_, err = cli.Ping(ctx, client.PingOptions{})
	return err == nil
}

// Stop stops dockerd: SIGTERM, then SIGKILL when it has not exited within
// limit; it returns once the process has exited and the socket no longer
// answers, with how long that took. dockerd stops its containers (and
// containerd) before it exits.
func Stop(limit time.Duration) (time.Duration, error) {
	start := time.Now()
	pid := dockerdPID()
	if pid == 0 {
		return 0, errors.New("stop engine: no dockerd process")
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return 0, fmt.Errorf("stop engine: SIGTERM dockerd %d: %w", pid, err)
	}
	for alive(pid) && time.Since(start) < limit {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; alive(pid) && i < 200; i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(pid) {
			return 0, fmt.Errorf("stop engine: dockerd %d survived SIGKILL", pid)
		}
	}
	for Answers(time.Second) {
		if time.Since(start) > limit+10*time.Second {
			return 0, errors.New("stop engine: the socket still answers after dockerd exited")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start), nil
}

// Start runs images/engine.sh from the module root and waits, up to limit,
// until the engine answers; it returns how long that took.
func Start(limit time.Duration) (time.Duration, error) {
	start := time.Now()
	root, err := ModuleRoot()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command("bash", filepath.Join(root, "images", "engine.sh"))
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("engine.sh: %v\n%s", err, out)
	}
	for !Answers(time.Second) {
		if time.Since(start) > limit {
			return 0, errors.New("engine.sh returned but the engine does not answer")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start), nil
}

// ModuleRoot returns the directory holding go.mod, walking up from the
// working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// dockerdPID returns the pid of the running dockerd, or 0.
func dockerdPID() int {
	if b, err := os.ReadFile("/var/run/docker.pid"); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && alive(pid) && commName(pid) == "dockerd" {
			return pid
		}
	}
	out, err := exec.Command("pgrep", "-x", "dockerd").Output()
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && alive(pid) {
			return pid
		}
	}
	return 0
}

func commName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// alive reports whether pid exists and has not exited (a zombie has).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) state ...": the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}
