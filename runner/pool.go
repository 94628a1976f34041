package runner

import (
	"context"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// pool keeps containers created, started and ready (harness waiting for
// code, libraries preloaded for FlavorData) so that a request does not pay
// for a container's start. Each pooled container serves one request at most
// and is then discarded like any other; the pool only moves the cost of
// creating it off the request path.
//
// The split between flavors follows demand: an exponentially weighted count
// of recent requests per flavor sets each flavor's share of the pool.
type pool struct {
	r    *Runner
	size int
	log  *logrus.Entry

	mu sync.Mutex // guards the fields below
	// idle holds ready sandboxes per flavor, oldest first.
	idle map[string][]*sandbox
	// filling counts prepares under way per flavor.
	filling map[string]int
	// demand is the weighted count of recent requests per flavor.
	demand map[string]float64
	// backoffUntil delays refills after a failure.
	backoffUntil time.Time

	kick chan struct{}

	hits, misses, refills, refillFailures, retired atomic.Int64
}

// Pool tuning.
const (
	// demandDecay is how much each request's weight fades per new request.
	demandDecay = 0.9
	// maxConcurrentFills bounds container starts the pool makes at once, so
	// refilling never takes every core from running executions.
	maxConcurrentFills = 2
	// janitorPeriod is how often idle sandboxes are checked for death and age.
	janitorPeriod = 2 * time.Second
	// refillBackoff follows a failed refill.
	refillBackoff = 2 * time.Second
)

var flavors = []string{FlavorNone, FlavorData}

func newPool(r *Runner, size int) *pool {
	return &pool{
		r:       r,
		size:    size,
		log:     logrus.WithField("component", "pool"),
		idle:    map[string][]*sandbox{},
		filling: map[string]int{},
		demand:  map[string]float64{FlavorNone: 1, FlavorData: 1},
		kick:    make(chan struct{}, 1),
	}
}

// take returns an idle sandbox for flavor, or nil when none is ready. Code
// that needs the libraries may take a bare sandbox when no data sandbox is
// idle: importing them there costs what a cold data sandbox would, without
// the container start. Plain code never takes a data sandbox: at saturation
// that would throw away the CPU spent preloading it.
func (p *pool) take(flavor string) *sandbox {
	p.mu.Lock()
	for f := range p.demand {
		p.demand[f] *= demandDecay
	}
	p.demand[flavor]++
	order := []string{flavor}
	if flavor == FlavorData {
		order = append(order, FlavorNone)
	}
	image := p.r.Image()
	var got *sandbox
	var dead []*sandbox
	for _, f := range order {
		for len(p.idle[f]) > 0 && got == nil {
			sb := p.idle[f][0]
			p.idle[f] = p.idle[f][1:]
			if sb.alive() && sb.image == image {
				got = sb
			} else {
				dead = append(dead, sb)
			}
		}
		if got != nil {
			break
		}
	}
	p.mu.Unlock()
	for _, sb := range dead {
		p.retired.Add(1)
		p.r.discard(context.Background(), sb)
	}
	if got != nil {
		p.hits.Add(1)
	} else {
		p.misses.Add(1)
	}
	p.signal()
	return got
}

func (p *pool) signal() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// targets splits the pool size between flavors by demand; with room for
// both, each keeps at least one so the first request of either kind is warm.
func (p *pool) targetsLocked() map[string]int {
	t := map[string]int{}
	total := p.demand[FlavorNone] + p.demand[FlavorData]
	data := int(math.Round(float64(p.size) * p.demand[FlavorData] / total))
	if p.size >= 2 {
		data = min(max(data, 1), p.size-1)
	}
	t[FlavorData] = data
	t[FlavorNone] = p.size - data
	return t
}

// nextFillLocked picks the flavor furthest below its target, or "".
func (p *pool) nextFillLocked() string {
	if time.Now().Before(p.backoffUntil) {
		return ""
	}
	inflight := 0
	for _, n := range p.filling {
		inflight += n
	}
	if inflight >= maxConcurrentFills {
		return ""
	}
	targets := p.targetsLocked()
	best, bestDeficit := "", 0
	for _, f := range flavors {
		if d := targets[f] - len(p.idle[f]) - p.filling[f]; d > bestDeficit {
			best, bestDeficit = f, d
		}
	}
	return best
}

// loop refills the pool and retires dead or old sandboxes until ctx ends.
func (p *pool) loop(ctx context.Context, wg *sync.WaitGroup) {
	ticker := time.NewTicker(janitorPeriod)
	defer ticker.Stop()
	for {
		p.startFills(ctx, wg)
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		case <-ticker.C:
			p.janitor()
		}
	}
}

func (p *pool) startFills(ctx context.Context, wg *sync.WaitGroup) {
	for {
		p.mu.Lock()
		f := p.nextFillLocked()
		if f != "" {
			p.filling[f]++
		}
		p.mu.Unlock()
		if f == "" {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.fill(ctx, f)
		}()
	}
}

