package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/pyexec/pyexec/internal/dockertest"
)

// probeAnswer GETs a probe (/livez, /readyz) of the service at url.
func probeAnswer(url string) (code int, status, reason string, retryAfter string, err error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", "", "", err
	}
	defer resp.Body.Close()
	var b struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	err = json.NewDecoder(resp.Body).Decode(&b)
	return resp.StatusCode, b.Status, b.Reason, resp.Header.Get("Retry-After"), err
}

// checkProbesEngineDown checks, with the engine stopped, that the service
// at base is live (/livez 200: an orchestrator must not restart it for an
// engine blip) and not ready (/readyz 503 engine_unavailable, Retry-After).
func checkProbesEngineDown(t *testing.T, base string) {
	t.Helper()
	if code, status, _, _, err := probeAnswer(base + "/livez"); err != nil || code != 200 || status != "ok" {
		t.Errorf("engine down: /livez = %d %q (%v), want 200 ok", code, status, err)
	}
	code, status, reason, retry, err := probeAnswer(base + "/readyz")
	if err != nil || code != 503 || status != "not_ready" || reason != "engine_unavailable" || retry == "" {
		t.Errorf("engine down: /readyz = %d %q %q Retry-After %q (%v), want 503 not_ready engine_unavailable with Retry-After",
			code, status, reason, retry, err)
	}
}

// waitReady waits until the service at base answers /readyz 200.
func waitReady(t *testing.T, base string, limit time.Duration) {
	t.Helper()
	dockertest.WaitFor(t, "/readyz 200", limit, func() bool {
		code, _, _, _, err := probeAnswer(base + "/readyz")
		if err == nil && code != 200 {
			time.Sleep(200 * time.Millisecond)
		}
		return err == nil && code == 200
	})
}
