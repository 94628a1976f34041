package handlers

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/images"
	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/internal/openapitest"
	"github.com/pyexec/pyexec/runner"
)

// stubImages stands in for the builder and the runner's image in the pure
// admin tests; the real ones are exercised by TestAdminRebuildSwitchesUnderLoad.
type stubImages struct {
	mu      sync.Mutex
	image   string
	specs   []images.Spec
	release chan struct{} // nil: builds finish at once
	started chan struct{} // receives one value per build that started
}

func (s *stubImages) Rebuild(ctx context.Context, spec images.Spec) (images.Build, error) {
	s.mu.Lock()
	s.specs = append(s.specs, spec)
	s.mu.Unlock()
	if s.started != nil {
		s.started <- struct{}{}
	}
	if s.release != nil {
		<-s.release
	}
	tag := "repo:" + strings.Join(append([]string{"base"}, spec.Packages...), "-")
	return images.Build{Tag: tag, Hash: "h", Packages: spec.Packages, BuiltAt: time.Now(), Duration: time.Second}, nil
}

func (s *stubImages) Inspect(ctx context.Context, tag string) (images.Image, error) {
	return images.Image{Tag: tag, ID: "sha256:1", Hash: "h", ContextHash: "h", Created: time.Unix(0, 0)}, nil
}

func (s *stubImages) Image() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.image
}

func (s *stubImages) SetImage(ctx context.Context, tag string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.image = tag
	return nil
}

func (s *stubImages) Versions(ctx context.Context) (map[string]string, error) {
	return map[string]string{"python": "3.13.5", "numpy": "2.2.4", "pandas": "2.2.3", "matplotlib": "3.10.1", "plotly": "5.24.1"}, nil
}

func adminRouter(s *stubImages) http.Handler {
	log := logrus.New()
	log.SetLevel(logrus.PanicLevel)
	return New(Options{
		Runner: &stubExecutor{}, Logger: log, DefaultTimeout: 30 * time.Second, MaxTimeout: 60 * time.Second,
		AdminToken: opsAdminToken, Images: s, Switcher: s, AllowedPackages: []string{"python3-sympy", "python3-networkx"},
	})
}

func adminDo(h http.Handler, method, path, auth, ctype, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// adminContract loads the OpenAPI document once (a Contract is safe for
// concurrent use).
var adminContract = sync.OnceValues(openapitest.Validator)

// matchesDocs holds an admin answer to the OpenAPI document.
func matchesDocs(t *testing.T, method, path string, rec *httptest.ResponseRecorder) {
	t.Helper()
	c, err := adminContract()
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(method, path, nil)
	req.Header.Set("Authorization", "Bearer x")
	if err := c.ValidateResponse(req, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
		t.Errorf("%s %s: answer %d does not match the document: %v", method, path, rec.Code, err)
	}
}

func errorCode(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var b errorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("error body %q: %v", rec.Body.String(), err)
	}
	return b.Error.Code
}

func TestAdminOffWithoutToken(t *testing.T) {
	log := logrus.New()
	log.SetLevel(logrus.PanicLevel)
	h := New(Options{Runner: &stubExecutor{}, Logger: log, DefaultTimeout: 30 * time.Second, MaxTimeout: 60 * time.Second})
	for _, c := range []struct{ method, path string }{{"GET", "/admin/images"}, {"POST", "/admin/images/rebuild"}} {
		rec := adminDo(h, c.method, c.path, "Bearer "+opsAdminToken, "", "")
		if rec.Code != http.StatusNotFound || errorCode(t, rec) != "not_found" {
			t.Errorf("%s %s without ADMIN_TOKEN: %d %s", c.method, c.path, rec.Code, rec.Body.String())
		}
		matchesDocs(t, c.method, c.path, rec)
	}
}

