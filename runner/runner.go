package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/internal/logctx"
	"github.com/pyexec/pyexec/policy"
)

// Engine is the part of the Docker client the runner uses; *client.Client
// (github.com/moby/moby/client) implements it. Tests use fakes only for
// rare engine failures.
type Engine interface {
	ContainerCreate(ctx context.Context, options client.ContainerCreateOptions) (client.ContainerCreateResult, error)
	ContainerAttach(ctx context.Context, container string, options client.ContainerAttachOptions) (client.ContainerAttachResult, error)
	ContainerStart(ctx context.Context, container string, options client.ContainerStartOptions) (client.ContainerStartResult, error)
	ContainerKill(ctx context.Context, container string, options client.ContainerKillOptions) (client.ContainerKillResult, error)
	ContainerRemove(ctx context.Context, container string, options client.ContainerRemoveOptions) (client.ContainerRemoveResult, error)
	ContainerInspect(ctx context.Context, container string, options client.ContainerInspectOptions) (client.ContainerInspectResult, error)
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
	ImageInspect(ctx context.Context, image string, opts ...client.ImageInspectOption) (client.ImageInspectResult, error)
	Info(ctx context.Context, options client.InfoOptions) (client.SystemInfoResult, error)
	// Dialer opens a new connection to the engine: a liveness check that a
	// kept-alive connection to a stopping engine cannot fake.
	Dialer() func(context.Context) (net.Conn, error)
}

// Runner runs executions in single-use containers. See the package doc.
type Runner struct {
	cli      Engine
	opts     Options
	instance string
	slots    chan struct{}
	queued   atomic.Int64

	// goroutines counts the calls in progress (Run, Validate, ...) and
	// every goroutine the runner owns (pool loop and fills, reconciler,
	// stream readers, discards, OnNoImage); Close waits for it.
	goroutines tracker

	mu sync.Mutex // guards stop
	// stop ends the background loops started by Start; nil before Start.
	stop context.CancelFunc
	// loops counts the background loops Start started (reconciler, pool),
	// so that a caller can wait for them to return once their context has
	// ended, without waiting for the sandboxes' goroutines. The goroutines
	// themselves are tracked by goroutines like every other.
	loops sync.WaitGroup

	metrics *counters
	hist    histograms

	// image is the image new sandboxes are created from (SetImage).
	image atomic.Pointer[string]
	// ready holds the versions the latest data sandbox reported.
	ready lastReady

	// policyJSON is Options.Policy as sent to the harness (nil: off).
	policyJSON json.RawMessage
	// validator is the long-lived parse-only process behind Validate.
	validator validator

	// pendingRemovals counts discards not finished yet.
	pendingRemovals atomic.Int64

	// owned holds the IDs of the containers this runner created and has not
	// tried to remove yet (tracked); the reconciler leaves them alone.
	owned idSet
	// noImageBusy is set while Options.OnNoImage runs.
	noImageBusy atomic.Bool

	// pool is nil when Options.PoolSize is 0.
	pool *pool

	// sessions is the session table (session.go).
	sessions *sessionTable
}

// Stats is a snapshot of the runner's counters.
type Stats struct {
	Instance string `json:"instance"`
	// Image is the image new sandboxes are created from.
	Image             string `json:"image"`
	MaxWorkers        int    `json:"max_workers"`
	MaxQueue          int    `json:"max_queue"`
	Running           int64  `json:"running"`
	Queued            int64  `json:"queued"`
	ContainersCreated int64  `json:"containers_created"`
	ContainersRemoved int64  `json:"containers_removed"`
	Executions        int64  `json:"executions"`
	// Pool is nil when there is no warm pool.
	Pool *PoolStats `json:"pool"`
}

// New returns a Runner. It does not touch the engine; call Reap at start.
func New(cli Engine, opts Options) (*Runner, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("boot id: %w", err)
	}
	r := &Runner{
		cli:      cli,
		opts:     o,
		instance: hex.EncodeToString(b[:]),
		slots:    make(chan struct{}, o.MaxWorkers),
		metrics:  newCounters(),
		hist:     newHistograms(),
		sessions: newSessionTable(o.MaxWorkers),
	}
	r.image.Store(&o.Image)
	if o.PoolSize > 0 {
		r.pool = newPool(o.PoolSize, poolDeps{
			prepare: func(ctx context.Context, preload string) (*sandbox, error) {
				return r.prepare(ctx, roleWarm, preload)
			},
			discard: r.discard,
			image:   r.Image,
			goFn:    r.goroutines.Go,
			maxAge:  o.PoolMaxAge,
		})
	}
	if o.Policy != nil {
		if r.policyJSON, err = json.Marshal(o.Policy); err != nil {
			return nil, fmt.Errorf("runner: encode policy: %w", err)
		}
	}
	if o.Registerer != nil {
		if err := r.registerMetrics(o.Registerer); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Start starts the background loops: the reconciler (always) and the warm
// pool's refill loop (if there is a pool). They run until Close or until
// ctx ends; ctx carries their logger. After Close, or a second time, Start
// does nothing.
func (r *Runner) Start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stop != nil || !r.goroutines.enter() {
		return
	}
	defer r.goroutines.leave()
	ctx, r.stop = context.WithCancel(ctx)
	rc := r.newReconciler() // reconcile.go
	r.loops.Add(1)
	r.goroutines.Go(func() {
		defer r.loops.Done()
		rc.run(ctx)
	})
	if r.pool != nil {
		r.loops.Add(1)
		r.pool.Start(ctx, r.loops.Done)
	}
	r.loops.Add(1)
	r.goroutines.Go(func() {
		defer r.loops.Done()
		r.runSessionJanitor(ctx) // session.go
	})
}

