package handlers

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/policy"
	"github.com/pyexec/pyexec/runner"
)

// fakeSessions stands in for the runner's sessions in pure handler tests;
// the real ones are exercised in sessions_e2e_test.go.
type fakeSessions struct {
	mu    sync.Mutex
	calls int
	last  runner.Request
	opts  runner.SessionOptions
	files map[string][]byte
	res   runner.Result
	err   error
}

func (f *fakeSessions) call() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.err
}

func (f *fakeSessions) CreateSession(_ context.Context, o runner.SessionOptions) (runner.SessionInfo, error) {
	f.opts = o
	now := time.Now()
	return runner.SessionInfo{ID: strings.Repeat("A", 43), CreatedAt: now, ExpiresAt: now.Add(time.Hour),
		LastUsed: now, Timeout: o.Timeout, IdleTimeout: 10 * time.Minute}, f.call()
}

func (f *fakeSessions) RunInSession(_ context.Context, id string, req runner.Request) (runner.Result, error) {
	f.last = req
	return f.res, f.call()
}

func (f *fakeSessions) Session(_ context.Context, id string) (runner.SessionInfo, error) {
	now := time.Now()
	return runner.SessionInfo{ID: id, CreatedAt: now.Add(-time.Minute), ExpiresAt: now.Add(time.Hour), LastUsed: now,
		State: runner.SessionStateIdle, Files: []runner.SessionFile{{Name: "sales.csv", Size: 3}}}, f.call()
}

func (f *fakeSessions) SessionFile(_ context.Context, id, name string) ([]byte, error) {
	if err := f.call(); err != nil {
		return nil, err
	}
	data, ok := f.files[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", runner.ErrFileNotFound, name)
	}
	return data, nil
}

func (f *fakeSessions) PutSessionFile(_ context.Context, id, name string, data []byte) error {
	if err := f.call(); err != nil {
		return err
	}
	f.files[name] = data
	return nil
}

func (f *fakeSessions) DeleteSession(_ context.Context, id string) error { return f.call() }

func newSessionRouter(f *fakeRunner, s *fakeSessions, maxInputBytes int64) http.Handler {
	log := logrus.New()
	log.SetLevel(logrus.PanicLevel)
	o := Options{Runner: f, Logger: log, DefaultTimeout: 30 * time.Second, MaxTimeout: newTestMaxTimeout,
		MaxInputFiles: 20, MaxInputBytes: maxInputBytes}
	if s != nil {
		o.Sessions = s
	}
	return New(o)
}

func filesBody(files ...map[string]any) string {
	b, _ := json.Marshal(map[string]any{"code": "print(1)", "files": files})
	return string(b)
}

func file(name, content string) map[string]any {
	return map[string]any{"name": name, "content": base64.StdEncoding.EncodeToString([]byte(content))}
}

