package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"

	"github.com/pyexec/pyexec/policy"
	"github.com/pyexec/pyexec/runner"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leakOptions...)
}

// leakOptions ignore the goroutines of connections that outlive a test by
// design: idle keep-alive connections of http.Transport (the Docker client's
// and httptest clients') are closed by the transport in the background.
var leakOptions = []goleak.Option{
	goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
}

// fakeRunner stands in for the runner in pure handler tests; the real one is
// exercised in e2e_test.go.
type fakeRunner struct {
	calls atomic.Int64
	last  runner.Request
	res   runner.Result
	err   error
	// validation is what Validate answers; the zero value means valid.
	validation  *runner.Validation
	validateErr error
}

func (f *fakeRunner) Validate(ctx context.Context, code string) (runner.Validation, error) {
	if f.validation != nil {
		return *f.validation, f.validateErr
	}
	return runner.Validation{Valid: true}, f.validateErr
}

func (f *fakeRunner) Run(ctx context.Context, req runner.Request) (runner.Result, error) {
	f.calls.Add(1)
	f.last = req
	return f.res, f.err
}
func (f *fakeRunner) Stats() runner.Stats            { return runner.Stats{MaxWorkers: 4} }
func (f *fakeRunner) Ping(ctx context.Context) error { return nil }

const newTestMaxTimeout = 60 * time.Second

func newTestRouter(f *fakeRunner) http.Handler {
	log := logrus.New()
	log.SetLevel(logrus.PanicLevel)
	return New(Options{Runner: f, Logger: log, DefaultTimeout: 30 * time.Second, MaxTimeout: newTestMaxTimeout})
}

func do(h http.Handler, method, path, ctype, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestExecuteRejectsBadInput(t *testing.T) {
	big := strings.Repeat("x", 51*1024)
	cases := []struct {
		name, ctype, body string
		status            int
		code              string
	}{
		{"malformed json", "application/json", `{"code":`, 400, "malformed_json"},
		{"not an object", "application/json", `[1,2]`, 400, "malformed_json"},
		{"trailing data", "application/json", `{"code":"print(1)"} {}`, 400, "malformed_json"},
		{"empty body", "application/json", ``, 400, "malformed_json"},
		{"wrong type", "application/json", `{"code": 5}`, 422, "invalid_field"},
		{"wrong timeout type", "application/json", `{"code":"print(1)","timeout":"10"}`, 422, "invalid_field"},
		{"unknown field", "application/json", `{"code":"print(1)","cmd":"ls"}`, 422, "unknown_field"},
		{"missing code", "application/json", `{"timeout": 3}`, 422, "missing_code"},
		{"empty code", "application/json", `{"code":"   \n"}`, 422, "invalid_code"},
		{"code too large", "application/json", `{"code":"` + big + `"}`, 422, "invalid_code"},
		{"nul byte", "application/json", `{"code":"print(1)\u0000"}`, 422, "invalid_code"},
		{"invalid utf8", "application/json", "{\"code\":\"print('\xff')\"}", 400, "invalid_utf8"},
		{"timeout zero", "application/json", `{"code":"print(1)","timeout":0}`, 422, "invalid_timeout"},
		{"timeout negative", "application/json", `{"code":"print(1)","timeout":-1}`, 422, "invalid_timeout"},
		{"timeout too big", "application/json", `{"code":"print(1)","timeout":61}`, 422, "invalid_timeout"},
		{"bad chart format", "application/json", `{"code":"print(1)","chart_format":"gif"}`, 422, "invalid_chart_format"},
		{"wrong content type", "text/plain", `{"code":"print(1)"}`, 415, "unsupported_media_type"},
		{"no content type", "", `{"code":"print(1)"}`, 415, "unsupported_media_type"},
		// Over 1 MiB + 4/3 of the default MAX_INPUT_BYTES + 64 KiB.
		{"body too large", "application/json", `{"code":"` + strings.Repeat("a", 45<<20) + `"}`, 413, "body_too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeRunner{}
			rec := do(newTestRouter(f), http.MethodPost, "/execute", c.ctype, c.body)
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.status, rec.Body)
			}
			var body errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("error body is not JSON: %v: %s", err, rec.Body)
			}
			if body.Error.Code != c.code || body.Error.Message == "" || body.RequestID == "" {
				t.Errorf("error = %+v, want code %q", body, c.code)
			}
			if f.calls.Load() != 0 {
				t.Errorf("the runner was called for a bad request")
			}
		})
	}
}

