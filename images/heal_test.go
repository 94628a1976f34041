package images_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/jsonmessage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/images"
	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/internal/logctx"
)

// healRepo is the repository of the images these tests remove and rebuild:
// never the one other tests use. Its images share their layers with
// pyexec-python, so rebuilding one mostly hits the engine's cache.
const healRepo = "pyexec-healtest"

// gatedEngine is the real engine with a gate on ImageBuild: while gate is
// closed (see hold), builds wait; fail, when set, makes a build fail
// before it reaches the engine (a rare failure, injected).
type gatedEngine struct {
	*client.Client
	builds atomic.Int64

	mu    sync.Mutex // guards gate, fail and at
	gate  chan struct{}
	fail  func(o client.ImageBuildOptions) error
	at    []time.Time // when each build was asked for
	specs []string    // the packages label of each build
}

func (e *gatedEngine) ImageBuild(ctx context.Context, r io.Reader, o client.ImageBuildOptions) (client.ImageBuildResult, error) {
	e.builds.Add(1)
	e.mu.Lock()
	gate, fail := e.gate, e.fail
	e.at = append(e.at, time.Now())
	e.specs = append(e.specs, o.Labels[images.LabelPackages])
	e.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return client.ImageBuildResult{}, ctx.Err()
		}
	}
	if fail != nil {
		if err := fail(o); err != nil {
			return client.ImageBuildResult{}, err
		}
	}
	return e.Client.ImageBuild(ctx, r, o)
}

// hold closes the gate: builds wait until the returned func opens it.
func (e *gatedEngine) hold() (release func()) {
	ch := make(chan struct{})
	e.mu.Lock()
	e.gate = ch
	e.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			e.mu.Lock()
			e.gate = nil
			e.mu.Unlock()
			close(ch)
		})
	}
}

func (e *gatedEngine) setFail(f func(client.ImageBuildOptions) error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fail = f
}

// target stands in for the runner's image: SetImage checks the engine has
// the tag, as the runner's does.
type target struct {
	cli *client.Client
	mu  sync.Mutex
	img string
}

func (tg *target) Image() string {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.img
}

func (tg *target) SetImage(ctx context.Context, tag string) error {
	if _, err := tg.cli.ImageInspect(ctx, tag); err != nil {
		return err
	}
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.img = tag
	return nil
}

type healEnv struct {
	cli     *client.Client
	eng     *gatedEngine
	b       *images.Builder
	h       *images.Healer
	tg      *target
	reg     *prometheus.Registry
	ctx     context.Context
	cancel  context.CancelFunc
	base    string
	baseID  string
	created []string // tags this test made, removed at the end
}

// newHealEnv builds the base image of healRepo (cached: dockertest.Image
// built the same context as pyexec-python) and starts a Healer on it.
func newHealEnv(t *testing.T, opts images.HealOptions) *healEnv {
	t.Helper()
	cli := dockertest.Require(t)
	dockertest.Image(t, cli) // the layers the build below reuses
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	e := &healEnv{cli: cli, eng: &gatedEngine{Client: cli}, reg: prometheus.NewRegistry()}
	e.b = images.New(e.eng, healRepo, log.WithField("component", "images"))
	if err := e.b.RegisterMetrics(e.reg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), dockertest.Scale(10*time.Minute))
	defer cancel()
	base, err := e.b.Ensure(ctx)
	if err != nil {
		t.Fatalf("build %s: %v", healRepo, err)
	}
	e.base = base
	e.created = append(e.created, base, healRepo+":latest")
	info, err := cli.ImageInspect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	e.baseID = info.ID
	// The service's state: the base image present, in use.
	e.tg = &target{cli: cli, img: base}
	e.h = images.NewHealer(e.b, e.tg, opts)
	if err := e.h.RegisterMetrics(e.reg); err != nil {
		t.Fatal(err)
	}
	e.ctx, e.cancel = context.WithCancel(logctx.With(context.Background(), log.WithField("component", "images")))
	healed := make(chan struct{})
	go func() {
		defer close(healed)
		e.h.Run(e.ctx)
	}()
	t.Cleanup(func() {
		e.cancel()
		<-healed
		e.restore(t)
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, tag := range e.created {
			if tag == base || tag == healRepo+":latest" {
				continue // left for the next test: the base build then is a no-op
			}
			if _, err := cli.ImageRemove(cctx, tag, client.ImageRemoveOptions{}); err != nil && !strings.Contains(err.Error(), "No such image") {
				t.Logf("remove %s: %v", tag, err)
			}
		}
	})
	select {
	case <-e.h.Ready():
	case <-time.After(dockertest.Scale(time.Minute)):
		t.Fatal("the healer did not get ready")
	}
	return e
}

