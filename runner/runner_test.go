package runner_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"go.uber.org/goleak"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/policy"
	"github.com/pyexec/pyexec/runner"
)

// TestMain checks that no test leaves a goroutine behind: a runner's Close
// waits for every goroutine it started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Idle keep-alive connections of the Docker client's http.Transport
		// are closed by the transport in the background.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// env is a runner on the real engine whose containers carry a label unique to
// the test; cleanup closes it and asserts nothing of it remains.
type env struct {
	cli   *client.Client
	r     *runner.Runner
	owner string
}

func newEnv(t *testing.T, mod func(*runner.Options)) *env {
	t.Helper()
	cli := dockertest.Require(t)
	opts := runner.Options{
		Image: dockertest.Image(t, cli),
		Owner: dockertest.Owner(t),
	}
	if mod != nil {
		mod(&opts)
	}
	r, err := runner.New(cli, opts)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{cli: cli, r: r, owner: opts.Owner}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("close runner: %v", err)
		}
		dockertest.AssertNoContainers(t, cli, opts.Owner)
	})
	return e
}

func (e *env) run(t *testing.T, code string, timeout time.Duration) runner.Result {
	t.Helper()
	res, err := e.r.Run(t.Context(), runner.Request{Code: code, Timeout: timeout})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func TestHelloWorld(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	res := e.run(t, `print("Hello World")`, 30*time.Second)
	if res.Status != runner.StatusSuccess || res.Stdout != "Hello World\n" || res.Error != nil {
		t.Fatalf("got status %q stdout %q error %+v", res.Status, res.Stdout, res.Error)
	}
	if res.Flavor != runner.FlavorNone {
		t.Errorf("flavor = %q, want none for plain Python", res.Flavor)
	}
	if res.Resources.CPUTime <= 0 || res.Resources.PeakMemoryBytes <= 0 || res.Resources.MemoryLimitBytes != runner.DefaultMemoryBytes {
		t.Errorf("resources not reported: %+v", res.Resources)
	}
}

func TestExceptionLine(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	code := "x = 1\n\ndef f(d):\n    return 10 / d\n\nprint('before')\nf(0)\n"
	res := e.run(t, code, 30*time.Second)
	if res.Status != runner.StatusError || res.Error == nil {
		t.Fatalf("status %q error %+v", res.Status, res.Error)
	}
	if res.Error.Type != "ZeroDivisionError" || res.Error.Line == nil || *res.Error.Line != 4 {
		t.Errorf("error = %+v (line %v), want ZeroDivisionError at line 4", res.Error, deref(res.Error.Line))
	}
	if !strings.Contains(res.Error.Traceback, `File "<code>", line 7`) || strings.Contains(res.Error.Traceback, "harness") || strings.Contains(res.Error.Traceback, "runner_child") {
		t.Errorf("traceback should hold only the user's frames:\n%s", res.Error.Traceback)
	}
	if res.Stdout != "before\n" {
		t.Errorf("stdout = %q", res.Stdout)
	}
}

func TestSyntaxError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	res := e.run(t, "print('ok')\nx = (1,\n", 30*time.Second)
	if res.Status != runner.StatusError || res.Error == nil || res.Error.Type != "SyntaxError" {
		t.Fatalf("status %q error %+v", res.Status, res.Error)
	}
	if res.Error.Line == nil || *res.Error.Line != 2 {
		t.Errorf("line = %v, want 2", deref(res.Error.Line))
	}
	if res.Stdout != "" {
		t.Errorf("nothing should run on a syntax error, stdout %q", res.Stdout)
	}
}

func TestTimeoutKeepsPartialStdout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	// The validator is up before the measure, as in the service (it starts
	// it at boot): this measures the deadline, not the validator's start.
	if _, err := e.r.Validate(t.Context(), "pass"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res := e.run(t, "print('started', flush=True)\nwhile True:\n    pass\n", 2*time.Second)
	elapsed := time.Since(start)
	if res.Status != runner.StatusTimeout {
		t.Fatalf("status %q, want timeout (error %+v)", res.Status, res.Error)
	}
	if res.Stdout != "started\n" {
		t.Errorf("partial stdout = %q", res.Stdout)
	}
	// 2 s of execution plus container start and a small margin.
	if limit := dockertest.Scale(2*time.Second + 1500*time.Millisecond); elapsed > limit {
		t.Errorf("timeout took %v, want under %v", elapsed, limit)
	}
}

func TestTimeoutWithSignalsIgnored(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	code := "import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass\n"
	res := e.run(t, code, time.Second)
	if res.Status != runner.StatusTimeout {
		t.Fatalf("status %q, want timeout", res.Status)
	}
}

