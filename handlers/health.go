package handlers

import (
	"context"
	"net/http"
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