// restore tags the base image again, should a test leave it untagged.
func (e *healEnv) restore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.cli.ImageInspect(ctx, e.base); err != nil {
		if _, err := e.cli.ImageTag(ctx, client.ImageTagOptions{Source: e.baseID, Target: e.base}); err != nil {
			t.Errorf("restore %s: %v", e.base, err)
		}
	}
}

// untag removes tag from the engine, as `docker rmi` or a prune does. The
// image stays referenced by other tags, so only the name goes: exactly
// what the service sees as NotFound.
func (e *healEnv) untag(t *testing.T, tag string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true}); err != nil {
		t.Fatalf("remove %s: %v", tag, err)
	}
	if _, err := e.b.Inspect(ctx, tag); !errors.Is(err, images.ErrNoImage) {
		t.Fatalf("%s still there after its removal: %v", tag, err)
	}
}

func (e *healEnv) present(tag string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := e.b.Inspect(ctx, tag)
	return err == nil
}

// metric reads one sample of the registry, e.g.
// pyexec_image_heals_total{result="rebuilt"}.
func (e *healEnv) metric(t *testing.T, name, result string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no sample %s{result=%q}", name, result)
	return 0
}

func TestHealRebuildsOnceForManyTriggers(t *testing.T) {
	e := newHealEnv(t, images.HealOptions{Build: true})
	successes := e.metric(t, "pyexec_image_builds_total", "success")
	builds := e.eng.builds.Load() // the set-up's
	release := e.eng.hold()
	defer release()
	e.untag(t, e.base)

	// Triggers from many requests and health checks at once, and more while
	// the build runs: one build.
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.h.Trigger(e.base)
		}()
	}
	wg.Wait()
	dockertest.WaitFor(t, "the rebuild to start", 10*time.Second, func() bool { return e.eng.builds.Load() == builds+1 })
	st := e.h.Status()
	if !st.Healing || !st.Building || !e.b.Building() {
		t.Errorf("during the rebuild: status %+v, builder building %v", st, e.b.Building())
	}
	for range 20 {
		e.h.Trigger(e.base)
	}
	e.h.Trigger("pyexec-healtest:not-in-use") // stale: ignored
	time.Sleep(200 * time.Millisecond)
	if n := e.eng.builds.Load() - builds; n != 1 {
		t.Errorf("%d builds while one runs, want 1", n)
	}
	if e.present(e.base) {
		t.Fatal("image present before the build was let through")
	}

	release()
	dockertest.WaitFor(t, "the image to be back", 2*time.Minute, func() bool { return e.present(e.base) })
	dockertest.WaitFor(t, "the heal to end", 10*time.Second, func() bool { return !e.h.Status().Healing })
	st = e.h.Status()
	if st.Building || st.Error != "" || st.Fallback != nil || e.tg.Image() != e.base {
		t.Errorf("after the heal: status %+v, image in use %s", st, e.tg.Image())
	}
	if n := e.eng.builds.Load() - builds; n != 1 {
		t.Errorf("%d builds, want 1", n)
	}
	if got := e.metric(t, "pyexec_image_heals_total", "rebuilt"); got != 1 {
		t.Errorf("heals rebuilt = %v, want 1", got)
	}
	if got := e.metric(t, "pyexec_image_builds_total", "success"); got != successes+1 {
		t.Errorf("builds success = %v, want %v", got, successes+1)
	}

	// The image is there: a trigger builds nothing.
	e.h.Trigger(e.base)
	dockertest.WaitFor(t, "the check to end", 10*time.Second, func() bool { return !e.h.Status().Healing })
	if n := e.eng.builds.Load() - builds; n != 1 {
		t.Errorf("a trigger with the image present built: %d builds", n)
	}
}

