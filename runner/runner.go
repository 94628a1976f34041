package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/internal/logctx"
)

// Errors callers branch on.
var (
	// ErrBusy means every worker is busy and the queue is full.
	ErrBusy = errors.New("all workers busy and the queue is full")
	// ErrEngineDown means the Docker engine did not answer.
	ErrEngineDown = errors.New("docker engine unavailable")
	// ErrNoImage means the analytics image is not in the engine.
	ErrNoImage = errors.New("analytics image not available")
	// ErrClosed means the runner is shutting down.
	ErrClosed = errors.New("runner closed")
)

// Engine is the part of the Docker client the runner uses; *client.Client
// implements it. Tests use fakes only for rare engine failures.
type Engine interface {
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerAttach(ctx context.Context, container string, options container.AttachOptions) (types.HijackedResponse, error)
	ContainerStart(ctx context.Context, container string, options container.StartOptions) error
	ContainerKill(ctx context.Context, container, signal string) error
	ContainerRemove(ctx context.Context, container string, options container.RemoveOptions) error
	ContainerInspect(ctx context.Context, container string) (container.InspectResponse, error)
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ImageInspect(ctx context.Context, image string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	Info(ctx context.Context) (system.Info, error)
}

// Runner runs executions in single-use containers. See the package doc.
type Runner struct {
	cli      Engine
	opts     Options
	instance string
	slots    chan struct{}
	queued   atomic.Int64

	mu     sync.Mutex // guards closed, and orders wg.Add against Close's wg.Wait
	closed bool
	// wg counts Run calls in progress and the goroutines the runner owns
	// (stream readers, removals); those start only inside a counted Run.
	wg      sync.WaitGroup
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

	// pool is nil when Options.PoolSize is 0.
	pool *pool
	// stopPool ends the pool's loop (guarded by mu); poolWG counts its
	// goroutines.
	stopPool context.CancelFunc
	poolWG   sync.WaitGroup
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
	}
	r.image.Store(&o.Image)
	if o.PoolSize > 0 {
		r.pool = newPool(r, o.PoolSize)
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

// Start starts the warm pool's refill loop (if there is a pool); it runs
// until Close. ctx carries the logger; its end also stops the loop. After
// Close, Start does nothing.
func (r *Runner) Start(ctx context.Context) {
	if r.pool == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.stopPool != nil {
		return
	}
	ctx, r.stopPool = context.WithCancel(ctx)
	r.poolWG.Add(1)
	go func() {
		defer r.poolWG.Done()
		r.pool.loop(ctx, &r.poolWG)
	}()
}

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

// Run executes one request in a fresh container and returns what it produced.
// A Result with a non-success Status is not an error: errors mean the service
// could not run the code (ErrBusy, ErrEngineDown, ErrNoImage, ctx errors).
// The container is removed on every path, after Run returns.
func (r *Runner) Run(ctx context.Context, req Request) (Result, error) {
	if req.Timeout <= 0 {
		return Result{}, errors.New("runner: timeout must be positive")
	}
	if !r.enter() {
		return Result{}, ErrClosed
	}
	defer r.wg.Done()
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
		sb = r.pool.take(preload)
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

// enter counts a Run in, unless the runner is closed.
func (r *Runner) enter() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	return true
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
	r.wg.Add(1)
	r.pendingRemovals.Add(1)
	go func() {
		defer r.wg.Done()
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
	}()
}

// exitGrace bounds how long discard waits for a container to exit by
// itself before removing it by force.
const exitGrace = time.Second

// remove force-removes a container; NotFound counts as done.
func (r *Runner) remove(ctx context.Context, id string) {
	start := time.Now()
	err := r.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !errdefs.IsNotFound(err) {
		r.metrics.removeFailures.Add(1)
		logctx.From(ctx).WithError(err).WithField(logContainerID, shortID(id)).Warn("remove container")
		return
	}
	r.metrics.removed.Add(1)
	logctx.From(ctx).WithFields(logrus.Fields{logContainerID: shortID(id), logDurationMS: ms(time.Since(start))}).
		Debug("container removed")
}

// kill stops a container at once; removal follows in discard.
func (r *Runner) kill(ctx context.Context, sb *sandbox) {
	cctx, cancel := r.cleanupContext(ctx)
	defer cancel()
	if err := r.cli.ContainerKill(cctx, sb.id, "SIGKILL"); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsConflict(err) {
		logctx.From(ctx).WithError(err).WithField(logContainerID, shortID(sb.id)).Debug("kill container")
	}
}

// cleanupContext is for work that must happen even if ctx is gone.
func (r *Runner) cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), r.opts.CleanupTimeout)
}

// classify maps engine errors to the runner's sentinels.
func (r *Runner) classify(err error) error {
	switch {
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("%w: %w", ErrEngineDown, err)
	case errdefs.IsNotFound(err):
		return fmt.Errorf("%w: %w", ErrNoImage, err)
	}
	return err
}

// Reap removes containers of this owner left by an earlier run of the
// service (another instance ID). Called once at start.
func (r *Runner) Reap(ctx context.Context) (int, error) {
	list, err := r.cli.ContainerList(ctx, container.ListOptions{
		All: true,
		Filters: filters.NewArgs(
			filters.Arg("label", LabelManaged+"=1"),
			filters.Arg("label", LabelOwner+"="+r.opts.Owner),
		),
	})
	if err != nil {
		return 0, r.classify(fmt.Errorf("list containers: %w", err))
	}
	n := 0
	for _, c := range list {
		if c.Labels[LabelInstance] == r.instance {
			continue
		}
		r.remove(ctx, c.ID)
		n++
	}
	return n, nil
}

// Close stops admitting work and waits for every container the runner
// started to be removed, or for ctx to end. Last, it removes any container
// still carrying this instance's label: one whose create request was cut
// short by a cancelled context may exist without the runner knowing its ID.
func (r *Runner) Close(ctx context.Context) error {
	r.mu.Lock()
	already := r.closed
	r.closed = true
	stopPool := r.stopPool
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		if r.pool != nil && !already {
			if stopPool != nil {
				stopPool()
			}
			r.poolWG.Wait() // no fill or janitor runs past here
			r.pool.drain()
		}
		r.validator.close(r)
		r.wg.Wait()
		r.sweep(ctx)
		close(done)
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
	list, err := r.cli.ContainerList(ctx, container.ListOptions{
		All: true,
		Filters: filters.NewArgs(
			filters.Arg("label", LabelManaged+"=1"),
			filters.Arg("label", LabelOwner+"="+r.opts.Owner),
			filters.Arg("label", LabelInstance+"="+r.instance),
		),
	})
	if err != nil {
		logctx.From(ctx).WithError(err).Warn("list containers left at close")
		return
	}
	for _, c := range list {
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
	if _, err := r.cli.Info(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrEngineDown, err)
	}
	image := r.Image()
	if _, err := r.cli.ImageInspect(ctx, image); err != nil {
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("%w: %s", ErrNoImage, image)
		}
		return r.classify(err)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
