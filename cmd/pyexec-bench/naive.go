package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/pyexec/pyexec/runner/seccomp"
)

// Labels, as the service uses them (runner/labels.go). The naive baseline
// marks its containers as managed so a service's reaper would recognise
// them as pyexec's, with its own owner so no service ever takes them for
// its own.
const (
	labelManaged = "io.pyexec.managed"
	labelOwner   = "io.pyexec.owner"
	labelRole    = "io.pyexec.role"
)

// naiveOutputCap bounds what is kept of a naive container's output.
const naiveOutputCap = 1 << 20

// limits are the per-container limits, taken from the service's settings so
// both paths run under the same ones.
type limits struct {
	MemoryBytes int64   `json:"memory_limit_bytes"`
	CPUs        float64 `json:"cpu_limit"`
	PidsLimit   int64   `json:"pids_limit"`
	TmpfsBytes  int64   `json:"tmpfs_bytes"`
}

// naive runs each execution the obvious way: a fresh container per request,
// created, started, waited for, its logs read, and removed. No pool, no
// harness.
type naive struct {
	cli     *client.Client
	image   string
	owner   string
	lim     limits
	seccomp string
	// cleanupTimeout bounds one removal.
	cleanupTimeout time.Duration
	// seq numbers container names.
	seq atomic.Int64
}

func newNaive(cli *client.Client, image, owner string, lim limits) (*naive, error) {
	prof, err := seccomp.Profile()
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	return &naive{cli: cli, image: image, owner: owner, lim: lim, seccomp: string(prof), cleanupTimeout: 30 * time.Second}, nil
}

// spec mirrors runner/hostconfig.go: network none, read-only root, size-
// capped noexec tmpfs at /tmp, all capabilities dropped, no-new-privileges,
// pyexec's seccomp profile, memory (no swap), CPU and pids limits, the same
// ulimits, user 10001. The one difference is the log driver: the naive path
// reads the output back from the engine's logs, so it keeps json-file
// where the service uses "none" and an attach stream.
func (n *naive) spec(code, role string) (*container.Config, *container.HostConfig) {
	cfg := &container.Config{
		Image:           n.image,
		User:            "10001:10001",
		WorkingDir:      "/tmp",
		Hostname:        "sandbox",
		NetworkDisabled: true,
		Entrypoint:      []string{"/usr/bin/python3", "-c", code},
		Labels: map[string]string{
			labelManaged: "1",
			labelOwner:   n.owner,
			labelRole:    role,
		},
	}
	pids := n.lim.PidsLimit
	host := &container.HostConfig{
		NetworkMode:    "none",
		ReadonlyRootfs: true,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges:true", "seccomp=" + n.seccomp},
		IpcMode:        "private",
		ShmSize:        16 << 20,
		LogConfig:      container.LogConfig{Type: "json-file"},
		Tmpfs: map[string]string{
			"/tmp": fmt.Sprintf("rw,nosuid,nodev,noexec,size=%d,mode=1777", n.lim.TmpfsBytes),
		},
		Resources: container.Resources{
			Memory:     n.lim.MemoryBytes,
			MemorySwap: n.lim.MemoryBytes,
			NanoCPUs:   int64(n.lim.CPUs * 1e9),
			PidsLimit:  &pids,
			Ulimits: []*container.Ulimit{
				{Name: "nofile", Soft: 256, Hard: 256},
				{Name: "core", Soft: 0, Hard: 0},
				{Name: "fsize", Soft: n.lim.TmpfsBytes, Hard: n.lim.TmpfsBytes},
			},
		},
	}
	return cfg, host
}

// run executes code in a fresh container. Latency runs from the create call
// until the output has been read and checked, which is when a naive service
// could answer; the removal that follows is not in the latency but is done
// before run returns, so it counts against throughput.
func (n *naive) run(ctx context.Context, code, role string, check func(stdout string) error) (o outcome) {
	start := time.Now()
	fail := func(key string, err error) outcome {
		if k := ctxKey(ctx); k != "" {
			key = k
		}
		return outcome{latency: time.Since(start), errKey: key, errMsg: err.Error()}
	}
	cfg, host := n.spec(code, role)
	// A name of our own: when the create call fails on our side (timeout,
	// Ctrl-C) the engine may still have made the container, and only the
	// name finds it then.
	name := fmt.Sprintf("%s-%d", n.owner, n.seq.Add(1))
	created, err := n.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: cfg, HostConfig: host, NetworkingConfig: &network.NetworkingConfig{}, Name: name,
	})
	if err != nil {
		_ = n.remove(ctx, name)
		return fail("create", err)
	}
	defer func() {
		if err := n.remove(ctx, created.ID); err != nil && o.ok {
			o = outcome{latency: o.latency, errKey: "remove", errMsg: err.Error()}
		}
	}()

	// Wait is registered before start so the exit cannot be missed.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wait := n.cli.ContainerWait(wctx, created.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := n.cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		return fail("start", err)
	}
	var exit int64
	select {
	case w := <-wait.Result:
		if w.Error != nil {
			return fail("wait", errors.New(w.Error.Message))
		}
		exit = w.StatusCode
	case err := <-wait.Error:
		return fail("wait", err)
	case <-ctx.Done():
		return fail("wait", ctx.Err())
	}

	stdout, stderr, err := n.logs(ctx, created.ID)
	if err != nil {
		return fail("logs", err)
	}
	if exit != 0 {
		return fail(fmt.Sprintf("exit_%d", exit), fmt.Errorf("stderr: %s", clip(stderr, 300)))
	}
	if check != nil {
		if err := check(stdout); err != nil {
			return fail("check", err)
		}
	}
	return outcome{latency: time.Since(start), ok: true}
}

// logs reads a stopped container's stdout and stderr, each capped.
func (n *naive) logs(ctx context.Context, id string) (string, string, error) {
	rc, err := n.cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "", "", err
	}
	defer rc.Close()
	var out, errb bytes.Buffer
	_, err = stdcopy.StdCopy(&limitedWriter{w: &out, n: naiveOutputCap}, &limitedWriter{w: &errb, n: naiveOutputCap}, rc)
	return out.String(), errb.String(), err
}

// remove force-removes a container under its own deadline, even when ctx is
// already cancelled. NotFound means it is gone already.
func (n *naive) remove(ctx context.Context, id string) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cleanupTimeout)
	defer cancel()
	_, err := n.cli.ContainerRemove(cctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %.12s: %w", id, err)
	}
	return nil
}

// listOwned lists containers (running or not) carrying owner's label.
func listOwned(ctx context.Context, cli *client.Client, owner string) ([]container.Summary, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", labelOwner+"="+owner),
	})
	return list.Items, err
}

// limitedWriter keeps the first n bytes and drops the rest.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
		l.n -= k
	}
	return len(p), nil
}