func TestHealBacksOffAfterFailedBuilds(t *testing.T) {
	const minBackoff = 600 * time.Millisecond
	e := newHealEnv(t, images.HealOptions{Build: true, MinBackoff: minBackoff, MaxBackoff: 10 * time.Second})
	builds := e.eng.builds.Load() // the set-up's
	var fails atomic.Int64
	e.eng.setFail(func(client.ImageBuildOptions) error {
		if fails.Add(1) <= 2 {
			return errors.New("injected build failure")
		}
		return nil
	})
	e.untag(t, e.base)
	e.h.Trigger(e.base)

	// The first failure: the status says why and when it tries again, and
	// triggers meanwhile start no build.
	dockertest.WaitFor(t, "the first failure", 10*time.Second, func() bool { return !e.h.Status().NextAttempt.IsZero() })
	st := e.h.Status()
	if !st.Healing || st.Building || !strings.Contains(st.Error, "injected build failure") {
		t.Errorf("after a failed build: %+v", st)
	}
	for range 10 {
		e.h.Trigger(e.base)
	}
	if n := e.eng.builds.Load() - builds; n != 1 {
		t.Errorf("%d builds right after the failure, want 1 (backing off)", n)
	}

	dockertest.WaitFor(t, "the image to be back", 2*time.Minute, func() bool { return e.present(e.base) })
	dockertest.WaitFor(t, "the heal to end", 10*time.Second, func() bool { return !e.h.Status().Healing })
	e.eng.mu.Lock()
	at := slices.Clone(e.eng.at[builds:])
	e.eng.mu.Unlock()
	if len(at) != 3 {
		t.Fatalf("%d builds, want 3 (two failed, one good)", len(at))
	}
	// Backoff: the minimum, then twice it.
	if d := at[1].Sub(at[0]); d < minBackoff {
		t.Errorf("second build %v after the first, want at least %v", d, minBackoff)
	}
	if d := at[2].Sub(at[1]); d < 2*minBackoff {
		t.Errorf("third build %v after the second, want at least %v", d, 2*minBackoff)
	}
	if got := e.metric(t, "pyexec_image_heals_total", "failed"); got != 2 {
		t.Errorf("heals failed = %v, want 2", got)
	}
	if got := e.metric(t, "pyexec_image_builds_total", "failure"); got != 2 {
		t.Errorf("builds failure = %v, want 2", got)
	}
	if st := e.h.Status(); st.Error != "" || !st.NextAttempt.IsZero() {
		t.Errorf("after the heal: %+v", st)
	}
}

func TestHealWaitsWithoutBuildImage(t *testing.T) {
	e := newHealEnv(t, images.HealOptions{Build: false, PollInterval: 100 * time.Millisecond})
	builds := e.eng.builds.Load() // the set-up's
	e.untag(t, e.base)
	e.h.Trigger(e.base)
	dockertest.WaitFor(t, "the healer to wait", 10*time.Second, func() bool {
		return strings.Contains(e.h.Status().Error, "BUILD_IMAGE=false")
	})
	time.Sleep(500 * time.Millisecond) // a few polls
	st := e.h.Status()
	if !st.Healing || st.Building || e.eng.builds.Load() != builds {
		t.Errorf("waiting: status %+v, %d builds", st, e.eng.builds.Load()-builds)
	}

	// An operator (or another replica) restores the image.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.cli.ImageTag(ctx, client.ImageTagOptions{Source: e.baseID, Target: e.base}); err != nil {
		t.Fatal(err)
	}
	dockertest.WaitFor(t, "the healer to see it", 10*time.Second, func() bool { return !e.h.Status().Healing })
	if st := e.h.Status(); st.Error != "" || e.eng.builds.Load() != builds {
		t.Errorf("restored: status %+v, %d builds", st, e.eng.builds.Load()-builds)
	}
	if got := e.metric(t, "pyexec_image_heals_total", "restored"); got != 1 {
		t.Errorf("heals restored = %v, want 1", got)
	}
}

