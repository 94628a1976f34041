package loadgen

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestClassify checks how Do classifies each kind of answer, against a
// stand-in server that answers as the contract allows and as it forbids.
func TestClassify(t *testing.T) {
	hello := Mixed[0]
	cases := []struct {
		name    string
		handler http.HandlerFunc
		class   string
		ok      bool
		allowed bool
	}{
		{"success", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"status":"success","output":{"stdout":"Hello World\n"}}`))
		}, "200 success", true, true},
		{"wrong 200", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"status":"error","output":{"stdout":""},"error":{"type":"X","message":"m"}}`))
		}, "200 wrong hello", false, false},
		{"503 with Retry-After", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(503)
			_, _ = w.Write([]byte(`{"error":{"code":"engine_unavailable","message":"m"}}`))
		}, "503 engine_unavailable", false, true},
		{"503 without Retry-After", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(503)
			_, _ = w.Write([]byte(`{"error":{"code":"deadline","message":"m"}}`))
		}, "503 deadline (no Retry-After)", false, false},
		{"500", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
			_, _ = w.Write([]byte(`{"error":{"code":"internal","message":"m"}}`))
		}, "500 internal", false, false},
		{"hung", func(w http.ResponseWriter, r *http.Request) {
			// Read the body so the server notices the client leaving.
			_, _ = io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
		}, "hung", false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(c.handler)
			defer srv.Close()
			a := NewClient(srv.URL, 300*time.Millisecond).Do(context.Background(), hello)
			if a.Class() != c.class || a.OK != c.ok || a.Allowed != c.allowed {
				t.Errorf("got class %q ok=%v allowed=%v, want %q %v %v (%s)", a.Class(), a.OK, a.Allowed, c.class, c.ok, c.allowed, a.Detail)
			}
			if a.End.Before(a.Start) || a.Start.IsZero() {
				t.Errorf("times not set: start %v end %v", a.Start, a.End)
			}
		})
	}
}

// TestSummarize checks the windows, the excuse and the first success.
func TestSummarize(t *testing.T) {
	t0 := time.Now()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	answers := []Answer{
		{Workload: "hello", Start: at(0), End: at(1), HTTP: 200, Code: "success", OK: true, Allowed: true},
		{Workload: "hello", Start: at(1), End: at(2), HTTP: 0, Code: "transport"},
		{Workload: "hello", Start: at(2), End: at(3), HTTP: 500, Code: "internal"},
		{Workload: "hello", Start: at(3), End: at(5), HTTP: 200, Code: "success", OK: true, Allowed: true},
	}
	s := Summarize(answers, time.Time{}, time.Time{}, func(a Answer) bool { return a.Code == "transport" })
	if s.Requests != 4 || s.OK != 2 || s.Failures != 1 || s.ByClass["500 internal"] != 1 {
		t.Errorf("summary %s", s)
	}
	if s := Summarize(answers, at(2), at(4), nil); s.Requests != 2 || s.Failures != 2 {
		t.Errorf("window summary %s", s)
	}
	if d, ok := FirstSuccessAfter(answers, at(2)); !ok || d != 3*time.Second {
		t.Errorf("first success after +2s: %v %v, want 3s", d, ok)
	}
	if _, ok := FirstSuccessAfter(answers, at(6)); ok {
		t.Error("a success after the last answer")
	}
	if tl := Timeline(answers, t0, 2*time.Second); strings.Count(tl, "\n") != 3 {
		t.Errorf("timeline:\n%s", tl)
	}
}
