package handlers

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/pyexec/pyexec/runner"
)

// Health is what GET /health reports about the engine and the image.
type Health struct {
	Engine EngineHealth `json:"engine"`
	Image  ImageHealth  `json:"image"`
}

// EngineHealth describes the Docker engine.
type EngineHealth struct {
	Reachable  bool   `json:"reachable"`
	Version    string `json:"version,omitempty"`
	APIVersion string `json:"api_version,omitempty"`
	Error      string `json:"error,omitempty"`
}

// ImageHealth describes the analytics image.
type ImageHealth struct {
	Tag     string `json:"tag"`
	Present bool   `json:"present"`
	// Current says the present image was built from this binary's context.
	Current bool `json:"current"`
	// Building says the image is being built: at start, by an admin
	// rebuild, or because it disappeared and the service rebuilds it.
	Building bool   `json:"building"`
	Error    string `json:"error,omitempty"`
	// Fallback is set when an admin image disappeared, could not be rebuilt
	// with its packages, and the service serves the base image instead.
	Fallback *ImageFallback `json:"fallback,omitempty"`
}

// ImageFallback describes a fall-back from an admin image to the base
// image (Tag); it lasts until the next admin rebuild.
type ImageFallback struct {
	// From is the admin image that disappeared; Packages its extra packages.
	From     string   `json:"from"`
	Packages []string `json:"packages"`
	// At is when the service fell back.
	At time.Time `json:"at"`
	// Message says what happened and what to do, in one sentence.
	Message string `json:"message"`
}

type healthBody struct {
	Status   string         `json:"status"`
	Engine   EngineHealth   `json:"engine"`
	Image    ImageHealth    `json:"image"`
	Runner   runner.Stats   `json:"runner"`
	Settings map[string]any `json:"settings"`
}

func (h *handler) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	var hl Health
	if h.opts.Health != nil {
		hl = h.opts.Health(ctx)
	}
	body := healthBody{
		Status:   "ok",
		Engine:   hl.Engine,
		Image:    hl.Image,
		Runner:   h.opts.Runner.Stats(),
		Settings: h.opts.Settings,
	}
	code := http.StatusOK
	if !hl.Engine.Reachable || !hl.Image.Present || !hl.Image.Current {
		body.Status = "degraded"
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, body)
}

// probeTimeout bounds what GET /readyz asks the engine, well inside the
// few seconds orchestrators give a probe.
const probeTimeout = 2 * time.Second

// probeBody is the JSON of GET /livez and GET /readyz.
type probeBody struct {
	Status string `json:"status"`
	// Reason is set when not ready: a stable snake_case code (readyReason).
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// livez answers GET /livez: 200 whenever the process serves HTTP. It never
// asks the engine, so an engine blip does not get a replica restarted by
// a liveness probe; readiness (readyz) is where the engine counts.
func (h *handler) livez(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, probeBody{Status: "ok"})
}

// readyz answers GET /readyz: 200 when the engine answers and the
// analytics image in use is present (and built from this binary's
// context), else 503 with a reason and Retry-After, so that a load
// balancer or orchestrator sends no traffic here for now. An admin rebuild
// with the image still present keeps the replica ready; an image being
// built from scratch (missing) does not.
func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	if h.opts.Health == nil {
		writeJSON(w, http.StatusOK, probeBody{Status: "ok"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
	defer cancel()
	reason, msg := readyReason(h.opts.Health(ctx))
	if reason == "" {
		writeJSON(w, http.StatusOK, probeBody{Status: "ok"})
		return
	}
	addLogField(r.Context(), "not_ready", reason)
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	writeJSON(w, http.StatusServiceUnavailable, probeBody{Status: "not_ready", Reason: reason, Message: msg})
}

// readyReason says why a service with health hl is not ready ("" when it
// is), with a one-sentence message.
func readyReason(hl Health) (reason, message string) {
	switch {
	case !hl.Engine.Reachable:
		msg := "the container engine does not answer"
		if hl.Engine.Error != "" {
			msg += ": " + hl.Engine.Error
		}
		return "engine_unavailable", msg
	case !hl.Image.Present && hl.Image.Building:
		return "image_building", "the analytics image " + hl.Image.Tag + " is being built"
	case !hl.Image.Present:
		msg := "the analytics image " + hl.Image.Tag + " is missing"
		if hl.Image.Error != "" {
			msg += ": " + hl.Image.Error
		}
		return "image_missing", msg
	case !hl.Image.Current:
		return "image_not_current", "the analytics image " + hl.Image.Tag + " was not built from this binary's context"
	}
	return "", ""
}