// TestExecuteFilesRefused: hostile names and sizes are 422 with their own
// code, and nothing reaches the runner (no container).
func TestExecuteFilesRefused(t *testing.T) {
	many := make([]map[string]any, 1000)
	for i := range many {
		many[i] = file(fmt.Sprintf("f%d.csv", i), "x")
	}
	tests := []struct {
		name, body, code string
	}{
		{"dotdot", filesBody(file("../x", "a")), "invalid_file_name"},
		{"absolute", filesBody(file("/etc/passwd", "a")), "invalid_file_name"},
		{"separator", filesBody(file("a/b", "a")), "invalid_file_name"},
		{"backslash", filesBody(file(`a\b`, "a")), "invalid_file_name"},
		{"nul", filesBody(file("a\x00b", "a")), "invalid_file_name"},
		{"control", filesBody(file("a\nb", "a")), "invalid_file_name"},
		{"empty", filesBody(file("", "a")), "invalid_file_name"},
		{"dot", filesBody(file(".", "a")), "invalid_file_name"},
		{"dotdot alone", filesBody(file("..", "a")), "invalid_file_name"},
		{"spaces", filesBody(file(" a.csv", "a")), "invalid_file_name"},
		{"long", filesBody(file(strings.Repeat("n", 256), "a")), "invalid_file_name"},
		{"no name", `{"code":"print(1)","files":[{"content":"YQ=="}]}`, "invalid_file_name"},
		{"duplicate", filesBody(file("a.csv", "a"), file("a.csv", "b")), "duplicate_file_name"},
		{"1000 files", filesBody(many...), "too_many_files"},
		{"total", filesBody(file("a.csv", strings.Repeat("x", 600)), file("b.csv", strings.Repeat("y", 600))), "files_too_large"},
		{"one too large", filesBody(file("a.csv", strings.Repeat("x", 1025))), "files_too_large"},
		{"bad base64", `{"code":"print(1)","files":[{"name":"a.csv","content":"not base64!"}]}`, "invalid_file_content"},
		{"no content", `{"code":"print(1)","files":[{"name":"a.csv"}]}`, "invalid_file_content"},
		{"not a list", `{"code":"print(1)","files":{"name":"a.csv"}}`, "invalid_field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeRunner{}
			s := &fakeSessions{files: map[string][]byte{}}
			h := newSessionRouter(f, s, 1024)
			for _, path := range []string{"/execute", "/sessions/" + strings.Repeat("A", 43) + "/execute"} {
				rec := do(h, http.MethodPost, path, "application/json", tt.body)
				if rec.Code != http.StatusUnprocessableEntity || errorCode(t, rec) != tt.code {
					t.Errorf("%s: %d %.300s, want 422 %s", path, rec.Code, rec.Body, tt.code)
				}
			}
			if f.calls.Load() != 0 || s.calls != 0 {
				t.Errorf("the runner was called (%d, %d)", f.calls.Load(), s.calls)
			}
		})
	}
}

// TestExecuteFilesPassed: valid files reach the runner decoded, Chinese
// names included.
func TestExecuteFilesPassed(t *testing.T) {
	f := &fakeRunner{res: runner.Result{Status: runner.StatusSuccess}}
	h := newSessionRouter(f, nil, 1024)
	rec := do(h, http.MethodPost, "/execute", "application/json", filesBody(file("销售.csv", "地区,金额\n"), file("b.json", "{}")))
	if rec.Code != http.StatusOK {
		t.Fatalf("%d %.300s", rec.Code, rec.Body)
	}
	if len(f.last.Files) != 2 || f.last.Files[0].Name != "销售.csv" || string(f.last.Files[0].Data) != "地区,金额\n" ||
		string(f.last.Files[1].Data) != "{}" {
		t.Errorf("files %+v", f.last.Files)
	}
	var out struct{ Output map[string]any }
	if json.Unmarshal(rec.Body.Bytes(), &out) != nil || out.Output["files"] == nil {
		t.Errorf("output.files absent: %.300s", rec.Body)
	}
}

// TestBodyLimitGrowsWithInputBytes: the body limit is 1 MiB + 4/3 of
// MAX_INPUT_BYTES + 64 KiB, and a body past it is 413.
func TestBodyLimitGrowsWithInputBytes(t *testing.T) {
	f := &fakeRunner{res: runner.Result{Status: runner.StatusSuccess}}
	h := newSessionRouter(f, nil, 3<<20)
	big := strings.Repeat("x", 2<<20) // 2 MiB: over the old 1 MiB limit, within 3 MiB of files
	if rec := do(h, http.MethodPost, "/execute", "application/json", filesBody(file("big.csv", big))); rec.Code != http.StatusOK {
		t.Fatalf("2 MiB file: %d %.300s", rec.Code, rec.Body)
	}
	huge := `{"code":"print(1)","files":[{"name":"a","content":"` + strings.Repeat("A", 6<<20) + `"}]}`
	if rec := do(h, http.MethodPost, "/execute", "application/json", huge); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("body over the limit: %d, want 413", rec.Code)
	}
	if rec := do(h, http.MethodPost, "/validate", "application/json", `{"code":"`+strings.Repeat("#", 2<<20)+`"}`); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("/validate keeps the 1 MiB limit: %d", rec.Code)
	}
}

