package pyexecclient_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/internal/loadgen"
)

// python is the interpreter the client is tested with (Debian's).
const python = "/usr/bin/python3"

// resultLine is one line of `unittest -v`: the test's name and its outcome
// ("ok", "FAIL", "ERROR", "skipped '...'").
var resultLine = regexp.MustCompile(`(?m)^(test_\w+) \([^)]*\) \.\.\. (.*)$`)

// TestPythonClient starts the real binary (MAX_SESSIONS=1, and a keys file:
// a main key for the tests, a key limited to 1 call a minute) on the real
// engine, runs `python3 -m unittest discover -s clients/python/tests -v`
// against it, and fails on any failure, on a key test skipped while the
// service has keys, on an API key in the service's log, and on any
// container of its SERVICE_ID left behind.
func TestPythonClient(t *testing.T) {
	cli := dockertest.Require(t)
	dockertest.Image(t, cli) // the binary then finds the image and builds nothing
	if _, err := os.Stat(python); err != nil {
		if dockertest.Required() {
			t.Fatalf("%s is required to test the Python client: %v", python, err)
		}
		t.Skipf("no %s: %v", python, err)
	}
	root, err := dockertest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin, err := loadgen.Build(root, dir)
	if err != nil {
		t.Fatal(err)
	}

	mainKey, quotaKey := randomKey(t, "pyclient-main-"), randomKey(t, "pyclient-quota-")
	keysFile := filepath.Join(dir, "keys.json")
	writeKeys(t, keysFile, map[string]any{"keys": []map[string]any{
		{"name": "pyclient-main", "sha256": sha(mainKey)},
		{"name": "pyclient-quota", "sha256": sha(quotaKey), "per_minute": 1},
	}})

	port, err := loadgen.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	owner := dockertest.Owner(t)
	svc, err := loadgen.Start(bin, port, []string{
		"SERVICE_ID=" + owner,
		"MAX_WORKERS=2",
		"POOL_SIZE=1",
		"MAX_SESSIONS=1",
		"BUILD_IMAGE=false",
		"API_KEYS_FILE=" + keysFile,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := svc.Stop(dockertest.Scale(60 * time.Second)); err != nil {
			t.Errorf("service stop: %v", err)
		}
		logs := svc.Logs.String()
		for _, k := range []string{mainKey, quotaKey, "wrong-key-not-in-file"} {
			if strings.Contains(logs, k) {
				t.Errorf("an API key (%s...) appears in the service's log", k[:10])
			}
		}
		if t.Failed() {
			t.Logf("service output:\n%s", logs)
		}
		dockertest.AssertNoContainers(t, cli, owner) // also removes leftovers
	})
	if err := svc.WaitReady(dockertest.Scale(2*time.Minute), 1); err != nil {
		t.Fatal(err)
	}

	// Keys are on when a request without one is refused (a binary without
	// API_KEYS_FILE support ignores it; the key tests then skip).
	keysOn := probeStatus(t, svc.URL+"/validate") == http.StatusUnauthorized
	t.Logf("service has API keys: %v", keysOn)

	ctx, cancel := context.WithTimeout(context.Background(), dockertest.Scale(15*time.Minute))
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-m", "unittest", "discover", "-s", "clients/python/tests", "-v")
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"PYEXEC_URL="+svc.URL,
		"PYTHONDONTWRITEBYTECODE=1",
		"PYTHONIOENCODING=utf-8",
		"NO_PROXY=127.0.0.1,localhost",
		"no_proxy=127.0.0.1,localhost",
	)
	if keysOn {
		cmd.Env = append(cmd.Env, "PYEXEC_API_KEY="+mainKey, "PYEXEC_TEST_BAD_KEY=1", "PYEXEC_TEST_QUOTA_KEY="+quotaKey)
	}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("python3 -m unittest (%v):\n%s", time.Since(start).Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("the Python client's tests failed: %v", err)
	}

	outcomes := map[string]string{}
	for _, m := range resultLine.FindAllStringSubmatch(string(out), -1) {
		outcomes[m[1]] = m[2]
	}
	must := []string{
		"test_execute_hello", "test_execute_input_files", "test_chart_png", "test_dataframe",
		"test_error_result", "test_session_files", "test_too_many_sessions_429",
		"test_stream_incremental", "test_stream_chart_and_error", "test_session_stream",
		// test_units: the SSE parser on canned bytes, streaming and retries
		// against a local stdlib server.
		"test_events_comments_and_multiline", "test_stream_reads_incrementally", "test_retry_honours_retry_after",
	}
	if keysOn {
		must = append(must, "test_unauthorized", "test_quota_429")
	}
	for _, name := range must {
		if got, ok := outcomes[name]; !ok || got != "ok" {
			t.Errorf("%s: %q, want ok (ran: %d tests)", name, got, len(outcomes))
		}
	}
}

// probeStatus is the status of a POST of valid code to url, without a key.
func probeStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(`{"code": "print(1)"}`))
	if err != nil {
		t.Fatalf("probe %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func randomKey(t *testing.T, prefix string) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b[:])
}

func sha(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

func writeKeys(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(fmt.Errorf("keys file: %w", err))
	}
}