func TestAdminToken(t *testing.T) {
	s := &stubImages{image: "repo:base"}
	h := adminRouter(s)
	for _, auth := range []string{
		"",
		"Bearer",
		"Bearer ",
		"Bearer wrong",
		"Bearer " + opsAdminToken + "x",
		"Bearer " + opsAdminToken[:len(opsAdminToken)-1],
		"Basic " + opsAdminToken,
		opsAdminToken,
	} {
		for _, c := range []struct{ method, path string }{{"GET", "/admin/images"}, {"POST", "/admin/images/rebuild"}} {
			rec := adminDo(h, c.method, c.path, auth, "", "")
			if rec.Code != http.StatusUnauthorized || errorCode(t, rec) != "unauthorized" {
				t.Errorf("%s %s with %q: %d %s", c.method, c.path, auth, rec.Code, rec.Body.String())
			}
			if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("%s %s with %q: WWW-Authenticate %q", c.method, c.path, auth, got)
			}
			matchesDocs(t, c.method, c.path, rec)
		}
	}
	if len(s.specs) != 0 {
		t.Errorf("a build ran without the token: %v", s.specs)
	}
	for _, auth := range []string{"Bearer " + opsAdminToken, "bearer  " + opsAdminToken} {
		rec := adminDo(h, "GET", "/admin/images", auth, "", "")
		if rec.Code != http.StatusOK {
			t.Errorf("GET /admin/images with %q: %d %s", auth, rec.Code, rec.Body.String())
		}
		matchesDocs(t, "GET", "/admin/images", rec)
	}
}

func TestAdminRebuildRequest(t *testing.T) {
	auth := "Bearer " + opsAdminToken
	cases := []struct {
		name, ctype, body string
		status            int
		code              string
		image             string
	}{
		{"no body", "", "", 200, "", "repo:base"},
		{"empty object", "application/json", `{}`, 200, "", "repo:base"},
		{"allowed packages", "application/json", `{"packages":["python3-sympy","python3-networkx","python3-sympy"]}`, 200, "", "repo:base-python3-networkx-python3-sympy"},
		{"package not allowed", "application/json", `{"packages":["python3-sympy","netcat-openbsd"]}`, 422, "package_not_allowed", ""},
		{"unknown field", "application/json", `{"pkgs":[]}`, 422, "unknown_field", ""},
		{"wrong type", "application/json", `{"packages":"python3-sympy"}`, 422, "invalid_field", ""},
		{"not JSON", "text/plain", `{}`, 415, "unsupported_media_type", ""},
		{"malformed", "application/json", `{"packages":`, 400, "malformed_json", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &stubImages{image: "repo:old"}
			rec := adminDo(adminRouter(s), "POST", "/admin/images/rebuild", auth, c.ctype, c.body)
			if rec.Code != c.status {
				t.Fatalf("%d, want %d: %s", rec.Code, c.status, rec.Body.String())
			}
			matchesDocs(t, "POST", "/admin/images/rebuild", rec)
			if c.status != 200 {
				if got := errorCode(t, rec); got != c.code {
					t.Errorf("code %q, want %q", got, c.code)
				}
				if len(s.specs) != 0 || s.Image() != "repo:old" {
					t.Errorf("refused request built %v, image %s", s.specs, s.Image())
				}
				return
			}
			var got rebuildResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got.Image != c.image || s.Image() != c.image || got.Packages == nil || got.DurationMS != 1000 {
				t.Errorf("answer %+v, runner image %s; want %s", got, s.Image(), c.image)
			}
		})
	}
}

func TestAdminRebuildsOfAnotherSetWait(t *testing.T) {
	s := &stubImages{image: "repo:base", release: make(chan struct{}), started: make(chan struct{}, 8)}
	h := adminRouter(s)
	auth := "Bearer " + opsAdminToken
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if rec := adminDo(h, "POST", "/admin/images/rebuild", auth, "application/json", `{"packages":["python3-sympy"]}`); rec.Code == 200 {
				ok.Add(1)
			}
		}()
	}
	<-s.started
	<-s.started // both joined the same rebuild (the builder shares the build)
	rec := adminDo(h, "POST", "/admin/images/rebuild", auth, "application/json", `{"packages":["python3-networkx"]}`)
	if rec.Code != http.StatusConflict || errorCode(t, rec) != "rebuild_in_progress" {
		t.Errorf("rebuild of another set during one: %d %s", rec.Code, rec.Body.String())
	}
	matchesDocs(t, "POST", "/admin/images/rebuild", rec)
	close(s.release)
	wg.Wait()
	if ok.Load() != 2 {
		t.Errorf("%d of 2 rebuilds of the same set succeeded", ok.Load())
	}
	if rec := adminDo(h, "POST", "/admin/images/rebuild", auth, "application/json", `{"packages":["python3-networkx"]}`); rec.Code != 200 {
		t.Errorf("rebuild of another set after: %d %s", rec.Code, rec.Body.String())
	}
}

