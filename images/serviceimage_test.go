package images_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/internal/loadgen"
)

// serviceImage is the tag `make service-image` builds.
const serviceImage = "pyexec:latest"

// TestServiceImage builds the service's own image from source the way
// `make service-image` does (images/service-image.sh: the top-level
// Dockerfile, with this host's extra CAs and GOPROXY), runs it with the
// engine's socket mounted, as the README says, and checks that it answers
// the README's curl (and a Chinese print), that its HEALTHCHECK turns
// healthy, that its CA bundle has none of the build host's extra CAs, and
// that it leaves no container. The first build takes minutes (Debian's Go,
// the toolchain go.mod asks for, the modules); later ones reuse the layers.
func TestServiceImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the service image")
	}
	cli := dockertest.Require(t)
	// The analytics image this source tree names: the service in the
	// container computes the same tag, and must not build it.
	analytics := dockertest.Image(t, cli)
	root, err := dockertest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), dockertest.Scale(30*time.Minute))
	defer cancel()
	start := time.Now()
	build := exec.CommandContext(ctx, "bash", filepath.Join(root, "images", "service-image.sh"))
	build.Env = append(os.Environ(), "PYEXEC_SERVICE_IMAGE="+serviceImage)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("images/service-image.sh: %v\n%s", err, tailLines(string(out), 40))
	}
	size := strings.TrimSpace(dockerOut(t, ctx, "image", "inspect", "-f", "{{.Size}}", serviceImage))
	t.Logf("built %s in %s, %s bytes", serviceImage, time.Since(start).Round(time.Second), size)
	var sizeBytes int64
	if _, err := fmt.Sscan(size, &sizeBytes); err != nil || sizeBytes <= 0 || sizeBytes > 250_000_000 {
		t.Errorf("image size %q: want a number of bytes under 250 MB", size)
	}
	hc := dockerOut(t, ctx, "image", "inspect", "-f", "{{json .Config.Healthcheck.Test}}", serviceImage)
	if !strings.Contains(hc, "-healthcheck") {
		t.Errorf("image HEALTHCHECK = %s, want pyexec -healthcheck", hc)
	}

	owner := dockertest.Owner(t)
	// The service's own containers carry a label of the test, not the
	// sandboxes' labels: the service reaps every container of its
	// SERVICE_ID at start, its own one included if it had them.
	testLabel := "io.pyexec.test-service=" + owner
	labels := []string{"--label", testLabel}
	t.Run("ca bundle", func(t *testing.T) {
		// The image may have no shell or cat (FROM scratch): copy the
		// file out of a container created, never started.
		id := strings.TrimSpace(dockerOut(t, ctx, append(append([]string{"create"}, labels...), serviceImage)...))
		defer func() { _ = exec.Command("docker", "rm", "-f", id).Run() }()
		bundle := fileFromTar(t, dockerOut(t, ctx, "cp", id+":/etc/ssl/certs/ca-certificates.crt", "-"))
		if !strings.Contains(bundle, "BEGIN CERTIFICATE") {
			t.Fatal("the image has no CA bundle")
		}
		extra, _ := filepath.Glob("/usr/local/share/ca-certificates/*.crt")
		for _, f := range extra {
			pem, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if body := pemBody(string(pem)); body != "" && strings.Contains(pemBody(bundle), body) {
				t.Errorf("the final image trusts the build host's extra CA %s", f)
			}
		}
	})

	port, err := loadgen.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	name := "pyexec-svc-" + owner
	sock := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		sock = strings.TrimPrefix(h, "unix://")
	}
	args := append([]string{"run", "-d", "--name", name}, labels...)
	args = append(args,
		"-p", fmt.Sprintf("127.0.0.1:%d:8000", port),
		"-v", sock+":/var/run/docker.sock",
		"-e", "SERVICE_ID="+owner,
		"-e", "MAX_WORKERS=2", "-e", "POOL_SIZE=1", "-e", "BUILD_IMAGE=false",
		serviceImage)
	id := strings.TrimSpace(dockerOut(t, ctx, args...))
	removed := false
	remove := func() {
		if removed {
			return
		}
		removed = true
		rctx, rcancel := context.WithTimeout(context.Background(), dockertest.Scale(2*time.Minute))
		defer rcancel()
		// SIGTERM first: the service removes its pool's containers.
		if out, err := exec.CommandContext(rctx, "docker", "stop", "-t", "60", id).CombinedOutput(); err != nil {
			t.Errorf("docker stop: %v: %s", err, out)
		}
		if t.Failed() {
			logs, _ := exec.CommandContext(rctx, "docker", "logs", "--tail", "30", id).CombinedOutput()
			t.Logf("service logs:\n%s", logs)
		}
		if out, err := exec.CommandContext(rctx, "docker", "rm", "-f", id).CombinedOutput(); err != nil {
			t.Errorf("docker rm: %v: %s", err, out)
		}
	}
	t.Cleanup(remove)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	// Ready: the engine answers through the socket and the image is there
	// (the service in the container names the same analytics image as this
	// test, both from this source tree; BUILD_IMAGE=false, it builds none).
	var last string
	ready := func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			last = err.Error()
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		if resp.StatusCode != http.StatusOK {
			time.Sleep(200 * time.Millisecond)
		}
		return resp.StatusCode == http.StatusOK
	}
	deadline := time.Now().Add(dockertest.Scale(2 * time.Minute))
	for !ready() {
		if time.Now().After(deadline) {
			t.Fatalf("GET /readyz not 200 within %v; last answer: %s", dockertest.Scale(2*time.Minute), last)
		}
	}

	t.Run("readme curl", func(t *testing.T) {
		for _, c := range []struct{ code, want string }{
			{`print("Hello World")`, "Hello World\n"},
			{`print("你好，世界")`, "你好，世界\n"},
		} {
			body, _ := json.Marshal(map[string]any{"code": c.code, "timeout": 30})
			resp, err := http.Post(base+"/execute", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			var out struct {
				Status string `json:"status"`
				Output struct {
					Stdout string `json:"stdout"`
				} `json:"output"`
			}
			err = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || out.Status != "success" || out.Output.Stdout != c.want {
				t.Errorf("POST /execute %s: %d %+v (%v), want 200 success stdout %q", c.code, resp.StatusCode, out, err, c.want)
			}
		}
	})

	t.Run("healthcheck", func(t *testing.T) {
		// The first check runs one interval (10 s) after the start.
		var status string
		dockertest.WaitFor(t, "HEALTHCHECK healthy", 90*time.Second, func() bool {
			out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", "{{.State.Health.Status}}", id).Output()
			status = strings.TrimSpace(string(out))
			if err == nil && status != "healthy" {
				time.Sleep(time.Second)
			}
			return err == nil && status == "healthy"
		})
		// The binary's check by hand, and against a port nobody serves.
		if out, err := exec.CommandContext(ctx, "docker", "exec", id, "pyexec", "-healthcheck").CombinedOutput(); err != nil {
			t.Errorf("pyexec -healthcheck in the container: %v: %s", err, out)
		}
		out, err := exec.CommandContext(ctx, "docker", "exec", "-e", "PORT=1", id, "pyexec", "-healthcheck").CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "/livez") {
			t.Errorf("pyexec -healthcheck on a closed port: %v: %s, want exit 1 naming /livez", err, out)
		}
	})

	remove()
	dockertest.AssertNoContainers(t, cli, owner)
	if left := strings.TrimSpace(dockerOut(t, ctx, "ps", "-aq", "--filter", "label="+testLabel)); left != "" {
		t.Errorf("service containers left: %s", left)
	}
	t.Logf("analytics image %s, service image %s (%s bytes)", analytics, serviceImage, size)
}

// dockerOut runs the docker CLI and returns its standard output.
func dockerOut(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// pemBody is the base64 of the PEM blocks in s, without line breaks, so
// that the same certificate matches however it was wrapped.
func pemBody(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "-----") {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// fileFromTar is the content of the one file in the tar archive ar.
func fileFromTar(t *testing.T, ar string) string {
	t.Helper()
	tr := tar.NewReader(strings.NewReader(ar))
	if _, err := tr.Next(); err != nil {
		t.Fatalf("docker cp: %v", err)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		t.Fatalf("docker cp: %v", err)
	}
	return string(b)
}

// tailLines is the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