func TestSessionRoutes(t *testing.T) {
	f := &fakeRunner{}
	s := &fakeSessions{files: map[string][]byte{"by_region.csv": []byte("a,b\n"), "销售.csv": []byte("x")}}
	h := newSessionRouter(f, s, 1024)
	id := strings.Repeat("A", 43)

	rec := do(h, http.MethodPost, "/sessions", "", "")
	var created map[string]any
	if rec.Code != http.StatusCreated || json.Unmarshal(rec.Body.Bytes(), &created) != nil || created["id"] != id ||
		rec.Header().Get("Location") != "/sessions/"+id || created["timeout"] != 30.0 || created["idle_timeout_seconds"] != 600.0 {
		t.Fatalf("POST /sessions: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	for _, body := range []string{`{}`, `{"timeout": 5}`} {
		if rec := do(h, http.MethodPost, "/sessions", "application/json", body); rec.Code != http.StatusCreated {
			t.Errorf("POST /sessions %s: %d", body, rec.Code)
		}
	}
	if s.opts.Timeout != 5*time.Second {
		t.Errorf("session timeout %v", s.opts.Timeout)
	}
	for _, body := range []string{`{"timeout": 0}`, `{"timeout": 61}`, `{"x": 1}`} {
		if rec := do(h, http.MethodPost, "/sessions", "application/json", body); rec.Code != http.StatusUnprocessableEntity {
			t.Errorf("POST /sessions %s: %d, want 422", body, rec.Code)
		}
	}

	s.res = runner.Result{Status: runner.StatusTimeout, Outputs: runner.Outputs{Files: []runner.OutputFile{}},
		Session: &runner.SessionState{ID: id, Executions: 3, Ended: true, EndReason: runner.EndTimeout}}
	rec = do(h, http.MethodPost, "/sessions/"+id+"/execute", "application/json", `{"code":"x + 1"}`)
	var cell struct {
		Status  string
		Session sessionOfCell
	}
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &cell) != nil || cell.Status != runner.StatusTimeout ||
		!cell.Session.Ended || cell.Session.EndReason != runner.EndTimeout || cell.Session.Executions != 3 {
		t.Errorf("cell: %d %.500s", rec.Code, rec.Body)
	}
	if s.last.Timeout != 0 || s.last.Code != "x + 1" {
		t.Errorf("a cell without timeout should take the session's: %+v", s.last)
	}

	rec = do(h, http.MethodGet, "/sessions/"+id, "", "")
	var info sessionBody
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &info) != nil || info.ID != id || info.State != "idle" ||
		len(info.Files) != 1 || info.AgeSeconds < 59 {
		t.Errorf("GET session: %d %s", rec.Code, rec.Body)
	}

	rec = do(h, http.MethodGet, "/sessions/"+id+"/files/by_region.csv", "", "")
	if rec.Code != 200 || rec.Body.String() != "a,b\n" || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/csv") ||
		rec.Header().Get("X-Content-Type-Options") != "nosniff" ||
		rec.Header().Get("Content-Disposition") != `attachment; filename="by_region.csv"; filename*=UTF-8''by_region.csv` {
		t.Errorf("GET file: %d %v %q", rec.Code, rec.Header(), rec.Body)
	}
	rec = do(h, http.MethodGet, "/sessions/"+id+"/files/"+url.PathEscape("销售.csv"), "", "")
	if rec.Code != 200 || rec.Header().Get("Content-Disposition") != `attachment; filename="______.csv"; filename*=UTF-8''%E9%94%80%E5%94%AE.csv` {
		t.Errorf("GET Chinese name: %d %v", rec.Code, rec.Header())
	}
	rec = do(h, http.MethodGet, "/sessions/"+id+"/files/nothing.csv", "", "")
	if rec.Code != 404 || errorCode(t, rec) != "file_not_found" {
		t.Errorf("missing file: %d %s", rec.Code, rec.Body)
	}
	for _, name := range []string{"a%00b", "outputs/..%2Fx", "a%5Cb"} {
		if rec := do(h, http.MethodGet, "/sessions/"+id+"/files/"+name, "", ""); rec.Code != 422 && rec.Code != 404 && rec.Code != 301 {
			t.Errorf("GET %s: %d", name, rec.Code)
		}
	}

	rec = do(h, http.MethodPut, "/sessions/"+id+"/files/new.csv", "text/csv", "1,2\n")
	if rec.Code != http.StatusCreated || string(s.files["new.csv"]) != "1,2\n" || !strings.Contains(rec.Body.String(), `"size":4`) {
		t.Errorf("PUT: %d %s", rec.Code, rec.Body)
	}
	if rec := do(h, http.MethodPut, "/sessions/"+id+"/files/outputs/x.csv", "", "1"); rec.Code != 422 ||
		errorCode(t, rec) != "invalid_file_name" {
		t.Errorf("PUT a path: %d %s", rec.Code, rec.Body)
	}
	if rec := do(h, http.MethodPut, "/sessions/"+id+"/files/big.csv", "", strings.Repeat("x", 1025)); rec.Code != 422 ||
		errorCode(t, rec) != "files_too_large" {
		t.Errorf("PUT too large: %d %s", rec.Code, rec.Body)
	}

	if rec := do(h, http.MethodDelete, "/sessions/"+id, "", ""); rec.Code != http.StatusNoContent {
		t.Errorf("DELETE: %d", rec.Code)
	}
	if rec := do(h, http.MethodGet, "/sessions", "", ""); rec.Code != http.StatusMethodNotAllowed && rec.Code != 404 {
		t.Errorf("GET /sessions (no listing): %d", rec.Code)
	}
}

