package handlers

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/pyexec/pyexec/internal/keys"
	"github.com/pyexec/pyexec/runner"
)

// The keys of these tests; the file holds their hashes.
const (
	authKeyA = "ka-3f9c0b1e7d2a4c6f8e0b1d3f5a7c9e1b"
	authKeyB = "kb-7e1d3c5a9b0f2e4d6c8a0b2d4f6e8a0c"
)

func authKeys(t *testing.T, entries string) *keys.Store {
	t.Helper()
	set, err := keys.Parse([]byte(`{"keys":[` + entries + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	return keys.NewStatic(set)
}

// twoKeys: A may run one execution at once and 3 a minute, hold one session
// and ask for 5 s at most; B has the service's limits.
func twoKeys(t *testing.T) *keys.Store {
	return authKeys(t, `{"name":"team-a","sha256":"`+keys.Hash(authKeyA)+`","max_concurrent":1,"per_minute":3,"max_sessions":1,"max_timeout_seconds":5},
		{"name":"team-b","sha256":"`+keys.Hash(authKeyB)+`"}`)
}

// authEnv is a router with keys over fakes, its log lines and metrics.
type authEnv struct {
	h        http.Handler
	run      *fakeRunner
	sessions *fakeSessions
	hook     *test.Hook
	reg      *prometheus.Registry
}

func newAuthEnv(t *testing.T, store *keys.Store) *authEnv {
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	reg := prometheus.NewRegistry()
	e := &authEnv{run: &fakeRunner{res: runner.Result{Status: runner.StatusSuccess, Stdout: "你好\n"}},
		sessions: &fakeSessions{files: map[string][]byte{"销售.csv": []byte("a,b\n")}}, hook: hook, reg: reg}
	e.h = New(Options{Runner: e.run, Sessions: e.sessions, Logger: log, DefaultTimeout: 30 * time.Second,
		MaxTimeout: newTestMaxTimeout, Registerer: reg, Gatherer: reg, Keys: store,
		AdminToken: opsAdminToken, Images: &stubImages{}, Switcher: &stubImages{}})
	return e
}

// call sends a request with header "Authorization" or "X-API-Key" set to
// auth ("" for none).
func (e *authEnv) call(method, path, header, auth, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set(header, auth)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// lastRequestLog is the data of the last "request" log line.
func (e *authEnv) lastRequestLog(t *testing.T) logrus.Fields {
	t.Helper()
	entries := e.hook.AllEntries()
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].Message == "request" {
			return entries[i].Data
		}
	}
	t.Fatal("no request log line")
	return nil
}

// assertNoKeyLogged fails when a log line carries a key.
func (e *authEnv) assertNoKeyLogged(t *testing.T, secrets ...string) {
	t.Helper()
	for _, entry := range e.hook.AllEntries() {
		line, err := entry.String()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Fatalf("a log line carries a key: %s", line)
			}
		}
	}
}

