package main

// Fault tests: the real binary on the real engine, under the mixed
// load, while the engine stops and starts, the image disappears, or an
// instance is killed. They stop the engine or remove images, so they run
// only in make test's serial fault step (PYEXEC_FAULT_TESTS=1) and hold the
// engine lock exclusively.

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/internal/loadgen"
)

// Settings of the service under fault tests: four clients against three
// workers, a short longest execution so the client timeout (what counts as
// hung) stays short.
const (
	faultMaxTimeout = 15 * time.Second
	faultClients    = 4
	faultPool       = 2
	// faultHangMargin is added to the longest execution for the client
	// timeout: queueing behind three workers and the container's start.
	faultHangMargin = 45 * time.Second
)

// faultEnv is the service's environment under fault tests.
func faultEnv(owner string, extra ...string) []string {
	return append([]string{
		"SERVICE_ID=" + owner,
		"MAX_WORKERS=3",
		"MAX_QUEUE=16",
		"POOL_SIZE=2",
		"TIMEOUT_SECONDS=10",
		"MAX_TIMEOUT_SECONDS=15",
		"SHUTDOWN_TIMEOUT_SECONDS=20",
		"LOG_LEVEL=info",
		"BUILD_IMAGE=false",
	}, extra...)
}

// startFault builds and starts the binary with env, waits until it serves
// with a full pool, and registers a cleanup that stops it and asserts that
// no container of owner is left.
func startFault(t *testing.T, cli *client.Client, owner string, env []string) (*loadgen.Service, string) {
	t.Helper()
	root, err := dockertest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := loadgen.Build(root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	svc := startBin(t, cli, bin, owner, env)
	return svc, bin
}

// startBin starts bin (see startFault).
func startBin(t *testing.T, cli *client.Client, bin, owner string, env []string) *loadgen.Service {
	t.Helper()
	port, err := loadgen.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	svc, err := loadgen.Start(bin, port, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := svc.Stop(dockertest.Scale(90 * time.Second)); err != nil {
			select {
			case <-svc.Exited():
			default:
			}
			if !strings.Contains(err.Error(), "signal: killed") {
				t.Errorf("service %s: exit after SIGTERM: %v", owner, err)
			}
		}
		if t.Failed() {
			path := filepath.Join(os.TempDir(), "pyexec-"+owner+".log")
			if err := os.WriteFile(path, []byte(svc.Logs.String()), 0o644); err == nil {
				t.Logf("service %s output: %s", owner, path)
			} else {
				t.Logf("service %s output (last 8 kB):\n%s", owner, tail(svc.Logs.String(), 8<<10))
			}
		}
		dockertest.AssertNoContainers(t, cli, owner)
	})
	if err := svc.WaitReady(dockertest.Scale(5*time.Minute), faultPool); err != nil {
		t.Fatalf("service %s: %v\n%s", owner, err, tail(svc.Logs.String(), 8<<10))
	}
	return svc
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// checkNoFailures fails the test for each failure class in s.
func checkNoFailures(t *testing.T, what string, s loadgen.Summary) {
	t.Helper()
	if s.Failures > 0 {
		t.Errorf("%s: %d answers outside the contract (200, 429 or 503 with Retry-After): %s", what, s.Failures, s)
		for cl, sample := range s.Samples {
			t.Errorf("  first %s: %s", cl, sample)
		}
	}
}

// TestFaultEngineRestartUnderLoad stops the engine for about 10 s under a
// 4-client mixed load and starts it again: every answer is a correct 200,
// or a 429 or 503 with Retry-After (no 500, none hung); the first success
// comes within 5 s of the engine being back, and for the 30 s after the
// first success nothing fails.
func TestFaultEngineRestartUnderLoad(t *testing.T) {
	dockertest.RequireFaults(t)
	cli := dockertest.RequireExclusive(t)
	dockertest.Image(t, cli)
	owner := dockertest.Owner(t)
	svc, _ := startFault(t, cli, owner, faultEnv(owner))

	lc := loadgen.NewClient(svc.URL, dockertest.Scale(faultMaxTimeout+faultHangMargin))
	var rec loadgen.Recorder
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		lc.Run(ctx, faultClients, loadgen.Mixed, 200*time.Millisecond, &rec)
	}()
	defer func() { cancel(); <-done }()

	time.Sleep(dockertest.Scale(15 * time.Second))
	stopAt := time.Now()
	stopTook := dockertest.StopEngine(t)
	checkProbesEngineDown(t, svc.URL) // probes_test.go
	time.Sleep(10*time.Second - time.Since(stopAt) + stopTook)
	startTook := dockertest.StartEngine(t)
	backAt := time.Now()
	// Keep the load for 35 s past the first success (or its deadline).
	first, ok := waitFirstSuccess(&rec, backAt, dockertest.Scale(60*time.Second))
	time.Sleep(35*time.Second - time.Since(backAt.Add(first)))
	cancel()
	<-done
	endAt := time.Now()

	answers := rec.Answers()
	all := loadgen.Summarize(answers, time.Time{}, time.Time{}, nil)
	t.Logf("figures: engine stop %v, down %v (from stop to back), start %v",
		stopTook.Round(time.Millisecond), backAt.Sub(stopAt).Round(time.Millisecond), startTook.Round(time.Millisecond))
	t.Logf("figures: all: %s", all)
	t.Logf("figures: during the outage: %s", loadgen.Summarize(answers, stopAt, backAt, nil))
	t.Logf("timeline (answers by end, seconds from the engine back):\n%s", loadgen.Timeline(answers, backAt, 5*time.Second))
	if !ok {
		t.Fatalf("no success within %v of the engine being back", dockertest.Scale(60*time.Second))
	}
	after := loadgen.Summarize(answers, backAt.Add(first), endAt, nil)
	t.Logf("figures: first success %v after the engine was back; from then on (%v): %s",
		first.Round(time.Millisecond), endAt.Sub(backAt.Add(first)).Round(time.Second), after)
	checkNoFailures(t, "whole run", all)
	if first > dockertest.Scale(5*time.Second) {
		t.Errorf("first success %v after the engine was back, want within 5 s", first)
	}
	// After recovery, every answer to a request sent after the first
	// success is a correct 200 (or a 429 of a full queue).
	firstAt := backAt.Add(first)
	for _, a := range answers {
		if a.Start.After(firstAt) && !a.OK && a.HTTP != 429 {
			t.Errorf("after recovery (%v after the first success): %s: %s", a.End.Sub(firstAt).Round(time.Millisecond), a.Class(), a.Detail)
		}
	}
	if all.OK == 0 || loadgen.Summarize(answers, time.Time{}, stopAt, nil).OK == 0 {
		t.Error("no success before the fault: the load did not run")
	}
	waitReady(t, svc.URL, 30*time.Second) // probes_test.go
	select {
	case <-svc.Exited():
		t.Fatalf("service exited: %v", svc.ExitErr)
	default:
	}
}