// TestSessionErrors: each session error has its status and code.
func TestSessionErrors(t *testing.T) {
	id := strings.Repeat("A", 43)
	tests := []struct {
		err    error
		status int
		code   string
		msg    string
	}{
		{&runner.SessionGoneError{Reason: runner.EndIdle}, 404, "session_not_found", "idle"},
		{&runner.SessionGoneError{Reason: runner.EndDeleted}, 404, "session_not_found", "deleted"},
		{runner.ErrSessionNotFound, 404, "session_not_found", "no such session"},
		{runner.ErrSessionBusy, 409, "session_busy", "busy"},
		{runner.ErrTooManySessions, 429, "too_many_sessions", "sessions"},
		{runner.ErrBusy, 429, "busy", "busy"},
		{fmt.Errorf("%w: x", runner.ErrFileRefused), 422, "file_refused", "x"},
		{fmt.Errorf("%w: x", runner.ErrInvalidFile), 422, "invalid_file_name", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.code+" "+tt.msg, func(t *testing.T) {
			s := &fakeSessions{err: tt.err, files: map[string][]byte{}}
			h := newSessionRouter(&fakeRunner{}, s, 1024)
			for _, req := range [][3]string{
				{http.MethodPost, "/sessions", ""},
				{http.MethodPost, "/sessions/" + id + "/execute", `{"code":"1"}`},
				{http.MethodGet, "/sessions/" + id, ""},
				{http.MethodGet, "/sessions/" + id + "/files/a.csv", ""},
				{http.MethodPut, "/sessions/" + id + "/files/a.csv", "x"},
				{http.MethodDelete, "/sessions/" + id, ""},
			} {
				ct := ""
				if req[2] != "" && req[0] == http.MethodPost {
					ct = "application/json"
				}
				rec := do(h, req[0], req[1], ct, req[2])
				if rec.Code != tt.status || errorCode(t, rec) != tt.code || !strings.Contains(rec.Body.String(), tt.msg) {
					t.Errorf("%s %s: %d %s, want %d %s", req[0], req[1], rec.Code, rec.Body, tt.status, tt.code)
				}
				if tt.status == 429 && rec.Header().Get("Retry-After") == "" {
					t.Errorf("%s %s: 429 without Retry-After", req[0], req[1])
				}
			}
		})
	}
}

// TestSessionsOff: without Options.Sessions (MAX_SESSIONS=0) the routes
// are not there.
func TestSessionsOff(t *testing.T) {
	h := newSessionRouter(&fakeRunner{}, nil, 1024)
	if rec := do(h, http.MethodPost, "/sessions", "application/json", "{}"); rec.Code != 404 {
		t.Errorf("POST /sessions with sessions off: %d", rec.Code)
	}
}