// TestAdminRebuildSwitchesUnderLoad rebuilds the real image with one small
// allowed package through the engine (ImageBuild; apt fetches the package
// the first time, later runs hit the layer cache), while a client posts
// print(1) every 200 ms: every execution must succeed, and once the
// rebuild answered, executions run on the new image.
func TestAdminRebuildSwitchesUnderLoad(t *testing.T) {
	const pkg = "python3-tabulate"
	e := newOpsEnv(t, []string{pkg})
	oldTag := e.rn.Image()
	wantTag, err := e.builder.TagFor(images.Spec{Packages: []string{pkg}})
	if err != nil {
		t.Fatal(err)
	}
	if wantTag == oldTag {
		t.Fatalf("the tag does not change with the package set: %s", wantTag)
	}
	dockertest.WaitFor(t, "a full pool", 60*time.Second, func() bool {
		p := e.rn.Stats().Pool
		return p.Idle[runner.FlavorNone]+p.Idle[runner.FlavorData] == 2
	})

	// No token, a wrong token: 401, nothing built.
	for _, token := range []string{"", "not-the-token"} {
		resp, body := opsRequest(t, http.MethodPost, e.srv.URL+"/admin/images/rebuild", token, `{"packages":["`+pkg+`"]}`)
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("rebuild with token %q: %d %s", token, resp.StatusCode, body)
		}
	}
	if e.rn.Image() != oldTag {
		t.Fatal("image switched without the token")
	}

	// Executions in flight across the switch finish in their containers,
	// on the old image.
	type slow struct {
		status int
		body   string
		image  string
	}
	slowc := make(chan slow, 2)
	for range 2 {
		go func() {
			resp, body := opsRequest(t, http.MethodPost, e.srv.URL+"/execute", "", `{"code":"import time\ntime.sleep(4)\nprint('slept')"}`)
			slowc <- slow{resp.StatusCode, body, resp.Header.Get("X-Sandbox-Image")}
		}()
	}
	dockertest.WaitFor(t, "the slow executions to run", 30*time.Second, func() bool { return e.rn.Stats().Running == 2 })

	// The stream of executions, from before the rebuild to after it: two
	// clients, each posting print(1), waiting for the answer, pausing 200 ms.
	type outcome struct {
		status int
		body   string
		image  string
		at     time.Time
	}
	stop := make(chan struct{})
	var mu sync.Mutex
	var outcomes []outcome
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				o := outcome{at: time.Now()}
				resp, err := http.Post(e.srv.URL+"/execute", "application/json", strings.NewReader(`{"code":"print(1)"}`))
				if err != nil {
					o.body = err.Error()
				} else {
					var b strings.Builder
					_, _ = io.Copy(&b, resp.Body)
					resp.Body.Close()
					o.status, o.body, o.image = resp.StatusCode, b.String(), resp.Header.Get("X-Sandbox-Image")
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)

	// Two concurrent rebuilds of the same set share one build.
	start := time.Now()
	type answer struct {
		status int
		body   string
	}
	answers := make(chan answer, 2)
	for range 2 {
		go func() {
			resp, body := opsRequest(t, http.MethodPost, e.srv.URL+"/admin/images/rebuild", opsAdminToken, `{"packages":["`+pkg+`"]}`)
			answers <- answer{resp.StatusCode, body}
		}()
	}
	var results []rebuildResponse
	for range 2 {
		a := <-answers
		if a.status != http.StatusOK {
			t.Fatalf("rebuild: %d %s", a.status, a.body)
		}
		var r rebuildResponse
		if err := json.Unmarshal([]byte(a.body), &r); err != nil {
			t.Fatal(err)
		}
		results = append(results, r)
	}
	switched := time.Now()
	t.Logf("rebuild took %v (build %v ms, shared %v/%v)", switched.Sub(start), results[0].DurationMS, results[0].Shared, results[1].Shared)
	for _, r := range results {
		if r.Image != wantTag || !slices.Equal(r.Packages, []string{pkg}) || r.BuiltAt.IsZero() || r.Hash == "" || !strings.HasPrefix(wantTag, "pyexec-python:"+r.Hash[:12]) {
			t.Errorf("rebuild answer %+v, want image %s", r, wantTag)
		}
	}
	for range 2 {
		s := <-slowc
		if s.status != http.StatusOK || !strings.Contains(s.body, `"status":"success"`) || !strings.Contains(s.body, "slept") {
			t.Errorf("execution in flight across the switch: %d %s", s.status, s.body)
		}
		if s.image != oldTag {
			t.Errorf("execution in flight across the switch ran on %q, want the old %s", s.image, oldTag)
		}
	}
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	// Zero failures, and new executions on the new image.
	var during, onNew int
	for _, o := range outcomes {
		if o.status != http.StatusOK || !strings.Contains(o.body, `"status":"success"`) {
			t.Errorf("execution at %v: %d %.300s", o.at.Sub(start).Round(time.Millisecond), o.status, o.body)
		}
		if o.at.After(start) && o.at.Before(switched) {
			during++
		}
		if o.at.After(switched) {
			if o.image != wantTag {
				t.Errorf("execution started %v after the switch ran on %q, want %s", o.at.Sub(switched).Round(time.Millisecond), o.image, wantTag)
			}
			onNew++
		}
	}
	t.Logf("%d executions: %d during the rebuild, %d after the switch", len(outcomes), during, onNew)
	if onNew == 0 {
		t.Error("no execution after the switch")
	}
	if e.rn.Image() != wantTag {
		t.Errorf("runner image %s, want %s", e.rn.Image(), wantTag)
	}

	// /health shows the new image; the package is there.
	resp, body := opsRequest(t, http.MethodGet, e.srv.URL+"/health", "", "")
	var health struct {
		Image  ImageHealth  `json:"image"`
		Runner runner.Stats `json:"runner"`
	}
	if err := json.Unmarshal([]byte(body), &health); err != nil || resp.StatusCode != 200 {
		t.Fatalf("health %d %s", resp.StatusCode, body)
	}
	if health.Image.Tag != wantTag || health.Runner.Image != wantTag {
		t.Errorf("health shows image %s / runner %s, want %s", health.Image.Tag, health.Runner.Image, wantTag)
	}
	resp, body = opsRequest(t, http.MethodPost, e.srv.URL+"/execute", "", `{"code":"import tabulate\nprint(tabulate.tabulate([[1, 2]]))"}`)
	if resp.StatusCode != 200 || !strings.Contains(body, `"status":"success"`) || resp.Header.Get("X-Sandbox-Image") != wantTag {
		t.Errorf("the new package does not import: %d %s", resp.StatusCode, body)
	}

	// The pool refills with the new image only.
	dockertest.WaitFor(t, "the pool refilled on the new image", 60*time.Second, func() bool {
		warm := 0
		for _, c := range dockertest.Containers(t, e.cli, e.owner) {
			if c.Labels[runner.LabelRole] == "warm" {
				if c.Image != wantTag {
					return false
				}
				warm++
			}
		}
		return warm == 2
	})

	// GET /admin/images describes it, versions included.
	resp, body = opsRequest(t, http.MethodGet, e.srv.URL+"/admin/images", opsAdminToken, "")
	var info imageInfo
	if err := json.Unmarshal([]byte(body), &info); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /admin/images: %d %s", resp.StatusCode, body)
	}
	if info.Tag != wantTag || !slices.Equal(info.Packages, []string{pkg}) || info.ContextHash != e.builder.Hash() || info.BuiltAt.IsZero() {
		t.Errorf("image info %+v", info)
	}
	for _, lib := range []string{"python", "numpy", "pandas", "matplotlib", "plotly"} {
		if info.Versions[lib] == "" {
			t.Errorf("no version of %s in %v", lib, info.Versions)
		}
	}

	m := parseMetrics(t, scrapeBody(t, e.srv.Config.Handler))
	if m[`pyexec_image_builds_total{result="success"}`] < 1 || m[`pyexec_image_switches_total`] != 1 {
		t.Errorf("image metrics: builds %v, switches %v", m[`pyexec_image_builds_total{result="success"}`], m[`pyexec_image_switches_total`])
	}
	if m[`pyexec_requests_rejected_total{reason="unauthorized"}`] != 2 {
		t.Errorf("unauthorized rejections: %v", m[`pyexec_requests_rejected_total{reason="unauthorized"}`])
	}
}
