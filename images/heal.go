package images

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/internal/logctx"
)

// Target is the user of the image a Healer keeps present: the runner
// (*runner.Runner implements it).
type Target interface {
	// Image is the image new sandboxes are created from.
	Image() string
	// SetImage switches it; the engine must have tag.
	SetImage(ctx context.Context, tag string) error
}

// HealOptions configure a Healer. Zero values take the defaults below.
type HealOptions struct {
	// Build says the Healer may build a missing image (BUILD_IMAGE). When
	// false it waits for an operator or another replica to restore it.
	Build bool
	// MinBackoff is the wait after a failed build; it doubles after each
	// further failure, up to MaxBackoff.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// PollInterval is how often the image is looked for while waiting for
	// someone else to restore it, or while the engine does not answer.
	PollInterval time.Duration
}

// Defaults of HealOptions.
const (
	DefaultHealMinBackoff   = 10 * time.Second
	DefaultHealMaxBackoff   = 5 * time.Minute
	DefaultHealPollInterval = 2 * time.Second
)

// Healer keeps the image in use present on the engine: after an operator's
// `docker image prune -a`, `docker system prune -a` or `docker rmi`, it
// brings the image back, so that the service serves again without a restart.
//
// It is told the image is missing (Trigger): by the runner, when a create
// fails because the engine lacks the image, and by the health check, when
// its inspect finds none. One heal loop runs at a time; triggers while it
// runs join it, and concurrent builds of one image are shared by the
// Builder, so any number of triggers make one build. The loop:
//
//   - BUILD_IMAGE=true: rebuilds the image in use with the extra packages
//     it was built with (an admin rebuild). If that build fails, it falls
//     back to the base image (built too if missing), switches the Target to
//     it and says so (Warn log, Status().Fallback). A failed build of the
//     base image is retried after MinBackoff, doubling to MaxBackoff.
//   - BUILD_IMAGE=false: builds nothing. It switches to the base image when
//     an admin image is gone but the base is there; otherwise it polls until
//     an operator or another replica restores the image.
//
// Meanwhile the runner answers ErrNoImage (503 image_unavailable) and its
// pool retries on its own; Status reports the build for /health.
//
// Run does the work, until its context ends; a Healer does nothing
// without it. It is safe for concurrent use.
type Healer struct {
	b      *Builder
	target Target
	opts   HealOptions

	// switchMu serializes switches of the Target's image (an admin's
	// SetImage and a fallback), so a fallback never undoes an admin switch.
	switchMu sync.Mutex

	// kick carries triggers to Run (one pending at most: triggers while a
	// heal runs make at most one more look).
	kick chan struct{}
	// ready is closed when Run first found the image present.
	ready chan struct{}

	mu sync.Mutex // guards the fields below
	// healing is set while Run brings the image back.
	healing bool
	// building is set while the loop builds.
	building bool
	// nextAttempt is when the loop tries again after a failed build.
	nextAttempt time.Time
	// lastErr says why the image in use is missing and not yet back.
	lastErr string
	// fallback describes the last fall-back to the base image, until the
	// next switch by SetImage.
	fallback *Fallback
	// switched and packages are the image last switched to through SetImage
	// and its extra packages, read from its labels.
	switched string
	packages []string

	metrics healMetrics
}

// Fallback describes a fall-back from an admin image to the base image.
type Fallback struct {
	// From is the admin image that could not be rebuilt; Packages are its
	// extra packages.
	From     string
	Packages []string
	// Image is the base image executions run in instead.
	Image string
	// Reason is why the admin image could not be rebuilt.
	Reason string
	// At is when the service fell back.
	At time.Time
}

// Message is the fall-back said in one sentence, for /health.
func (f Fallback) Message() string {
	return fmt.Sprintf("image %s (packages %s) disappeared and could not be rebuilt (%s); serving the base image %s; rebuild it with POST /admin/images/rebuild",
		f.From, strings.Join(f.Packages, " "), f.Reason, f.Image)
}

// HealStatus is what /health shows of the healing.
type HealStatus struct {
	// Healing says the image in use is missing and the Healer is bringing
	// it back (building, backing off after a failure, or waiting).
	Healing bool
	// Building says a build of the Healer is under way.
	Building bool
	// Error says why the image in use is missing and not yet back.
	Error string
	// NextAttempt is when the next build is tried after a failed one (zero
	// when no backoff is under way).
	NextAttempt time.Time
	// Fallback is set after the service fell back to the base image.
	Fallback *Fallback
}

