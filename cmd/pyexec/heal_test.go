package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/handlers"
	"github.com/pyexec/pyexec/images"
	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/internal/logctx"
	"github.com/pyexec/pyexec/runner"
)

// healRepo is the repository of the images these tests remove: never the
// one other tests use (images' own heal tests use pyexec-healtest). Its
// images share their layers with pyexec-python, so rebuilding one mostly
// hits the engine's cache.
const healRepo = "pyexec-healtest-svc"

const healAdminToken = "heal-test-admin-token-7c1e09"

// gatedEngine is the real engine with a gate on ImageBuild (builds wait
// while it is held) and an injected failure for builds with packages.
type gatedEngine struct {
	*client.Client
	builds atomic.Int64

	mu        sync.Mutex // guards gate and failExtra
	gate      chan struct{}
	failExtra bool
}

func (e *gatedEngine) ImageBuild(ctx context.Context, r io.Reader, o client.ImageBuildOptions) (client.ImageBuildResult, error) {
	e.builds.Add(1)
	e.mu.Lock()
	gate, fail := e.gate, e.failExtra && o.Labels[images.LabelPackages] != ""
	e.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return client.ImageBuildResult{}, ctx.Err()
		}
	}
	if fail {
		return client.ImageBuildResult{}, errors.New("injected failure of a build with packages")
	}
	return e.Client.ImageBuild(ctx, r, o)
}

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

type healService struct {
	*service
	cli   *client.Client
	eng   *gatedEngine
	srv   *httptest.Server
	owner string
	// created are the tags to remove at the end (the base and latest stay,
	// so the next run's build is a no-op).
	created []string
}

