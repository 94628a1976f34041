package runner

import (
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names of package runner: pyexec_*, base units, and only
// low-cardinality labels (role, flavor), never IDs. Where the runner already
// counts something for Stats, the metric reads that count (CounterFunc,
// GaugeFunc) instead of keeping a second one.
const (
	metricExecDuration       = "pyexec_execution_duration_seconds"
	metricQueueWait          = "pyexec_queue_wait_seconds"
	metricRunning            = "pyexec_executions_running"
	metricQueued             = "pyexec_executions_queued"
	metricPoolSize           = "pyexec_pool_size"
	metricPoolIdle           = "pyexec_pool_idle"
	metricPoolHits           = "pyexec_pool_hits_total"
	metricPoolMisses         = "pyexec_pool_misses_total"
	metricPoolRefills        = "pyexec_pool_refills_total"
	metricPoolRefillFailures = "pyexec_pool_refill_failures_total"
	metricPoolRetired        = "pyexec_pool_retired_total"
	metricPoolFairShareCold  = "pyexec_pool_fair_share_cold_total"
	metricCreated            = "pyexec_containers_created_total"
	metricRemoved            = "pyexec_containers_removed_total"
	metricRemoveFailures     = "pyexec_container_remove_failures_total"
	metricImageSwitches      = "pyexec_image_switches_total"
	metricReconcilerRemoved  = "pyexec_reconciler_removed_total"
	metricSessionsActive     = "pyexec_sessions_active"
	metricSessionsMax        = "pyexec_sessions_max"
	metricSessionCells       = "pyexec_session_cells_total"
	metricSessionsEnded      = "pyexec_sessions_ended_total"

	metricLabelRole    = "role"
	metricLabelFlavor  = "flavor"
	metricLabelReason  = "reason"
	metricLabelOutcome = "outcome"
)

// roles are every value of LabelRole, so containers_created_total has one
// series per role from the start.
var roles = []string{roleExec, roleWarm, roleValidator, roleProbe, roleSession}

// counters are cheap always-on figures shown by /health and read by the
// metrics.
type counters struct {
	// created counts containers created by role; its keys are fixed by
	// newCounters and the map is only read afterwards.
	created        map[string]*atomic.Int64
	removed        atomic.Int64
	removeFailures atomic.Int64
	running        atomic.Int64
	completed      atomic.Int64
	imageSwitches  atomic.Int64
	// reconciled counts the reconciler's removals by reason; its keys are
	// fixed by newCounters.
	reconciled map[string]*atomic.Int64
	// cells counts the session cells that ended by outcome (cellOutcomes),
	// ended the sessions that ended by reason (endReasons); their keys are
	// fixed by newCounters (session_metrics.go counts).
	cells map[string]*atomic.Int64
	ended map[string]*atomic.Int64
}

func newCounters() *counters {
	c := &counters{created: map[string]*atomic.Int64{}, reconciled: map[string]*atomic.Int64{},
		cells: map[string]*atomic.Int64{}, ended: map[string]*atomic.Int64{}}
	for _, role := range roles {
		c.created[role] = new(atomic.Int64)
	}
	for _, reason := range reconcileReasons {
		c.reconciled[reason] = new(atomic.Int64)
	}
	for _, o := range cellOutcomes {
		c.cells[o] = new(atomic.Int64)
	}
	for _, reason := range endReasons {
		c.ended[reason] = new(atomic.Int64)
	}
	return c
}

func (c *counters) countCreated(role string) {
	if n := c.created[role]; n != nil {
		n.Add(1)
	}
}

func (c *counters) createdTotal() int64 {
	var n int64
	for _, v := range c.created {
		n += v.Load()
	}
	return n
}

// histograms are the runner's instruments that have no count elsewhere.
// They exist whether or not they are registered.
type histograms struct {
	execDuration prometheus.Histogram
	queueWait    prometheus.Histogram
}

func newHistograms() histograms {
	return histograms{
		execDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    metricExecDuration,
			Help:    "Time the user's code ran, measured inside the sandbox, of executions that produced a result.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120},
		}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    metricQueueWait,
			Help:    "Time admitted executions waited for a worker (0 when one was free).",
			Buckets: []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}),
	}
}