func TestExecuteMapsErrors(t *testing.T) {
	cases := []struct {
		err        error
		status     int
		code       string
		retryAfter bool
	}{
		{runner.ErrBusy, 429, "busy", true},
		{fmt.Errorf("x: %w", runner.ErrEngineDown), 503, "engine_unavailable", true},
		{fmt.Errorf("attach container: %w: %w", runner.ErrEngineDown, errors.New("cannot connect to the Docker daemon")), 503, "engine_unavailable", true},
		{fmt.Errorf("x: %w", runner.ErrNoImage), 503, "image_unavailable", true},
		{fmt.Errorf("inspect container: %w", runner.ErrSandboxVanished), 503, "sandbox_vanished", true},
		{runner.ErrClosed, 503, "shutting_down", false},
		{errors.New("boom"), 500, "internal", false},
	}
	for _, c := range cases {
		t.Run(c.err.Error(), func(t *testing.T) {
			rec := do(newTestRouter(&fakeRunner{err: c.err}), http.MethodPost, "/execute", "application/json", `{"code":"print(1)"}`)
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d", rec.Code, c.status)
			}
			if got := rec.Header().Get("Retry-After") != ""; got != c.retryAfter {
				t.Errorf("Retry-After present = %v, want %v", got, c.retryAfter)
			}
			var body errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body not JSON: %s", rec.Body)
			}
			if body.Error.Code != c.code || body.Error.Message == "" {
				t.Errorf("error %+v, want code %q", body.Error, c.code)
			}
		})
	}
}

// The handler maps the runner's Result as it is: a rejected Result is
// answered 200 with its verdict, and the handler adds nothing of its own.
func TestExecuteRejectedResult(t *testing.T) {
	line, col := 1, 1
	f := &fakeRunner{res: runner.Result{
		Status:   runner.StatusError,
		Rejected: true,
		Flavor:   runner.FlavorValidator,
		Error: &runner.ExecError{Type: "PolicyViolation", Message: "import of module 'os' is forbidden",
			Traceback: "line 1, column 1: import of module 'os' is forbidden (forbidden-module)", Line: &line, Column: &col},
		Violations: []policy.Violation{{Line: 1, Column: 1, Rule: policy.RuleForbiddenModule, Message: "import of module 'os' is forbidden"}},
		Outputs:    runner.Outputs{Charts: []runner.Chart{}, DataFrames: []runner.DataFrame{}, Variables: map[string]runner.Variable{}},
	}}
	rec := do(newTestRouter(f), http.MethodPost, "/execute", "application/json", `{"code":"import os"}`)
	if rec.Code != 200 || f.calls.Load() != 1 {
		t.Fatalf("status %d calls %d: %s", rec.Code, f.calls.Load(), rec.Body)
	}
	var got executeResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Status != "error" || !reflect.DeepEqual(got.Error, f.res.Error) || !reflect.DeepEqual(got.Violations, f.res.Violations) ||
		got.Resources.Sandbox != runner.FlavorValidator {
		t.Errorf("response %+v, want the Result as it is", got)
	}
}

