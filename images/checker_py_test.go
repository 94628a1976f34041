package images_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/policy"
	"github.com/pyexec/pyexec/runner"
)

// checkerTests are the tests of the policy's file rule in checker.py. Like
// testdata/test_outputs.py they live out of the build context and reach the
// container on stdin.
const checkerTests = "testdata/test_checker.py"

// TestContextCheckerPy runs the tests of checker.py's file rule in a
// locked-down container of the real image, against the harness the image
// holds and the service's default rules (policy.Default()), and requires
// every one of them to pass: paths out of the working directory are refused,
// and the readers and writers of pandas, numpy and matplotlib that the policy
// lets through work in a working directory on the tmpfs.
func TestContextCheckerPy(t *testing.T) {
	script, err := os.ReadFile(checkerTests)
	if err != nil {
		t.Fatal(err)
	}
	defined := len(regexp.MustCompile(`(?m)^    def test_\w+\(self`).FindAll(script, -1))
	if defined < 10 {
		t.Fatalf("%s defines only %d tests", checkerTests, defined)
	}
	rules, err := json.Marshal(policy.Default())
	if err != nil {
		t.Fatal(err)
	}

	cli := dockertest.Require(t)
	image := dockertest.Image(t, cli)
	owner := dockertest.Owner(t)
	defer dockertest.AssertNoContainers(t, cli, owner)
	ctx, cancel := context.WithTimeout(context.Background(), dockertest.Scale(3*time.Minute))
	defer cancel()

	pids := int64(64)
	created, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image:           image,
			User:            "10001:10001", // runner/shared_test.go pins the image's user
			WorkingDir:      "/tmp",
			Entrypoint:      []string{"/usr/bin/python3", "-I", "-B", "-"},
			Env:             []string{"MPLCONFIGDIR=/tmp/mpl", "PYEXEC_TEST_RULES=" + string(rules)},
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
			Tmpfs:          map[string]string{"/tmp": "rw,nosuid,nodev,noexec,size=128m,mode=1777"},
			LogConfig:      container.LogConfig{Type: "none"},
			Resources: container.Resources{
				Memory:     1 << 30,
				MemorySwap: 1 << 30,
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
		t.Fatalf("the tests of checker.py failed (exit %d); see the log above", code)
	}
	ran := regexp.MustCompile(`(?m)^Ran (\d+) tests? in `).FindStringSubmatch(out)
	if ran == nil || !regexp.MustCompile(`(?m)^OK$`).MatchString(out) {
		t.Fatalf("no unittest summary with a plain OK (nothing skipped) in the output")
	}
	if n, _ := strconv.Atoi(ran[1]); n != defined {
		t.Errorf("ran %d tests, %s defines %d", n, checkerTests, defined)
	}
}