// NewHealer returns a Healer that keeps target's image present, building it
// with b.
func NewHealer(b *Builder, target Target, opts HealOptions) *Healer {
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultHealMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultHealMaxBackoff, opts.MinBackoff)
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultHealPollInterval
	}
	return &Healer{b: b, target: target, opts: opts, metrics: newHealMetrics(),
		kick: make(chan struct{}, 1), ready: make(chan struct{})}
}

// Run first brings the image in use to the engine (the service's start:
// building it is no heal), then closes Ready, then heals on each Trigger,
// until ctx ends. ctx carries the logger (see logctx). Call it once.
func (h *Healer) Run(ctx context.Context) {
	h.heal(ctx, true)
	if ctx.Err() != nil {
		return
	}
	close(h.ready)
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.kick:
			h.heal(ctx, false)
		}
	}
}

// Ready is closed once Run found the image in use present at start.
func (h *Healer) Ready() <-chan struct{} { return h.ready }

// Trigger says image was found missing (a create's NotFound, or the health
// check's inspect). It returns at once; Run heals. Triggers while a heal
// runs join it, and a trigger for an image no longer in use is ignored.
func (h *Healer) Trigger(image string) {
	if image != "" && image != h.target.Image() {
		return
	}
	select {
	case h.kick <- struct{}{}:
	default: // one is pending already
	}
}

// Sentinels of attempt: look again after PollInterval.
var (
	// errEngine: the engine did not answer the inspect.
	errEngine = errors.New("engine did not answer")
	// errWaiting: BUILD_IMAGE=false and the image is still missing.
	errWaiting = errors.New("waiting for the image to be restored")
)

// heal makes attempts until the image in use is present or ctx ends.
// initial says it is the start's: a missing image is then no heal, and no
// heal is counted.
func (h *Healer) heal(ctx context.Context, initial bool) {
	h.mu.Lock()
	h.healing = true
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.healing, h.building, h.nextAttempt = false, false, time.Time{}
		h.mu.Unlock()
	}()
	log := logctx.From(ctx)
	backoff := h.opts.MinBackoff
	waited := false
	for {
		err := h.attempt(ctx, initial)
		if ctx.Err() != nil {
			return
		}
		wait := h.opts.PollInterval
		switch {
		case err == nil:
			if waited && !initial {
				h.metrics.heals.WithLabelValues(healRestored).Inc()
				log.WithField("image", h.target.Image()).Info("analytics image restored")
			}
			return
		case errors.Is(err, errWaiting):
			if !waited {
				log.WithField("image", h.target.Image()).Warn("analytics image missing; waiting for it to be restored (BUILD_IMAGE=false)")
			}
			waited = true
		case errors.Is(err, errEngine):
		default:
			wait = backoff
			backoff = min(2*backoff, h.opts.MaxBackoff)
			log.WithError(err).WithField("retry_in_ms", wait.Milliseconds()).
				Error("analytics image missing and its rebuild failed")
		}
		h.mu.Lock()
		h.nextAttempt = time.Now().Add(wait)
		h.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		h.mu.Lock()
		h.nextAttempt = time.Time{}
		h.mu.Unlock()
	}
}

