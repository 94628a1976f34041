package runner

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pyexec/pyexec/internal/dockertest"
)

// These tests drive the reconciler (reconcile.go) against the real engine.
// Containers standing for leftovers are created directly with the client
// from the runner's own spec, never started: a create whose answer never
// arrived leaves exactly such a container.

func TestMaxLifeCoversEveryStep(t *testing.T) {
	r, err := New(nil, Options{Image: "img", Owner: "me", SeccompProfile: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	o := r.opts
	exec := o.StartTimeout + o.MaxTimeout + o.KillGrace + 2*o.CleanupTimeout + exitGrace
	for _, c := range []struct {
		role  string
		least time.Duration
	}{
		{roleExec, exec},
		{roleWarm, o.PoolMaxAge + janitorPeriod + exec},
		{roleValidator, o.StartTimeout + o.PoolMaxAge + validateTimeout + o.CleanupTimeout},
		{roleProbe, o.StartTimeout + o.CleanupTimeout},
	} {
		if got := r.maxLife(c.role); got < c.least {
			t.Errorf("maxLife(%s) = %v, shorter than its steps (%v)", c.role, got, c.least)
		}
		before := time.Now()
		sp := r.sandboxSpec(c.role, PreloadNone, nil)
		exp, err := strconv.ParseInt(sp.config.Labels[LabelExpires], 10, 64)
		if err != nil {
			t.Fatalf("%s: %s=%q: %v", c.role, LabelExpires, sp.config.Labels[LabelExpires], err)
		}
		if lo, hi := before.Add(r.maxLife(c.role)).Unix(), time.Now().Add(r.maxLife(c.role)).Unix(); exp < lo || exp > hi {
			t.Errorf("%s: %s = %d, want created + maxLife in [%d, %d]", c.role, LabelExpires, exp, lo, hi)
		}
	}
	if r.opts.MaxTimeout != DefaultMaxTimeout {
		t.Errorf("MaxTimeout = %v, want %v", r.opts.MaxTimeout, DefaultMaxTimeout)
	}
	// The label follows the longest timeout a request may ask for.
	long, err := New(nil, Options{Image: "img", Owner: "me", SeccompProfile: []byte(`{}`), MaxTimeout: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if d := long.maxLife(roleExec) - r.maxLife(roleExec); d != 9*time.Minute {
		t.Errorf("exec life grew by %v with MaxTimeout 10m, want 9m", d)
	}
}

func TestReconcilerJudge(t *testing.T) {
	tracked := map[string]bool{"t": true}
	c := newReconciler(nil, "me", "boot1", func(id string) bool { return tracked[id] }, nil, newCounters())
	c.grace = time.Minute
	now := time.Now()
	past := strconv.FormatInt(now.Add(-time.Second).Unix(), 10)
	future := strconv.FormatInt(now.Add(time.Hour).Unix(), 10)
	old := now.Add(-2 * time.Minute).Unix()
	young := now.Add(-10 * time.Second).Unix()
	labels := func(owner, instance, expires string) map[string]string {
		l := map[string]string{LabelManaged: "1", LabelOwner: owner, LabelInstance: instance}
		if expires != "" {
			l[LabelExpires] = expires
		}
		return l
	}
	for _, tc := range []struct {
		name    string
		id      string
		labels  map[string]string
		created int64
		state   container.ContainerState
		want    string
	}{
		{"mine untracked past grace", "d", labels("me", "boot1", future), old, "created", reasonDangling},
		{"mine untracked within grace", "d", labels("me", "boot1", future), young, "created", ""},
		{"mine tracked and old", "t", labels("me", "boot1", future), old, "running", ""},
		{"mine tracked and expired", "t", labels("me", "boot1", past), old, "running", ""},
		{"mine untracked and expired", "d", labels("me", "boot1", past), young, "running", reasonExpired},
		{"other owner expired", "x", labels("them", "boot2", past), young, "running", reasonExpired},
		{"other owner not expired", "x", labels("them", "boot2", future), old, "running", ""},
		{"other owner without expiry", "x", labels("them", "boot2", ""), old, "running", ""},
		{"other owner unreadable expiry", "x", labels("them", "boot2", "soon"), old, "running", ""},
		{"my earlier instance expired", "x", labels("me", "boot0", past), old, "exited", reasonExpired},
		{"my earlier instance not expired", "x", labels("me", "boot0", future), old, "exited", ""},
		{"being removed", "x", labels("them", "boot2", past), old, "removing", ""},
	} {
		ct := container.Summary{ID: tc.id, Labels: tc.labels, Created: tc.created, State: tc.state}
		if got := c.judge(t.Context(), ct, now); got != tc.want {
			t.Errorf("%s: judge = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// newReconcileRunner is a runner on the real engine for owner, closed by the
// test's cleanup, which asserts that nothing of owner remains.
func newReconcileRunner(t *testing.T, cli *client.Client, owner string, mod func(*Options)) *Runner {
	t.Helper()
	opts := Options{Image: dockertest.Image(t, cli), Owner: owner}
	if mod != nil {
		mod(&opts)
	}
	r, err := New(cli, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dockertest.Scale(60*time.Second))
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("close runner %s: %v", owner, err)
		}
		dockertest.AssertNoContainers(t, cli, owner)
	})
	return r
}

// createLeftover creates, without starting it, a container from r's spec
// for role, with its expiry label set to expires unless that is "keep"
// ("" removes the label).
func createLeftover(t *testing.T, cli *client.Client, r *Runner, role, expires string) string {
	t.Helper()
	sp := r.sandboxSpec(role, PreloadNone, nil)
	switch expires {
	case "keep":
	case "":
		delete(sp.config.Labels, LabelExpires)
	default:
		sp.config.Labels[LabelExpires] = expires
	}
	resp, err := cli.ContainerCreate(t.Context(), client.ContainerCreateOptions{
		Config: sp.config, HostConfig: sp.host, NetworkingConfig: sp.network,
	})
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	return resp.ID
}

func exists(t *testing.T, cli *client.Client, id string) bool {
	t.Helper()
	_, err := cli.ContainerInspect(t.Context(), id, client.ContainerInspectOptions{})
	if err != nil && !errdefs.IsNotFound(err) {
		t.Fatalf("inspect %s: %v", shortID(id), err)
	}
	return err == nil
}

func removeNow(t *testing.T, cli *client.Client, ids ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, id := range ids {
		if _, err := cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
			t.Errorf("remove %s: %v", shortID(id), err)
		}
	}
}

func TestReconcilerRemovesDangling(t *testing.T) {
	t.Parallel()
	cli := dockertest.Require(t)
	reg := prometheus.NewRegistry()
	r := newReconcileRunner(t, cli, dockertest.Owner(t), func(o *Options) { o.Registerer = reg })
	id := createLeftover(t, cli, r, roleExec, "keep")
	rec := r.newReconciler()

	// Younger than the grace: it may be a create under way.
	if _, err := rec.once(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !exists(t, cli, id) {
		t.Fatal("an untracked container younger than the grace period was removed")
	}

	removedBefore := r.metrics.removed.Load()
	expiredBefore := r.metrics.reconciled[reasonExpired].Load()
	rec.grace = time.Second
	dockertest.WaitFor(t, "the dangling container to be removed", 10*time.Second, func() bool {
		if _, err := rec.once(t.Context()); err != nil {
			t.Fatal(err)
		}
		return !exists(t, cli, id)
	})
	if n := r.metrics.reconciled[reasonDangling].Load(); n != 1 {
		t.Errorf("dangling removals counted %d, want 1", n)
	}
	// Expired containers of other tests on the engine are any reconciler's
	// to remove (TestReconcilerRemovesExpiredOfAnyOwner): this one may
	// count some, and the metric must agree with the count.
	expired := r.metrics.reconciled[reasonExpired].Load()
	for reason, want := range map[string]float64{reasonDangling: 1, reasonExpired: float64(expired)} {
		if got := reconciledMetric(t, reg, reason); got != want {
			t.Errorf("%s{reason=%q} = %v, want %v", metricReconcilerRemoved, reason, got, want)
		}
	}
	if got := r.metrics.removed.Load() - removedBefore - (expired - expiredBefore); got != 1 {
		t.Errorf("containers removed besides expired ones: %d, want 1: the reconciler must remove through Runner.remove", got)
	}
}

// reconciledMetric reads pyexec_reconciler_removed_total{reason} from reg.
func reconciledMetric(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	v, ok := metricValue(t, reg, metricReconcilerRemoved, metricLabelReason, reason)
	if !ok {
		t.Fatalf("%s{reason=%q} not registered", metricReconcilerRemoved, reason)
	}
	return v
}

// Not parallel: its expired container is any reconciler's to remove, and
// the package's other reconciler tests, which run in parallel once this one
// is done, count what theirs remove (a dangling test's once counted it as
// expired in CI).
func TestReconcilerRemovesExpiredOfAnyOwner(t *testing.T) {
	cli := dockertest.Require(t)
	r := newReconcileRunner(t, cli, dockertest.Owner(t), nil)
	otherOwner := dockertest.Owner(t)
	other := newReconcileRunner(t, cli, otherOwner, nil)
	now := time.Now()
	expired := createLeftover(t, cli, other, roleWarm, strconv.FormatInt(now.Add(-time.Second).Unix(), 10))
	alive := createLeftover(t, cli, other, roleWarm, "keep")
	legacy := createLeftover(t, cli, other, roleWarm, "")
	t.Cleanup(func() { removeNow(t, cli, alive, legacy) }) // before other's AssertNoContainers

	rec := r.newReconciler()
	if _, err := rec.once(t.Context()); err != nil {
		t.Fatal(err)
	}
	if exists(t, cli, expired) {
		t.Error("a container of another owner past its expiry was kept")
	}
	if !exists(t, cli, alive) {
		t.Error("a container of another owner before its expiry was removed")
	}
	if !exists(t, cli, legacy) {
		t.Error("a container of another owner without an expiry label was removed")
	}
	// Another instance on the engine may have removed it first.
	if n := r.metrics.reconciled[reasonExpired].Load(); n > 1 {
		t.Errorf("expired removals counted %d, want at most 1", n)
	}
	if n := r.metrics.reconciled[reasonDangling].Load(); n != 0 {
		t.Errorf("dangling removals counted %d, want 0", n)
	}
}

func TestReconcilerKeepsTracked(t *testing.T) {
	t.Parallel()
	cli := dockertest.Require(t)
	owner := dockertest.Owner(t)
	r := newReconcileRunner(t, cli, owner, func(o *Options) { o.PoolSize = 1 })
	r.Start(t.Context())
	rec := r.newReconciler()
	rec.grace = 2 * time.Second // long enough to cover a create's answer, not a container's age
	dockertest.WaitFor(t, "the pool to fill", 60*time.Second, func() bool { return r.pool.idleCount(FlavorNone) == 1 })
	time.Sleep(rec.grace + time.Second)
	pooled := dockertest.Containers(t, cli, owner)
	if len(pooled) != 1 {
		t.Fatalf("%d containers with a full pool of 1, want 1", len(pooled))
	}
	if _, err := rec.once(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !exists(t, cli, pooled[0].ID) {
		t.Fatal("the reconciler removed an idle pool container")
	}

	// An execution in flight, in a container older than the grace.
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := r.Run(t.Context(), Request{Code: "import time\ntime.sleep(4)\nprint('survived')", Timeout: 30 * time.Second})
		done <- outcome{res, err}
	}()
	dockertest.WaitFor(t, "the execution to start", 30*time.Second, func() bool { return r.metrics.running.Load() == 1 })
	time.Sleep(rec.grace + time.Second)
	if _, err := rec.once(t.Context()); err != nil {
		t.Fatal(err)
	}
	out := <-done
	if out.err != nil || out.res.Status != StatusSuccess || out.res.Stdout != "survived\n" {
		t.Fatalf("execution under the reconciler: %v %q %q %+v", out.err, out.res.Status, out.res.Stdout, out.res.Error)
	}
	for reason, n := range r.metrics.reconciled {
		// Expired containers of other tests on the engine are any
		// reconciler's to remove; none of this runner's is expired.
		if n.Load() != 0 && reason != reasonExpired {
			t.Errorf("%s removals counted %d, want 0", reason, n.Load())
		}
	}
}

// TestDeadReplicaLeavesNothing is the runner-level proof of "SIGKILL of one
// instance, then another instance with a different SERVICE_ID on the same
// engine: every container of the dead one is gone within its expiry".
// Runner A has short timeouts, fills its pool and is abandoned without
// Close, as a SIGKILL would leave it; runner B, of another owner, removes
// all of A's containers once they expire, none before.
func TestDeadReplicaLeavesNothing(t *testing.T) {
	cli := dockertest.Require(t)

	ownerA := dockertest.Owner(t)
	a := newReconcileRunner(t, cli, ownerA, func(o *Options) {
		o.PoolSize = 2
		o.MaxTimeout = time.Second
		o.StartTimeout = dockertest.Scale(8 * time.Second)
		o.KillGrace = 100 * time.Millisecond
		o.CleanupTimeout = 2 * time.Second
		o.PoolMaxAge = 6 * time.Second
	})
	ctxA, killA := context.WithCancel(t.Context())
	defer killA()
	a.Start(ctxA)
	dockertest.WaitFor(t, "A's pool to fill", 90*time.Second, func() bool {
		return a.pool.idleCount(FlavorNone)+a.pool.idleCount(FlavorData) == 2
	})
	// "SIGKILL": A's loops stop, its containers stay. A create cut off by
	// the kill leaves an untracked one, here made directly.
	killA()
	a.loops.Wait()
	a.Wait()
	createLeftover(t, cli, a, roleExec, "keep")
	left := dockertest.Containers(t, cli, ownerA)
	if len(left) < 3 {
		t.Fatalf("A left %d containers, want at least its 2 pooled ones and the leftover", len(left))
	}
	expires := map[string]int64{}
	var last int64
	for _, c := range left {
		e, err := strconv.ParseInt(c.Labels[LabelExpires], 10, 64)
		if err != nil {
			t.Fatalf("container %s of role %s: %s=%q: %v", shortID(c.ID), c.Labels[LabelRole], LabelExpires, c.Labels[LabelExpires], err)
		}
		expires[c.ID] = e
		last = max(last, e)
	}

	b := newReconcileRunner(t, cli, dockertest.Owner(t), nil)
	rec := b.newReconciler()
	rec.period = 500 * time.Millisecond
	ctxB, stopB := context.WithCancel(t.Context())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		rec.run(ctxB)
	}()
	defer func() {
		stopB()
		<-ran
	}()

	// Each container goes after its expiry, and within one period (plus the
	// time to remove it) of it.
	slack := dockertest.Scale(3 * time.Second)
	goneAt := map[string]time.Time{}
	deadline := time.Unix(last+1, 0).Add(rec.period + slack)
	for len(goneAt) < len(expires) && time.Now().Before(deadline) {
		for id := range expires {
			if _, ok := goneAt[id]; !ok && !exists(t, cli, id) {
				goneAt[id] = time.Now()
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	for id, e := range expires {
		at, ok := goneAt[id]
		switch {
		case !ok:
			t.Errorf("container %s still there %v after its expiry", shortID(id), time.Since(time.Unix(e, 0)).Round(time.Millisecond))
		case at.Unix() < e:
			t.Errorf("container %s removed at %d, before its expiry %d", shortID(id), at.Unix(), e)
		case at.After(time.Unix(e+1, 0).Add(rec.period + slack)):
			t.Errorf("container %s removed %v after its expiry", shortID(id), at.Sub(time.Unix(e, 0)))
		}
	}
	// Reconcilers of other test binaries on the engine may remove some
	// first, and B removes theirs: the count is only logged.
	t.Logf("B counted %d expired removals; A had %d containers", b.metrics.reconciled[reasonExpired].Load(), len(expires))
	t.Logf("A's %d containers lived %v at most after their expiry", len(expires), latest(goneAt, expires))
	dockertest.AssertNoContainers(t, cli, ownerA)
}

func latest(goneAt map[string]time.Time, expires map[string]int64) time.Duration {
	var worst time.Duration
	for id, at := range goneAt {
		worst = max(worst, at.Sub(time.Unix(expires[id], 0)))
	}
	return worst.Round(time.Millisecond)
}