// Instance is this runner's boot ID, the value of LabelInstance on every
// container it creates.
func (r *Runner) Instance() string { return r.instance }

// tracked reports whether the container id was created by this runner and
// its removal not tried yet: an execution, a pool slot or the validator owns
// it. A container whose removal failed is no longer tracked: the reconciler
// removes it later.
func (r *Runner) tracked(id string) bool { return r.owned.has(id) }

// Options returns the options in force, defaults applied; Image is the
// image in use (see SetImage).
func (r *Runner) Options() Options {
	o := r.opts
	o.Image = r.Image()
	return o
}

// Stats returns the runner's counters.
func (r *Runner) Stats() Stats {
	return Stats{
		Instance:          r.instance,
		Image:             r.Image(),
		MaxWorkers:        r.opts.MaxWorkers,
		MaxQueue:          r.opts.MaxQueue,
		Running:           r.metrics.running.Load(),
		Queued:            r.queued.Load(),
		ContainersCreated: r.metrics.createdTotal(),
		ContainersRemoved: r.metrics.removed.Load(),
		Executions:        r.metrics.completed.Load(),
		Pool:              r.poolStats(),
	}
}

func (r *Runner) poolStats() *PoolStats {
	if r.pool == nil {
		return nil
	}
	s := r.pool.stats()
	return &s
}

// Run checks the code without running it (Validate), then executes it in a
// fresh container and returns what it produced. A Result with a non-success
// Status is not an error, nor is code refused by the check (Result.Rejected:
// nothing ran). Errors mean the service could not run the code: ErrBusy,
// ErrEngineDown, ErrNoImage, ErrSandboxVanished, ErrClosed, ctx errors.
// When the validator is unavailable for another reason, the sandbox checks
// the code itself before running it. The container is removed on every
// path, after Run returns.
func (r *Runner) Run(ctx context.Context, req Request) (Result, error) {
	return r.run(ctx, req, true)
}

// run is Run; precheck false skips the validator, so that the sandbox
// checks the policy (tests compare the two).
func (r *Runner) run(ctx context.Context, req Request, precheck bool) (Result, error) {
	if req.Timeout <= 0 || req.Timeout > r.opts.MaxTimeout {
		return Result{}, fmt.Errorf("runner: timeout %v outside (0, %v]", req.Timeout, r.opts.MaxTimeout)
	}
	if err := r.checkInputFiles(req.Files); err != nil {
		return Result{}, err
	}
	if !r.goroutines.enter() {
		return Result{}, ErrClosed
	}
	defer r.goroutines.leave()
	if precheck {
		res, err := r.precheck(ctx, &req)
		if err != nil || res != nil {
			return derefResult(res), err
		}
	}
	queuedAt := time.Now()
	release, err := r.acquire(ctx)
	if err != nil {
		return Result{}, err
	}
	defer release()
	r.hist.queueWait.Observe(time.Since(queuedAt).Seconds())
	r.metrics.running.Add(1)
	defer r.metrics.running.Add(-1)

	preload := PreloadFor(req.Code)
	log := logctx.From(ctx).WithField(logPreload, preloadName(preload))
	t0 := time.Now()
	var sb *sandbox
	if r.pool != nil {
		sb = r.pool.take(ctx, preload, req.Tenant)
	}
	if sb != nil {
		sb.warm = true
	} else {
		// Cold: a bare sandbox, so that only what the code imports is
		// imported (preloading would cost the same, on the same path).
		sb, err = r.prepare(ctx, roleExec, PreloadNone)
		if err != nil {
			return Result{}, err
		}
	}
	defer r.discard(ctx, sb)
	if sb.warm {
		defer r.pool.signal() // refill once the answer is out (pool.take)
	}
	log.WithFields(logrus.Fields{logContainerID: shortID(sb.id), logDurationMS: ms(time.Since(t0)), "warm": sb.warm}).
		Debug("sandbox ready")
	res, err := r.exec(ctx, sb, req)
	if err == nil {
		r.metrics.completed.Add(1)
		r.hist.execDuration.Observe(res.ExecutionTime.Seconds())
		res.Image = sb.image
	}
	return res, err
}