func TestContentDisposition(t *testing.T) {
	for name, want := range map[string]string{
		"a.csv":           `attachment; filename="a.csv"; filename*=UTF-8''a.csv`,
		"outputs/b c.csv": `attachment; filename="b c.csv"; filename*=UTF-8''b%20c.csv`,
		`q"%.txt`:         `attachment; filename="q__.txt"; filename*=UTF-8''q%22%25.txt`,
	} {
		if got := contentDisposition(name); got != want {
			t.Errorf("%q: %s, want %s", name, got, want)
		}
	}
}

// realSessionRouter is realRouter with sessions and input files on.
func realSessionRouter(t *testing.T, mod func(*runner.Options)) (http.Handler, *runner.Runner) {
	t.Helper()
	cli := dockertest.Require(t)
	owner := dockertest.Owner(t)
	rules := policy.Default()
	opts := runner.Options{Image: dockertest.Image(t, cli), Owner: owner, Policy: &rules}
	if mod != nil {
		mod(&opts)
	}
	rn, err := runner.New(cli, opts)
	if err != nil {
		t.Fatal(err)
	}
	rn.Start(t.Context())
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	h := New(Options{
		Runner: rn, Sessions: rn, Logger: log, DefaultTimeout: 30 * time.Second, MaxTimeout: 60 * time.Second,
		MaxInputFiles: DefaultMaxInputFiles, MaxInputBytes: DefaultMaxInputBytes,
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := rn.Close(ctx); err != nil {
			t.Error(err)
		}
		dockertest.AssertNoContainers(t, cli, owner)
	})
	return h, rn
}

// TestSessionsHTTP drives a session through the real router, runner and
// engine: state between cells, an upload with a Chinese name, a download
// with the same bytes, DELETE and 404 after it; hostile files are 422 and
// create no container.
func TestSessionsHTTP(t *testing.T) {
	h, rn := realSessionRouter(t, nil)

	// Hostile names and sizes: 422, no container.
	many := make([]map[string]any, 1000)
	for i := range many {
		many[i] = file(fmt.Sprintf("f%d.csv", i), "x")
	}
	for _, body := range []string{
		filesBody(file("../x", "a")), filesBody(file("/etc/passwd", "a")), filesBody(file("a/b", "a")),
		filesBody(file("a\x00b", "a")), filesBody(file("", "a")), filesBody(many...),
		filesBody(file("a.csv", strings.Repeat("x", DefaultMaxInputBytes/2+1)), file("b.csv", strings.Repeat("x", DefaultMaxInputBytes/2+1))),
	} {
		if rec := do(h, http.MethodPost, "/execute", "application/json", body); rec.Code != http.StatusUnprocessableEntity {
			t.Errorf("/execute with hostile files: %d %.200s", rec.Code, rec.Body)
		}
	}
	if n := rn.Stats().ContainersCreated; n != 0 {
		t.Errorf("%d containers created for refused requests", n)
	}

	rec := do(h, http.MethodPost, "/sessions", "application/json", `{"timeout": 20}`)
	var created sessionCreated
	if rec.Code != http.StatusCreated || json.Unmarshal(rec.Body.Bytes(), &created) != nil || len(created.ID) != 43 {
		t.Fatalf("POST /sessions: %d %s", rec.Code, rec.Body)
	}
	base := "/sessions/" + created.ID
	cell := func(body string) sessionExecuteResponse {
		t.Helper()
		rec := do(h, http.MethodPost, base+"/execute", "application/json", body)
		var out sessionExecuteResponse
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &out) != nil || out.Session == nil || out.Session.ID != created.ID {
			t.Fatalf("cell %s: %d %.500s", body, rec.Code, rec.Body)
		}
		return out
	}
	cell(`{"code": "x = 41"}`)
	if out := cell(`{"code": "x + 1"}`); out.Output.Result == nil || out.Output.Result.Repr != "42" || out.Session.Executions != 2 {
		t.Errorf("x + 1: %+v %+v", out.Output.Result, out.Session)
	}
	csv := "地区,金额\n华东,1.5\n华北,2\n华东,3\n"
	out := cell(`{"code": "import pandas as pd\ndf = pd.read_csv('销售.csv')\ndf.groupby('地区')['金额'].sum().to_csv('outputs/汇总.csv')", "files": [{"name": "销售.csv", "content": "` +
		base64.StdEncoding.EncodeToString([]byte(csv)) + `"}]}`)
	if out.Status != runner.StatusSuccess || len(out.Output.Files) != 1 || out.Output.Files[0].Name != "汇总.csv" {
		t.Fatalf("upload and group: %s %+v %+v", out.Status, out.Error, out.Output.Files)
	}
	rec = do(h, http.MethodGet, base+"/files/"+url.PathEscape("汇总.csv"), "", "")
	if rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), out.Output.Files[0].Content) ||
		!strings.Contains(rec.Header().Get("Content-Disposition"), "filename*=UTF-8''%E6%B1%87%E6%80%BB.csv") {
		t.Errorf("download: %d %v %q", rec.Code, rec.Header(), rec.Body)
	}
	if rec := do(h, http.MethodPut, base+"/files/more.csv", "text/csv", "a\n1\n"); rec.Code != http.StatusCreated {
		t.Errorf("PUT: %d %s", rec.Code, rec.Body)
	}
	rec = do(h, http.MethodGet, base, "", "")
	var info sessionBody
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &info) != nil || info.Executions != 3 || len(info.Files) < 3 {
		t.Errorf("GET session: %d %s", rec.Code, rec.Body)
	}
	if rec := do(h, http.MethodPost, base+"/execute", "application/json", filesBody(file("../x", "a"))); rec.Code != 422 {
		t.Errorf("hostile file in a session: %d", rec.Code)
	}
	if rec := do(h, http.MethodDelete, base, "", ""); rec.Code != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", rec.Code, rec.Body)
	}
	for _, req := range [][2]string{{http.MethodGet, base}, {http.MethodPost, base + "/execute"}, {http.MethodDelete, base}} {
		rec := do(h, req[0], req[1], "application/json", `{"code":"x"}`)
		if rec.Code != 404 || errorCode(t, rec) != "session_not_found" || !strings.Contains(rec.Body.String(), "deleted") {
			t.Errorf("%s after DELETE: %d %s", req[0], rec.Code, rec.Body)
		}
	}
}

