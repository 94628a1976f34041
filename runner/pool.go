package runner

import (
	"context"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/internal/logctx"
)

// pool keeps containers created, started and ready (harness waiting for
// code, some analytics libraries preloaded) so that a request does not pay
// for a container's start. Each pooled container serves one request at most
// and is then discarded like any other; the pool only moves the cost of
// creating it off the request path.
//
// Sandboxes are kept by preload (flavor.go). An exponentially weighted count
// of recent requests per preload sets each preload's share of the pool, so
// the pool converges on what the code actually imports: preloading more
// would cost CPU that a fresh container would not spend.
//
// The pool knows nothing of the Runner: it gets what it needs in poolDeps,
// runs its loop between Start and Close, and its goroutines are the
// runner's (poolDeps.goFn), so that the runner's Close waits for them.
type pool struct {
	size int
	deps poolDeps

	mu sync.Mutex // guards the fields below
	// log is the loop's logger, from Start's context.
	log *logrus.Entry
	// stop ends the loop (nil before Start); closed refuses new sandboxes.
	stop   context.CancelFunc
	closed bool
	// idle holds ready sandboxes per preload, oldest first.
	idle map[string][]*sandbox
	// filling counts prepares under way per preload.
	filling map[string]int
	// demand is the weighted count of recent requests per preload.
	demand map[string]float64
	// backoffUntil delays refills after a failure.
	backoffUntil time.Time
	// fair divides the idle sandboxes between tenants (fair.go).
	fair fairShare

	kick chan struct{}

	hits, misses, refills, refillFailures, retired atomic.Int64
	// fairCold counts the requests sent to a cold start because their
	// tenant was over its share of the pool (also counted in misses).
	fairCold atomic.Int64
}

// Pool tuning.
const (
	// demandDecay is how much each request's weight fades per new request.
	demandDecay = 0.9
	// demandFloor drops a preload from the demand table (PreloadNone and
	// PreloadFull stay, so the pool always has a generic data sandbox).
	demandFloor = 0.01
	// maxConcurrentFills bounds container starts the pool makes at once, so
	// refilling never takes every core from running executions.
	maxConcurrentFills = 2
	// janitorPeriod is how often idle sandboxes are checked for death and age.
	janitorPeriod = 2 * time.Second
	// refillBackoff follows a failed refill.
	refillBackoff = 2 * time.Second
	// surplusAge is how long a sandbox whose preload no longer has a place
	// in the pool stays idle (a superset may still serve) before it is
	// retired to make room.
	surplusAge = 10 * time.Second
)

// poolDeps is what the pool needs from its owner.
type poolDeps struct {
	// prepare makes a ready sandbox with preload.
	prepare func(ctx context.Context, preload string) (*sandbox, error)
	// discard removes a sandbox in the background.
	discard func(ctx context.Context, sb *sandbox)
	// image is the image new sandboxes are created from.
	image func() string
	// goFn runs a function in a goroutine its owner waits for at close.
	goFn func(func())
	// maxAge retires idle sandboxes older than this.
	maxAge time.Duration
}

func newPool(size int, deps poolDeps) *pool {
	return &pool{
		size:    size,
		deps:    deps,
		log:     logctx.From(context.Background()).WithField("component", "pool"),
		idle:    map[string][]*sandbox{},
		filling: map[string]int{},
		demand:  map[string]float64{PreloadNone: 1, PreloadFull: 1},
		kick:    make(chan struct{}, 1),
	}
}

// take returns an idle sandbox for code needing preload, or nil when none
// fits. The best fit is a sandbox with exactly that preload; then one that
// loaded more (the fewest extra libraries); then, for code that needs
// libraries, a bare one: importing them there costs what a cold sandbox
// would, without the container start. Plain code never takes a data
// sandbox: at saturation that would throw away the CPU spent preloading it.
//
// tenant is who asks (Request.Tenant): a tenant over its share of the pool
// gets nil (fair.go), and its request does not count in the demand that
// splits the pool between preloads.
func (p *pool) take(ctx context.Context, preload, tenant string) *sandbox {
	p.mu.Lock()
	if !p.fair.allowLocked(tenant, p.usableLocked(preload), p.size, time.Now()) {
		p.mu.Unlock()
		p.misses.Add(1)
		p.fairCold.Add(1)
		return nil
	}
	p.noteDemandLocked(preload)
	image := p.deps.image()
	var got *sandbox
	var dead []*sandbox
	for got == nil {
		key, ok := p.bestIdleLocked(preload)
		if !ok {
			break
		}
		sb := p.idle[key][0]
		p.idle[key] = p.idle[key][1:]
		if sb.alive() && sb.image == image {
			got = sb
		} else {
			dead = append(dead, sb)
		}
	}
	p.mu.Unlock()
	for _, sb := range dead {
		p.retired.Add(1)
		p.deps.discard(ctx, sb)
	}
	if got != nil {
		// The refill starts when this execution is done (Runner.Run): a
		// container start takes both cores for a moment here, and would
		// slow the execution it replaces.
		p.hits.Add(1)
	} else {
		p.misses.Add(1)
		p.signal()
	}
	return got
}