// precheck asks the validator about the code. It returns the finished
// Result of code that must not run, or nil with req.policyChecked set when
// the validator passed it. When the validator cannot answer, the engine or
// image errors end the run (the sandbox would meet them too); any other
// failure leaves the check to the sandbox.
func (r *Runner) precheck(ctx context.Context, req *Request) (*Result, error) {
	v, err := r.validate(ctx, req.Code)
	if err == nil && !v.Valid && r.policyJSON == nil && v.Errors[0].Rule != policy.RuleSyntax {
		// Without a policy only a syntax error refuses code; code the
		// checker cannot walk (too deep) is left to Python to compile.
		return nil, nil
	}
	switch {
	case err == nil && !v.Valid:
		res := rejectedResult(v.Errors, FlavorValidator, r.opts.MemoryBytes)
		return &res, nil
	case err == nil:
		req.policyChecked = true
		return nil, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, ErrEngineDown), errors.Is(err, ErrNoImage), errors.Is(err, ErrClosed):
		return nil, err
	}
	logctx.From(ctx).WithError(err).Warn("pre-check unavailable; the sandbox will check")
	return nil, nil
}

func derefResult(res *Result) Result {
	if res == nil {
		return Result{}
	}
	return *res
}

// acquire admits one execution: a free worker at once, else a place in the
// bounded queue until a worker frees up or ctx ends.
func (r *Runner) acquire(ctx context.Context) (func(), error) {
	release := func() { <-r.slots }
	select {
	case r.slots <- struct{}{}:
		return release, nil
	default:
	}
	if r.queued.Add(1) > int64(r.opts.MaxQueue) {
		r.queued.Add(-1)
		return nil, ErrBusy
	}
	defer r.queued.Add(-1)
	select {
	case r.slots <- struct{}{}:
		return release, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// discard removes the sandbox's container in the background; Close waits
// for it. A harness that has answered, or whose stdin is closed, exits by
// itself within milliseconds: removing the container once it has exited
// costs the engine far less than killing a running one (about 100 ms of
// CPU on a small VM, a fifth of a whole container's life), so discard
// closes stdin and waits up to exitGrace for the stream to end before the
// forced removal.
func (r *Runner) discard(ctx context.Context, sb *sandbox) {
	r.pendingRemovals.Add(1)
	r.goroutines.Go(func() {
		defer r.pendingRemovals.Add(-1)
		if sb.conn.Conn != nil && sb.streamEnd != nil {
			_ = sb.conn.CloseWrite()
			t := time.NewTimer(exitGrace)
			select {
			case <-sb.streamEnd:
			case <-t.C:
			}
			t.Stop()
		}
		if sb.conn.Conn != nil {
			sb.conn.Close()
		}
		cctx, cancel := r.cleanupContext(ctx)
		defer cancel()
		r.remove(cctx, sb.id)
		close(sb.quit)
	})
}

// exitGrace bounds how long discard waits for a container to exit by
// itself before removing it by force.
const exitGrace = time.Second

// remove force-removes a container; NotFound counts as done. Either way the
// container is no longer tracked: one that could not be removed is left to
// the reconciler.
func (r *Runner) remove(ctx context.Context, id string) {
	start := time.Now()
	_, err := r.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	r.owned.remove(id)
	if err != nil && !errdefs.IsNotFound(err) {
		r.metrics.removeFailures.Add(1)
		logctx.From(ctx).WithError(classify(opRemove, err)).WithField(logContainerID, shortID(id)).Warn("remove container")
		return
	}
	r.metrics.removed.Add(1)
	logctx.From(ctx).WithFields(logrus.Fields{logContainerID: shortID(id), logDurationMS: ms(time.Since(start))}).
		Debug("container removed")
}

// kill stops a container at once; removal follows in discard. A container
// already gone or stopped is no error; an engine that cannot be reached is
// (classified).
func (r *Runner) kill(ctx context.Context, sb *sandbox) error {
	cctx, cancel := r.cleanupContext(ctx)
	defer cancel()
	_, err := r.cli.ContainerKill(cctx, sb.id, client.ContainerKillOptions{Signal: "SIGKILL"})
	if err == nil || errdefs.IsNotFound(err) || errdefs.IsConflict(err) {
		return nil
	}
	err = classify(opKill, err)
	logctx.From(ctx).WithError(err).WithField(logContainerID, shortID(sb.id)).Debug("kill container")
	return err
}

// cleanupContext is for work that must happen even if ctx is gone.
func (r *Runner) cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), r.opts.CleanupTimeout)
}

