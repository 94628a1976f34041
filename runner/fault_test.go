package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/pyexec/pyexec/internal/dockertest"
)

// connectionFailed is a real "cannot connect" error of the Docker client:
// a ping of a socket nobody listens on.
func connectionFailed(t *testing.T) error {
	t.Helper()
	cli, err := client.New(client.WithHost("unix://"+t.TempDir()+"/none.sock"), client.WithAPIVersion("1.41"))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	_, err = cli.Ping(t.Context(), client.PingOptions{})
	if !client.IsErrConnectionFailed(err) {
		t.Fatalf("ping of a dead socket: %v, want a connection error", err)
	}
	return err
}

func TestClassify(t *testing.T) {
	// What setupHijackConn returns when attach cannot dial (pkg/errors wraps
	// it the same way).
	dial := fmt.Errorf("cannot connect to the Docker daemon. Is 'docker daemon' running on this host?: %w",
		&net.OpError{Op: "dial", Net: "unix", Err: syscall.ECONNREFUSED})
	reset := &net.OpError{Op: "read", Net: "unix", Err: syscall.ECONNRESET}
	notFound := fmt.Errorf("No such container: abc: %w", errdefs.ErrNotFound)
	for _, c := range []struct {
		name string
		op   string
		err  error
		want error // nil: unclassified
	}{
		{"connection failed on create", opCreate, connectionFailed(t), ErrEngineDown},
		{"connection failed on inspect", opInspect, connectionFailed(t), ErrEngineDown},
		{"attach cannot dial", opAttach, dial, ErrEngineDown},
		{"NotFound on create is the image", opCreate, fmt.Errorf("No such image: x: %w", errdefs.ErrNotFound), ErrNoImage},
		{"NotFound on attach", opAttach, notFound, ErrSandboxVanished},
		{"NotFound on start", opStart, notFound, ErrSandboxVanished},
		{"NotFound on inspect", opInspect, notFound, ErrSandboxVanished},
		{"engine 500", opStart, fmt.Errorf("OCI runtime failed: %w", errdefs.ErrInternal), ErrEngineDown},
		{"engine unavailable", opCreate, errdefs.ErrUnavailable, ErrEngineDown},
		{"EOF on the stream", opStream, io.EOF, ErrEngineDown},
		{"unexpected EOF on the stream", opStream, fmt.Errorf("truncated frame: %w", io.ErrUnexpectedEOF), ErrEngineDown},
		{"reset on the stream", opStream, reset, ErrEngineDown},
		{"broken pipe sending code", opStream, &net.OpError{Op: "write", Net: "unix", Err: syscall.EPIPE}, ErrEngineDown},
		{"already classified", opStart, fmt.Errorf("x: %w", ErrSandboxVanished), ErrSandboxVanished},
		{"canceled", opCreate, context.Canceled, context.Canceled},
		{"deadline", opInspect, fmt.Errorf("x: %w", context.DeadlineExceeded), context.DeadlineExceeded},
		{"invalid argument", opCreate, fmt.Errorf("bad: %w", errdefs.ErrInvalidArgument), nil},
		{"conflict", opKill, fmt.Errorf("not running: %w", errdefs.ErrConflict), nil},
		{"untyped", opAttach, errors.New("unable to upgrade to tcp, received 404"), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := classify(c.op, c.err)
			if !errors.Is(got, c.err) {
				t.Errorf("classify lost the cause: %v", got)
			}
			sentinels := []error{ErrEngineDown, ErrNoImage, ErrSandboxVanished}
			for _, s := range sentinels {
				if errors.Is(got, s) != (c.want == s) {
					t.Errorf("classify(%s, %v) = %v; is %v: %v, want %v", c.op, c.err, got, s, errors.Is(got, s), c.want == s)
				}
			}
			if c.want != nil && !errors.Is(got, c.want) {
				t.Errorf("classify(%s, %v) = %v, want %v", c.op, c.err, got, c.want)
			}
		})
	}
	if classify(opCreate, nil) != nil {
		t.Error("classify(nil) is not nil")
	}
}