func TestMemoryBomb(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *runner.Options) { o.MemoryBytes = 256 << 20 })
	for name, code := range map[string]string{
		"bytearray": "x = bytearray(1 << 30)\nprint('survived')",
		"growth":    "a = []\nwhile True:\n    a.append(bytearray(10 << 20))",
	} {
		t.Run(name, func(t *testing.T) {
			res := e.run(t, code, 30*time.Second)
			if res.Status != runner.StatusOutOfMemory {
				t.Fatalf("status %q error %+v, want out_of_memory", res.Status, res.Error)
			}
			if res.Error == nil || res.Error.Type != "MemoryError" {
				t.Errorf("error = %+v", res.Error)
			}
		})
	}
}

func TestHugeStdoutIsTruncated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	code := "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(100):\n    sys.stdout.write(chunk)\nprint('done', file=sys.stderr)\n"
	res := e.run(t, code, 30*time.Second)
	if res.Status != runner.StatusSuccess {
		t.Fatalf("status %q error %+v", res.Status, res.Error)
	}
	if !res.StdoutTruncated || len(res.Stdout) != runner.DefaultMaxStreamBytes {
		t.Errorf("stdout: truncated=%v len=%d, want the first %d bytes", res.StdoutTruncated, len(res.Stdout), runner.DefaultMaxStreamBytes)
	}
	if res.StdoutBytes != 100<<20 {
		t.Errorf("stdout bytes counted %d, want %d", res.StdoutBytes, 100<<20)
	}
	if res.Stderr != "done\n" || res.StderrTruncated {
		t.Errorf("stderr = %q truncated=%v", res.Stderr, res.StderrTruncated)
	}
}

func TestForgedEnvelopeIsOnlyStdout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	fake := `{"status":"success","stdout":"forged","error":null}`
	code := "import sys\n" +
		"fake = '" + fake + "'\n" +
		"print('PYEXEC1 result %d' % len(fake))\nprint(fake)\n" +
		"sys.stderr.write('PYEXEC1 outputs 2\\n{}\\n')\n" +
		"raise ValueError('real error')\n"
	res := e.run(t, code, 30*time.Second)
	if res.Status != runner.StatusError || res.Error == nil || res.Error.Type != "ValueError" {
		t.Fatalf("forged envelope changed the result: status %q error %+v", res.Status, res.Error)
	}
	want := "PYEXEC1 result " + itoa(len(fake)) + "\n" + fake + "\n"
	if res.Stdout != want {
		t.Errorf("stdout = %q, want %q", res.Stdout, want)
	}
	if !strings.HasPrefix(res.Stderr, "PYEXEC1 outputs 2") {
		t.Errorf("stderr = %q", res.Stderr)
	}
}

func TestExecutionsShareNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	first := e.run(t, "open('/tmp/marker', 'w').write('secret')\nimport os\nprint(os.getpid(), os.listdir('/tmp'))", 30*time.Second)
	if first.Status != runner.StatusSuccess || !strings.Contains(first.Stdout, "marker") {
		t.Fatalf("first run: %q %+v", first.Stdout, first.Error)
	}
	second := e.run(t, "import os\nprint(os.path.exists('/tmp/marker'))", 30*time.Second)
	if second.Status != runner.StatusSuccess || second.Stdout != "False\n" {
		t.Fatalf("second run saw the first one's file: %q %+v", second.Stdout, second.Error)
	}
}

func TestExitPaths(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	cases := []struct {
		name, code, status, errType string
	}{
		{"sys.exit(0)", "import sys\nprint('a')\nsys.exit(0)", runner.StatusSuccess, ""},
		{"sys.exit(3)", "import sys\nsys.exit(3)", runner.StatusError, "SystemExit"},
		{"os._exit(0)", "import os\nprint('a', flush=True)\nos._exit(0)", runner.StatusSuccess, ""},
		{"os._exit(5)", "import os\nos._exit(5)", runner.StatusError, "ProcessExit"},
		{"KeyboardInterrupt", "raise KeyboardInterrupt", runner.StatusError, "KeyboardInterrupt"},
		{"BaseException subclass", "class E(BaseException): pass\nraise E('x')", runner.StatusError, "E"},
		{"close fds", "import os\nos.close(1)\nos.close(2)\nprint('gone')", runner.StatusError, "OSError"},
		{"deep recursion", "def f(n): return f(n+1)\nf(0)", runner.StatusError, "RecursionError"},
		{"segfault", "import ctypes\nctypes.string_at(0)", runner.StatusError, "ProcessCrash"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := e.run(t, c.code, 30*time.Second)
			if res.Status != c.status {
				t.Fatalf("status %q, want %q (error %+v)", res.Status, c.status, res.Error)
			}
			got := ""
			if res.Error != nil {
				got = res.Error.Type
			}
			if got != c.errType {
				t.Errorf("error type %q, want %q (%+v)", got, c.errType, res.Error)
			}
		})
	}
}

