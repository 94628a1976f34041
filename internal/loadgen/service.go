package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Build compiles cmd/pyexec into dir and returns the binary's path; root
// is the module root.
func Build(root, dir string) (string, error) {
	bin := filepath.Join(dir, "pyexec")
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	cmd := exec.Command(gobin, "build", "-o", bin, "./cmd/pyexec")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// SyncBuffer collects a process's output from two pipes.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Service is one running pyexec process.
type Service struct {
	URL  string
	Logs *SyncBuffer
	cmd  *exec.Cmd
	// exited is closed when the process is gone; ExitErr is then set.
	exited  chan struct{}
	ExitErr error
}

// Start runs bin on port with the environment plus env (PORT is set here).
// Its output goes to logs, and to extra when not nil.
func Start(bin string, port int, env []string, extra io.Writer) (*Service, error) {
	s := &Service{
		URL:    fmt.Sprintf("http://127.0.0.1:%d", port),
		Logs:   &SyncBuffer{},
		exited: make(chan struct{}),
	}
	s.cmd = exec.Command(bin)
	s.cmd.Env = append(append(os.Environ(), env...), "PORT="+strconv.Itoa(port))
	var out io.Writer = s.Logs
	if extra != nil {
		out = io.MultiWriter(s.Logs, extra)
	}
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		s.ExitErr = s.cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

// PID is the process id.
func (s *Service) PID() int { return s.cmd.Process.Pid }

// Exited is closed when the process has exited.
func (s *Service) Exited() <-chan struct{} { return s.exited }

// Kill sends SIGKILL and waits for the process to be gone.
func (s *Service) Kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// Stop sends SIGTERM and waits up to limit for the exit, then kills.
// It returns the exit error (nil: exit status 0).
func (s *Service) Stop(limit time.Duration) error {
	select {
	case <-s.exited:
		return s.ExitErr
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return s.ExitErr
	case <-time.After(limit):
		s.Kill()
		return fmt.Errorf("still running %v after SIGTERM; killed", limit)
	}
}

// Health is the part of /health the tools read.
type Health struct {
	Status string `json:"status"`
	Image  struct {
		Present  bool   `json:"present"`
		Building bool   `json:"building"`
		Error    string `json:"error"`
	} `json:"image"`
	Runner struct {
		Running int64 `json:"running"`
		Pool    struct {
			Idle map[string]int `json:"idle"`
		} `json:"pool"`
	} `json:"runner"`
}

// Health reads /health; the status code is returned with the body.
func (s *Service) Health(ctx context.Context) (Health, int, error) {
	var h Health
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/health", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return h, 0, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&h)
	return h, resp.StatusCode, err
}

// WaitReady waits until /health answers 200 with at least idle warm
// containers, or limit passes, or the process exits.
func (s *Service) WaitReady(limit time.Duration, idle int) error {
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("service exited while starting: %v", s.ExitErr)
		default:
		}
		h, code, err := s.Health(context.Background())
		if err == nil && code == http.StatusOK {
			n := 0
			for _, v := range h.Runner.Pool.Idle {
				n += v
			}
			if n >= idle {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v (last /health %d %+v %v)", limit, code, h, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// RSS is the process's resident set (VmRSS) in bytes.
func (s *Service) RSS() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.PID()))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmRSS")
}

// Metric reads one unlabelled sample (e.g. go_goroutines) from /metrics.
func (s *Service) Metric(name string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in /metrics", name)
}