// waitFirstSuccess waits until a correct answer ends after t, or limit
// passes; it returns how long after t that answer came.
func waitFirstSuccess(rec *loadgen.Recorder, t time.Time, limit time.Duration) (time.Duration, bool) {
	for {
		if d, ok := loadgen.FirstSuccessAfter(rec.Answers(), t); ok {
			return d, true
		}
		if time.Since(t) > limit {
			return 0, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// faultRepo is the image repository of TestFaultImageRemovedUnderLoad: its
// own, so removing it leaves the shared pyexec-python image alone.
const faultRepo = "pyexec-faulttest"

// TestFaultImageRemovedUnderLoad removes the service's image (all its tags,
// as docker image prune -a would) under load: the service answers 503
// image_unavailable with Retry-After while it rebuilds, shows building in
// /health, then serves again, without a restart.
func TestFaultImageRemovedUnderLoad(t *testing.T) {
	dockertest.RequireFaults(t)
	cli := dockertest.RequireExclusive(t)
	dockertest.Image(t, cli) // the build below is then all from cache
	owner := dockertest.Owner(t)
	removeRepo(t, cli, faultRepo)
	t.Cleanup(func() { removeRepo(t, cli, faultRepo) })
	svc, _ := startFault(t, cli, owner, faultEnv(owner, "IMAGE_REPOSITORY="+faultRepo, "BUILD_IMAGE=true"))
	pid := svc.PID()

	lc := loadgen.NewClient(svc.URL, dockertest.Scale(faultMaxTimeout+faultHangMargin))
	var rec loadgen.Recorder
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		lc.Run(ctx, faultClients, loadgen.Mixed, 200*time.Millisecond, &rec)
	}()
	defer func() { cancel(); <-done }()

	time.Sleep(dockertest.Scale(10 * time.Second))
	removedAt := time.Now()
	if n := removeRepo(t, cli, faultRepo); n == 0 {
		t.Fatalf("no %s image to remove", faultRepo)
	}
	// Watch /health until the image is back, noting whether it said
	// building meanwhile.
	sawBuilding := false
	var backAt time.Time
	deadline := time.Now().Add(dockertest.Scale(5 * time.Minute))
	for backAt.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("image not back %v after its removal", time.Since(removedAt).Round(time.Second))
		}
		h, code, err := svc.Health(context.Background())
		if err == nil {
			sawBuilding = sawBuilding || h.Image.Building
			if code == 200 && h.Image.Present {
				backAt = time.Now()
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	first, ok := waitFirstSuccess(&rec, backAt, dockertest.Scale(60*time.Second))
	time.Sleep(20*time.Second - time.Since(backAt))
	cancel()
	<-done
	endAt := time.Now()

	answers := rec.Answers()
	all := loadgen.Summarize(answers, time.Time{}, time.Time{}, nil)
	t.Logf("figures: image back (health 200, present) %v after its removal; building seen: %v",
		backAt.Sub(removedAt).Round(time.Millisecond), sawBuilding)
	t.Logf("figures: all: %s", all)
	t.Logf("figures: while missing: %s", loadgen.Summarize(answers, removedAt, backAt, nil))
	t.Logf("figures: after: %s", loadgen.Summarize(answers, backAt, endAt, nil))
	checkNoFailures(t, "whole run", all)
	if !ok {
		t.Errorf("no success within %v of the image being back", dockertest.Scale(60*time.Second))
	} else {
		t.Logf("figures: first success %v after the image was back", first.Round(time.Millisecond))
	}
	unavailable := 0
	for _, a := range answers {
		if a.HTTP == 503 && a.Code == "image_unavailable" {
			unavailable++
		}
	}
	if !sawBuilding && unavailable == 0 {
		t.Error("neither /health building:true nor a 503 image_unavailable while the image was missing")
	}
	select {
	case <-svc.Exited():
		t.Fatalf("service exited: %v", svc.ExitErr)
	default:
	}
	if svc.PID() != pid {
		t.Error("service restarted")
	}
}

// removeRepo untags every image of repo; it returns how many tags it
// removed. An image also tagged elsewhere (pyexec-python) stays.
func removeRepo(t *testing.T, cli *client.Client, repo string) int {
	t.Helper()
	ctx := context.Background()
	list, err := cli.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		t.Fatalf("list images: %v", err)
	}
	n := 0
	for _, img := range list.Items {
		for _, tag := range img.RepoTags {
			if strings.HasPrefix(tag, repo+":") {
				if _, err := cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true}); err != nil {
					t.Errorf("remove %s: %v", tag, err)
					continue
				}
				n++
			}
		}
	}
	return n
}

