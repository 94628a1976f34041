package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/policy"
	"github.com/pyexec/pyexec/runner"
)

// realRouter is the real router over the real runner (language policy on,
// a small warm pool) and engine; cleanup asserts no container remains.
func realRouter(t *testing.T, mod func(*runner.Options)) (http.Handler, *runner.Runner) {
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
		Runner: rn, Logger: log, DefaultTimeout: 30 * time.Second, MaxTimeout: 60 * time.Second,
		Health: func(ctx context.Context) Health {
			err := rn.Ping(ctx)
			return Health{
				Engine: EngineHealth{Reachable: err == nil || !isEngineDown(err)},
				Image:  ImageHealth{Tag: rn.Options().Image, Present: err == nil, Current: err == nil},
			}
		},
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

// realServer serves realRouter over HTTP.
func realServer(t *testing.T) (*httptest.Server, *runner.Runner) {
	t.Helper()
	h, rn := realRouter(t, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close) // runs before realRouter's cleanup
	return srv, rn
}

func isEngineDown(err error) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte("engine"))
}

func post(t *testing.T, url string, body any) (*http.Response, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("response not JSON: %v", err)
	}
	return resp, out
}

func TestE2EHelloWorldAndHealth(t *testing.T) {
	srv, _ := realServer(t)
	resp, out := post(t, srv.URL+"/execute", map[string]any{"code": `print("Hello World")`, "timeout": 30})
	if resp.StatusCode != 200 || out["status"] != "success" {
		t.Fatalf("%d %v", resp.StatusCode, out)
	}
	if got := out["output"].(map[string]any)["stdout"]; got != "Hello World\n" {
		t.Errorf("stdout = %q", got)
	}
	if out["error"] != nil {
		t.Errorf("error = %v", out["error"])
	}

	hr, err := http.Get(srv.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer hr.Body.Close()
	var h map[string]any
	if err := json.NewDecoder(hr.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	if hr.StatusCode != 200 || h["status"] != "ok" {
		t.Errorf("health %d %v", hr.StatusCode, h)
	}
}

func TestE2EBadRequestStartsNoContainer(t *testing.T) {
	srv, rn := realServer(t)
	resp, out := post(t, srv.URL+"/execute", map[string]any{"code": "print(1)", "timeout": 0})
	if resp.StatusCode != 422 {
		t.Fatalf("%d %v", resp.StatusCode, out)
	}
	if n := rn.Stats().ContainersCreated; n != 0 {
		t.Errorf("%d containers created for a rejected request", n)
	}
}