// usableLocked counts the idle sandboxes that take could give to code
// needing preload (bestIdleLocked's candidates).
func (p *pool) usableLocked(preload string) int {
	n := len(p.idle[PreloadNone])
	if preload == PreloadNone {
		return n
	}
	for key, list := range p.idle {
		if key == PreloadNone {
			continue
		}
		if ok, _ := covers(key, preload); ok {
			n += len(list)
		}
	}
	return n
}

func (p *pool) noteDemandLocked(preload string) {
	for k := range p.demand {
		p.demand[k] *= demandDecay
		if p.demand[k] < demandFloor && k != PreloadNone && k != PreloadFull {
			delete(p.demand, k)
		}
	}
	p.demand[preload]++
}

// bestIdleLocked picks the preload whose idle sandboxes fit want best (see
// take).
func (p *pool) bestIdleLocked(want string) (string, bool) {
	if len(p.idle[want]) > 0 {
		return want, true
	}
	if want == PreloadNone {
		return "", false
	}
	best, bestExtra := "", -1
	for key, list := range p.idle {
		if len(list) == 0 || key == PreloadNone {
			continue
		}
		if ok, extra := covers(key, want); ok && (bestExtra < 0 || extra < bestExtra || extra == bestExtra && key < best) {
			best, bestExtra = key, extra
		}
	}
	if bestExtra >= 0 {
		return best, true
	}
	if len(p.idle[PreloadNone]) > 0 {
		return PreloadNone, true
	}
	return "", false
}

func (p *pool) signal() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// targetsLocked splits the pool between preloads by demand. With room for
// both, bare sandboxes keep at least one place and data sandboxes at least
// one, so the first request of either kind is warm.
func (p *pool) targetsLocked() map[string]int {
	t := map[string]int{}
	var dataKeys []string
	var dataDemand float64
	for k, d := range p.demand {
		if k != PreloadNone {
			dataKeys = append(dataKeys, k)
			dataDemand += d
		}
	}
	total := p.demand[PreloadNone] + dataDemand
	bare := int(math.Round(float64(p.size) * p.demand[PreloadNone] / total))
	if p.size >= 2 {
		bare = min(max(bare, 1), p.size-1)
	}
	t[PreloadNone] = bare
	// The data places go by largest remainder, ties to the higher demand.
	places := p.size - bare
	sort.Slice(dataKeys, func(i, j int) bool {
		if a, b := p.demand[dataKeys[i]], p.demand[dataKeys[j]]; a != b {
			return a > b
		}
		return dataKeys[i] < dataKeys[j]
	})
	if places <= 0 || len(dataKeys) == 0 {
		return t
	}
	type share struct {
		key  string
		rest float64
	}
	shares := make([]share, 0, len(dataKeys))
	given := 0
	for _, k := range dataKeys {
		exact := float64(places) * p.demand[k] / dataDemand
		n := int(exact)
		if n > 0 {
			t[k] = n
		}
		given += n
		shares = append(shares, share{k, exact - float64(n)})
	}
	sort.SliceStable(shares, func(i, j int) bool { return shares[i].rest > shares[j].rest })
	for i := 0; given < places; i++ {
		t[shares[i%len(shares)].key]++
		given++
	}
	return t
}

