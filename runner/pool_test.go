package runner_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/runner"
)

func newPoolEnv(t *testing.T, size int, mod func(*runner.Options)) *env {
	t.Helper()
	e := newEnv(t, func(o *runner.Options) {
		o.PoolSize = size
		if mod != nil {
			mod(o)
		}
	})
	e.r.Start(t.Context())
	return e
}

func idle(r *runner.Runner) int {
	p := r.Stats().Pool
	return p.Idle[runner.FlavorNone] + p.Idle[runner.FlavorData]
}

// containerIDs lists the runner's sandbox containers, without the
// long-lived validator that Run's pre-check starts.
func containerIDs(t *testing.T, e *env) map[string]bool {
	ids := map[string]bool{}
	for _, c := range dockertest.Containers(t, e.cli, e.owner) {
		if c.Labels[runner.LabelRole] != "validator" {
			ids[c.ID] = true
		}
	}
	return ids
}

func TestPoolServesWarmAndRefills(t *testing.T) {
	t.Parallel()
	e := newPoolEnv(t, 2, nil)
	dockertest.WaitFor(t, "pool to fill", 60*time.Second, func() bool { return idle(e.r) == 2 })
	st := e.r.Stats().Pool
	if st.Idle[runner.FlavorNone] != 1 || st.Idle[runner.FlavorData] != 1 {
		t.Errorf("pool split %v, want one of each flavor at start", st.Idle)
	}
	for _, c := range st.Containers {
		if c.MemoryBytes <= 0 {
			t.Errorf("warm container %s reports no memory", c.ID)
		}
	}
	before := containerIDs(t, e)

	res := e.run(t, `print("warm")`, 10*time.Second)
	if res.Status != runner.StatusSuccess || res.Stdout != "warm\n" || !res.Warm {
		t.Fatalf("status %q stdout %q warm %v", res.Status, res.Stdout, res.Warm)
	}
	res = e.run(t, "import pandas as pd\nprint(len(pd.DataFrame({'a': [1, 2, 3]})))", 30*time.Second)
	if res.Status != runner.StatusSuccess || res.Stdout != "3\n" || !res.Warm || res.Flavor != runner.FlavorData {
		t.Fatalf("data run: status %q stdout %q warm %v flavor %q", res.Status, res.Stdout, res.Warm, res.Flavor)
	}

	// Both used containers are gone, and two new ones took their place.
	dockertest.WaitFor(t, "pool to refill", 60*time.Second, func() bool {
		return idle(e.r) == 2 && e.r.Stats().Pool.Refills >= 4
	})
	e.r.Wait()
	after := containerIDs(t, e)
	if len(after) != 2 {
		t.Errorf("%d containers exist, want the 2 idle ones", len(after))
	}
	for id := range after {
		if before[id] {
			t.Errorf("container %s survived serving a request", id[:12])
		}
	}
}

// The deadline runs from the request, not from when the sandbox became
// ready: a sandbox that waited in the pool longer than the timeout still
// gives the code its whole time.
func TestPoolIdleLongerThanTimeout(t *testing.T) {
	t.Parallel()
	e := newPoolEnv(t, 1, nil)
	dockertest.WaitFor(t, "pool to fill", 60*time.Second, func() bool { return idle(e.r) == 1 })
	time.Sleep(2500 * time.Millisecond)
	res := e.run(t, "import time\ntime.sleep(0.5)\nprint('slept')", 2*time.Second)
	if res.Status != runner.StatusSuccess || res.Stdout != "slept\n" || !res.Warm {
		t.Fatalf("status %q stdout %q warm %v error %+v", res.Status, res.Stdout, res.Warm, res.Error)
	}
	if res.ExecutionTime < 500*time.Millisecond || res.ExecutionTime > 2*time.Second {
		t.Errorf("execution time %v, want the run's own (about 0.5 s)", res.ExecutionTime)
	}
}

func TestPoolReplacesKilledContainer(t *testing.T) {
	t.Parallel()
	e := newPoolEnv(t, 1, nil)
	dockertest.WaitFor(t, "pool to fill", 60*time.Second, func() bool { return idle(e.r) == 1 })
	var victim string
	for id := range containerIDs(t, e) {
		victim = id
	}
	if _, err := e.cli.ContainerKill(t.Context(), victim, client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		t.Fatal(err)
	}
	dockertest.WaitFor(t, "dead container to be retired and replaced", 60*time.Second, func() bool {
		p := e.r.Stats().Pool
		return p.Retired >= 1 && idle(e.r) == 1
	})
	res := e.run(t, "print(2 + 2)", 10*time.Second)
	if res.Status != runner.StatusSuccess || res.Stdout != "4\n" {
		t.Fatalf("after replacement: %q %q %+v", res.Status, res.Stdout, res.Error)
	}
}