// Knobs of the expiry test: a short pool age and reconcile period so that
// the sandboxes of a killed instance expire within minutes.
const (
	expiryPoolMaxAge = "POOL_MAX_AGE_SECONDS=10"
	expiryReconcile  = "RECONCILE_INTERVAL_SECONDS=5"
	// defaultReconcilePeriod is the runner's period when the service
	// shows none in /health's settings (runner/reconcile.go).
	defaultReconcilePeriod = 30 * time.Second
	// expiryWaitCap bounds the wait for the expiries: beyond it the
	// service lacks the knobs above and the test would take too long.
	expiryWaitCap = 8 * time.Minute
)

// TestFaultKilledInstanceExpires SIGKILLs an instance under load, then
// starts another with a different SERVICE_ID on the same engine: every
// container of the dead one is gone within its expiry label plus one
// reconcile period.
func TestFaultKilledInstanceExpires(t *testing.T) {
	dockertest.RequireFaults(t)
	cli := dockertest.RequireExclusive(t)
	dockertest.Image(t, cli)
	dead := dockertest.Owner(t)
	short := []string{"MAX_WORKERS=3", "POOL_SIZE=2", "TIMEOUT_SECONDS=5", "MAX_TIMEOUT_SECONDS=5", expiryPoolMaxAge, expiryReconcile}
	a, bin := startFault(t, cli, dead, faultEnv(dead, short...))

	lc := loadgen.NewClient(a.URL, dockertest.Scale(faultMaxTimeout+faultHangMargin))
	var rec loadgen.Recorder
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		lc.Run(ctx, faultClients, loadgen.Mixed, 200*time.Millisecond, &rec)
	}()
	time.Sleep(dockertest.Scale(8 * time.Second))
	a.Kill()
	killedAt := time.Now()
	cancel()
	<-done
	// Creates the engine accepted before the kill may finish after it.
	time.Sleep(3 * time.Second)
	t.Logf("figures: load before the kill: %s", loadgen.Summarize(rec.Answers(), time.Time{}, time.Time{}, nil))

	left := dockertest.Containers(t, cli, dead)
	if len(left) == 0 {
		t.Fatal("the killed instance left no container: nothing to test")
	}
	expires := map[string]time.Time{}
	var last time.Time
	for _, c := range left {
		sec, err := strconv.ParseInt(c.Labels["io.pyexec.expires"], 10, 64)
		if err != nil {
			t.Fatalf("container %.12s (%s) has no expiry label: %q", c.ID, c.Labels["io.pyexec.role"], c.Labels["io.pyexec.expires"])
		}
		expires[c.ID] = time.Unix(sec, 0)
		if expires[c.ID].After(last) {
			last = expires[c.ID]
		}
		t.Logf("left: %.12s role=%s state=%s expires in %v", c.ID, c.Labels["io.pyexec.role"], c.State,
			time.Until(expires[c.ID]).Round(time.Second))
	}

	other := dockertest.Owner(t)
	b := startBin(t, cli, bin, other, faultEnv(other, short...))
	period := defaultReconcilePeriod
	if h, err := settings(b); err == nil {
		if v, ok := h["reconcile_interval_seconds"].(float64); ok && v > 0 {
			period = time.Duration(v * float64(time.Second))
		}
	}
	slack := dockertest.Scale(10 * time.Second)
	if wait := time.Until(last.Add(period + slack)); wait > dockertest.Scale(expiryWaitCap) {
		t.Fatalf("the last expiry is %v away (+ period %v): the service needs %s and %s (or the like) to shorten them",
			time.Until(last).Round(time.Second), period, expiryPoolMaxAge, expiryReconcile)
	}

	gone := map[string]time.Time{}
	for len(gone) < len(expires) {
		present := map[string]bool{}
		for _, c := range dockertest.Containers(t, cli, dead) {
			present[c.ID] = true
		}
		now := time.Now()
		for id := range expires {
			if _, done := gone[id]; !done && !present[id] {
				gone[id] = now
			}
		}
		if now.After(last.Add(period + slack)) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for id, exp := range expires {
		g, ok := gone[id]
		switch {
		case !ok:
			t.Errorf("container %.12s still there %v past its expiry (period %v)", id, time.Since(exp).Round(time.Second), period)
		case g.After(exp.Add(period + slack)):
			t.Errorf("container %.12s removed %v past its expiry, want within one period (%v)", id, g.Sub(exp).Round(time.Second), period)
		default:
			t.Logf("figures: %.12s removed %v after its expiry (%v after the kill)", id, g.Sub(exp).Round(time.Second), g.Sub(killedAt).Round(time.Second))
		}
	}
	dockertest.AssertNoContainers(t, cli, dead)
}

// settings reads /health's settings.
func settings(s *loadgen.Service) (map[string]any, error) {
	resp, err := http.Get(s.URL + "/health")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Settings map[string]any `json:"settings"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	return body.Settings, err
}