// newFaultRunner is a started runner on the real engine whose containers
// carry a label unique to the test; cleanup closes it and asserts nothing
// of it remains.
func newFaultRunner(t *testing.T, cli *client.Client, mod func(*Options)) *Runner {
	t.Helper()
	o := Options{
		Image:          dockertest.Image(t, cli),
		Owner:          dockertest.Owner(t),
		StartTimeout:   dockertest.Scale(20 * time.Second),
		CleanupTimeout: dockertest.Scale(10 * time.Second),
	}
	if mod != nil {
		mod(&o)
	}
	r, err := New(cli, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.Start(ctx)
	t.Cleanup(func() {
		cancel()
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		if err := r.Close(cctx); err != nil {
			t.Errorf("close runner: %v", err)
		}
		dockertest.AssertNoContainers(t, cli, o.Owner)
	})
	return r
}

// execContainer waits for the container of role exec of r and returns its ID.
func execContainer(t *testing.T, cli *client.Client, r *Runner) string {
	t.Helper()
	var id string
	dockertest.WaitFor(t, "the execution's container", 30*time.Second, func() bool {
		list, err := cli.ContainerList(t.Context(), client.ContainerListOptions{Filters: make(client.Filters).
			Add("label", LabelOwner+"="+r.opts.Owner, LabelRole+"="+roleExec).
			Add("status", "running"),
		})
		if err != nil || len(list.Items) == 0 {
			return false
		}
		id = list.Items[0].ID
		return true
	})
	return id
}

// servesAgain runs print(1) until it succeeds, failing past limit (scaled);
// it returns how long the first success took.
func servesAgain(t *testing.T, r *Runner, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var lastErr error
	for time.Since(start) < dockertest.Scale(limit) {
		ctx, cancel := context.WithTimeout(t.Context(), dockertest.Scale(limit))
		res, err := r.Run(ctx, Request{Code: "print(1)", Timeout: 10 * time.Second})
		cancel()
		if err == nil && res.Status == StatusSuccess && res.Stdout == "1\n" {
			return time.Since(start)
		}
		if err != nil && !errors.Is(err, ErrEngineDown) {
			t.Errorf("while the engine comes back: %v, want ErrEngineDown or success", err)
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no success within %v of the engine being back (last error %v)", dockertest.Scale(limit), lastErr)
	return 0
}

// A container removed while its code runs is ErrSandboxVanished, not an
// image or internal error.
func TestSandboxVanished(t *testing.T) {
	cli := dockertest.Require(t)
	r := newFaultRunner(t, cli, nil)
	done := make(chan error, 1)
	go func() {
		_, err := r.Run(t.Context(), Request{Code: "import time\ntime.sleep(30)", Timeout: 60 * time.Second})
		done <- err
	}()
	id := execContainer(t, cli, r)
	time.Sleep(300 * time.Millisecond) // the code is running
	if _, err := cli.ContainerRemove(t.Context(), id, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrSandboxVanished) || errors.Is(err, ErrNoImage) || errors.Is(err, ErrEngineDown) {
			t.Fatalf("Run = %v, want ErrSandboxVanished", err)
		}
	case <-time.After(dockertest.Scale(15 * time.Second)):
		t.Fatal("Run did not return after its container was removed")
	}
	servesAgain(t, r, 10*time.Second)
}

// A create that finds no image is ErrNoImage, and OnNoImage hears of it.
func TestNoImageCallsOnNoImage(t *testing.T) {
	cli := dockertest.Require(t)
	const missing = "pyexec-python:no-such-tag-for-tests"
	heard := make(chan string, 4)
	var calls atomic.Int64
	r := newFaultRunner(t, cli, func(o *Options) {
		o.Image = missing
		o.OnNoImage = func(image string) {
			calls.Add(1)
			heard <- image
		}
	})
	_, err := r.Run(t.Context(), Request{Code: "print(1)", Timeout: 10 * time.Second})
	if !errors.Is(err, ErrNoImage) || errors.Is(err, ErrEngineDown) {
		t.Fatalf("Run = %v, want ErrNoImage", err)
	}
	select {
	case got := <-heard:
		if got != missing {
			t.Errorf("OnNoImage(%q), want %q", got, missing)
		}
	case <-time.After(dockertest.Scale(5 * time.Second)):
		t.Fatal("OnNoImage was not called")
	}
}

// The engine stopped before a request arrives: ErrEngineDown; once it is
// back, the same runner serves within 5 s.
func TestFaultEngineDownBeforeRun(t *testing.T) {
	dockertest.RequireFaults(t)
	cli := dockertest.RequireExclusive(t)
	r := newFaultRunner(t, cli, func(o *Options) { o.PoolSize = 1 })
	if res, err := r.Run(t.Context(), Request{Code: "print(1)", Timeout: 10 * time.Second}); err != nil || res.Status != StatusSuccess {
		t.Fatalf("before the fault: %+v, %v", res.Status, err)
	}
	dockertest.StopEngine(t)
	start := time.Now()
	_, err := r.Run(t.Context(), Request{Code: "print(1)", Timeout: 10 * time.Second})
	if !errors.Is(err, ErrEngineDown) {
		t.Fatalf("Run with the engine down = %v, want ErrEngineDown", err)
	}
	if took := time.Since(start); took > dockertest.Scale(5*time.Second) {
		t.Errorf("ErrEngineDown took %v", took)
	}
	dockertest.StartEngine(t)
	took := servesAgain(t, r, 5*time.Second)
	t.Logf("first success %v after the engine was back", took.Round(time.Millisecond))
}

// The engine stopped while code runs: the execution ends promptly with
// ErrEngineDown (never an untyped error, never after the code's 30 s); once
// the engine is back, the same runner serves within 5 s.
func TestFaultEngineStoppedMidRun(t *testing.T) {
	dockertest.RequireFaults(t)
	cli := dockertest.RequireExclusive(t)
	r := newFaultRunner(t, cli, func(o *Options) { o.PoolSize = 1 })
	type outcome struct {
		res Result
		err error
		at  time.Time
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := r.Run(t.Context(), Request{Code: "import time\ntime.sleep(30)", Timeout: 60 * time.Second})
		done <- outcome{res, err, time.Now()}
	}()
	// The code runs in a pooled container or a fresh one.
	dockertest.WaitFor(t, "the execution to run", 30*time.Second, func() bool { return r.Stats().Running == 1 })
	time.Sleep(time.Second) // the code is running
	stopAt := time.Now()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		dockertest.StopEngine(t)
	}()
	var o outcome
	select {
	case o = <-done:
	case <-time.After(dockertest.Scale(25 * time.Second)):
		t.Fatal("Run did not return within 25 s of the engine stopping")
	}
	<-stopped
	if !errors.Is(o.err, ErrEngineDown) {
		t.Fatalf("Run = %+v, %v; want ErrEngineDown", o.res.Status, o.err)
	}
	took := o.at.Sub(stopAt)
	t.Logf("Run returned %v after the engine stop began: %v", took.Round(time.Millisecond), o.err)
	if took > dockertest.Scale(5*time.Second) {
		t.Errorf("Run took %v to notice the engine stop, want at most 5 s", took)
	}
	dockertest.StartEngine(t)
	back := servesAgain(t, r, 5*time.Second)
	t.Logf("first success %v after the engine was back", back.Round(time.Millisecond))
}
