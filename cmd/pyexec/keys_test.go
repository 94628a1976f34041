package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/internal/keys"
	"github.com/pyexec/pyexec/internal/loadgen"
)

// The raw keys of the binary tests: none may appear in the service's output.
const (
	binKeyA       = "key-A-5d8f0a2c4e6b8d0f2a4c6e8b0d2f4a6c"
	binKeyB       = "key-B-9e1c3a5f7d9b1e3c5a7f9d1b3e5c7a9f"
	binKeyC       = "key-C-2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a"
	binKeyD       = "key-D-6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b"
	binKeyUnknown = "key-X-0000111122223333444455556666777"
)

// keysBinary builds cmd/pyexec into the test's temporary directory.
func keysBinary(t *testing.T) string {
	t.Helper()
	root, err := dockertest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := loadgen.Build(root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func keyEntry(name, key, limits string) string {
	s := fmt.Sprintf(`{"name":%q,"sha256":%q`, name, keys.Hash(key))
	if limits != "" {
		s += "," + limits
	}
	return s + "}"
}

// writeKeys replaces the keys file atomically, as an editor or a config
// manager would.
func writeKeys(t *testing.T, path string, entries ...string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(`{"keys":[`+strings.Join(entries, ",\n")+`]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// keyCall is one request with a key; it returns the status, the
// Retry-After header and the error code (if any).
type keyAnswer struct {
	status     int
	retryAfter string
	code       string
	body       map[string]any
}

func keyCall(t *testing.T, c *http.Client, method, url, key, body string) keyAnswer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	a := keyAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if len(data) > 0 {
		_ = json.Unmarshal(data, &a.body)
		if e, ok := a.body["error"].(map[string]any); ok {
			a.code, _ = e["code"].(string)
		}
	}
	return a
}

const helloBody = `{"code":"print('你好, 世界')"}`

// p50 is the median of ds.
func p50(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// logLines are the service's JSON log lines carrying msg.
func logLines(logs, msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestKeysBinary runs the real binary on the real engine with two keys, A
// (one execution at once, 30 a minute, one session) and B (the service's
// limits), and checks the list: A's flood leaves B's latency alone,
// A's 31st call in a minute is a 429 with Retry-After, an unknown key is a
// 401 that creates no container, B cannot see A's session, A's
// max_sessions is a 429, a SIGHUP reload and a changed file take effect
// without a restart, a malformed reload keeps the keys, and no key ever
// appears in the output.
func TestKeysBinary(t *testing.T) {
	cli := dockertest.Require(t)
	dockertest.Image(t, cli)
	bin := keysBinary(t)
	owner := dockertest.Owner(t)
	path := filepath.Join(t.TempDir(), "keys.json")
	entryA := keyEntry("team-a", binKeyA, `"max_concurrent":1,"per_minute":30,"max_sessions":1`)
	entryB := keyEntry("team-b", binKeyB, "")
	writeKeys(t, path, entryA, entryB)
	// The default pool (POOL_SIZE = MAX_WORKERS): the keys share it fairly
	// (runner/fair.go), so A's flood takes only what exceeds B's share and
	// pays its own cold starts while B keeps finding warm containers.
	svc := startKeysBin(t, cli, bin, owner, faultEnv(owner, "API_KEYS_FILE="+path, "LOG_LEVEL=debug", "POOL_SIZE=3"))
	c := &http.Client{Timeout: dockertest.Scale(2 * time.Minute)}
	url := svc.URL

	// quotaFree is when A's quota window of the quota subtest has passed.
	var quotaFree time.Time
	t.Run("quota", func(t *testing.T) {
		// 30 calls within a minute pass, the 31st is a 429. Without a warm
		// pool an execution takes seconds here and A may run one at once,
		// so the calls are code the pre-check refuses (answered 200 with
		// status "error", no container): they count like any other.
		first := time.Now()
		for i := range 30 {
			a := keyCall(t, c, http.MethodPost, url+"/execute", binKeyA, `{"code":"print('未闭合'"}`)
			if a.status != http.StatusOK || a.body["status"] != "error" {
				t.Fatalf("A's call %d: %d %v", i+1, a.status, a.body)
			}
		}
		last := keyCall(t, c, http.MethodPost, url+"/execute", binKeyA, helloBody)
		elapsed := time.Since(first)
		if elapsed > 50*time.Second {
			t.Skipf("30 calls took %v; the machine is too slow for a one-minute window", elapsed)
		}
		if last.status != http.StatusTooManyRequests || last.code != keys.CodeQuotaExceeded {
			t.Fatalf("A's 31st call in %v: %d %v", elapsed, last.status, last.body)
		}
		// Retry-After is when the first call leaves the window.
		ra, err := strconv.Atoi(last.retryAfter)
		if lo := int((60*time.Second - elapsed).Seconds()); err != nil || ra < lo || ra > 60 {
			t.Errorf("Retry-After %q after %v, want %d to 60", last.retryAfter, elapsed, lo)
		}
		quotaFree = first.Add(time.Minute + time.Second)
		t.Logf("A: 30 calls in %v, the 31st: 429 %s, Retry-After %s", elapsed.Round(time.Millisecond), last.code, last.retryAfter)
		// B is untouched.
		if a := keyCall(t, c, http.MethodPost, url+"/execute", binKeyB, helloBody); a.status != http.StatusOK {
			t.Fatalf("B while A is over its quota: %d %v", a.status, a.body)
		}
	})

	t.Run("unknown key runs nothing", func(t *testing.T) {
		// Let the last executions' containers go, and the warm pool refill
		// (its refills create containers in the background).
		dockertest.WaitFor(t, "no execution running and a full pool", time.Minute, func() bool {
			a := keyCall(t, c, http.MethodGet, url+"/health", "", "")
			rn, _ := a.body["runner"].(map[string]any)
			pool, _ := rn["pool"].(map[string]any)
			idle, _ := pool["idle"].(map[string]any)
			filling, _ := pool["filling"].(map[string]any)
			sum := func(m map[string]any) (n float64) {
				for _, v := range m {
					f, _ := v.(float64)
					n += f
				}
				return n
			}
			return rn["running"] == 0.0 && sum(filling) == 0 && sum(idle) == pool["size"]
		})
		containers := func() []string {
			var ids []string
			for _, s := range dockertest.Containers(t, cli, owner) {
				ids = append(ids, s.ID)
			}
			slices.Sort(ids)
			return ids
		}
		// containers_created of /health's runner: every container the
		// service created, pool refills included.
		created := func() float64 {
			a := keyCall(t, c, http.MethodGet, url+"/health", "", "")
			runner, _ := a.body["runner"].(map[string]any)
			n, ok := runner["containers_created"].(float64)
			if !ok {
				t.Fatalf("no runner.containers_created in /health: %v", a.body)
			}
			return n
		}
		before := containers()
		createdBefore := created()
		for _, key := range []string{binKeyUnknown, ""} {
			for _, p := range []string{"/execute", "/sessions"} {
				a := keyCall(t, c, http.MethodPost, url+p, key, `{"code":"open('/tmp/x','w').write('1')"}`)
				if a.status != http.StatusUnauthorized || a.code != "unauthorized" {
					t.Fatalf("POST %s with a key %v: %d %v", p, key != "", a.status, a.body)
				}
			}
		}
		time.Sleep(500 * time.Millisecond)
		createdAfter := created()
		// A container of the last execution may still be on its way out;
		// none may be new.
		for _, id := range containers() {
			if !slices.Contains(before, id) {
				t.Fatalf("a container appeared during the 401s: %s", id[:12])
			}
		}
		if createdAfter != createdBefore {
			t.Fatalf("containers created during the 401s: %v -> %v", createdBefore, createdAfter)
		}
	})

	t.Run("sessions", func(t *testing.T) {
		a := keyCall(t, c, http.MethodPost, url+"/sessions", binKeyA, "")
		if a.status != http.StatusCreated {
			t.Fatalf("A creates a session: %d %v", a.status, a.body)
		}
		id, _ := a.body["id"].(string)
		base := url + "/sessions/" + id
		for _, r := range []struct{ method, url, body string }{
			{http.MethodGet, base, ""},
			{http.MethodPost, base + "/execute", `{"code":"x = 1"}`},
			{http.MethodGet, base + "/files/数据.csv", ""},
			{http.MethodDelete, base, ""},
		} {
			if a := keyCall(t, c, r.method, r.url, binKeyB, r.body); a.status != http.StatusNotFound || a.code != "session_not_found" {
				t.Fatalf("B: %s %s: %d %v", r.method, r.url, a.status, a.body)
			}
		}
		if a := keyCall(t, c, http.MethodGet, base, binKeyA, ""); a.status != http.StatusOK || a.body["id"] != id {
			t.Fatalf("A reads its session: %d %v", a.status, a.body)
		}
		a = keyCall(t, c, http.MethodPost, url+"/sessions", binKeyA, "")
		if a.status != http.StatusTooManyRequests || a.code != "too_many_sessions" || a.retryAfter == "" {
			t.Fatalf("A's second session: %d %v (Retry-After %q)", a.status, a.body, a.retryAfter)
		}
		if a := keyCall(t, c, http.MethodDelete, base, binKeyA, ""); a.status != http.StatusNoContent {
			t.Fatalf("A deletes its session: %d %v", a.status, a.body)
		}
		// Deleted, it no longer counts.
		a = keyCall(t, c, http.MethodPost, url+"/sessions", binKeyA, "")
		if a.status != http.StatusCreated {
			t.Fatalf("A creates again: %d %v", a.status, a.body)
		}
		if id, _ := a.body["id"].(string); keyCall(t, c, http.MethodDelete, url+"/sessions/"+id, binKeyA, "").status != http.StatusNoContent {
			t.Fatal("A could not delete its second session")
		}
	})

	validate := func(key string) int {
		return keyCall(t, c, http.MethodPost, url+"/validate", key, `{"code":"print(1)"}`).status
	}
	t.Run("SIGHUP", func(t *testing.T) {
		// The file watcher polls every 2 s; a SIGHUP sent right after the
		// write almost always reloads first. When the watcher wins, try
		// again with another change.
		for attempt := range 3 {
			key := []string{binKeyC, binKeyD, binKeyC}[attempt]
			name := fmt.Sprintf("team-c%d", attempt)
			writeKeys(t, path, entryA, entryB, keyEntry(name, key, ""))
			if err := syscall.Kill(svc.PID(), syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			dockertest.WaitFor(t, "the SIGHUP reload", 5*time.Second, func() bool { return validate(key) == http.StatusOK })
			var bySignal bool
			for _, l := range logLines(svc.Logs.String(), "keys file reloaded") {
				names, _ := l["names"].([]any)
				if l["trigger"] == "SIGHUP" && l["unchanged"] == false && slices.Contains(names, any(name)) {
					bySignal = true
				}
			}
			if bySignal {
				break
			}
			if attempt == 2 {
				t.Fatal("three reloads, none by SIGHUP")
			}
		}
		if validate(binKeyA) != http.StatusOK || validate(binKeyB) != http.StatusOK {
			t.Fatal("A or B lost after the reload")
		}
	})

	t.Run("file change", func(t *testing.T) {
		byWatch := func() (n int) {
			for _, l := range logLines(svc.Logs.String(), "keys file reloaded") {
				names, _ := l["names"].([]any)
				if l["trigger"] == "file changed" && slices.Contains(names, any("team-d")) {
					n++
				}
			}
			return n
		}
		before := byWatch()
		writeKeys(t, path, entryA, entryB, keyEntry("team-d", binKeyD, ""))
		dockertest.WaitFor(t, "the changed file", 10*time.Second, func() bool {
			return validate(binKeyD) == http.StatusOK && validate(binKeyC) == http.StatusUnauthorized
		})
		if byWatch() != before+1 {
			t.Fatal("no reload logged for the changed file")
		}
		// A's counters survived the reloads: its quota is still used up.
		a := keyCall(t, c, http.MethodPost, url+"/execute", binKeyA, helloBody)
		switch {
		case time.Until(quotaFree) > 3*time.Second && (a.status != http.StatusTooManyRequests || a.code != keys.CodeQuotaExceeded):
			t.Errorf("A after the reloads, within its minute: %d %v; the reloads reset its quota", a.status, a.body)
		case time.Until(quotaFree) <= 3*time.Second:
			t.Logf("A after the reloads: %d %s (its minute has passed)", a.status, a.code)
		}
	})

	t.Run("malformed reload", func(t *testing.T) {
		if err := os.WriteFile(path, []byte(`{"keys":[`+entryA+`,{"name":"team-e","sha256":"not-hex"}]}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(svc.PID(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		dockertest.WaitFor(t, "the failed reload's log line", 10*time.Second, func() bool {
			for _, l := range logLines(svc.Logs.String(), "keys file reload failed; keeping the keys in force") {
				if e, _ := l["error"].(string); strings.Contains(e, "keys[1].sha256 (team-e)") {
					return true
				}
			}
			return false
		})
		time.Sleep(2500 * time.Millisecond) // and the watcher has seen it too
		for _, k := range []string{binKeyB, binKeyD} {
			if got := validate(k); got != http.StatusOK {
				t.Fatalf("a key of the last good file after a malformed reload: %d", got)
			}
		}
		if got := validate(binKeyUnknown); got != http.StatusUnauthorized {
			t.Fatalf("unknown key: %d", got)
		}
	})

	t.Run("flood", func(t *testing.T) {
		// A's quota window from the quota subtest has passed.
		if d := time.Until(quotaFree); d > 0 {
			time.Sleep(d)
		}
		// B's hello world, idle and while A floods with 4 clients, in
		// alternating rounds so that drift of the machine cancels out.
		var idle, flooded []time.Duration
		cold := map[*[]time.Duration]int{} // B's answers not from the warm pool
		var mu sync.Mutex
		aAnswers := map[string]int{}
		// B is an ordinary user, one call every 2 s: a client calling
		// back to back would itself drain the pool faster than it refills
		// (its idle p50 then falls between warm and cold starts).
		measure := func(into *[]time.Duration) {
			for range 5 {
				time.Sleep(dockertest.Scale(2 * time.Second))
				start := time.Now()
				a := keyCall(t, c, http.MethodPost, url+"/execute", binKeyB, helloBody)
				d := time.Since(start)
				if a.status != http.StatusOK || a.body["status"] != "success" {
					t.Fatalf("B: %d %v", a.status, a.body)
				}
				*into = append(*into, d)
				if res, _ := a.body["resources"].(map[string]any); res["warm"] != true {
					cold[into]++
				}
			}
		}
		for round := range 3 {
			measure(&idle)
			// The flood's requests are not cancelled but finish when it
			// stops, so that every execution A was admitted is counted.
			var stop atomic.Bool
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for !stop.Load() {
						req, _ := http.NewRequest(http.MethodPost, url+"/execute", strings.NewReader(helloBody))
						req.Header.Set("Content-Type", "application/json")
						req.Header.Set("X-API-Key", binKeyA)
						resp, err := c.Do(req)
						if err != nil {
							t.Errorf("A's flood: %v", err)
							return
						}
						var body struct {
							Error struct{ Code string } `json:"error"`
						}
						_ = json.NewDecoder(resp.Body).Decode(&body)
						resp.Body.Close()
						mu.Lock()
						aAnswers[strconv.Itoa(resp.StatusCode)+" "+body.Error.Code]++
						mu.Unlock()
						if resp.StatusCode == http.StatusTooManyRequests {
							time.Sleep(100 * time.Millisecond) // still 40 requests/s; the test client shares the CPUs
						}
					}
				})
			}
			measure(&flooded)
			stop.Store(true)
			wg.Wait()
			t.Logf("round %d: A's answers so far %v", round, aAnswers)
		}
		ip, fp := p50(idle), p50(flooded)
		t.Logf("B's hello world p50: idle %v (%d of %d cold), while A floods %v (%d of %d cold), ratio %.2f; A's answers %v",
			ip, cold[&idle], len(idle), fp, cold[&flooded], len(flooded), float64(fp)/float64(ip), aAnswers)
		if fp > 2*ip {
			t.Errorf("B's p50 while A floods is %v, more than twice its idle %v", fp, ip)
		}
		if aAnswers["200 "] == 0 || aAnswers["429 too_many_concurrent"] == 0 {
			t.Errorf("A's flood did not both run and hit its one-at-once limit: %v", aAnswers)
		}

		// B is still served.
		if a := keyCall(t, c, http.MethodPost, url+"/execute", binKeyB, helloBody); a.status != http.StatusOK {
			t.Fatalf("B after A's flood: %d %v", a.status, a.body)
		}
	})

	t.Run("no key in any log line", func(t *testing.T) {
		logs := svc.Logs.String()
		for _, k := range []string{binKeyA, binKeyB, binKeyC, binKeyD, binKeyUnknown} {
			if i := strings.Index(logs, k); i >= 0 {
				t.Fatalf("the output carries a key: ...%s...", logs[max(0, i-200):min(len(logs), i+len(k)+50)])
			}
		}
		// Request lines name the key.
		names := map[any]int{}
		for _, l := range logLines(logs, "request") {
			names[l["key"]]++
		}
		if names["team-a"] == 0 || names["team-b"] == 0 || names["unauthenticated"] == 0 {
			t.Fatalf("request lines by key: %v", names)
		}
	})
}

