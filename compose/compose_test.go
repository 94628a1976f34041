// Package compose_test checks the deployments in compose/ for real, on this
// machine's engine: docker-compose.yml (three replicas behind nginx) with
// the current Compose plugin (make compose-tool), and stack.yml on a
// single-node Swarm. Both change engine-wide state (networks, a swarm), so
// they hold the engine lock exclusively (dockertest.RequireExclusive).
//
// They need the docker CLI with the compose plugin, and build the service
// image from source through Compose (make service-image warms the cache).
package compose_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/internal/loadgen"
)

// replicas are the compose services behind nginx, in order: replica N
// makes session IDs "eN-...".
var replicas = []string{"python-executor-1", "python-executor-2", "python-executor-3"}

// stack is one brought-up compose project.
type stack struct {
	t       *testing.T
	project string
	env     []string
	base    string
	owners  map[string]string // service → SERVICE_ID
}

// dockerCLI fails (or skips outside CI) unless `docker compose` answers.
func dockerCLI(t *testing.T) {
	t.Helper()
	out, err := exec.Command("docker", "compose", "version", "--short").CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("docker compose plugin unavailable (run make compose-tool): %v: %s", err, out)
		if dockertest.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Logf("docker compose %s", strings.TrimSpace(string(out)))
}

// buildEnv is what make service-image passes to the build (images/
// service-image.sh), so that Compose's build of the same Dockerfile hits
// the same layer cache: this host's extra CAs, GOPROXY and GOSUMDB.
func buildEnv(t *testing.T) []string {
	t.Helper()
	var env []string
	dir := "/usr/local/share/ca-certificates"
	var files []string
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && (strings.HasSuffix(p, ".crt") || strings.HasSuffix(p, ".pem")) {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	// Exactly service-image.sh's value: each file without its trailing
	// newlines, plus one.
	var ca strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(b, []byte("BEGIN CERTIFICATE")) {
			continue
		}
		ca.WriteString(strings.TrimRight(string(b), "\n") + "\n")
	}
	env = append(env, "EXTRA_CA_CERTS="+ca.String(), "PYEXEC_BUILD_NETWORK=host")
	for _, v := range []string{"GOPROXY", "GOSUMDB"} {
		if out, err := exec.Command("go", "env", v).Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
			env = append(env, v+"="+strings.TrimSpace(string(out)))
		}
	}
	return env
}

func randomSuffix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// run runs a command with env added, bounded by limit; it returns the
// combined output.
func run(limit time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(string(out), 3000))
	}
	return string(out), nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (s *stack) compose(limit time.Duration, args ...string) (string, error) {
	return run(limit, s.env, "docker", append([]string{"compose", "-f", "docker-compose.yml", "-p", s.project}, args...)...)
}

// cid is the container ID of a service.
func (s *stack) cid(service string) string {
	s.t.Helper()
	out, err := s.compose(30*time.Second, "ps", "-q", service)
	if err != nil {
		s.t.Fatalf("ps %s: %v", service, err)
	}
	return strings.TrimSpace(out)
}

// inspect returns a docker inspect -f field of a container.
func inspect(t *testing.T, id, format string) string {
	t.Helper()
	out, err := run(30*time.Second, nil, "docker", "inspect", "-f", format, id)
	if err != nil {
		t.Fatalf("inspect %s: %v", id, err)
	}
	return strings.TrimSpace(out)
}

// leftovers lists what the engine still holds of a compose project.
func leftovers(project string) []string {
	var left []string
	for _, kind := range [][]string{
		{"ps", "-aq"}, {"network", "ls", "-q"}, {"volume", "ls", "-q"},
	} {
		args := append(append([]string{}, kind...), "--filter", "label=com.docker.compose.project="+project)
		out, err := run(30*time.Second, nil, "docker", args...)
		if err != nil {
			left = append(left, err.Error())
			continue
		}
		for _, id := range strings.Fields(out) {
			left = append(left, kind[0]+" "+id)
		}
	}
	return left
}

// answer is one HTTP exchange through nginx.
type answer struct {
	status   int
	body     []byte
	servedBy string
	reqID    string
	took     time.Duration
	err      error
}