// nextFillLocked picks the preload furthest below its target, or "" and
// false. The pool never holds more than its size: when it is full, a
// sandbox of a preload over its target that has been idle for surplusAge
// is returned in surplus, for the caller to retire first.
func (p *pool) nextFillLocked() (key string, surplus *sandbox, ok bool) {
	if time.Now().Before(p.backoffUntil) {
		return "", nil, false
	}
	inflight, held := 0, 0
	for _, n := range p.filling {
		inflight += n
	}
	for _, list := range p.idle {
		held += len(list)
	}
	if inflight >= maxConcurrentFills {
		return "", nil, false
	}
	targets := p.targetsLocked()
	bestDeficit := 0
	for k, target := range targets {
		if d := target - len(p.idle[k]) - p.filling[k]; d > bestDeficit || d == bestDeficit && d > 0 && k < key {
			key, bestDeficit = k, d
		}
	}
	if bestDeficit == 0 {
		return "", nil, false
	}
	if held+inflight < p.size {
		return key, nil, true
	}
	for k, list := range p.idle {
		if len(list) > targets[k] && time.Since(list[0].readyAt) >= surplusAge {
			surplus = list[0]
			p.idle[k] = list[1:]
			return key, surplus, true
		}
	}
	return "", nil, false
}

// Start starts the loop that refills the pool and retires dead or old
// sandboxes, until Close or the end of ctx; ctx carries the logger. done
// is called when the loop returns (at once if Start does nothing: after
// Close or a second time).
func (p *pool) Start(ctx context.Context, done func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.stop != nil {
		done()
		return
	}
	ctx, p.stop = context.WithCancel(ctx)
	p.log = logctx.From(ctx).WithField("component", "pool")
	p.deps.goFn(func() {
		defer done()
		p.loop(ctx)
	})
}

// Close stops the loop and discards every idle sandbox; a fill still under
// way discards its sandbox when it is ready. ctx carries the logger of the
// removals.
func (p *pool) Close(ctx context.Context) {
	p.mu.Lock()
	p.closed = true
	stop := p.stop
	p.mu.Unlock()
	if stop != nil {
		stop()
	}
	p.drain(ctx)
}

// loop refills the pool and retires dead or old sandboxes until ctx ends.
func (p *pool) loop(ctx context.Context) {
	ticker := time.NewTicker(janitorPeriod)
	defer ticker.Stop()
	for {
		p.startFills(ctx)
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		case <-ticker.C:
			p.janitor(ctx)
		}
	}
}

func (p *pool) startFills(ctx context.Context) {
	for {
		p.mu.Lock()
		key, surplus, ok := p.nextFillLocked()
		if ok {
			p.filling[key]++
		}
		p.mu.Unlock()
		if !ok {
			return
		}
		if surplus != nil {
			p.retired.Add(1)
			p.deps.discard(ctx, surplus)
		}
		p.deps.goFn(func() { p.fill(ctx, key) })
	}
}

func (p *pool) fill(ctx context.Context, preload string) {
	sb, err := p.deps.prepare(ctx, preload)
	p.mu.Lock()
	p.filling[preload]--
	if err != nil {
		p.backoffUntil = time.Now().Add(refillBackoff)
		log := p.log
		p.mu.Unlock()
		if ctx.Err() == nil {
			p.refillFailures.Add(1)
			log.WithError(err).WithField(logPreload, preload).Warn("pool refill failed")
		}
		p.signal()
		return
	}
	if ctx.Err() != nil || p.closed {
		p.mu.Unlock()
		p.deps.discard(ctx, sb)
		return
	}
	if sb.image != p.deps.image() {
		// The image was switched while this one was getting ready.
		p.mu.Unlock()
		p.retired.Add(1)
		p.deps.discard(ctx, sb)
		p.signal()
		return
	}
	sb.readyAt = time.Now()
	p.idle[preload] = append(p.idle[preload], sb)
	p.mu.Unlock()
	p.refills.Add(1)
	p.signal()
}

// janitor retires idle sandboxes whose container died or that are older
// than PoolMaxAge.
func (p *pool) janitor(ctx context.Context) {
	maxAge := p.deps.maxAge
	if n := p.retire(ctx, func(sb *sandbox) bool { return !sb.alive() || time.Since(sb.readyAt) > maxAge }); n > 0 {
		p.signal()
	}
}

// retireStale discards idle sandboxes whose image is not image (SetImage)
// and wakes the loop to refill with the new one.
func (p *pool) retireStale(ctx context.Context, image string) {
	n := p.retire(ctx, func(sb *sandbox) bool { return sb.image != image })
	logctx.From(ctx).WithFields(logrus.Fields{logImage: image, "retired": n}).Info("pool retired sandboxes of the previous image")
	p.signal()
}

// retire removes the idle sandboxes for which drop is true from the pool
// and discards them; it returns how many.
func (p *pool) retire(ctx context.Context, drop func(*sandbox) bool) int {
	var out []*sandbox
	p.mu.Lock()
	for k, list := range p.idle {
		keep := list[:0]
		for _, sb := range list {
			if drop(sb) {
				out = append(out, sb)
				continue
			}
			keep = append(keep, sb)
		}
		p.idle[k] = keep
	}
	p.mu.Unlock()
	for _, sb := range out {
		p.retired.Add(1)
		p.deps.discard(ctx, sb)
	}
	return len(out)
}