// registerMetrics registers every runner metric with reg.
func (r *Runner) registerMetrics(reg prometheus.Registerer) error {
	c := r.metrics
	load := func(v *atomic.Int64) func() float64 { return func() float64 { return float64(v.Load()) } }
	fromPool := func(f func(p *pool) int64) func() float64 {
		return func() float64 {
			if r.pool == nil {
				return 0
			}
			return float64(f(r.pool))
		}
	}
	cs := []prometheus.Collector{
		r.hist.execDuration,
		r.hist.queueWait,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metricRunning, Help: "Executions running now."}, load(&c.running)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metricQueued, Help: "Executions waiting for a worker now."}, load(&r.queued)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metricPoolSize, Help: "Ready containers the warm pool aims to keep (POOL_SIZE)."},
			func() float64 { return float64(r.opts.PoolSize) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: metricPoolHits, Help: "Executions served by a ready pooled container."},
			fromPool(func(p *pool) int64 { return p.hits.Load() })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: metricPoolMisses, Help: "Executions that found the pool empty and started a container on the request path."},
			fromPool(func(p *pool) int64 { return p.misses.Load() })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: metricPoolFairShareCold, Help: "Executions that got a cold start because their API key was over its share of the warm pool (fair.go; also counted in misses)."},
			fromPool(func(p *pool) int64 { return p.fairCold.Load() })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: metricPoolRefills, Help: "Containers the pool made ready."},
			fromPool(func(p *pool) int64 { return p.refills.Load() })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: metricPoolRefillFailures, Help: "Pool refills that failed (the pool backs off)."},
			fromPool(func(p *pool) int64 { return p.refillFailures.Load() })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: metricPoolRetired, Help: "Idle pooled containers discarded unused: dead, too old, of a previous image, or of a preload no longer in demand."},
			fromPool(func(p *pool) int64 { return p.retired.Load() })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: metricRemoved, Help: "Containers removed."}, load(&c.removed)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: metricRemoveFailures, Help: "Container removals that failed (the container may be left for the reaper)."},
			load(&c.removeFailures)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: metricImageSwitches, Help: "Times the image of new sandboxes was switched (admin rebuilds)."},
			load(&c.imageSwitches)),
	}
	for _, f := range []string{FlavorNone, FlavorData} {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        metricPoolIdle,
			Help:        "Ready containers waiting in the warm pool, by flavor.",
			ConstLabels: prometheus.Labels{metricLabelFlavor: f},
		}, fromPool(func(p *pool) int64 { return int64(p.idleCount(f)) })))
	}
	for _, role := range roles {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        metricCreated,
			Help:        "Containers created, by role: exec (on the request path), warm (pool), validator, probe (image versions), session.",
			ConstLabels: prometheus.Labels{metricLabelRole: role},
		}, load(c.created[role])))
	}
	for _, reason := range reconcileReasons {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        metricReconcilerRemoved,
			Help:        "Containers the reconciler removed, by reason: expired (any owner's sandbox past its io.pyexec.expires label), dangling (this instance's, owned by no execution, pool slot or session).",
			ConstLabels: prometheus.Labels{metricLabelReason: reason},
		}, load(c.reconciled[reason])))
	}
	cs = append(cs, r.sessionCollectors()...) // session_metrics.go
	for _, col := range cs {
		if err := reg.Register(col); err != nil {
			return fmt.Errorf("runner: register metrics: %w", err)
		}
	}
	return nil
}

// reconcileReasons are every value of the reason label of
// pyexec_reconciler_removed_total.
var reconcileReasons = []string{reasonExpired, reasonDangling}

func (c *counters) countReconciled(reason string) {
	if n := c.reconciled[reason]; n != nil {
		n.Add(1)
	}
}