// newHealService wires the service as main does, on healRepo, with the
// builder behind a gatedEngine, and starts it.
func newHealService(t *testing.T, env map[string]string) *healService {
	t.Helper()
	cli := dockertest.Require(t)
	dockertest.Image(t, cli) // the layers the build of healRepo reuses
	owner := dockertest.Owner(t)
	vars := map[string]string{
		"IMAGE_REPOSITORY": healRepo, "SERVICE_ID": owner, "MAX_WORKERS": "2", "POOL_SIZE": "1",
		"POLICY": "off", "BUILD_IMAGE": "true", "ADMIN_TOKEN": healAdminToken,
		"ADMIN_EXTRA_PACKAGES_ALLOWED": "python3-tabulate",
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := loadConfig(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	eng := &gatedEngine{Client: cli}
	builder := images.New(eng, cfg.ImageRepository, log.WithField("component", "images"))
	svc, err := newService(cfg, log, cli, builder)
	if err != nil {
		t.Fatal(err)
	}
	s := &healService{service: svc, cli: cli, eng: eng, owner: owner}
	ctx, cancel := context.WithCancel(logctx.With(context.Background(), logrus.NewEntry(log)))
	svc.start(ctx)
	s.srv = httptest.NewServer(svc.handler)
	t.Cleanup(func() {
		s.srv.Close()
		cancel()
		<-svc.started
		<-svc.healed
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		if err := svc.rn.Close(cctx); err != nil {
			t.Error(err)
		}
		dockertest.AssertNoContainers(t, cli, owner)
		for _, tag := range s.created {
			if _, err := cli.ImageRemove(cctx, tag, client.ImageRemoveOptions{}); err != nil && !strings.Contains(err.Error(), "No such image") {
				t.Logf("remove %s: %v", tag, err)
			}
		}
	})
	select {
	case <-svc.started:
	case <-time.After(dockertest.Scale(10 * time.Minute)):
		t.Fatal("the service did not start")
	}
	return s
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (s *healService) do(t *testing.T, method, path, token, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func (s *healService) execute(t *testing.T) answer {
	return s.do(t, http.MethodPost, "/execute", "", `{"code":"print(6*7)"}`)
}

type healthAnswer struct {
	Status string               `json:"status"`
	Image  handlers.ImageHealth `json:"image"`
}

func (s *healService) health(t *testing.T) (int, healthAnswer) {
	t.Helper()
	a := s.do(t, http.MethodGet, "/health", "", "")
	var h healthAnswer
	if err := json.Unmarshal([]byte(a.body), &h); err != nil {
		t.Fatalf("health %d %s: %v", a.status, a.body, err)
	}
	return a.status, h
}

func (s *healService) untag(t *testing.T, tag string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true}); err != nil {
		t.Fatalf("remove %s: %v", tag, err)
	}
}

func succeeded(a answer) bool {
	return a.status == http.StatusOK && strings.Contains(a.body, `"status":"success"`) && strings.Contains(a.body, "42")
}

func (s *healService) poolIdle() int {
	st := s.rn.Stats()
	if st.Pool == nil {
		return 0
	}
	n := 0
	for _, v := range st.Pool.Idle {
		n += v
	}
	return n
}

// TestHealServiceRebuildsRemovedImage removes the image under the running
// service (its tag: what `docker rmi` and the prunes do), with the rebuild
// held: requests get 503 image_unavailable with Retry-After, the runner
// ErrNoImage, /health degraded with building true; once the build is let
// through, the service serves again and the pool refills, with no restart.
func TestHealServiceRebuildsRemovedImage(t *testing.T) {
	s := newHealService(t, nil)
	base := s.builder.Tag()
	dockertest.WaitFor(t, "a full pool", time.Minute, func() bool { return s.poolIdle() == 1 })
	if a := s.execute(t); !succeeded(a) {
		t.Fatalf("before the removal: %d %s", a.status, a.body)
	}
	builds := s.eng.builds.Load()

	release := s.eng.hold()
	defer release()
	s.untag(t, base)

	// The pool's container (made before) may serve one; then every request
	// fails, as 503 with Retry-After, and triggers the (one) rebuild.
	var a answer
	for i := 0; i < 5; i++ {
		if a = s.execute(t); a.status != http.StatusOK {
			break
		}
	}
	if a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, `"image_unavailable"`) {
		t.Fatalf("with the image gone: %d %s", a.status, a.body)
	}
	if ra, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q", a.header.Get("Retry-After"))
	}
	dockertest.WaitFor(t, "the rebuild to start", 10*time.Second, func() bool { return s.eng.builds.Load() == builds+1 })
	for range 5 {
		if a := s.execute(t); a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
			t.Errorf("during the rebuild: %d %s", a.status, a.body)
		}
	}
	_, err := s.rn.Run(t.Context(), runner.Request{Code: "print(1)", Timeout: 10 * time.Second})
	if !errors.Is(err, runner.ErrNoImage) {
		t.Errorf("runner during the rebuild: %v, want ErrNoImage", err)
	}
	code, h := s.health(t)
	if code != http.StatusServiceUnavailable || h.Status != "degraded" || !h.Image.Building || h.Image.Present || h.Image.Tag != base {
		t.Errorf("health during the rebuild: %d %+v", code, h)
	}
	if n := s.eng.builds.Load(); n != builds+1 {
		t.Errorf("%d builds during the heal, want 1", n-builds)
	}

	release()
	start := time.Now()
	dockertest.WaitFor(t, "a success after the rebuild", 3*time.Minute, func() bool { return succeeded(s.execute(t)) })
	t.Logf("served again %v after the build was let through", time.Since(start).Round(time.Millisecond))
	dockertest.WaitFor(t, "the pool to refill", time.Minute, func() bool { return s.poolIdle() == 1 })
	code, h = s.health(t)
	if code != http.StatusOK || h.Image.Building || !h.Image.Present || !h.Image.Current || h.Image.Error != "" || h.Image.Fallback != nil {
		t.Errorf("health after the heal: %d %+v", code, h)
	}
	if n := s.eng.builds.Load(); n != builds+1 {
		t.Errorf("%d builds for the heal, want 1", n-builds)
	}
	m := s.do(t, http.MethodGet, "/metrics", "", "")
	if !strings.Contains(m.body, `pyexec_image_heals_total{result="rebuilt"} 1`) {
		t.Errorf("metrics lack one rebuilt heal:\n%s", grepLines(m.body, "pyexec_image_"))
	}
}