// TestSessionClientLeaves: a client that gives up on a session cell (its
// HTTP request is cancelled) interrupts the cell, as a notebook's interrupt
// does, instead of holding the session until the cell's time limit; the
// session keeps its state and takes the next cell at once.
func TestSessionClientLeaves(t *testing.T) {
	h, _ := realSessionRouter(t, nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	rec := do(h, http.MethodPost, "/sessions", "application/json", `{}`)
	var created sessionCreated
	if rec.Code != http.StatusCreated || json.Unmarshal(rec.Body.Bytes(), &created) != nil {
		t.Fatalf("POST /sessions: %d %s", rec.Code, rec.Body)
	}
	base := "/sessions/" + created.ID
	if rec := do(h, http.MethodPost, base+"/execute", "application/json", `{"code": "x = 41"}`); rec.Code != 200 {
		t.Fatalf("x = 41: %d %s", rec.Code, rec.Body)
	}

	impatient := &http.Client{Timeout: 700 * time.Millisecond}
	start := time.Now()
	resp, err := impatient.Post(srv.URL+base+"/execute", "application/json",
		strings.NewReader(`{"code": "n = 0\nwhile True:\n    n += 1", "timeout": 60}`))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("the endless cell answered %d", resp.StatusCode)
	}
	// The cell is interrupted when the client leaves, not at its 60 s limit.
	dockertest.WaitFor(t, "the session idle again", dockertest.Scale(3*time.Second), func() bool {
		rec := do(h, http.MethodGet, base, "", "")
		var info sessionBody
		return rec.Code == 200 && json.Unmarshal(rec.Body.Bytes(), &info) == nil && info.State == runner.SessionStateIdle
	})
	t.Logf("idle again %v after the request", time.Since(start))
	rec = do(h, http.MethodPost, base+"/execute", "application/json", `{"code": "x + 1, n > 0"}`)
	var out sessionExecuteResponse
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &out) != nil || out.Output.Result == nil ||
		out.Output.Result.Repr != "(42, True)" || out.Session.Ended {
		t.Fatalf("after the interrupted cell: %d %.500s", rec.Code, rec.Body)
	}
}