func TestAuthProtectedAndOpenPaths(t *testing.T) {
	e := newAuthEnv(t, twoKeys(t))
	code := `{"code":"print('你好')"}`
	sid := strings.Repeat("A", 43)
	protected := []struct{ method, path, body string }{
		{http.MethodPost, "/execute", code},
		{http.MethodPost, "/validate", code},
		{http.MethodPost, "/sessions", ""},
		{http.MethodGet, "/sessions/" + sid, ""},
		{http.MethodDelete, "/sessions/" + sid, ""},
		{http.MethodPost, "/sessions/" + sid + "/execute", code},
		{http.MethodGet, "/sessions/" + sid + "/files/销售.csv", ""},
		{http.MethodPut, "/sessions/" + sid + "/files/x.csv", "1,2"},
	}
	for _, p := range protected {
		for _, tc := range []struct{ header, auth, reason string }{
			{"", "", "missing"},
			{"Authorization", "Bearer not-a-key-of-this-service", "unknown"},
			{"X-API-Key", "not-a-key-of-this-service", "unknown"},
			{"Authorization", "Basic " + authKeyA, "missing"}, // only Bearer carries a key
			{"Authorization", "Bearer " + authKeyA + "x", "unknown"},
		} {
			rec := e.call(p.method, p.path, tc.header, tc.auth, p.body)
			if rec.Code != http.StatusUnauthorized || errorCode(t, rec) != "unauthorized" {
				t.Fatalf("%s %s with %s %q: %d %s", p.method, p.path, tc.header, tc.auth, rec.Code, rec.Body)
			}
			if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate %q", got)
			}
			if f := e.lastRequestLog(t); f["key"] != "unauthenticated" || f["auth"] != tc.reason || f["status"] != 401 {
				t.Errorf("log line %v", f)
			}
		}
	}
	if n := e.run.calls.Load(); n != 0 || e.sessions.calls != 0 {
		t.Fatalf("refused requests reached the runner: %d runs, %d session calls", n, e.sessions.calls)
	}
	// With a key, the same requests pass, through either header.
	for _, hdr := range []struct{ name, prefix string }{{"Authorization", "Bearer "}, {"authorization", "bearer  "}, {"X-API-Key", ""}} {
		rec := e.call(http.MethodPost, "/validate", hdr.name, hdr.prefix+authKeyB, code)
		if rec.Code != http.StatusOK {
			t.Fatalf("validate with %s: %d %s", hdr.name, rec.Code, rec.Body)
		}
		if f := e.lastRequestLog(t); f["key"] != "team-b" {
			t.Errorf("log line %v", f)
		}
	}
	// A proxy's Basic authorization does not hide X-API-Key.
	req := httptest.NewRequest(http.MethodPost, "/validate", strings.NewReader(code))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Basic dXNlcjpwYXNz")
	req.Header.Set("X-API-Key", authKeyB)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("X-API-Key with Basic authorization: %d %s", rec.Code, rec.Body)
	}
	// Open paths need no key.
	for _, path := range []string{"/health", "/livez", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json", "/", "/templates"} {
		rec := e.call(http.MethodGet, path, "", "", "")
		if rec.Code == http.StatusUnauthorized || rec.Code == http.StatusNotFound {
			t.Errorf("GET %s without a key: %d", path, rec.Code)
		}
	}
	// /admin keeps its own token, which is no API key.
	if rec := e.call(http.MethodGet, "/admin/images", "Authorization", "Bearer "+opsAdminToken, ""); rec.Code != http.StatusOK {
		t.Errorf("admin with its token: %d %s", rec.Code, rec.Body)
	}
	if rec := e.call(http.MethodGet, "/admin/images", "Authorization", "Bearer "+authKeyA, ""); rec.Code != http.StatusUnauthorized {
		t.Errorf("admin with an API key: %d", rec.Code)
	}
	e.assertNoKeyLogged(t, authKeyA, authKeyB, "not-a-key-of-this-service")

	m := scrape(t, e.h)
	if m[`pyexec_key_requests_total{key="unauthenticated",status="401"}`] != float64(len(protected)*5) {
		t.Errorf("401s counted: %v", m[`pyexec_key_requests_total{key="unauthenticated",status="401"}`])
	}
	if m[`pyexec_key_requests_total{key="team-b",status="200"}`] != 4 {
		t.Errorf("team-b's requests counted: %v", m[`pyexec_key_requests_total{key="team-b",status="200"}`])
	}
}

func TestAuthKeysOff(t *testing.T) {
	e := newAuthEnv(t, nil)
	rec := e.call(http.MethodPost, "/execute", "", "", `{"code":"print('你好')"}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("execute without keys configured: %d %s", rec.Code, rec.Body)
	}
	if f := e.lastRequestLog(t); f["key"] != "none" {
		t.Errorf("log line %v", f)
	}
	// A key sent anyway is ignored, not logged.
	rec = e.call(http.MethodPost, "/execute", "X-API-Key", authKeyA, `{"code":"print(1)"}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("%d", rec.Code)
	}
	// Sessions are anyone's without keys.
	rec = e.call(http.MethodPost, "/sessions", "", "", "")
	if rec.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	if rec := e.call(http.MethodGet, "/sessions/"+strings.Repeat("A", 43), "", "", ""); rec.Code != http.StatusOK {
		t.Fatalf("get: %d %s", rec.Code, rec.Body)
	}
	if m := scrape(t, e.h); m[`pyexec_key_requests_total{key="none",status="200"}`] != 3 {
		t.Errorf("metrics %v", m)
	}
	e.assertNoKeyLogged(t, authKeyA)
}

