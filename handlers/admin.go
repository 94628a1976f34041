package handlers

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pyexec/pyexec/images"
	"github.com/pyexec/pyexec/internal/logctx"
)

// ImageBuilder builds and describes analytics images; *images.Builder
// implements it.
type ImageBuilder interface {
	Rebuild(ctx context.Context, spec images.Spec) (images.Build, error)
	Inspect(ctx context.Context, tag string) (images.Image, error)
}

// ImageSwitcher is the runner's side of a rebuild; *runner.Runner
// implements it (main passes it with SetImage made through images.Healer,
// which remembers the packages to rebuild the image with should it
// disappear).
type ImageSwitcher interface {
	// Image is the image new sandboxes are created from.
	Image() string
	// SetImage switches it without failing executions in flight.
	SetImage(ctx context.Context, tag string) error
	// Versions reports Python's and the libraries' versions in the image.
	Versions(ctx context.Context) (map[string]string, error)
}

// DefaultRebuildTimeout bounds one image rebuild (a cold build with large
// extra packages takes minutes).
const DefaultRebuildTimeout = 30 * time.Minute

// imageInfoTimeout bounds GET /admin/images (it may start a probe sandbox).
const imageInfoTimeout = 2 * time.Minute

// admin serves /admin/*. One rebuild (one package set) runs at a time;
// concurrent requests for the same set share its build.
type admin struct {
	token   [sha256.Size]byte // sha256 of ADMIN_TOKEN
	allowed map[string]bool

	mu sync.Mutex // guards key and callers
	// key names the package set of the rebuild under way; callers counts
	// the requests waiting on it (0: none under way).
	key     string
	callers int
}

func newAdmin(o Options) *admin {
	a := &admin{token: sha256.Sum256([]byte(o.AdminToken)), allowed: map[string]bool{}}
	for _, p := range o.AllowedPackages {
		a.allowed[p] = true
	}
	return a
}

// authorized checks the bearer token in constant time (hashing first, so
// not even the token's length shows in the timing).
func (a *admin) authorized(r *http.Request) bool {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	match := subtle.ConstantTimeCompare(got[:], a.token[:]) == 1
	return strings.EqualFold(scheme, "Bearer") && match
}

// requireToken wraps an admin handler: 401 with WWW-Authenticate without
// the right token.
func (h *handler) requireToken(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !h.admin.authorized(r) {
			writeError(w, r, &apiError{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "a valid bearer token is required"})
			return
		}
		addLogField(r.Context(), "admin", true)
		next(w, r)
	}
}

// rebuildRequest is the optional body of POST /admin/images/rebuild.
type rebuildRequest struct {
	// Packages are extra Debian packages, each in ADMIN_EXTRA_PACKAGES_ALLOWED.
	Packages []string `json:"packages"`
}

// rebuildResponse describes the image now in use.
type rebuildResponse struct {
	Image      string    `json:"image"`
	Hash       string    `json:"hash"`
	Packages   []string  `json:"packages"`
	BuiltAt    time.Time `json:"built_at"`
	DurationMS float64   `json:"duration_ms"`
	Shared     bool      `json:"shared"`
}

// rebuild builds the image again, with the extra packages asked for, and
// switches the runner to it once the build succeeded. The build and the
// switch go on if the client leaves: the image is then in use all the same.
func (h *handler) rebuild(w http.ResponseWriter, r *http.Request) {
	var body rebuildRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &body); err != nil {
			writeError(w, r, err)
			return
		}
	}
	for _, p := range body.Packages {
		if !h.admin.allowed[p] {
			allowed := make([]string, 0, len(h.admin.allowed))
			for a := range h.admin.allowed {
				allowed = append(allowed, a)
			}
			slices.Sort(allowed)
			writeError(w, r, unprocessable("package_not_allowed",
				fmt.Sprintf("package %q is not allowed; allowed: %s", p, strings.Join(allowed, ", "))))
			return
		}
	}
	pkgs := slices.Clone(body.Packages)
	slices.Sort(pkgs)
	pkgs = slices.Compact(pkgs)
	addLogField(r.Context(), "packages", strings.Join(pkgs, " "))

	key := strings.Join(pkgs, " ")
	if !h.admin.join(key) {
		writeError(w, r, &apiError{Status: http.StatusConflict, Code: "rebuild_in_progress",
			Message: "a rebuild with another package set is under way; retry when it is done"})
		return
	}
	defer h.admin.leave()

	// The answer comes when the build is done, which may be well past the
	// server's write timeout.
	timeout := h.opts.RebuildTimeout
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout + time.Minute))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), timeout)
	defer cancel()

	b, err := h.opts.Images.Rebuild(ctx, images.Spec{Packages: pkgs})
	if err != nil {
		writeError(w, r, buildError(r, err))
		return
	}
	if err := h.opts.Switcher.SetImage(ctx, b.Tag); err != nil {
		writeError(w, r, err)
		return
	}
	addLogField(r.Context(), "image", b.Tag)
	addLogField(r.Context(), "shared", b.Shared)
	if b.Packages == nil {
		b.Packages = []string{}
	}
	writeJSON(w, http.StatusOK, rebuildResponse{
		Image:      b.Tag,
		Hash:       b.Hash,
		Packages:   b.Packages,
		BuiltAt:    b.BuiltAt,
		DurationMS: float64(b.Duration.Microseconds()) / 1000,
		Shared:     b.Shared,
	})
}

// join enters a rebuild of the package set key, unless one of another set
// is under way.
func (a *admin) join(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.callers > 0 && a.key != key {
		return false
	}
	a.key = key
	a.callers++
	return true
}

func (a *admin) leave() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.callers--
}

// buildError is the answer to a failed build. The operator asked for the
// build, so the engine's message (e.g. apt's "Unable to locate package", or
// a missing base image) is shown; it is also logged once here.
func buildError(r *http.Request, err error) error {
	switch {
	case errors.Is(err, images.ErrBadPackage):
		return unprocessable("invalid_package", err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{Status: http.StatusServiceUnavailable, Code: "deadline", Message: "the image build did not finish in time"}
	}
	logctx.From(r.Context()).WithError(err).Error("image rebuild failed")
	return &apiError{Status: http.StatusInternalServerError, Code: "build_failed", Message: err.Error()}
}

// imageInfo is the answer of GET /admin/images.
type imageInfo struct {
	Tag         string            `json:"tag"`
	ID          string            `json:"id"`
	Hash        string            `json:"hash"`
	ContextHash string            `json:"context_hash"`
	BuiltAt     time.Time         `json:"built_at"`
	Packages    []string          `json:"packages"`
	Versions    map[string]string `json:"versions"`
}

// images describes the image executions run in now. The versions come from
// the harness's ready report (see runner.Versions).
func (h *handler) images(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), imageInfoTimeout)
	defer cancel()
	tag := h.opts.Switcher.Image()
	img, err := h.opts.Images.Inspect(ctx, tag)
	if err != nil {
		writeError(w, r, err)
		return
	}
	versions, err := h.opts.Switcher.Versions(ctx)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if img.Packages == nil {
		img.Packages = []string{}
	}
	writeJSON(w, http.StatusOK, imageInfo{
		Tag:         tag,
		ID:          img.ID,
		Hash:        img.Hash,
		ContextHash: img.ContextHash,
		BuiltAt:     img.Created,
		Packages:    img.Packages,
		Versions:    versions,
	})
}
