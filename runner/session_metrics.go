package runner

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Session metrics: how many sessions live (read from the session table),
// the cells they ran by outcome and the sessions that ended by reason. The
// label values are fixed sets (cellOutcomes, endReasons), never IDs.

// Outcomes of a session cell (the outcome label of
// pyexec_session_cells_total): the cell's status, or rejected when the
// language policy refused the code before it ran.
const (
	CellOutcomeSuccess     = StatusSuccess
	CellOutcomeError       = StatusError
	CellOutcomeTimeout     = StatusTimeout
	CellOutcomeOutOfMemory = StatusOutOfMemory
	CellOutcomeRejected    = "rejected"
)

// cellOutcomes are every value of the outcome label.
var cellOutcomes = []string{CellOutcomeSuccess, CellOutcomeError, CellOutcomeTimeout, CellOutcomeOutOfMemory, CellOutcomeRejected}

// endReasons are every value of the reason label of
// pyexec_sessions_ended_total (the End* reasons).
var endReasons = []string{EndDeleted, EndExpired, EndIdle, EndTimeout, EndInterrupted, EndOutOfMemory, EndCrashed, EndEngine, EndShutdown}

// SessionCount is the number of live sessions.
func (r *Runner) SessionCount() int { return r.sessions.count() }

// cellOutcome is the outcome label of a cell's Result.
func cellOutcome(res *Result) string {
	if res.Rejected {
		return CellOutcomeRejected
	}
	switch res.Status {
	case StatusSuccess, StatusTimeout, StatusOutOfMemory:
		return res.Status
	}
	return CellOutcomeError
}

// countSessionCell counts a cell that answered with res (one that ran, or
// that the policy refused). session.go calls it once per answered cell.
func (r *Runner) countSessionCell(res *Result) {
	if n := r.metrics.cells[cellOutcome(res)]; n != nil {
		n.Add(1)
	}
}

// countSessionEnded counts a session that ended for reason (one of the End*
// reasons; others are not counted). session.go calls it once per session,
// where it logs "session ended".
func (r *Runner) countSessionEnded(reason string) {
	if n := r.metrics.ended[reason]; n != nil {
		n.Add(1)
	}
}

// sessionCollectors are the session metrics (registerMetrics).
func (r *Runner) sessionCollectors() []prometheus.Collector {
	load := func(v *atomic.Int64) func() float64 { return func() float64 { return float64(v.Load()) } }
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metricSessionsActive, Help: "Sessions alive now (each holds one container)."},
			func() float64 { return float64(r.SessionCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metricSessionsMax, Help: "Sessions allowed at once (MAX_SESSIONS)."},
			func() float64 { return float64(r.opts.MaxSessions) }),
	}
	for _, o := range cellOutcomes {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        metricSessionCells,
			Help:        "Session cells answered, by outcome: success, error, timeout, out_of_memory, rejected (refused by the language policy, not run).",
			ConstLabels: prometheus.Labels{metricLabelOutcome: o},
		}, load(r.metrics.cells[o])))
	}
	for _, reason := range endReasons {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        metricSessionsEnded,
			Help:        "Sessions ended, by reason: deleted, expired, idle, timeout, out_of_memory, crashed, engine, shutdown.",
			ConstLabels: prometheus.Labels{metricLabelReason: reason},
		}, load(r.metrics.ended[reason])))
	}
	return cs
}