// TestHealServiceFallsBackToBase switches to an admin image with a package
// (POST /admin/images/rebuild), removes it, and makes its rebuild fail: the
// service falls back to the base image, serves on it, and /health says so.
func TestHealServiceFallsBackToBase(t *testing.T) {
	const pkg = "python3-tabulate"
	s := newHealService(t, map[string]string{"POOL_SIZE": "0"})
	base := s.builder.Tag()
	a := s.do(t, http.MethodPost, "/admin/images/rebuild", healAdminToken, `{"packages":["`+pkg+`"]}`)
	if a.status != http.StatusOK {
		t.Fatalf("admin rebuild: %d %s", a.status, a.body)
	}
	admin, _ := s.builder.TagFor(images.Spec{Packages: []string{pkg}})
	s.created = append(s.created, admin)
	if s.rn.Image() != admin {
		t.Fatalf("runner on %s after the admin rebuild, want %s", s.rn.Image(), admin)
	}
	if a := s.do(t, http.MethodPost, "/execute", "", `{"code":"import tabulate\nprint(6*7)"}`); !succeeded(a) || a.header.Get("X-Sandbox-Image") != admin {
		t.Fatalf("on the admin image: %d %s", a.status, a.body)
	}

	s.eng.mu.Lock()
	s.eng.failExtra = true
	s.eng.mu.Unlock()
	s.untag(t, admin)
	if a := s.execute(t); a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
		t.Errorf("with the admin image gone: %d %s", a.status, a.body)
	}
	dockertest.WaitFor(t, "the fall-back", 2*time.Minute, func() bool { return s.rn.Image() == base })
	dockertest.WaitFor(t, "a success on the base image", time.Minute, func() bool {
		a := s.execute(t)
		return succeeded(a) && a.header.Get("X-Sandbox-Image") == base
	})
	code, h := s.health(t)
	f := h.Image.Fallback
	if code != http.StatusOK || h.Image.Tag != base || f == nil {
		t.Fatalf("health after the fall-back: %d %+v", code, h)
	}
	if f.From != admin || !slices.Equal(f.Packages, []string{pkg}) || f.At.IsZero() ||
		!strings.Contains(f.Message, "injected failure") || !strings.Contains(f.Message, base) {
		t.Errorf("fall-back %+v", f)
	}
	m := s.do(t, http.MethodGet, "/metrics", "", "")
	for _, want := range []string{`pyexec_image_heals_total{result="fallback"} 1`, `pyexec_image_heals_total{result="failed"} 1`} {
		if !strings.Contains(m.body, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(m.body, "pyexec_image_"))
		}
	}

	// An admin rebuild of the base image ends the fall-back.
	if a := s.do(t, http.MethodPost, "/admin/images/rebuild", healAdminToken, ""); a.status != http.StatusOK {
		t.Fatalf("admin rebuild of the base: %d %s", a.status, a.body)
	}
	if _, h := s.health(t); h.Image.Fallback != nil {
		t.Errorf("fall-back still shown after an admin rebuild: %+v", h.Image.Fallback)
	}
}

// TestHealServiceWaitsWithoutBuildImage: with BUILD_IMAGE=false the
// service builds nothing, answers 503 and /health degraded while the image
// is gone, and serves again once someone restores it.
func TestHealServiceWaitsWithoutBuildImage(t *testing.T) {
	cli := dockertest.Require(t)
	dockertest.Image(t, cli)
	ctx, cancel := context.WithTimeout(t.Context(), dockertest.Scale(10*time.Minute))
	defer cancel()
	base, err := images.New(cli, healRepo, nil).Ensure(ctx) // what an operator would have built
	if err != nil {
		t.Fatal(err)
	}
	info, err := cli.ImageInspect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	s := newHealService(t, map[string]string{"BUILD_IMAGE": "false", "POOL_SIZE": "0"})
	if a := s.execute(t); !succeeded(a) {
		t.Fatalf("before the removal: %d %s", a.status, a.body)
	}
	s.untag(t, base)
	t.Cleanup(func() {
		_, _ = cli.ImageTag(context.Background(), client.ImageTagOptions{Source: info.ID, Target: base})
	})
	if a := s.execute(t); a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, `"image_unavailable"`) || a.header.Get("Retry-After") == "" {
		t.Errorf("with the image gone: %d %s", a.status, a.body)
	}
	dockertest.WaitFor(t, "health to say it waits", 10*time.Second, func() bool {
		_, h := s.health(t)
		return strings.Contains(h.Image.Error, "BUILD_IMAGE=false")
	})
	code, h := s.health(t)
	if code != http.StatusServiceUnavailable || h.Image.Building || h.Image.Present {
		t.Errorf("health while waiting: %d %+v", code, h)
	}
	if n := s.eng.builds.Load(); n != 0 {
		t.Errorf("%d builds with BUILD_IMAGE=false", n)
	}

	if _, err := cli.ImageTag(ctx, client.ImageTagOptions{Source: info.ID, Target: base}); err != nil {
		t.Fatal(err)
	}
	dockertest.WaitFor(t, "a success after the restore", time.Minute, func() bool { return succeeded(s.execute(t)) })
	dockertest.WaitFor(t, "health ok", 10*time.Second, func() bool {
		code, h := s.health(t)
		return code == http.StatusOK && h.Image.Error == ""
	})
	if n := s.eng.builds.Load(); n != 0 {
		t.Errorf("%d builds with BUILD_IMAGE=false", n)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
