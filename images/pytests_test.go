package images_test

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/runner"
)

// pyTests describes one file of the harness's Python unit tests. They live
// out of the build context (an edit changes no image tag, and no test ships
// in the image) and reach a container of the real image on stdin.
type pyTests struct {
	file string
	// env is added to the container's environment.
	env []string
	// memory and tmpfs size the container; pids bounds its processes.
	memory int64
	tmpfs  string
	pids   int64
	// summary must match unittest's last line (OK, perhaps with skips).
	summary *regexp.Regexp
}

// run runs the file with python3 in a locked-down container of the real
// image (uid 10001, read-only root, tmpfs /tmp, no network, no
// capabilities) and requires every test it defines to run and pass.
func (p pyTests) run(t *testing.T, limit time.Duration) {
	t.Helper()
	script, err := os.ReadFile(p.file)
	if err != nil {
		t.Fatal(err)
	}
	defined := len(regexp.MustCompile(`(?m)^    def test_\w+\(self`).FindAll(script, -1))
	if defined < 10 {
		t.Fatalf("%s defines only %d tests", p.file, defined)
	}

	cli := dockertest.Require(t)
	image := dockertest.Image(t, cli)
	owner := dockertest.Owner(t)
	defer dockertest.AssertNoContainers(t, cli, owner)
	ctx, cancel := context.WithTimeout(context.Background(), dockertest.Scale(limit))
	defer cancel()

	pids := p.pids
	created, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image:           image,
			User:            "10001:10001", // runner/shared_test.go pins the image's user
			WorkingDir:      "/tmp",
			Entrypoint:      []string{"/usr/bin/python3", "-I", "-B", "-"},
			Env:             append([]string{"MPLCONFIGDIR=/tmp/mpl"}, p.env...),
			NetworkDisabled: true,
			AttachStdin:     true,
			AttachStdout:    true,
			AttachStderr:    true,
			OpenStdin:       true,
			StdinOnce:       true,
			Labels:          map[string]string{runner.LabelManaged: "1", runner.LabelOwner: owner},
		},
		HostConfig: &container.HostConfig{
			NetworkMode:    "none",
			ReadonlyRootfs: true,
			CapDrop:        []string{"ALL"},
			SecurityOpt:    []string{"no-new-privileges:true"},
			Tmpfs:          map[string]string{"/tmp": "rw,nosuid,nodev,noexec,size=" + p.tmpfs + ",mode=1777"},
			LogConfig:      container.LogConfig{Type: "none"},
			Resources: container.Resources{
				Memory:     p.memory,
				MemorySwap: p.memory,
				NanoCPUs:   1e9,
				PidsLimit:  &pids,
			},
		},
	})
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	defer func() {
		rmCtx, rmCancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer rmCancel()
		if _, err := cli.ContainerRemove(rmCtx, created.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Errorf("remove container: %v", err)
		}
	}()
	hj, err := cli.ContainerAttach(ctx, created.ID, client.ContainerAttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	defer hj.Close()
	if _, err := cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	if _, err := hj.Conn.Write(script); err != nil {
		t.Fatalf("send the tests: %v", err)
	}
	if err := hj.CloseWrite(); err != nil {
		t.Fatalf("close stdin: %v", err)
	}
	var stdout, stderr bytes.Buffer
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(&stdout, &stderr, hj.Reader)
		copied <- err
	}()
	wait := cli.ContainerWait(ctx, created.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	var code int64
	select {
	case w := <-wait.Result:
		code = w.StatusCode
	case err := <-wait.Error:
		t.Fatalf("wait: %v", err)
	}
	select {
	case <-copied:
	case <-ctx.Done():
		t.Fatal("the output did not end")
	}
	out := stderr.String() // unittest reports on stderr
	t.Logf("%s\n%s", stdout.String(), out)
	if code != 0 {
		t.Fatalf("the tests of %s failed (exit %d); see the log above", p.file, code)
	}
	ran := regexp.MustCompile(`(?m)^Ran (\d+) tests? in `).FindStringSubmatch(out)
	if ran == nil || !p.summary.MatchString(out) {
		t.Fatalf("no unittest summary matching %s in the output", p.summary)
	}
	if n, _ := strconv.Atoi(ran[1]); n != defined {
		t.Errorf("ran %d tests, %s defines %d", n, p.file, defined)
	}
}
