package main

import (
	"bytes"
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
	"testing"
	"time"

	"github.com/pyexec/pyexec/internal/dockertest"
)

// syncBuffer collects the service's output from two pipes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestShutdownUnderLoad runs the real binary on the real engine, fires
// executions at it (some sleeping 2 s), sends SIGTERM mid-load, and checks
// that the requests in flight finish with 200, that the process exits 0
// within the deadline, and that no container of its SERVICE_ID remains.
func TestShutdownUnderLoad(t *testing.T) {
	cli := dockertest.Require(t)
	dockertest.Image(t, cli) // the binary then finds the image and builds nothing

	dir := t.TempDir()
	bin := filepath.Join(dir, "pyexec")
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	build := exec.Command(gobin, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	const shutdownTimeout = 20 * time.Second
	const secret = "shutdown-test-admin-token-4f9a1c"
	port := freePort(t)
	owner := dockertest.Owner(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"PORT="+strconv.Itoa(port),
		"SERVICE_ID="+owner,
		"MAX_WORKERS=4",
		"MAX_QUEUE=32",
		"POOL_SIZE=2",
		"POLICY=off",
		"LOG_LEVEL=debug",
		"BUILD_IMAGE=false",
		"SHUTDOWN_TIMEOUT_SECONDS="+strconv.Itoa(int(shutdownTimeout.Seconds())),
		"ADMIN_TOKEN="+secret,
	)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// exited is closed when the process is gone; exitErr is then its status.
	exited := make(chan struct{})
	var exitErr error
	go func() {
		exitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("service output:\n%s", logs.String())
		}
		dockertest.AssertNoContainers(t, cli, owner) // also removes leftovers
	})

	client := &http.Client{
		Timeout: 2 * time.Minute,
		// A fresh connection per request: no request can be lost to a
		// keep-alive connection the server closes as idle.
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	type healthBody struct {
		Status string `json:"status"`
		Runner struct {
			Running int64 `json:"running"`
			Pool    struct {
				Idle map[string]int `json:"idle"`
			} `json:"pool"`
		} `json:"runner"`
		Settings map[string]any `json:"settings"`
	}
	health := func() (healthBody, bool) {
		var h healthBody
		resp, err := client.Get(base + "/health")
		if err != nil {
			return h, false
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&h) != nil {
			return h, false
		}
		return h, true
	}
	wait := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(dockertest.Scale(limit))
		for !cond() {
			select {
			case <-exited:
				t.Fatalf("service exited while waiting for %s: %v", what, exitErr)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	wait("/health 200 and a full pool", 90*time.Second, func() bool {
		h, ok := health()
		return ok && h.Runner.Pool.Idle["none"]+h.Runner.Pool.Idle["data"] == 2
	})
	if h, _ := health(); h.Settings["admin_token"] != "redacted" {
		t.Errorf("settings show admin_token %v, want redacted", h.Settings["admin_token"])
	}

	type result struct {
		code    string
		started time.Time
		status  int
		body    string
		err     error
	}
	var mu sync.Mutex
	var results []result
	post := func(code string) {
		r := result{code: code, started: time.Now()}
		resp, err := client.Post(base+"/execute", "application/json",
			strings.NewReader(`{"code": `+strconv.Quote(code)+`, "timeout": 30}`))
		if err != nil {
			r.err = err
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r.status, r.body = resp.StatusCode, string(b)
		}
		mu.Lock()
		results = append(results, r)
		mu.Unlock()
	}

	const sleeper = "import time\ntime.sleep(2)\nprint('slept')"
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 { // a stream of short executions
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				post("print(1)")
			}
		}()
	}
	for range 4 { // and long ones, more than the workers left free
		wg.Add(1)
		go func() {
			defer wg.Done()
			post(sleeper)
		}()
	}
	wait("the long executions to run", 30*time.Second, func() bool {
		h, ok := health()
		return ok && h.Runner.Running >= 3
	})
	// And a burst, one request every 100 ms without waiting for answers,
	// from a second before the signal to a second after.
	for range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); post("print(2)") }()
		time.Sleep(100 * time.Millisecond)
	}

	sigAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); post("print(3)") }()
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)

	select {
	case <-exited:
	case <-time.After(dockertest.Scale(shutdownTimeout + 60*time.Second)):
		t.Fatalf("service still running %v after SIGTERM", time.Since(sigAt))
	}
	exitAfter := time.Since(sigAt)
	// Nothing of this SERVICE_ID may remain the moment the process is gone.
	if left := dockertest.Containers(t, cli, owner); len(left) > 0 {
		t.Errorf("%d container(s) left after exit", len(left))
	}
	if exitErr != nil {
		t.Fatalf("exit after SIGTERM: %v", exitErr)
	}
	t.Logf("exited 0 %v after SIGTERM", exitAfter.Round(time.Millisecond))
	if exitAfter > shutdownTimeout {
		t.Errorf("shutdown took %v, over SHUTDOWN_TIMEOUT_SECONDS", exitAfter)
	}
	wg.Wait()

	// Requests sent well before the signal were in flight: each finished
	// with 200. Later ones were finished, refused a connection, or told 503.
	var inflight, refused, late int
	slept := 0
	for _, r := range results {
		before := r.started.Before(sigAt.Add(-200 * time.Millisecond))
		switch {
		case r.err == nil && r.status == http.StatusOK && strings.Contains(r.body, `"status":"success"`):
			if before {
				inflight++
			} else {
				late++
			}
			if strings.Contains(r.body, "slept") {
				slept++
			}
		case before:
			t.Errorf("request in flight at SIGTERM (%s, sent %v before): %d %v %.300s",
				strings.SplitN(r.code, "\n", 2)[0], sigAt.Sub(r.started).Round(time.Millisecond), r.status, r.err, r.body)
		case r.err != nil && isRefused(r.err):
			refused++
		case r.err == nil && r.status == http.StatusServiceUnavailable:
			refused++
		default:
			t.Errorf("request after SIGTERM: %d %v %.300s", r.status, r.err, r.body)
		}
	}
	t.Logf("%d requests in flight finished, %d after the signal finished, %d refused", inflight, late, refused)
	if slept != 4 {
		t.Errorf("%d of 4 long executions finished", slept)
	}

	out := logs.String()
	if strings.Contains(out, secret) {
		t.Error("the admin token appears in the output")
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		if entry["level"] == "error" || entry["level"] == "fatal" {
			t.Errorf("error logged: %s", line)
		}
		if entry["msg"] == "request" && entry["path"] == "/execute" {
			for _, key := range []string{"request_id", "status", "duration_ms", "bytes_in", "bytes_out", "code_sha256", "code_bytes", "outcome"} {
				if _, ok := entry[key]; !ok {
					t.Errorf("request log line lacks %s: %s", key, line)
				}
			}
			if strings.Contains(line, "slept") || strings.Contains(line, "time.sleep") {
				t.Errorf("request log line shows code or output: %s", line)
			}
		}
	}
	for _, msg := range []string{`"msg":"shutting down"`, `"msg":"stopped"`, `"msg":"container removed"`} {
		if !strings.Contains(out, msg) {
			t.Errorf("no %s in the logs", msg)
		}
	}
}

func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)
}