// attempt makes one try at bringing the image in use back. nil means it is
// there (again); errEngine or errWaiting, look again later; any other error
// is a failed build or switch, retried after a backoff.
func (h *Healer) attempt(ctx context.Context, initial bool) error {
	log := logctx.From(ctx)
	cur := h.target.Image()
	_, err := h.b.Inspect(ctx, cur)
	if err == nil {
		h.setError("")
		return nil
	}
	if !errors.Is(err, ErrNoImage) {
		h.setError(err.Error()) // nothing to build while the engine does not answer
		return fmt.Errorf("%w: %w", errEngine, err)
	}
	base := h.b.Tag()
	pkgs, known := h.packagesOf(cur)
	log = log.WithFields(logrus.Fields{"image": cur, "packages": strings.Join(pkgs, " ")})

	if !h.opts.Build {
		if cur != base {
			if ok, _ := h.b.Present(ctx); ok {
				return h.fallBack(ctx, cur, pkgs, "BUILD_IMAGE=false")
			}
		}
		h.setError(fmt.Sprintf("image %s is missing; waiting for it to be restored (BUILD_IMAGE=false)", cur))
		return errWaiting
	}

	if !known {
		// Not an image this service switched to: nothing says how to build
		// it, so the base image serves.
		return h.fallBack(ctx, cur, pkgs, "unknown image")
	}
	h.setBuilding(true)
	if !initial {
		log.Warn("analytics image missing; rebuilding it")
	}
	defer h.setBuilding(false)
	res, err := h.b.Rebuild(ctx, Spec{Packages: pkgs})
	if err == nil {
		if res.Tag != cur {
			// Labels and tag disagreed: use what was built.
			if _, err := h.switchFrom(ctx, cur, res.Tag); err != nil {
				return err
			}
		}
		h.setError("")
		if !initial {
			h.metrics.heals.WithLabelValues(healRebuilt).Inc()
			log.WithField("duration_ms", res.Duration.Milliseconds()).Info("analytics image rebuilt")
		}
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	if !initial {
		h.metrics.heals.WithLabelValues(healFailed).Inc()
	}
	h.setError(err.Error())
	if len(pkgs) == 0 {
		return err
	}
	log.WithError(err).Warn("admin image could not be rebuilt; falling back to the base image")
	if _, err := h.b.Ensure(ctx); err != nil {
		h.setError(err.Error())
		return fmt.Errorf("base image: %w", err)
	}
	return h.fallBack(ctx, cur, pkgs, err.Error())
}

// fallBack switches the Target from the missing image cur to the base
// image, unless someone switched it meanwhile.
func (h *Healer) fallBack(ctx context.Context, cur string, pkgs []string, reason string) error {
	base := h.b.Tag()
	if switched, err := h.switchFrom(ctx, cur, base); err != nil || !switched {
		return err // an admin switched meanwhile: nothing to fall back from
	}
	f := &Fallback{From: cur, Packages: pkgs, Image: base, Reason: reason, At: time.Now().UTC()}
	h.mu.Lock()
	h.fallback = f
	h.lastErr = ""
	h.mu.Unlock()
	h.metrics.heals.WithLabelValues(healFallback).Inc()
	logctx.From(ctx).WithFields(logrus.Fields{"image": base, "previous_image": cur, "packages": strings.Join(pkgs, " "), "reason": reason}).
		Warn("fell back to the base image")
	return nil
}

// switchFrom switches the Target from cur to tag, unless it no longer runs
// cur, and reports whether it switched.
func (h *Healer) switchFrom(ctx context.Context, cur, tag string) (bool, error) {
	h.switchMu.Lock()
	defer h.switchMu.Unlock()
	if h.target.Image() != cur {
		return false, nil
	}
	if err := h.target.SetImage(ctx, tag); err != nil {
		h.setError(err.Error())
		return false, fmt.Errorf("switch to %s: %w", tag, err)
	}
	return true, nil
}

// SetImage switches the Target to tag (an admin rebuild) and remembers the
// extra packages tag was built with, read from its labels, so that the
// image can be rebuilt with them should it disappear. It clears a
// fall-back.
func (h *Healer) SetImage(ctx context.Context, tag string) error {
	h.switchMu.Lock()
	defer h.switchMu.Unlock()
	img, err := h.b.Inspect(ctx, tag)
	if err != nil {
		return err
	}
	if err := h.target.SetImage(ctx, tag); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.switched, h.packages = tag, slices.Clone(img.Packages)
	h.fallback = nil
	return nil
}

// packagesOf returns the extra packages image was built with, and whether
// the Healer knows how it was built.
func (h *Healer) packagesOf(image string) ([]string, bool) {
	if image == h.b.Tag() {
		return nil, true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if image == h.switched {
		return slices.Clone(h.packages), true
	}
	return nil, false
}

// Status reports the healing for /health.
func (h *Healer) Status() HealStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := HealStatus{Healing: h.healing, Building: h.building, Error: h.lastErr, NextAttempt: h.nextAttempt}
	if h.fallback != nil {
		f := *h.fallback
		f.Packages = slices.Clone(f.Packages)
		s.Fallback = &f
	}
	return s
}

func (h *Healer) setError(msg string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastErr = msg
}

func (h *Healer) setBuilding(b bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.building = b
}
