package runner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/internal/logctx"
)

// roleProbe marks a container started only to read the versions its
// harness reports (Versions); it runs no code.
const roleProbe = "probe"

// Log keys of the image switch and the container lifecycle.
// NOTE(pyexec): they belong with the others in labels.go, which this change
// was not to touch.
const (
	logRole  = "role"
	logImage = "image"
)

// lastReady keeps what the harness of the latest data sandbox reported.
type lastReady struct {
	mu sync.Mutex // guards image and versions
	// image is the image the sandbox ran; versions what its harness found.
	image    string
	versions map[string]string
}

// Image returns the image new sandboxes are created from: Options.Image
// until SetImage switches it.
func (r *Runner) Image() string { return *r.image.Load() }

// SetImage switches the image new sandboxes are created from, once the
// engine is seen to have it. Executions in flight finish in the containers
// they have. Idle pooled sandboxes of another image are retired at once and
// the pool refills with the new one; a pooled sandbox still being prepared
// with the old image is retired when it gets ready, and the validator moves
// to the new image on its next use. Setting the image in use changes nothing.
func (r *Runner) SetImage(ctx context.Context, tag string) error {
	if tag == "" {
		return errors.New("runner: no image")
	}
	if _, err := r.cli.ImageInspect(ctx, tag); err != nil {
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("%w: %s", ErrNoImage, tag)
		}
		return classify(opImage+" "+tag, err)
	}
	if !r.goroutines.enter() {
		return ErrClosed
	}
	defer r.goroutines.leave()
	old := r.image.Swap(&tag)
	if *old == tag {
		return nil
	}
	r.metrics.imageSwitches.Add(1)
	logctx.From(ctx).WithFields(logrus.Fields{logImage: tag, "previous_image": *old}).Info("sandbox image switched")
	if r.pool != nil {
		r.pool.retireStale(ctx, tag)
	}
	// The validator moves too (it waits for a validation under way).
	r.validator.close(r)
	return nil
}

// noteReady remembers the versions a data sandbox's harness reported.
func (r *Runner) noteReady(sb *sandbox) {
	if sb.preload != PreloadFull || len(sb.ready.Versions) == 0 {
		return
	}
	r.ready.mu.Lock()
	defer r.ready.mu.Unlock()
	r.ready.image, r.ready.versions = sb.image, sb.ready.Versions
}

// Versions returns the versions of Python and the analytics libraries
// (numpy, pandas, matplotlib, plotly) in the image in use, as reported by
// the harness of a data sandbox when it got ready, before any user code ran
// in it. The pool's sandboxes keep this fresh; when no data sandbox of the
// image in use has been ready yet (no pool, or just switched), Versions
// starts one for the purpose (role "probe", outside the worker limit),
// reads its report and removes it.
func (r *Runner) Versions(ctx context.Context) (map[string]string, error) {
	image := r.Image()
	r.ready.mu.Lock()
	if r.ready.image == image && r.ready.versions != nil {
		v := maps.Clone(r.ready.versions)
		r.ready.mu.Unlock()
		return v, nil
	}
	r.ready.mu.Unlock()
	if !r.goroutines.enter() {
		return nil, ErrClosed
	}
	defer r.goroutines.leave()
	sb, err := r.prepare(ctx, roleProbe, PreloadFull)
	if err != nil {
		return nil, fmt.Errorf("probe image versions: %w", err)
	}
	r.discard(ctx, sb)
	return maps.Clone(sb.ready.Versions), nil
}
