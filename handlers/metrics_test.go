package handlers

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/images"
	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/internal/openapitest"
	"github.com/pyexec/pyexec/runner"
)

// opsEnv is the real router with metrics and the admin endpoints on, over
// a real runner (warm pool of 2, metrics registered) and the real engine,
// served over HTTP. Cleanup asserts that no container remains.
type opsEnv struct {
	srv     *httptest.Server
	rn      *runner.Runner
	builder *images.Builder
	cli     *client.Client
	owner   string
}

// opsAdminToken is the ADMIN_TOKEN of opsEnv.
const opsAdminToken = "ops-test-token-0123456789"

func newOpsEnv(t *testing.T, allowed []string) *opsEnv {
	t.Helper()
	cli := dockertest.Require(t)
	e := &opsEnv{cli: cli, owner: dockertest.Owner(t)}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Policy off: the admin test imports a package outside the policy's
	// allowed modules.
	rn, err := runner.New(cli, runner.Options{
		Image: dockertest.Image(t, cli), Owner: e.owner, PoolSize: 2, MaxQueue: 32, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.rn = rn
	rn.Start(t.Context())
	e.builder = images.New(cli, "", nil)
	if err := e.builder.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	e.srv = httptest.NewServer(New(Options{
		Runner: rn, Logger: log, DefaultTimeout: 30 * time.Second, MaxTimeout: 60 * time.Second,
		Health: func(ctx context.Context) Health {
			err := rn.Ping(ctx)
			return Health{
				Engine: EngineHealth{Reachable: err == nil},
				Image:  ImageHealth{Tag: rn.Image(), Present: err == nil, Current: err == nil},
			}
		},
		Registerer: reg, Gatherer: reg,
		AdminToken: opsAdminToken, Images: e.builder, Switcher: rn, AllowedPackages: allowed,
	}))
	t.Cleanup(func() {
		e.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := rn.Close(ctx); err != nil {
			t.Error(err)
		}
		dockertest.AssertNoContainers(t, cli, e.owner)
	})
	return e
}

// opsRequest sends a request with an optional bearer token and JSON body.
// It may run in any goroutine: a failure to get an answer is reported with
// t.Errorf and answered as status 0.
func opsRequest(t *testing.T, method, url, token, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return &http.Response{Header: http.Header{}}, ""
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return &http.Response{Header: http.Header{}}, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// scrape reads /metrics into series (as printed, labels included) → value.
func scrape(t *testing.T, h http.Handler) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("/metrics Content-Type %q", ct)
	}
	return parseMetrics(t, rec.Body.String())
}

func parseMetrics(t *testing.T, text string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("bad metrics line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

func TestMetricsFollowExecutions(t *testing.T) {
	e := newOpsEnv(t, nil)
	h := e.srv.Config.Handler
	dockertest.WaitFor(t, "a full pool", 60*time.Second, func() bool {
		p := e.rn.Stats().Pool
		return p.Idle[runner.FlavorNone]+p.Idle[runner.FlavorData] == 2
	})
	before := scrape(t, h)
	for _, name := range []string{
		`pyexec_executions_total{outcome="success"}`, `pyexec_executions_total{outcome="rejected"}`,
		`pyexec_requests_rejected_total{reason="busy"}`, `pyexec_containers_created_total{role="exec"}`,
		`pyexec_pool_idle{flavor="data"}`, `pyexec_pool_idle{flavor="none"}`, `pyexec_image_builds_total{result="failure"}`,
		`pyexec_executions_running`, `pyexec_queue_wait_seconds_count`, `pyexec_execution_duration_seconds_count`,
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if _, ok := before[name]; !ok {
			t.Errorf("series %s missing before any request", name)
		}
	}
	if before[`pyexec_pool_idle{flavor="data"}`]+before[`pyexec_pool_idle{flavor="none"}`] != 2 {
		t.Errorf("pool_idle does not show the full pool: %v", before)
	}

	code := func(src string, timeout float64) string {
		resp, body := opsRequest(t, http.MethodPost, e.srv.URL+"/execute", "",
			`{"code": `+strconv.Quote(src)+`, "timeout": `+strconv.FormatFloat(timeout, 'f', -1, 64)+`}`)
		if resp.StatusCode != http.StatusOK {
			return strconv.Itoa(resp.StatusCode)
		}
		if i := strings.Index(body, `"status":"`); i >= 0 {
			rest := body[i+len(`"status":"`):]
			return rest[:strings.IndexByte(rest, '"')]
		}
		return body
	}
	for i, c := range []struct {
		src, want string
		timeout   float64
	}{
		{"print(1)", "success", 30},
		{"print(2)", "success", 30},
		{"print(3)", "success", 30},
		{"raise ValueError('x')", "error", 30},
		{"def f(:\n  pass", "error", 30}, // refused by the pre-check
		{"print(1)", "422", 0},           // invalid timeout
	} {
		if got := code(c.src, c.timeout); got != c.want {
			t.Errorf("request %d: %s, want %s", i, got, c.want)
		}
	}
	e.rn.Wait()
	after := scrape(t, h)
	delta := func(name string) float64 { return after[name] - before[name] }
	for name, want := range map[string]float64{
		`pyexec_executions_total{outcome="success"}`:              3,
		`pyexec_executions_total{outcome="error"}`:                1,
		`pyexec_executions_total{outcome="rejected"}`:             1,
		`pyexec_executions_total{outcome="failed"}`:               0,
		`pyexec_requests_rejected_total{reason="invalid"}`:        1,
		`pyexec_execution_duration_seconds_count`:                 4,
		`pyexec_queue_wait_seconds_count`:                         4,
		`pyexec_request_duration_seconds_count{route="/execute"}`: 6,
		`pyexec_pool_hits_total`:                                  4 - delta(`pyexec_pool_misses_total`),
	} {
		if got := delta(name); got != want {
			t.Errorf("%s rose by %v, want %v", name, got, want)
		}
	}
	created := delta(`pyexec_containers_created_total{role="exec"}`) + delta(`pyexec_containers_created_total{role="warm"}`)
	if created < 4 {
		t.Errorf("containers_created_total (exec+warm) rose by %v for 4 executions", created)
	}
	if delta(`pyexec_containers_removed_total`) < 4 {
		t.Errorf("containers_removed_total rose by %v for 4 executions", delta(`pyexec_containers_removed_total`))
	}
	if after[`pyexec_pool_refills_total`] < 2 {
		t.Errorf("pool_refills_total %v, though the pool filled", after[`pyexec_pool_refills_total`])
	}
}

func TestMetricsCountRejections(t *testing.T) {
	reg := prometheus.NewRegistry()
	log := logrus.New()
	log.SetLevel(logrus.PanicLevel)
	h := New(Options{
		Runner: &stubExecutor{err: runner.ErrBusy}, Logger: log, DefaultTimeout: 30 * time.Second, MaxTimeout: 60 * time.Second,
		Registerer: reg, Gatherer: reg,
	})
	send := func(method, path, ctype, body string) int {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	cases := []struct {
		method, path, ctype, body string
		status                    int
		reason                    string
	}{
		{"POST", "/execute", "text/plain", `{"code":"print(1)"}`, 415, "unsupported_media_type"},
		{"POST", "/execute", "application/json", `{"code":`, 400, "malformed"},
		// /validate keeps the 1 MiB body limit (/execute's grows with MAX_INPUT_BYTES).
		{"POST", "/validate", "application/json", `{"code":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "too_large"},
		{"POST", "/execute", "application/json", `{"code":"print(1)","timeout":-1}`, 422, "invalid"},
		{"POST", "/execute", "application/json", `{"code":"print(1)"}`, 429, "busy"},
		{"GET", "/nowhere", "", "", 404, "not_found"},
		{"GET", "/admin/images", "", "", 404, "not_found"}, // admin off
		{"DELETE", "/execute", "", "", 405, "method_not_allowed"},
	}
	for _, c := range cases {
		before := parseMetrics(t, scrapeBody(t, h))
		if got := send(c.method, c.path, c.ctype, c.body); got != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, got, c.status)
		}
		after := parseMetrics(t, scrapeBody(t, h))
		name := `pyexec_requests_rejected_total{reason="` + c.reason + `"}`
		if d := after[name] - before[name]; d != 1 {
			t.Errorf("%s %s: %s rose by %v, want 1", c.method, c.path, name, d)
		}
	}
	m := parseMetrics(t, scrapeBody(t, h))
	if m[`pyexec_executions_total{outcome="failed"}`] != 1 {
		t.Errorf("the busy execution is not counted as failed: %v", m[`pyexec_executions_total{outcome="failed"}`])
	}
	if m[`pyexec_request_duration_seconds_count{route="unmatched"}`] < 2 {
		t.Error("unmatched routes are not labelled unmatched")
	}
}

func TestMetricsMatchDocs(t *testing.T) {
	reg := prometheus.NewRegistry()
	log := logrus.New()
	log.SetLevel(logrus.PanicLevel)
	h := New(Options{Runner: &stubExecutor{}, Logger: log, DefaultTimeout: 30 * time.Second, MaxTimeout: 60 * time.Second,
		Registerer: reg, Gatherer: reg})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	h.ServeHTTP(rec, req)
	c, err := openapitest.Validator()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ValidateResponse(req, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
		t.Errorf("/metrics does not match the document: %v (Content-Type %q)", err, rec.Header().Get("Content-Type"))
	}
}

func TestMetricsOff(t *testing.T) {
	log := logrus.New()
	log.SetLevel(logrus.PanicLevel)
	h := New(Options{Runner: &stubExecutor{}, Logger: log, DefaultTimeout: 30 * time.Second, MaxTimeout: 60 * time.Second})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("/metrics without a Gatherer: %d", rec.Code)
	}
}

func scrapeBody(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

// stubExecutor answers every execution with res or err.
type stubExecutor struct {
	res runner.Result
	err error
}

func (s *stubExecutor) Run(context.Context, runner.Request) (runner.Result, error) {
	return s.res, s.err
}
func (s *stubExecutor) Validate(context.Context, string) (runner.Validation, error) {
	return runner.Validation{Valid: true}, nil
}
func (s *stubExecutor) Stats() runner.Stats            { return runner.Stats{} }
func (s *stubExecutor) Ping(ctx context.Context) error { return nil }