// TestHealRebuildsAdminImageWithPackages switches to an image with an extra
// package (as POST /admin/images/rebuild does), removes its tag, and
// checks that the healer rebuilds it with the package.
func TestHealRebuildsAdminImageWithPackages(t *testing.T) {
	const pkg = "python3-tabulate" // small; the admin test builds it too
	e := newHealEnv(t, images.HealOptions{Build: true})
	ctx, cancel := context.WithTimeout(context.Background(), dockertest.Scale(10*time.Minute))
	defer cancel()
	res, err := e.b.Rebuild(ctx, images.Spec{Packages: []string{pkg}})
	if err != nil {
		t.Fatal(err)
	}
	tag := res.Tag
	e.created = append(e.created, tag)
	if err := e.h.SetImage(ctx, tag); err != nil {
		t.Fatal(err)
	}
	// Keep the layer referenced, so that removing the tag only untags it
	// (and the rebuild hits the cache).
	info, err := e.cli.ImageInspect(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	keep := healRepo + ":keep-" + res.Hash[:12]
	if _, err := e.cli.ImageTag(ctx, client.ImageTagOptions{Source: info.ID, Target: keep}); err != nil {
		t.Fatal(err)
	}
	e.created = append(e.created, keep)
	before := e.eng.builds.Load()

	e.untag(t, tag)
	e.h.Trigger(tag)
	dockertest.WaitFor(t, "the admin image to be back", 5*time.Minute, func() bool { return e.present(tag) })
	dockertest.WaitFor(t, "the heal to end", 10*time.Second, func() bool { return !e.h.Status().Healing })
	img, err := e.b.Inspect(ctx, tag)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(img.Packages, []string{pkg}) || e.tg.Image() != tag {
		t.Errorf("rebuilt image has packages %v, image in use %s; want [%s] on %s", img.Packages, e.tg.Image(), pkg, tag)
	}
	e.eng.mu.Lock()
	specs := slices.Clone(e.eng.specs[before:])
	e.eng.mu.Unlock()
	if len(specs) != 1 || specs[0] != pkg {
		t.Errorf("heal builds %q, want one of %q", specs, pkg)
	}
	if st := e.h.Status(); st.Fallback != nil || st.Error != "" {
		t.Errorf("status %+v", st)
	}
}

// TestHealFallsBackToBase uses an admin image whose package apt cannot
// install (made here by labelling the base image, as a build with that
// package would have): once removed, its rebuild fails in apt, and the
// healer falls back to the base image and says so.
func TestHealFallsBackToBase(t *testing.T) {
	const bogus = "python3-pyexec-no-such-package"
	e := newHealEnv(t, images.HealOptions{Build: true})
	ctx, cancel := context.WithTimeout(context.Background(), dockertest.Scale(5*time.Minute))
	defer cancel()
	spec := images.Spec{Packages: []string{bogus}}
	tag, err := e.b.TagFor(spec)
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := e.b.HashFor(spec)
	labelImage(t, e.cli, e.base, tag, map[string]string{
		images.LabelContextHash: e.b.Hash(), images.LabelBuildHash: hash, images.LabelPackages: bogus,
	})
	e.created = append(e.created, tag)
	if err := e.h.SetImage(ctx, tag); err != nil {
		t.Fatal(err)
	}

	e.untag(t, tag)
	e.h.Trigger(tag)
	dockertest.WaitFor(t, "the fall-back", 5*time.Minute, func() bool { return e.tg.Image() == e.base })
	dockertest.WaitFor(t, "the heal to end", 10*time.Second, func() bool { return !e.h.Status().Healing })
	st := e.h.Status()
	f := st.Fallback
	if f == nil {
		t.Fatalf("no fall-back in the status: %+v", st)
	}
	if f.From != tag || f.Image != e.base || !slices.Equal(f.Packages, []string{bogus}) || f.At.IsZero() ||
		!strings.Contains(f.Reason, bogus) || !strings.Contains(f.Message(), "base image "+e.base) {
		t.Errorf("fall-back %+v (%s)", f, f.Message())
	}
	if e.present(tag) {
		t.Errorf("%s built although apt cannot install %s", tag, bogus)
	}
	if got := e.metric(t, "pyexec_image_heals_total", "fallback"); got != 1 {
		t.Errorf("heals fallback = %v, want 1", got)
	}
	if got := e.metric(t, "pyexec_image_builds_total", "failure"); got != 1 {
		t.Errorf("builds failure = %v, want 1", got)
	}

	// The next admin switch clears the fall-back.
	if err := e.h.SetImage(ctx, e.base); err != nil {
		t.Fatal(err)
	}
	if st := e.h.Status(); st.Fallback != nil {
		t.Errorf("fall-back still shown after a switch: %+v", st.Fallback)
	}
}

// labelImage makes tag from image with labels (a one-line build: no layer).
func labelImage(t *testing.T, cli *client.Client, from, tag string, labels map[string]string) {
	t.Helper()
	dockerfile := fmt.Sprintf("FROM %s\n", from)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(dockerfile)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := cli.ImageBuild(ctx, &buf, client.ImageBuildOptions{Tags: []string{tag}, Labels: labels, Remove: true})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := jsonmessage.DisplayJSONMessagesStream(resp.Body, io.Discard, 0, false, nil); err != nil {
		t.Fatalf("label %s: %v", tag, err)
	}
}