func (p *pool) fill(ctx context.Context, flavor string) {
	sb, err := p.r.prepare(ctx, roleWarm, flavor)
	p.mu.Lock()
	p.filling[flavor]--
	if err != nil {
		p.backoffUntil = time.Now().Add(refillBackoff)
		p.mu.Unlock()
		if ctx.Err() == nil {
			p.refillFailures.Add(1)
			p.log.WithError(err).WithField(logFlavor, flavor).Warn("pool refill failed")
		}
		p.signal()
		return
	}
	if ctx.Err() != nil {
		p.mu.Unlock()
		p.r.discard(ctx, sb)
		return
	}
	if sb.image != p.r.Image() {
		// The image was switched while this one was getting ready.
		p.mu.Unlock()
		p.retired.Add(1)
		p.r.discard(ctx, sb)
		p.signal()
		return
	}
	sb.readyAt = time.Now()
	p.idle[flavor] = append(p.idle[flavor], sb)
	p.mu.Unlock()
	p.refills.Add(1)
	p.signal()
}

// janitor retires idle sandboxes whose container died or that are older
// than PoolMaxAge.
func (p *pool) janitor() {
	maxAge := p.r.opts.PoolMaxAge
	if n := p.retire(func(sb *sandbox) bool { return !sb.alive() || time.Since(sb.readyAt) > maxAge }); n > 0 {
		p.signal()
	}
}

// retireStale discards idle sandboxes whose image is not image (SetImage)
// and wakes the loop to refill with the new one.
func (p *pool) retireStale(image string) {
	n := p.retire(func(sb *sandbox) bool { return sb.image != image })
	p.log.WithFields(logrus.Fields{logImage: image, "retired": n}).Info("pool retired sandboxes of the previous image")
	p.signal()
}

// retire removes the idle sandboxes for which drop is true from the pool
// and discards them; it returns how many.
func (p *pool) retire(drop func(*sandbox) bool) int {
	var out []*sandbox
	p.mu.Lock()
	for _, f := range flavors {
		keep := p.idle[f][:0]
		for _, sb := range p.idle[f] {
			if drop(sb) {
				out = append(out, sb)
				continue
			}
			keep = append(keep, sb)
		}
		p.idle[f] = keep
	}
	p.mu.Unlock()
	for _, sb := range out {
		p.retired.Add(1)
		p.r.discard(context.Background(), sb)
	}
	return len(out)
}

// idleCount is how many sandboxes of flavor are ready.
func (p *pool) idleCount(flavor string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle[flavor])
}

// drain discards every idle sandbox (shutdown).
func (p *pool) drain() {
	p.mu.Lock()
	var out []*sandbox
	for _, f := range flavors {
		out = append(out, p.idle[f]...)
		p.idle[f] = nil
	}
	p.mu.Unlock()
	for _, sb := range out {
		p.r.discard(context.Background(), sb)
	}
}

// PoolStats describes the warm pool.
type PoolStats struct {
	Size           int            `json:"size"`
	Idle           map[string]int `json:"idle"`
	Filling        map[string]int `json:"filling"`
	Targets        map[string]int `json:"targets"`
	Hits           int64          `json:"hits"`
	Misses         int64          `json:"misses"`
	Refills        int64          `json:"refills"`
	RefillFailures int64          `json:"refill_failures"`
	Retired        int64          `json:"retired"`
	Containers     []WarmInfo     `json:"containers"`
}

// WarmInfo describes one idle pooled container.
type WarmInfo struct {
	ID          string  `json:"id"`
	Flavor      string  `json:"flavor"`
	AgeSeconds  float64 `json:"age_seconds"`
	MemoryBytes int64   `json:"memory_bytes"`
	PreloadMS   float64 `json:"preload_ms"`
}

func (p *pool) stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := PoolStats{
		Size:           p.size,
		Idle:           map[string]int{},
		Filling:        map[string]int{},
		Targets:        p.targetsLocked(),
		Hits:           p.hits.Load(),
		Misses:         p.misses.Load(),
		Refills:        p.refills.Load(),
		RefillFailures: p.refillFailures.Load(),
		Retired:        p.retired.Load(),
		Containers:     []WarmInfo{},
	}
	for _, f := range flavors {
		s.Idle[f] = len(p.idle[f])
		s.Filling[f] = p.filling[f]
		for _, sb := range p.idle[f] {
			s.Containers = append(s.Containers, WarmInfo{
				ID:          shortID(sb.id),
				Flavor:      f,
				AgeSeconds:  math.Round(time.Since(sb.readyAt).Seconds()*10) / 10,
				MemoryBytes: sb.ready.MemoryBytes,
				PreloadMS:   sb.ready.PreloadMS,
			})
		}
	}
	sort.Slice(s.Containers, func(i, j int) bool { return s.Containers[i].ID < s.Containers[j].ID })
	return s
}