// noImage reports a create that found no image to Options.OnNoImage, in a
// tracked goroutine, one call at a time.
func (r *Runner) noImage(image string) {
	if r.opts.OnNoImage == nil || !r.noImageBusy.CompareAndSwap(false, true) {
		return
	}
	r.goroutines.Go(func() {
		defer r.noImageBusy.Store(false)
		r.opts.OnNoImage(image)
	})
}

// Reap removes containers of this owner left by an earlier run of the
// service (another instance ID). Called once at start.
func (r *Runner) Reap(ctx context.Context) (int, error) {
	list, err := r.cli.ContainerList(ctx, client.ContainerListOptions{
		All: true,
		Filters: make(client.Filters).Add("label",
			LabelManaged+"=1",
			LabelOwner+"="+r.opts.Owner,
		),
	})
	if err != nil {
		return 0, classify(opList, err)
	}
	n, sessions := 0, 0
	for _, c := range list.Items {
		if c.Labels[LabelInstance] == r.instance {
			continue
		}
		r.remove(ctx, c.ID)
		n++
		if c.Labels[LabelRole] == roleSession {
			sessions++
		}
	}
	if sessions > 0 {
		logctx.From(ctx).WithField("sessions", sessions).Warn("removed sessions of the previous instance")
	}
	return n, nil
}

// Close stops admitting work and the background loops, and waits for every
// container the runner started to be removed, or for ctx to end. Last, it
// removes any container still carrying this instance's label: one whose
// create request was cut short by a cancelled context may exist without
// the runner knowing its ID, and one whose removal failed is left there.
func (r *Runner) Close(ctx context.Context) error {
	already := r.goroutines.close()
	r.mu.Lock()
	stop := r.stop
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if !already {
			if stop != nil {
				stop()
			}
			if r.pool != nil {
				r.pool.Close(ctx)
			}
			r.closeSessions(ctx) // session.go
			r.validator.close(r)
		}
		r.goroutines.wait()
		r.sweep(ctx)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("runner close: %w", ctx.Err())
	}
}

// sweep removes every container of this instance that is still there.
func (r *Runner) sweep(ctx context.Context) {
	list, err := r.cli.ContainerList(ctx, client.ContainerListOptions{
		All: true,
		Filters: make(client.Filters).Add("label",
			LabelManaged+"=1",
			LabelOwner+"="+r.opts.Owner,
			LabelInstance+"="+r.instance,
		),
	})
	if err != nil {
		logctx.From(ctx).WithError(classify(opList, err)).Warn("list containers left at close")
		return
	}
	for _, c := range list.Items {
		logctx.From(ctx).WithField(logContainerID, shortID(c.ID)).Warn("removing container left at close")
		r.remove(ctx, c.ID)
	}
}

// Wait blocks until no container removal is pending (for tests and
// benchmarks that count containers).
func (r *Runner) Wait() {
	for r.pendingRemovals.Load() > 0 {
		time.Sleep(5 * time.Millisecond)
	}
}

// Ping checks that the engine answers and the image is present.
func (r *Runner) Ping(ctx context.Context) error {
	if _, err := r.cli.Info(ctx, client.InfoOptions{}); err != nil {
		return fmt.Errorf("%w: %w", ErrEngineDown, err)
	}
	image := r.Image()
	if _, err := r.cli.ImageInspect(ctx, image); err != nil {
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("%w: %s", ErrNoImage, image)
		}
		return classify(opImage, err)
	}
	return nil
}

// tracker counts calls in progress and goroutines, so that Close can wait
// for all of them: the runner's one way to track goroutines.
type tracker struct {
	mu     sync.Mutex // guards closed; orders wg.Add in enter against wait
	closed bool
	wg     sync.WaitGroup
}

// enter counts a call in, unless the runner is closed.
func (t *tracker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	return true
}

// leave counts a call out.
func (t *tracker) leave() { t.wg.Done() }

// Go runs fn in a counted goroutine. The caller must itself be counted (a
// call between enter and leave, or a goroutine started by Go), so that the
// count cannot be zero while wait runs.
func (t *tracker) Go(fn func()) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		fn()
	}()
}

// close refuses further calls; it reports whether it was closed already.
func (t *tracker) close() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	already := t.closed
	t.closed = true
	return already
}

// wait blocks until every call and goroutine has ended.
func (t *tracker) wait() { t.wg.Wait() }

// idSet is a set of container IDs, safe for concurrent use.
type idSet struct {
	mu  sync.Mutex // guards ids
	ids map[string]struct{}
}

func (s *idSet) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil {
		s.ids = map[string]struct{}{}
	}
	s.ids[id] = struct{}{}
}

func (s *idSet) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ids, id)
}

func (s *idSet) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ids[id]
	return ok
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