func TestClientCancelKillsContainer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := e.r.Run(ctx, runner.Request{Code: "while True: pass", Timeout: 30 * time.Second})
		done <- err
	}()
	// Wait until the execution's container exists, then go away.
	deadline := time.Now().Add(dockertest.Scale(20 * time.Second))
	for len(execContainers(t, e)) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(dockertest.Scale(10 * time.Second)):
		t.Fatal("Run did not return after the client went away")
	}
	e.r.Wait()
	// The validator stays for the next request (newEnv's cleanup removes
	// it); the execution's container is gone.
	if left := execContainers(t, e); len(left) > 0 {
		t.Errorf("%d execution container(s) left after the client went away", len(left))
	}
}

// execContainers lists the runner's containers but the validator.
func execContainers(t *testing.T, e *env) []string {
	var ids []string
	for _, c := range dockertest.Containers(t, e.cli, e.owner) {
		if c.Labels[runner.LabelRole] != "validator" {
			ids = append(ids, c.ID)
		}
	}
	return ids
}

func TestReapRemovesLeftovers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	// A runner of the same owner that "crashed": its container stays.
	old, err := runner.New(e.cli, e.r.Options())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() { _, _ = old.Run(ctx, runner.Request{Code: "while True: pass", Timeout: 30 * time.Second}) }()
	// Its Run starts the validator, then the execution's container: wait
	// for the latter, so that what Reap finds is settled.
	hasExec := func() bool {
		for _, c := range dockertest.Containers(t, e.cli, e.owner) {
			if c.Labels[runner.LabelRole] == "exec" || c.Labels[runner.LabelRole] == "warm" {
				return true
			}
		}
		return false
	}
	dockertest.WaitFor(t, "the crashed runner's execution container", 20*time.Second, hasExec)
	left := len(dockertest.Containers(t, e.cli, e.owner))
	n, err := e.r.Reap(t.Context())
	if err != nil || n != left || n < 1 {
		t.Fatalf("Reap = %d, %v; want the %d containers of the crashed runner removed", n, err, left)
	}
	cancel()
	_ = old.Close(t.Context())
	dockertest.AssertNoContainers(t, e.cli, e.owner)
}

func TestConcurrencyLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *runner.Options) { o.MaxWorkers = 1; o.MaxQueue = 1 })
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	results := make(chan error, 3)
	for i := 0; i < 2; i++ {
		go func() {
			_, err := e.r.Run(ctx, runner.Request{Code: "import time\ntime.sleep(3)", Timeout: 10 * time.Second})
			results <- err
		}()
	}
	deadline := time.Now().Add(dockertest.Scale(20 * time.Second))
	for e.r.Stats().Queued < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := e.r.Run(ctx, runner.Request{Code: "print(1)", Timeout: time.Second}); !errors.Is(err, runner.ErrBusy) {
		t.Fatalf("third request: err = %v, want ErrBusy", err)
	}
	for i := 0; i < 2; i++ {
		if err := <-results; err != nil {
			t.Errorf("queued request failed: %v", err)
		}
	}
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func itoa(n int) string { return strconv.Itoa(n) }

// With a policy, Run checks the code itself before running it: code the
// policy refuses is answered by the validator, rejected, with nothing run.
func TestRunRejectsPolicyViolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *runner.Options) {
		p := policy.Default()
		o.Policy = &p
	})
	res := e.run(t, "import os\nprint('ran')", 10*time.Second)
	if res.Status != runner.StatusError || res.Error == nil || res.Error.Type != "PolicyViolation" || res.Stdout != "" {
		t.Fatalf("status %q error %+v stdout %q, want a PolicyViolation", res.Status, res.Error, res.Stdout)
	}
	if !res.Rejected || res.Flavor != runner.FlavorValidator || len(res.Violations) != 1 || res.Violations[0].Rule != policy.RuleForbiddenModule {
		t.Errorf("rejected %v flavor %q violations %+v, want rejected by the validator for the module", res.Rejected, res.Flavor, res.Violations)
	}
	if res.Error.Line == nil || *res.Error.Line != 1 || !strings.Contains(res.Error.Traceback, "line 1") {
		t.Errorf("error position %v traceback %q, want line 1", deref(res.Error.Line), res.Error.Traceback)
	}
	// Valid code runs as usual after the check.
	if res := e.run(t, "print('ran')", 10*time.Second); res.Status != runner.StatusSuccess || res.Stdout != "ran\n" || res.Rejected {
		t.Fatalf("valid code: status %q stdout %q rejected %v", res.Status, res.Stdout, res.Rejected)
	}
}

// A timeout far below a millisecond is still a timeout, not a refused request.
func TestTinyTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	res := e.run(t, "while True: pass", 100*time.Microsecond)
	if res.Status != runner.StatusTimeout {
		t.Fatalf("status %q error %+v, want timeout", res.Status, res.Error)
	}
}
