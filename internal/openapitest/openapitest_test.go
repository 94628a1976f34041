package openapitest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/gorilla/mux"

	"github.com/pyexec/pyexec/handlers/docs"
)

// stub answers every request with the documented response of one example.
// It is a fixture for testing the Contract, not a model of the service: the
// lead's contract test sends the same examples through the real router.
type stub struct {
	status int
	body   []byte
	header map[string]string
}

func (s stub) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	for k, v := range s.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(s.status)
	_, _ = w.Write(s.body)
}

func stubFor(ex Example) stub {
	s := stub{status: ex.Status, body: ex.Response}
	if ex.Status == http.StatusTooManyRequests {
		s.header = map[string]string{"Retry-After": "1"}
	}
	return s
}

func mustValidator(t *testing.T) *Contract {
	t.Helper()
	c, err := Validator()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustExamples(t *testing.T) []Example {
	t.Helper()
	exs, err := Examples()
	if err != nil {
		t.Fatal(err)
	}
	if len(exs) < 14 {
		t.Fatalf("only %d examples", len(exs))
	}
	return exs
}

// TestContractAcceptsExamples runs every example through a stub that
// answers with its documented response: the Contract must accept them all.
func TestContractAcceptsExamples(t *testing.T) {
	c := mustValidator(t)
	for _, ex := range mustExamples(t) {
		t.Run(ex.Path+"/"+ex.Name, func(t *testing.T) {
			t.Parallel() // the Contract is shared: this is also a race test
			rec, err := c.Check(stubFor(ex), ex)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Code != ex.Status {
				t.Errorf("status %d", rec.Code)
			}
		})
	}
}

func example(t *testing.T, path, name string) Example {
	t.Helper()
	for _, ex := range mustExamples(t) {
		if ex.Path == path && ex.Name == name {
			return ex
		}
	}
	t.Fatalf("no example %s %s", path, name)
	return Example{}
}

// edit returns the JSON document b with f applied to its decoded form.
func edit(t *testing.T, b []byte, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestContractRejects checks that the Contract notices what it is for.
func TestContractRejects(t *testing.T) {
	c := mustValidator(t)
	hello := example(t, "/execute", "hello_world")
	schemaOnly := hello // no outcome comparison: the schema must catch these
	schemaOnly.Response = nil
	chart := example(t, "/execute", "matplotlib_chart")
	busy := Example{Name: "busy", Method: http.MethodPost, Path: "/execute", Body: hello.Body, Status: http.StatusTooManyRequests}
	busyBody := []byte(`{"error":{"code":"busy","message":"all workers are busy"},"request_id":"r1"}`)

	tests := []struct {
		name    string
		ex      Example
		handler http.Handler
		want    string // in the error
	}{
		{"status missing", schemaOnly, stub{200, edit(t, hello.Response, func(m map[string]any) { delete(m, "status") }), nil}, `property "status" is missing`},
		{"status not in enum", schemaOnly, stub{200, edit(t, hello.Response, func(m map[string]any) { m["status"] = "done" }), nil}, `"/status": value is not one of the allowed values`},
		{"outcome differs", hello, stub{200, example(t, "/execute", "timeout").Response, nil}, `"status" is "timeout"`},
		{"execution_time not an integer", hello, stub{200, edit(t, hello.Response, func(m map[string]any) { m["execution_time"] = 1.5 }), nil}, "execution_time"},
		{"chart without data", chart, stub{200, edit(t, chart.Response, func(m map[string]any) {
			delete(m["output"].(map[string]any)["charts"].([]any)[0].(map[string]any), "data")
		}), nil}, "data"},
		{"sandbox not in enum", hello, stub{200, edit(t, hello.Response, func(m map[string]any) { m["resources"].(map[string]any)["sandbox"] = "gvisor" }), nil}, "sandbox"},
		{"undocumented status", Example{Name: "teapot", Method: http.MethodPost, Path: "/execute", Body: hello.Body},
			stub{http.StatusTeapot, busyBody, nil}, "status is not supported"},
		{"status differs", hello, stub{http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"x"}}`), nil}, "status 500, documented 200"},
		{"429 without Retry-After", busy, stub{http.StatusTooManyRequests, busyBody, nil}, "Retry-After"},
		{"error without code", busy, stub{http.StatusTooManyRequests, []byte(`{"error":{"message":"x"}}`), map[string]string{"Retry-After": "1"}}, "code"},
		{"unknown request field", Example{Name: "extra", Method: http.MethodPost, Path: "/execute", Body: []byte(`{"code":"print(1)","language":"python"}`)},
			stubFor(hello), "language"},
		{"timeout out of range", Example{Name: "zero", Method: http.MethodPost, Path: "/execute", Body: []byte(`{"code":"print(1)","timeout":0}`)},
			stubFor(hello), "timeout"},
		{"chart_format not in enum", Example{Name: "jpeg", Method: http.MethodPost, Path: "/execute", Body: []byte(`{"code":"print(1)","chart_format":"jpeg"}`)},
			stubFor(hello), "chart_format"},
		{"undocumented path", Example{Name: "run", Method: http.MethodPost, Path: "/run", Body: hello.Body}, stubFor(hello), "/run"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Check(tt.handler, tt.ex)
			if err == nil {
				t.Fatal("accepted")
			}
			t.Logf("%.300s", err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// TestContractOtherRoutes covers what Check does not: GET routes, the
// admin token, other content types.
func TestContractOtherRoutes(t *testing.T) {
	c := mustValidator(t)
	req := func(method, target, body string, header map[string]string) *http.Request {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		if body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		for k, v := range header {
			r.Header.Set(k, v)
		}
		return r
	}
	jsonCT := http.Header{"Content-Type": {"application/json"}}

	t.Run("template", func(t *testing.T) {
		r := req(http.MethodGet, "/templates/line-chart", "", nil)
		if err := c.ValidateRequest(r); err != nil {
			t.Fatal(err)
		}
		body := `{"id":"line-chart","title":"Line chart","description":"d","category":"matplotlib","code":"print(1)"}`
		if err := c.ValidateResponse(r, 200, jsonCT, []byte(body)); err != nil {
			t.Error(err)
		}
		if err := c.ValidateResponse(r, 200, jsonCT, []byte(`{"id":"line-chart"}`)); err == nil {
			t.Error("incomplete template accepted")
		}
		if err := c.ValidateResponse(r, 404, jsonCT, []byte(`{"error":{"code":"not_found","message":"no template"}}`)); err != nil {
			t.Error(err)
		}
	})
	t.Run("admin token", func(t *testing.T) {
		if err := c.ValidateRequest(req(http.MethodGet, "/admin/images", "", nil)); err == nil {
			t.Error("admin request without a token accepted")
		}
		r := req(http.MethodPost, "/admin/images/rebuild", `{"packages":["scikit-learn"]}`, map[string]string{"Authorization": "Bearer s3cret"})
		if err := c.ValidateRequest(r); err != nil {
			t.Error(err)
		}
		if err := c.ValidateRequest(req(http.MethodPost, "/admin/images/rebuild", "", map[string]string{"Authorization": "Bearer s3cret"})); err != nil {
			t.Errorf("empty body: %v", err)
		}
		ok := `{"image":"pyexec-python:abc","hash":"abc","built_at":"2026-11-27T15:04:05Z","duration_ms":1200,"shared":true}`
		if err := c.ValidateResponse(r, 200, jsonCT, []byte(ok)); err != nil {
			t.Error(err)
		}
		if err := c.ValidateResponse(r, 200, jsonCT, []byte(strings.Replace(ok, "2026-11-27T15:04:05Z", "yesterday", 1))); err == nil {
			t.Error("built_at that is not a date-time accepted")
		}
		if err := c.ValidateResponse(r, 401, jsonCT, []byte(`{"error":{"code":"unauthorized","message":"x"}}`)); err != nil {
			t.Error(err)
		}
	})
	t.Run("health with a pool", func(t *testing.T) {
		r := req(http.MethodGet, "/health", "", nil)
		body := `{"status":"degraded","engine":{"reachable":false,"error":"no engine"},` +
			`"image":{"tag":"t","present":false,"current":false,"building":false},` +
			`"runner":{"instance":"i","max_workers":4,"max_queue":32,"running":0,"queued":0,` +
			`"containers_created":0,"containers_removed":0,"executions":0,"pool":{"warm":2,"anything":[1]}},"settings":{}}`
		if err := c.ValidateResponse(r, 503, jsonCT, []byte(body)); err != nil {
			t.Error(err)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		r := req(http.MethodGet, "/metrics", "", nil)
		h := http.Header{"Content-Type": {"text/plain; version=0.0.4; charset=utf-8"}}
		if err := c.ValidateResponse(r, 200, h, []byte("pyexec_up 1\n")); err != nil {
			t.Error(err)
		}
		if err := c.ValidateResponse(r, 200, jsonCT, []byte("{}")); err == nil {
			t.Error("JSON metrics accepted")
		}
	})
	t.Run("pages", func(t *testing.T) {
		r := req(http.MethodGet, "/docs", "", nil)
		if err := c.ValidateResponse(r, 200, http.Header{"Content-Type": {"text/html; charset=utf-8"}}, []byte("<!DOCTYPE html>")); err != nil {
			t.Error(err)
		}
		if err := c.ValidateResponse(r, 200, jsonCT, []byte("{}")); err == nil {
			t.Error("JSON page accepted")
		}
	})
	t.Run("request body restored", func(t *testing.T) {
		r := req(http.MethodPost, "/validate", `{"code":"print(1)"}`, nil)
		if err := c.ValidateRequest(r); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if _, err := b.ReadFrom(r.Body); err != nil || b.String() != `{"code":"print(1)"}` {
			t.Errorf("body after validation: %q (%v)", b.String(), err)
		}
	})
}

// TestServedDocsMatchContract serves the docs routes and checks their
// answers against the document, as the handlers' contract test does for the
// API.
func TestServedDocsMatchContract(t *testing.T) {
	c := mustValidator(t)
	r := mux.NewRouter()
	docs.Register(r)
	for _, path := range []string{"/openapi.json", "/docs", "/redoc"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Errorf("%s: status %d", path, rec.Code)
		}
		if err := c.ValidateResponse(req, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
}

// TestContractNotInBinary: this package and the OpenAPI library it uses are
// for tests; the service binary links neither.
func TestContractNotInBinary(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.CommandContext(t.Context(), gobin, "list", "-deps", "github.com/pyexec/pyexec/cmd/pyexec").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps found only %d packages:\n%s", len(deps), out)
	}
	for _, dep := range deps {
		if strings.Contains(dep, "kin-openapi") || strings.HasSuffix(dep, "/openapitest") {
			t.Errorf("the service binary (cmd/pyexec) links %s, a test-only package", dep)
		}
	}
}