// startKeysBin starts bin with env like startBin, waiting for /health
// without a warm pool.
func startKeysBin(t *testing.T, cli *client.Client, bin, owner string, env []string) *loadgen.Service {
	t.Helper()
	port, err := loadgen.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	svc, err := loadgen.Start(bin, port, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := svc.Stop(dockertest.Scale(90 * time.Second)); err != nil {
			t.Errorf("service %s: exit after SIGTERM: %v", owner, err)
		}
		if t.Failed() {
			t.Logf("service output (last 8 kB):\n%s", tail(svc.Logs.String(), 8<<10))
		}
		dockertest.AssertNoContainers(t, cli, owner)
	})
	if err := svc.WaitReady(dockertest.Scale(5*time.Minute), 0); err != nil {
		t.Fatalf("service %s: %v\n%s", owner, err, tail(svc.Logs.String(), 8<<10))
	}
	return svc
}

// TestKeysBadFileStopsStartup: a malformed or missing API_KEYS_FILE stops
// the binary before it touches the engine, naming the variable and the
// problem. It also runs `pyexec -hash-key` as the README shows it.
func TestKeysBadFileStopsStartup(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := keysBinary(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(bad, []byte(`{"keys":[{"name":"team-a","sha256":"`+keys.Hash(binKeyA)+`","per_minute":-5}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, want string }{
		{bad, "keys[0].per_minute (team-a): -5"},
		{filepath.Join(dir, "missing.json"), "no such file"},
	} {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "API_KEYS_FILE="+tc.file)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
				t.Fatalf("exit %v, want status 2\n%s", err, out.String())
			}
		case <-time.After(dockertest.Scale(30 * time.Second)):
			_ = cmd.Process.Kill()
			t.Fatalf("still running with a bad keys file\n%s", out.String())
		}
		if s := out.String(); !strings.Contains(s, "API_KEYS_FILE") || !strings.Contains(s, tc.want) {
			t.Errorf("output %q does not name API_KEYS_FILE and %q", s, tc.want)
		}
	}

	cmd := exec.Command(bin, "-hash-key")
	cmd.Stdin = strings.NewReader(binKeyB + "\n")
	got, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(got)) != keys.Hash(binKeyB) {
		t.Fatalf("pyexec -hash-key printed %q", got)
	}
}

func TestHashKey(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := hashKey(strings.NewReader(binKeyA+"\n"), &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if got := strings.TrimSpace(out.String()); got != keys.Hash(binKeyA) || len(got) != 64 {
		t.Fatalf("hash %q", got)
	}
	for _, in := range []string{"", "\n", "short", "has space in the middle of it"} {
		out.Reset()
		errOut.Reset()
		if code := hashKey(strings.NewReader(in), &out, &errOut); code != 2 || out.Len() != 0 || errOut.Len() == 0 {
			t.Errorf("input %q: exit %d, stdout %q, stderr %q", in, code, out.String(), errOut.String())
		}
	}
}

func TestConfigAPIKeysFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	writeKeys(t, good, keyEntry("team-a", binKeyA, `"per_minute":30`))
	c, err := loadConfig(env(map[string]string{"API_KEYS_FILE": good}))
	if err != nil || c.APIKeysFile != good || c.fields()["api_keys_file"] != good {
		t.Fatalf("good file: %v %q", err, c.APIKeysFile)
	}
	dup := filepath.Join(dir, "dup.json")
	writeKeys(t, dup, keyEntry("team-a", binKeyA, ""), keyEntry("team-a", binKeyB, ""))
	if _, err := loadConfig(env(map[string]string{"API_KEYS_FILE": dup})); err == nil ||
		!strings.Contains(err.Error(), "API_KEYS_FILE") || !strings.Contains(err.Error(), "keys[1].name") {
		t.Fatalf("duplicate names: %v", err)
	}
	if c, err := loadConfig(env(nil)); err != nil || c.APIKeysFile != "" {
		t.Fatalf("unset: %v %q", err, c.APIKeysFile)
	}

	// Without keys, a warning at start; with them, the names (never keys).
	log, hook := test.NewNullLogger()
	store, err := openKeys(Config{}, log)
	if err != nil || store != nil {
		t.Fatalf("no keys: %v %v", store, err)
	}
	if e := hook.LastEntry(); e == nil || e.Level != logrus.WarnLevel || !strings.Contains(e.Message, "API_KEYS_FILE is not set") {
		t.Fatalf("no warning without keys: %+v", e)
	}
	store, err = openKeys(Config{APIKeysFile: good}, log)
	if err != nil || store.Len() != 1 {
		t.Fatalf("keys: %v", err)
	}
	for _, e := range hook.AllEntries() {
		line, _ := e.String()
		if strings.Contains(line, binKeyA) || strings.Contains(line, keys.Hash(binKeyA)) {
			t.Fatalf("a log line carries the key or its hash: %s", line)
		}
	}
}