func TestAuthQuotas(t *testing.T) {
	e := newAuthEnv(t, twoKeys(t))
	code := `{"code":"print('你好')"}`
	for i := range 3 {
		if rec := e.call(http.MethodPost, "/execute", "X-API-Key", authKeyA, code); rec.Code != http.StatusOK {
			t.Fatalf("A's call %d: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	rec := e.call(http.MethodPost, "/execute", "X-API-Key", authKeyA, code)
	if rec.Code != http.StatusTooManyRequests || errorCode(t, rec) != keys.CodeQuotaExceeded {
		t.Fatalf("A's 4th call: %d %s", rec.Code, rec.Body)
	}
	if ra := rec.Header().Get("Retry-After"); ra == "" || ra == "0" || len(ra) > 2 {
		t.Errorf("Retry-After %q, want 1 to 60 seconds", ra)
	}
	if f := e.lastRequestLog(t); f["key"] != "team-a" || f["error_code"] != keys.CodeQuotaExceeded {
		t.Errorf("log line %v", f)
	}
	// A session that is not A's is not found, before any quota.
	if rec := e.call(http.MethodPost, "/sessions/"+strings.Repeat("A", 43)+"/execute", "X-API-Key", authKeyA, code); rec.Code != http.StatusNotFound {
		t.Fatalf("A on a session it does not own: %d", rec.Code)
	}
	if n := e.run.calls.Load(); n != 3 {
		t.Fatalf("%d runs, want 3", n)
	}
	// B is untouched by A's quota.
	for i := range 5 {
		if rec := e.call(http.MethodPost, "/execute", "Authorization", "Bearer "+authKeyB, code); rec.Code != http.StatusOK {
			t.Fatalf("B's call %d: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	// A's max_timeout_seconds bounds its timeout; B has the service's.
	rec = e.call(http.MethodPost, "/execute", "X-API-Key", authKeyA, `{"code":"print(1)","timeout":6}`)
	if rec.Code != http.StatusUnprocessableEntity || !strings.Contains(rec.Body.String(), "at most 5 seconds") {
		t.Fatalf("A over its max timeout: %d %s", rec.Code, rec.Body)
	}
	rec = e.call(http.MethodPost, "/execute", "X-API-Key", authKeyB, `{"code":"print(1)","timeout":50}`)
	if rec.Code != http.StatusOK || e.run.last.Timeout != 50*time.Second {
		t.Fatalf("B with 50 s: %d %v", rec.Code, e.run.last.Timeout)
	}
	rec = e.call(http.MethodPost, "/sessions", "X-API-Key", authKeyA, `{"timeout":10}`)
	if rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("A's session over its max timeout: %d %s", rec.Code, rec.Body)
	}
	e.assertNoKeyLogged(t, authKeyA, authKeyB)
}

// blockingRunner holds every Run until released.
type blockingRunner struct {
	fakeRunner
	started chan struct{}
	release chan struct{}
}

func (b *blockingRunner) Run(ctx context.Context, req runner.Request) (runner.Result, error) {
	b.started <- struct{}{}
	<-b.release
	return runner.Result{Status: runner.StatusSuccess}, nil
}

func TestAuthMaxConcurrent(t *testing.T) {
	log := logrus.New()
	log.SetLevel(logrus.PanicLevel)
	br := &blockingRunner{started: make(chan struct{}, 4), release: make(chan struct{})}
	h := New(Options{Runner: br, Logger: log, DefaultTimeout: time.Second, MaxTimeout: time.Minute, Keys: twoKeys(t)})
	send := func(key string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/execute", strings.NewReader(`{"code":"print(1)"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	var wg sync.WaitGroup
	var first *httptest.ResponseRecorder
	wg.Go(func() { first = send(authKeyA) })
	<-br.started
	rec := send(authKeyA)
	if rec.Code != http.StatusTooManyRequests || errorCode(t, rec) != keys.CodeTooManyConcurrent || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("A's second at once: %d %s %q", rec.Code, rec.Body, rec.Header().Get("Retry-After"))
	}
	// B runs while A holds its one slot.
	wg.Go(func() {
		if rec := send(authKeyB); rec.Code != http.StatusOK {
			t.Errorf("B while A runs: %d", rec.Code)
		}
	})
	<-br.started
	close(br.release)
	wg.Wait()
	if first.Code != http.StatusOK {
		t.Fatalf("A's first: %d", first.Code)
	}
	// The slot is back: A runs again (its 2nd of 3 a minute).
	if rec := send(authKeyA); rec.Code != http.StatusOK {
		t.Fatalf("A after its first ended: %d %s", rec.Code, rec.Body)
	}
}

func TestAuthSessionOwnership(t *testing.T) {
	e := newAuthEnv(t, twoKeys(t))
	rec := e.call(http.MethodPost, "/sessions", "X-API-Key", authKeyA, "")
	if rec.Code != http.StatusCreated {
		t.Fatalf("A creates: %d %s", rec.Code, rec.Body)
	}
	var created struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &created); err != nil {
		t.Fatal(err)
	}
	base := "/sessions/" + created.ID
	for _, r := range []struct{ method, path, body string }{
		{http.MethodGet, base, ""},
		{http.MethodPost, base + "/execute", `{"code":"print(1)"}`},
		{http.MethodGet, base + "/files/销售.csv", ""},
		{http.MethodPut, base + "/files/y.csv", "1"},
		{http.MethodDelete, base, ""},
	} {
		rec := e.call(r.method, r.path, "X-API-Key", authKeyB, r.body)
		if rec.Code != http.StatusNotFound || errorCode(t, rec) != "session_not_found" {
			t.Fatalf("B: %s %s: %d %s", r.method, r.path, rec.Code, rec.Body)
		}
	}
	if rec := e.call(http.MethodGet, base, "X-API-Key", authKeyA, ""); rec.Code != http.StatusOK {
		t.Fatalf("A reads its session: %d %s", rec.Code, rec.Body)
	}
	// A holds one session at most; the fake's session lives on.
	rec = e.call(http.MethodPost, "/sessions", "X-API-Key", authKeyA, "")
	if rec.Code != http.StatusTooManyRequests || errorCode(t, rec) != "too_many_sessions" || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("A's second session: %d %s", rec.Code, rec.Body)
	}
	// Once the runner no longer knows it, it no longer counts.
	e.sessions.err = runner.ErrSessionNotFound
	rec = e.call(http.MethodPost, "/sessions", "X-API-Key", authKeyA, "")
	if rec.Code != http.StatusNotFound { // the fake's create fails with err too
		t.Fatalf("A after its session ended: %d %s", rec.Code, rec.Body)
	}
}

// slowSessions holds CreateSession until released.
type slowSessions struct {
	fakeSessions
	entered chan struct{}
	release chan struct{}
}

func (s *slowSessions) CreateSession(ctx context.Context, o runner.SessionOptions) (runner.SessionInfo, error) {
	s.entered <- struct{}{}
	<-s.release
	return s.fakeSessions.CreateSession(ctx, o)
}

// TestAuthMaxSessionsConcurrent: a creation in progress counts, so two
// creations at once cannot both pass a max_sessions of 1.
func TestAuthMaxSessionsConcurrent(t *testing.T) {
	log := logrus.New()
	log.SetLevel(logrus.PanicLevel)
	ss := &slowSessions{fakeSessions: fakeSessions{files: map[string][]byte{}}, entered: make(chan struct{}, 2), release: make(chan struct{})}
	h := New(Options{Runner: &fakeRunner{}, Sessions: ss, Logger: log, DefaultTimeout: time.Second, MaxTimeout: time.Minute, Keys: twoKeys(t)})
	create := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/sessions", nil)
		req.Header.Set("X-API-Key", authKeyA)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	var wg sync.WaitGroup
	var first *httptest.ResponseRecorder
	wg.Go(func() { first = create() })
	<-ss.entered
	if rec := create(); rec.Code != http.StatusTooManyRequests || errorCode(t, rec) != "too_many_sessions" {
		t.Fatalf("a second creation while the first is in progress: %d %s", rec.Code, rec.Body)
	}
	close(ss.release)
	wg.Wait()
	if first.Code != http.StatusCreated {
		t.Fatalf("first creation: %d %s", first.Code, first.Body)
	}
	// The reservation ended with the creation: one session, no more.
	if rec := create(); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("a creation past max_sessions: %d", rec.Code)
	}
}