func (a answer) code() string {
	var eb struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(a.body, &eb)
	return eb.Error.Code
}

func (a answer) String() string {
	if a.err != nil {
		return fmt.Sprintf("error after %v: %v", a.took, a.err)
	}
	return fmt.Sprintf("%d from %q after %v: %s", a.status, a.servedBy, a.took.Round(time.Millisecond), tail(string(a.body), 300))
}

var httpClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func do(method, url string, body any, hdr map[string]string, limit time.Duration) answer {
	start := time.Now()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return answer{err: err}
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return answer{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	return answer{status: resp.StatusCode, body: raw, err: err, took: time.Since(start),
		servedBy: resp.Header.Get("X-Served-By"), reqID: resp.Header.Get("X-Request-ID")}
}

// up brings the stack up with the current Compose and registers its
// teardown and the leftover checks.
func up(t *testing.T) *stack {
	t.Helper()
	suffix := randomSuffix()
	port, err := loadgen.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, project: "pyexectest" + suffix, base: fmt.Sprintf("http://127.0.0.1:%d", port),
		owners: map[string]string{}}
	prefix := "pyexec-compose-test-" + suffix
	for _, r := range replicas {
		s.owners[r] = prefix + "-" + r
	}
	s.env = append(buildEnv(t),
		"PYEXEC_SERVICE_ID_PREFIX="+prefix,
		"PYEXEC_BIND=127.0.0.1",
		"PYEXEC_PORT="+strconv.Itoa(port),
		// Own tags: the shared pyexec:latest is not retagged by this test.
		"PYEXEC_IMAGE=pyexec:compose-test",
		"PYEXEC_NGINX_IMAGE=pyexec-nginx:compose-test",
		// Two cores here: 3 replicas × 2 workers.
		"MAX_WORKERS=2",
		"MAX_QUEUE=16",
		// Small, to check nginx's body limit follows it: the service's
		// limit for 1m is 1 MiB + 64 KiB + 4/3 MiB = 2512216 bytes.
		"MAX_INPUT_BYTES=1m",
		"LOG_LEVEL=info",
	)
	cli := dockertest.RequireExclusive(t)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := s.compose(time.Minute, "logs", "--no-color", "--tail", "30")
			t.Logf("last log lines of the stack:\n%s", tail(out, 12000))
		}
		start := time.Now()
		if out, err := s.compose(3*time.Minute, "down", "-v", "--remove-orphans", "-t", "20"); err != nil {
			t.Errorf("down: %v\n%s", err, out)
		}
		t.Logf("down took %v", time.Since(start).Round(time.Millisecond))
		if left := leftovers(s.project); len(left) > 0 {
			t.Errorf("after down, the engine still holds: %s", strings.Join(left, ", "))
		}
		for _, o := range s.owners {
			dockertest.AssertNoContainers(t, cli, o)
		}
		// The tags only: their layers stay as the next run's build cache
		// (and the service image's are make service-image's).
		_, _ = run(time.Minute, nil, "docker", "image", "rm", "--no-prune", "pyexec-nginx:compose-test", "pyexec:compose-test")
	})
	start := time.Now()
	if _, err := s.compose(dockertest.Scale(25*time.Minute), "up", "-d", "--build"); err != nil {
		t.Fatalf("up -d --build: %v", err)
	}
	t.Logf("up -d --build took %v", time.Since(start).Round(time.Millisecond))
	return s
}

// waitReady waits until nginx has had GET /readyz answered 200 by every
// replica (X-Served-By), i.e. all three can run code.
func (s *stack) waitReady(limit time.Duration) {
	s.t.Helper()
	start := time.Now()
	ready := map[string]bool{}
	var last answer
	dockertest.WaitFor(s.t, "every replica ready through nginx", limit, func() bool {
		last = do("GET", s.base+"/readyz", nil, nil, 10*time.Second)
		if last.err == nil && last.status == http.StatusOK && last.servedBy != "" {
			ready[last.servedBy] = true
		}
		if len(ready) == len(replicas) {
			return true
		}
		time.Sleep(200 * time.Millisecond)
		return false
	})
	s.t.Logf("all %d replicas ready after %v", len(replicas), time.Since(start).Round(time.Millisecond))
}

