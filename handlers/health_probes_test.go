package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/moby/moby/client"

	"github.com/pyexec/pyexec/images"
	"github.com/pyexec/pyexec/internal/dockertest"
)

// engineHealth is a Health func over a real engine, the way main's is: a
// ping of the engine, then an inspection of the image tag.
func engineHealth(cli *client.Client, tag string) func(ctx context.Context) Health {
	b := images.New(cli, "", nil)
	return func(ctx context.Context) Health {
		hl := Health{Image: ImageHealth{Tag: tag}}
		if _, err := cli.Ping(ctx, client.PingOptions{}); err != nil {
			hl.Engine.Error = err.Error()
			return hl
		}
		hl.Engine.Reachable = true
		img, err := b.Inspect(ctx, tag)
		if err != nil && !errors.Is(err, images.ErrNoImage) {
			hl.Image.Error = err.Error()
		}
		hl.Image.Present = err == nil
		hl.Image.Current = err == nil && img.ContextHash == images.ContextHash()
		return hl
	}
}

// probe GETs path and decodes the probe's JSON.
func probe(t *testing.T, h http.Handler, path string) (int, http.Header, probeBody) {
	t.Helper()
	rec := do(h, http.MethodGet, path, "", "")
	var b probeBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, rec.Body)
	}
	return rec.Code, rec.Header(), b
}

// TestProbesRealEngine checks /livez and /readyz over the real engine and
// the real analytics image, an absent image and an engine that does not
// answer.
func TestProbesRealEngine(t *testing.T) {
	cli := dockertest.Require(t)
	tag := dockertest.Image(t, cli)
	router := func(cli *client.Client, tag string) http.Handler {
		return New(Options{Runner: &fakeRunner{}, Health: engineHealth(cli, tag)})
	}

	t.Run("ready", func(t *testing.T) {
		h := router(cli, tag)
		if code, _, b := probe(t, h, "/livez"); code != http.StatusOK || b.Status != "ok" {
			t.Errorf("livez = %d %+v, want 200 ok", code, b)
		}
		code, hdr, b := probe(t, h, "/readyz")
		if code != http.StatusOK || b.Status != "ok" || b.Reason != "" {
			t.Errorf("readyz = %d %+v, want 200 ok", code, b)
		}
		if hdr.Get("Retry-After") != "" {
			t.Errorf("ready answer with Retry-After %q", hdr.Get("Retry-After"))
		}
	})

	t.Run("image absent", func(t *testing.T) {
		absent := "pyexec-python:absent-" + dockertest.Owner(t)
		h := router(cli, absent)
		code, hdr, b := probe(t, h, "/readyz")
		if code != http.StatusServiceUnavailable || b.Status != "not_ready" || b.Reason != "image_missing" {
			t.Errorf("readyz = %d %+v, want 503 not_ready image_missing", code, b)
		}
		if hdr.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		if code, _, b := probe(t, h, "/livez"); code != http.StatusOK || b.Status != "ok" {
			t.Errorf("livez with the image absent = %d %+v, want 200 ok", code, b)
		}
	})

	t.Run("engine does not answer", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "docker.sock")
		down, err := client.New(client.WithHost("unix://" + sock))
		if err != nil {
			t.Fatal(err)
		}
		defer down.Close()
		h := router(down, tag)
		code, hdr, b := probe(t, h, "/readyz")
		if code != http.StatusServiceUnavailable || b.Status != "not_ready" || b.Reason != "engine_unavailable" {
			t.Errorf("readyz = %d %+v, want 503 not_ready engine_unavailable", code, b)
		}
		if b.Message == "" || hdr.Get("Retry-After") == "" {
			t.Errorf("503 without message or Retry-After: %+v %v", b, hdr)
		}
		// Liveness never asks the engine.
		if code, _, b := probe(t, h, "/livez"); code != http.StatusOK || b.Status != "ok" {
			t.Errorf("livez with the engine down = %d %+v, want 200 ok", code, b)
		}
	})
}

// TestReadyzStates covers the states of the image the real engine is not
// put in here (a build in progress, an image from another context), with a
// stub Health.
func TestReadyzStates(t *testing.T) {
	ok := Health{Engine: EngineHealth{Reachable: true}, Image: ImageHealth{Tag: "pyexec-python:x", Present: true, Current: true}}
	cases := []struct {
		name   string
		mod    func(*Health)
		status int
		reason string
	}{
		{"ready", func(*Health) {}, 200, ""},
		{"admin rebuild with the image present", func(h *Health) { h.Image.Building = true }, 200, ""},
		{"built from scratch", func(h *Health) { h.Image.Present, h.Image.Current, h.Image.Building = false, false, true }, 503, "image_building"},
		{"missing, not building", func(h *Health) { h.Image.Present, h.Image.Current = false, false }, 503, "image_missing"},
		{"other context", func(h *Health) { h.Image.Current = false }, 503, "image_not_current"},
		{"engine down", func(h *Health) { h.Engine = EngineHealth{Error: "connection refused"} }, 503, "engine_unavailable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hl := ok
			c.mod(&hl)
			h := New(Options{Runner: &fakeRunner{}, Health: func(context.Context) Health { return hl }})
			code, hdr, b := probe(t, h, "/readyz")
			if code != c.status || b.Reason != c.reason {
				t.Fatalf("readyz = %d %+v, want %d reason %q", code, b, c.status, c.reason)
			}
			wantStatus, wantRetry := "ok", false
			if c.status != 200 {
				wantStatus, wantRetry = "not_ready", true
			}
			if b.Status != wantStatus || (hdr.Get("Retry-After") != "") != wantRetry {
				t.Errorf("status %q Retry-After %q, want %q and Retry-After %v", b.Status, hdr.Get("Retry-After"), wantStatus, wantRetry)
			}
			if code, _, b := probe(t, h, "/livez"); code != 200 || b.Status != "ok" {
				t.Errorf("livez = %d %+v", code, b)
			}
		})
	}
	// POST is not a probe.
	h := New(Options{Runner: &fakeRunner{}})
	if rec := do(h, http.MethodPost, "/readyz", "", ""); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz = %d, want 405", rec.Code)
	}
}