func TestExecuteResponseShape(t *testing.T) {
	line := 3
	f := &fakeRunner{res: runner.Result{
		Status:        runner.StatusError,
		ExecutionTime: 123 * time.Millisecond,
		Stdout:        "hi\n",
		Error:         &runner.ExecError{Type: "ValueError", Message: "bad", Line: &line},
		Outputs:       runner.Outputs{Charts: []runner.Chart{}, DataFrames: []runner.DataFrame{}, Variables: map[string]runner.Variable{}},
	}}
	req := httptest.NewRequest(http.MethodPost, "/execute", strings.NewReader(`{"code":"print(1)","timeout":2.5}`))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("X-Request-ID", "abc-123")
	rec := httptest.NewRecorder()
	newTestRouter(f).ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if rec.Header().Get("X-Request-ID") != "abc-123" {
		t.Errorf("request id not echoed")
	}
	if f.last.Timeout != 2500*time.Millisecond || f.last.Code != "print(1)" {
		t.Errorf("runner got %+v", f.last)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"status", "execution_time", "output", "error", "resources", "request_id"} {
		if _, ok := got[k]; !ok {
			t.Errorf("response lacks %q: %s", k, rec.Body)
		}
	}
	out := got["output"].(map[string]any)
	for _, k := range []string{"stdout", "stderr", "charts", "dataframes", "variables"} {
		if _, ok := out[k]; !ok {
			t.Errorf("output lacks %q", k)
		}
	}
	if got["execution_time"].(float64) != 123 || got["request_id"] != "abc-123" {
		t.Errorf("execution_time/request_id wrong: %s", rec.Body)
	}
	// A default timeout applies when none is given.
	do(newTestRouter(f), http.MethodPost, "/execute", "application/json", `{"code":"print(1)"}`)
	if f.last.Timeout != 30*time.Second {
		t.Errorf("default timeout = %v", f.last.Timeout)
	}
}

func TestUnknownRouteAndMethod(t *testing.T) {
	h := newTestRouter(&fakeRunner{})
	if rec := do(h, http.MethodGet, "/nope", "", ""); rec.Code != 404 || !json.Valid(rec.Body.Bytes()) {
		t.Errorf("404: %d %s", rec.Code, rec.Body)
	}
	if rec := do(h, http.MethodGet, "/execute", "", ""); rec.Code != 405 || !json.Valid(rec.Body.Bytes()) {
		t.Errorf("405: %d %s", rec.Code, rec.Body)
	}
}

// TestChartBodies: answers write each chart exactly as runner.Chart's own
// JSON says, whether its data became a Go string (an image's base64) or
// stayed JSON (a plotly figure, null, text with escapes).
func TestChartBodies(t *testing.T) {
	charts := []runner.Chart{
		{Type: "matplotlib", Format: "png", Data: json.RawMessage(`"iVBORw0KGgoAAAANSUhEUgAAA+gAAAJY+/="`), Width: 1000, Height: 600, Title: "正弦"},
		{Type: "plotly", Format: "json", Data: json.RawMessage(`{"data":[{"x":[1,2],"name":"<b>"}]}`)},
		{Type: "matplotlib", Format: "svg", Data: json.RawMessage(`"<svg>\"é\"</svg>"`)},
		{Type: "matplotlib", Format: "png", Data: json.RawMessage(`null`), Error: "refused"},
	}
	tags := func(t reflect.Type) []string {
		var out []string
		for i := range t.NumField() {
			out = append(out, t.Field(i).Tag.Get("json"))
		}
		return out
	}
	if a, b := tags(reflect.TypeFor[runner.Chart]()), tags(reflect.TypeFor[chartBody]()); !reflect.DeepEqual(a, b) {
		t.Errorf("runner.Chart has fields %q, chartBody %q", a, b)
	}
	bodies := chartBodies(charts)
	if _, ok := bodies[0].Data.(string); !ok {
		t.Errorf("PNG data held as %T, want a string", bodies[0].Data)
	}
	for i, c := range charts {
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := json.Marshal(bodies[i])
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("chart %d written as %s, want %s", i, got, want)
		}
	}
}
