package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// TestHealthcheck runs `pyexec -healthcheck`'s function against a server on
// 127.0.0.1: 0 for a 200 from /livez, 1 otherwise, with the reason.
func TestHealthcheck(t *testing.T) {
	var status int
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path)
		w.WriteHeader(status)
	}))
	defer srv.Close()
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	env := func(port string) func(string) string {
		return func(k string) string {
			if k == "PORT" {
				return port
			}
			return ""
		}
	}
	// A port nobody listens on: one that was free a moment ago.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()

	cases := []struct {
		name, port string
		status     int
		want       int
		stderr     string
	}{
		{"live", port, 200, 0, ""},
		{"503", port, 503, 1, "503"},
		{"nobody listens", closed, 200, 1, "/livez"},
		{"bad PORT", "八千", 200, 1, "PORT"},
	}
	for _, c := range cases {
		status = c.status
		var stderr bytes.Buffer
		if got := healthcheck(env(c.port), &stderr); got != c.want {
			t.Errorf("%s: exit %d, want %d (%s)", c.name, got, c.want, stderr.String())
		}
		if !strings.Contains(stderr.String(), c.stderr) || (c.stderr == "") != (stderr.Len() == 0) {
			t.Errorf("%s: stderr %q, want it to name %q", c.name, stderr.String(), c.stderr)
		}
	}
	if len(paths) != 2 || paths[0] != "/livez" {
		t.Errorf("paths asked = %v, want /livez twice", paths)
	}
}