func TestPoolContainersServeOnce(t *testing.T) {
	t.Parallel()
	e := newPoolEnv(t, 2, nil)
	dockertest.WaitFor(t, "pool to fill", 60*time.Second, func() bool { return idle(e.r) == 2 })
	code := "import os\nseen = os.path.exists('/tmp/mark')\nopen('/tmp/mark', 'w').write('x')\nprint(seen, os.getppid())"
	outs := map[string]bool{}
	for i := 0; i < 4; i++ {
		res := e.run(t, code, 10*time.Second)
		if res.Status != runner.StatusSuccess {
			t.Fatalf("run %d: %q %+v", i, res.Status, res.Error)
		}
		if res.Stdout[:5] != "False" {
			t.Fatalf("run %d found the mark of an earlier run: %q", i, res.Stdout)
		}
		outs[res.Stdout] = true
	}
}

func TestBurstGetsOnlyBusyErrors(t *testing.T) {
	t.Parallel()
	e := newPoolEnv(t, 2, func(o *runner.Options) { o.MaxWorkers = 2; o.MaxQueue = 2 })
	dockertest.WaitFor(t, "pool to fill", 60*time.Second, func() bool { return idle(e.r) == 2 })
	const burst = 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	busy, ok := 0, 0
	var others []error
	for i := 0; i < burst; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.r.Run(t.Context(), runner.Request{Code: "import time\ntime.sleep(1)\nprint('ok')", Timeout: 20 * time.Second})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, runner.ErrBusy):
				busy++
			case err == nil && res.Status == runner.StatusSuccess:
				ok++
			default:
				others = append(others, err)
			}
		}()
	}
	wg.Wait()
	if len(others) > 0 || busy == 0 || ok < 4 || busy+ok != burst {
		t.Fatalf("burst of %d: %d ok, %d busy, other failures %v", burst, ok, busy, others)
	}
}

func TestCloseRemovesPool(t *testing.T) {
	t.Parallel()
	e := newPoolEnv(t, 2, nil)
	dockertest.WaitFor(t, "pool to fill", 60*time.Second, func() bool { return idle(e.r) == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	dockertest.AssertNoContainers(t, e.cli, e.owner)
	if _, err := e.r.Run(t.Context(), runner.Request{Code: "print(1)", Timeout: time.Second}); !errors.Is(err, runner.ErrClosed) {
		t.Errorf("Run after Close: %v, want ErrClosed", err)
	}
}

// TestPoolWarmDataWarningsLookCold runs the same warning in a cold sandbox
// and in a warm data sandbox that preloaded every library: a preloaded
// library (plotly) replaces the warnings module's formatting for the whole
// process, and the code's stderr must not show it.
func TestPoolWarmDataWarningsLookCold(t *testing.T) {
	t.Parallel()
	const code = "import warnings\nimport pandas\n\nprint('数据')\nwarnings.warn('警告')\nwarnings.warn('第二个', DeprecationWarning, stacklevel=1)\n"
	warm := newPoolEnv(t, 2, nil)
	dockertest.WaitFor(t, "the data sandbox", 2*time.Minute, func() bool {
		return warm.r.Stats().Pool.Idle[runner.FlavorData] == 1
	})
	w := warm.run(t, code, 30*time.Second)
	if !w.Warm || w.Flavor != runner.FlavorData {
		t.Fatalf("warm run: warm %v flavor %q, want a warm data sandbox", w.Warm, w.Flavor)
	}
	cold := newEnv(t, nil) // no pool: a bare sandbox imports only what the code imports
	c := cold.run(t, code, 30*time.Second)
	if c.Warm {
		t.Fatal("the run without a pool was warm")
	}
	for _, r := range []runner.Result{w, c} {
		if r.Status != runner.StatusSuccess || r.Stdout != "数据\n" {
			t.Fatalf("status %q stdout %q stderr %q", r.Status, r.Stdout, r.Stderr)
		}
	}
	if !strings.Contains(c.Stderr, "UserWarning: 警告") {
		t.Fatalf("cold stderr %q lacks the warning", c.Stderr)
	}
	if w.Stderr != c.Stderr {
		t.Errorf("the warning differs:\nwarm data: %q\ncold:      %q", w.Stderr, c.Stderr)
	}
}