// idleCount is how many sandboxes of flavor are ready.
func (p *pool) idleCount(flavor string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for k, list := range p.idle {
		if FlavorOf(k) == flavor {
			n += len(list)
		}
	}
	return n
}

// drain discards every idle sandbox (shutdown).
func (p *pool) drain(ctx context.Context) {
	p.mu.Lock()
	var out []*sandbox
	for k, list := range p.idle {
		out = append(out, list...)
		delete(p.idle, k)
	}
	p.mu.Unlock()
	for _, sb := range out {
		p.deps.discard(ctx, sb)
	}
}

// PoolStats describes the warm pool. Idle, Filling and Targets count by
// flavor ("none", "data"); Preloads details each preload.
type PoolStats struct {
	Size           int                     `json:"size"`
	Idle           map[string]int          `json:"idle"`
	Filling        map[string]int          `json:"filling"`
	Targets        map[string]int          `json:"targets"`
	Preloads       map[string]PreloadStats `json:"preloads"`
	Hits           int64                   `json:"hits"`
	Misses         int64                   `json:"misses"`
	Refills        int64                   `json:"refills"`
	RefillFailures int64                   `json:"refill_failures"`
	Retired        int64                   `json:"retired"`
	// FairShareCold counts the requests that got a cold start because
	// their tenant (API key) was over its share of the pool.
	FairShareCold int64      `json:"fair_share_cold"`
	Containers    []WarmInfo `json:"containers"`
}

// PreloadStats is the pool's state for one preload ("none" stands for
// PreloadNone).
type PreloadStats struct {
	Idle    int     `json:"idle"`
	Filling int     `json:"filling"`
	Target  int     `json:"target"`
	Demand  float64 `json:"demand"`
}

// WarmInfo describes one idle pooled container.
type WarmInfo struct {
	ID          string  `json:"id"`
	Flavor      string  `json:"flavor"`
	Preload     string  `json:"preload"`
	AgeSeconds  float64 `json:"age_seconds"`
	MemoryBytes int64   `json:"memory_bytes"`
	PreloadMS   float64 `json:"preload_ms"`
}

// preloadName is how a preload appears in stats and logs.
func preloadName(p string) string {
	if p == PreloadNone {
		return FlavorNone
	}
	return p
}

func (p *pool) stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := PoolStats{
		Size:           p.size,
		Idle:           map[string]int{FlavorNone: 0, FlavorData: 0},
		Filling:        map[string]int{FlavorNone: 0, FlavorData: 0},
		Targets:        map[string]int{FlavorNone: 0, FlavorData: 0},
		Preloads:       map[string]PreloadStats{},
		Hits:           p.hits.Load(),
		Misses:         p.misses.Load(),
		Refills:        p.refills.Load(),
		RefillFailures: p.refillFailures.Load(),
		Retired:        p.retired.Load(),
		FairShareCold:  p.fairCold.Load(),
		Containers:     []WarmInfo{},
	}
	targets := p.targetsLocked()
	keys := map[string]bool{}
	for _, m := range []map[string]int{targets, p.filling} {
		for k := range m {
			keys[k] = true
		}
	}
	for k := range p.idle {
		keys[k] = true
	}
	for k := range keys {
		ps := PreloadStats{Idle: len(p.idle[k]), Filling: p.filling[k], Target: targets[k], Demand: math.Round(p.demand[k]*100) / 100}
		if ps == (PreloadStats{}) {
			continue
		}
		s.Preloads[preloadName(k)] = ps
		f := FlavorOf(k)
		s.Idle[f] += ps.Idle
		s.Filling[f] += ps.Filling
		s.Targets[f] += ps.Target
		for _, sb := range p.idle[k] {
			s.Containers = append(s.Containers, WarmInfo{
				ID:          shortID(sb.id),
				Flavor:      f,
				Preload:     preloadName(k),
				AgeSeconds:  math.Round(time.Since(sb.readyAt).Seconds()*10) / 10,
				MemoryBytes: sb.ready.MemoryBytes,
				PreloadMS:   sb.ready.PreloadMS,
			})
		}
	}
	sort.Slice(s.Containers, func(i, j int) bool { return s.Containers[i].ID < s.Containers[j].ID })
	return s
}
