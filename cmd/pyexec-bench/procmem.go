package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxProcScan bounds how many processes pidByPort looks at.
const maxProcScan = 100000

// pidByPort finds the process listening on TCP port on this host (in this
// network namespace) by matching the socket's inode in /proc/net/tcp{,6}
// against the fds of every process we may read.
func pidByPort(port int) (int, error) {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue // no IPv6, for one
		}
		for _, ino := range listenInodes(string(b), port) {
			inodes[fmt.Sprintf("socket:[%d]", ino)] = true
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no socket listening on port %d in this network namespace", port)
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for i, p := range procs {
		if i >= maxProcScan {
			break
		}
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join("/proc", p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // not ours to read, or gone
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err == nil && inodes[target] {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("port %d is listened on, but by no process whose fds we may read", port)
}

// readRSS returns pid's VmRSS in bytes.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(string(b))
}

// rssSampler records the largest VmRSS of a process while it runs.
type rssSampler struct {
	pid   int
	every time.Duration

	mu      sync.Mutex // guards the fields below
	max     int64
	samples int
	lastErr error
}

// sample polls until ctx ends. The caller runs it in a goroutine it waits for.
func (s *rssSampler) sample(ctx context.Context) {
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		rss, err := readRSS(s.pid)
		s.mu.Lock()
		if err != nil {
			s.lastErr = err
		} else {
			s.samples++
			s.max = max(s.max, rss)
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// during samples the process while fn runs and returns the largest VmRSS
// seen in that window (0 without samples).
func (s *rssSampler) during(ctx context.Context, fn func()) int64 {
	if s == nil {
		fn()
		return 0
	}
	w := &rssSampler{pid: s.pid, every: s.every}
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.sample(sctx)
	}()
	fn()
	cancel()
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.max = max(s.max, w.max)
	s.samples += w.samples
	if w.lastErr != nil {
		s.lastErr = w.lastErr
	}
	return w.max
}

// hostBusyMS is the CPU time all CPUs of the host have spent busy since
// boot (every /proc/stat "cpu" field but idle and iowait), in ms.
func hostBusyMS() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var ticks float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		ticks += n
	}
	return ticks * 1000 / clockTicks, nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// hostCPUDuring runs fn and returns the host's busy CPU during it, in ms
// (NaN when /proc/stat cannot be read). It counts everything on the host:
// engine, shims, containers, service.
func hostCPUDuring(fn func()) float64 {
	before, err := hostBusyMS()
	fn()
	after, err2 := hostBusyMS()
	if err != nil || err2 != nil {
		return math.NaN()
	}
	return after - before
}