type execResult struct {
	Status string `json:"status"`
	Output struct {
		Stdout string `json:"stdout"`
	} `json:"output"`
}

func TestComposeStack(t *testing.T) {
	dockerCLI(t)
	testStart := time.Now()
	s := up(t)
	s.waitReady(5 * time.Minute)
	owner := map[string]string{} // SERVICE_ID → service
	for svc, o := range s.owners {
		owner[o] = svc
	}

	t.Run("spread", func(t *testing.T) {
		const n = 18
		var mu sync.Mutex
		served := map[string]int{}
		var wg sync.WaitGroup
		errs := make(chan string, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("compose-test-%d", i)
				a := do("POST", s.base+"/execute", map[string]any{"code": fmt.Sprintf("print('你好', %d)", i)},
					map[string]string{"X-Request-ID": id}, 2*time.Minute)
				var r execResult
				if a.err != nil || a.status != http.StatusOK || json.Unmarshal(a.body, &r) != nil ||
					r.Status != "success" || r.Output.Stdout != fmt.Sprintf("你好 %d\n", i) {
					errs <- fmt.Sprintf("execution %d: %v", i, a)
					return
				}
				if a.reqID != id {
					errs <- fmt.Sprintf("execution %d: X-Request-ID %q, want %q", i, a.reqID, id)
				}
				if _, ok := owner[a.servedBy]; !ok {
					errs <- fmt.Sprintf("execution %d: X-Served-By %q is no replica of the stack", i, a.servedBy)
				}
				mu.Lock()
				served[a.servedBy]++
				mu.Unlock()
			}()
			if i%6 == 5 {
				wg.Wait()
			}
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
		t.Logf("executions per replica: %v", served)
		if len(served) != len(replicas) {
			t.Errorf("%d executions reached %d replicas (%v), want all %d", n, len(served), served, len(replicas))
		}
		// Without X-Request-ID, nginx makes one (32 hex digits) and the
		// replica answers with it.
		a := do("GET", s.base+"/livez", nil, nil, 10*time.Second)
		if a.status != http.StatusOK || len(a.reqID) != 32 {
			t.Errorf("GET /livez without X-Request-ID: %v, X-Request-ID %q", a, a.reqID)
		}
	})

	t.Run("body_limit", func(t *testing.T) {
		// 2 MiB is within the service's limit for MAX_INPUT_BYTES=1m
		// (2512216 bytes): nginx passes it on (the service refuses the
		// unknown field, not the size).
		big := []byte(`{"code": "print(1)", "files": [{"name": "a.txt", "content_base64": "` +
			strings.Repeat("QUFB", 2<<20/4) + `"}], "unknown_field_x": 1}`)
		a := do("POST", s.base+"/execute", big, nil, time.Minute)
		if a.err != nil || a.status == http.StatusRequestEntityTooLarge || a.servedBy == "" {
			t.Errorf("2 MiB body: want it passed to a replica, got %v", a)
		}
		// Past it: nginx's JSON 413.
		huge := bytes.Repeat([]byte("x"), 2512217)
		a = do("POST", s.base+"/execute", huge, nil, time.Minute)
		if a.status != http.StatusRequestEntityTooLarge || a.code() != "body_too_large" {
			t.Errorf("2512217-byte body: want 413 body_too_large, got %v", a)
		}
	})

	// sessions: one session per replica, 20 cells each in parallel.
	sessions := map[string]string{} // service → session ID
	t.Run("sessions", func(t *testing.T) {
		for range 15 {
			if len(sessions) == len(replicas) {
				break
			}
			a := do("POST", s.base+"/sessions", map[string]any{}, nil, time.Minute)
			var info struct {
				ID string `json:"id"`
			}
			if a.status != http.StatusCreated || json.Unmarshal(a.body, &info) != nil {
				t.Fatalf("POST /sessions: %v", a)
			}
			svc := owner[a.servedBy]
			want := fmt.Sprintf("e%d-", indexOf(svc)+1)
			if !strings.HasPrefix(info.ID, want) {
				t.Errorf("session %s made by %s (%q): want the prefix %q", info.ID, svc, a.servedBy, want)
			}
			if _, dup := sessions[svc]; dup {
				do("DELETE", s.base+"/sessions/"+info.ID, nil, nil, 30*time.Second)
				continue
			}
			sessions[svc] = info.ID
		}
		if len(sessions) != len(replicas) {
			t.Fatalf("sessions landed on %d replicas (%v), want %d", len(sessions), sessions, len(replicas))
		}
		var wg sync.WaitGroup
		for svc, id := range sessions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 20 {
					code := "n = 0\nprint(n)"
					if i > 0 {
						code = "n += 1\nprint(n)"
					}
					a := do("POST", s.base+"/sessions/"+id+"/execute", map[string]any{"code": code}, nil, 2*time.Minute)
					var r execResult
					if a.status != http.StatusOK || json.Unmarshal(a.body, &r) != nil || r.Status != "success" ||
						r.Output.Stdout != fmt.Sprintf("%d\n", i) {
						t.Errorf("session %s on %s, cell %d: %v", id, svc, i, a)
						return
					}
					if owner[a.servedBy] != svc {
						t.Errorf("session %s, cell %d: served by %q, want %s", id, i, a.servedBy, svc)
						return
					}
				}
			}()
		}
		wg.Wait()
	})
	if t.Failed() {
		return
	}

	t.Run("kill_replica_under_load", func(t *testing.T) {
		victim := replicas[1]
		vid := s.cid(victim)
		restartsBefore := inspect(t, vid, "{{.RestartCount}}")
		ipBefore := inspect(t, vid, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")

		rec := &loadgen.Recorder{}
		client := loadgen.NewClient(s.base, dockertest.Scale(150*time.Second))
		loadCtx, stopLoad := context.WithTimeout(context.Background(), 60*time.Second)
		defer stopLoad()
		loadStart := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			client.Run(loadCtx, 6, loadgen.Mixed, 500*time.Millisecond, rec)
		}()

		time.Sleep(20 * time.Second)
		// What the victim's SERVICE_ID has on the engine now (pool,
		// executions under way, its session): reaped when it is back.
		before := containersOf(t, s.owners[victim])
		// SIGKILL to the replica's process from the host, as the OOM killer
		// or a crash would end it. (`docker kill -s KILL` would mark the
		// container stopped by hand, and restart policies never restart
		// those.)
		pid, err := strconv.Atoi(inspect(t, vid, "{{.State.Pid}}"))
		if err != nil || pid <= 1 {
			t.Fatalf("pid of %s: %q %v", victim, inspect(t, vid, "{{.State.Pid}}"), err)
		}
		killedAt := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -KILL %d (%s): %v", pid, victim, err)
		}
		t.Logf("SIGKILLed %s at +%v; it had %d containers", victim, killedAt.Sub(loadStart).Round(time.Millisecond), len(before))

		// Its session ends with a clear JSON answer at once, never a hang.
		a := do("POST", s.base+"/sessions/"+sessions[victim]+"/execute", map[string]any{"code": "print(n)"}, nil, 30*time.Second)
		if a.err != nil || (a.status != http.StatusGone && a.status != http.StatusNotFound) ||
			(a.code() != "session_lost" && a.code() != "session_not_found") {
			t.Errorf("the killed replica's session: want 410 session_lost or 404 session_not_found, got %v", a)
		} else if a.took > dockertest.Scale(10*time.Second) {
			t.Errorf("the killed replica's session answered %d after %v: not fast", a.status, a.took)
		} else {
			t.Logf("the killed replica's session: %d %s after %v", a.status, a.code(), a.took.Round(time.Millisecond))
		}

		// Restarted by its restart policy, and running again.
		dockertest.WaitFor(t, victim+" restarted", 60*time.Second, func() bool {
			time.Sleep(200 * time.Millisecond)
			return inspect(t, vid, "{{.State.Running}} {{.RestartCount}}") != "true "+restartsBefore &&
				inspect(t, vid, "{{.State.Running}}") == "true"
		})
		t.Logf("%s restarted after %v (IP %s, before %s)", victim, time.Since(killedAt).Round(time.Millisecond),
			inspect(t, vid, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"), ipBefore)

		// Its containers from before the kill are reaped when it comes back.
		dockertest.WaitFor(t, victim+"'s old containers reaped", 90*time.Second, func() bool {
			time.Sleep(500 * time.Millisecond)
			now := map[string]bool{}
			for _, id := range containersOf(t, s.owners[victim]) {
				now[id] = true
			}
			for _, id := range before {
				if now[id] {
					return false
				}
			}
			return true
		})
		t.Logf("%s's %d old containers reaped %v after the kill", victim, len(before), time.Since(killedAt).Round(time.Millisecond))

		<-done
		answers := rec.Answers()
		// In-flight requests of the victim get nginx's 502 (the
		// connection was reset): allowed only right after the kill.
		grace := dockertest.Scale(5 * time.Second)
		excused := func(a loadgen.Answer) bool {
			return a.HTTP == http.StatusBadGateway && a.Code == "upstream_unavailable" &&
				!a.End.Before(killedAt) && a.End.Before(killedAt.Add(grace))
		}
		sum := loadgen.Summarize(answers, time.Time{}, time.Time{}, excused)
		t.Logf("60 s mixed load through nginx: %s", sum)
		t.Logf("timeline:\n%s", loadgen.Timeline(answers, loadStart, 10*time.Second))
		if sum.Failures > 0 {
			t.Errorf("%d failures: %v", sum.Failures, sum.Samples)
		}
		for _, a := range answers {
			if a.Code == "hung" {
				t.Errorf("a request hung: %+v", a)
			}
		}
		// The others keep succeeding: successes in every 10 s after the kill.
		for from := killedAt; from.Add(10 * time.Second).Before(loadStart.Add(60 * time.Second)); from = from.Add(10 * time.Second) {
			if got := loadgen.Summarize(answers, from, from.Add(10*time.Second), nil); got.OK == 0 {
				t.Errorf("no success in [%v, %v) after the kill", from.Sub(killedAt), from.Add(10*time.Second).Sub(killedAt))
			}
		}

		// Back in the pool: nginx reaches it again.
		served := map[string]bool{}
		dockertest.WaitFor(t, victim+" serving through nginx again", 90*time.Second, func() bool {
			a := do("GET", s.base+"/readyz", nil, nil, 10*time.Second)
			if a.status == http.StatusOK {
				served[owner[a.servedBy]] = true
			}
			time.Sleep(100 * time.Millisecond)
			return served[victim]
		})

		// After its restart the old session is unknown: 404 JSON.
		a = do("GET", s.base+"/sessions/"+sessions[victim], nil, nil, 30*time.Second)
		if a.status != http.StatusNotFound && a.status != http.StatusGone {
			t.Errorf("the killed replica's session after its restart: want 404 (or 410), got %v", a)
		} else {
			t.Logf("the killed replica's session after its restart: %d %s", a.status, a.code())
		}
		// The other replicas' sessions kept their state.
		for svc, id := range sessions {
			if svc == victim {
				continue
			}
			a := do("POST", s.base+"/sessions/"+id+"/execute", map[string]any{"code": "print(n)"}, nil, time.Minute)
			var r execResult
			if a.status != http.StatusOK || json.Unmarshal(a.body, &r) != nil || r.Output.Stdout != "19\n" {
				t.Errorf("session %s on %s after the kill: %v", id, svc, a)
			}
			do("DELETE", s.base+"/sessions/"+id, nil, nil, 30*time.Second)
		}
	})
	t.Logf("compose test ran %v before down", time.Since(testStart).Round(time.Second))
}

func indexOf(svc string) int {
	for i, r := range replicas {
		if r == svc {
			return i
		}
	}
	return -1
}

// containersOf lists the IDs of the execution containers of a SERVICE_ID.
func containersOf(t *testing.T, owner string) []string {
	t.Helper()
	out, err := run(30*time.Second, nil, "docker", "ps", "-aq", "--no-trunc",
		"--filter", "label=io.pyexec.managed=1", "--filter", "label=io.pyexec.owner="+owner)
	if err != nil {
		t.Fatalf("list containers of %s: %v", owner, err)
	}
	return strings.Fields(out)
}
