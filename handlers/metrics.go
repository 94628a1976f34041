package handlers

import (
	"context"
	"net/http"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pyexec/pyexec/runner"
)

// Metric names and labels of package handlers: pyexec_*, base units, and
// only low-cardinality labels, never IDs. The runner and the image builder
// define their own (runner/metrics.go, images/metrics.go).
const (
	metricExecutions      = "pyexec_executions_total"
	metricRequestDuration = "pyexec_request_duration_seconds"
	metricRejected        = "pyexec_requests_rejected_total"

	labelOutcome = "outcome"
	labelRoute   = "route"
	labelReason  = "reason"
)

// Outcomes of POST /execute beyond the runner's statuses (success, error,
// timeout, out_of_memory).
const (
	// outcomeRejected: the pre-check refused the code (syntax error or policy
	// violation); no container ran it. The answer is a 200 with status error.
	outcomeRejected = "rejected"
	// outcomeFailed: the service could not run valid code (busy, engine or
	// image unavailable, shutting down, client gone, internal error);
	// pyexec_requests_rejected_total says why.
	outcomeFailed = "failed"
)

var outcomes = []string{
	runner.StatusSuccess, runner.StatusError, runner.StatusTimeout, runner.StatusOutOfMemory,
	outcomeRejected, outcomeFailed,
}

// routeUnmatched labels requests no route matched (404, 405).
const routeUnmatched = "unmatched"

// Rejection reasons (see rejectReason). Most are the error code itself; the
// many codes of 400, 413 and 422 are grouped.
const (
	reasonMalformed = "malformed" // 400: bad JSON or UTF-8, unreadable body
	reasonTooLarge  = "too_large" // 413
	reasonInvalid   = "invalid"   // 422: a field missing, wrong or out of range
)

// reasons are created at zero when the handler starts, so that rate() and
// increase() see the first one. Others (rare codes) appear when they occur;
// all come from a fixed set of codes in this package.
var reasons = []string{
	reasonMalformed, reasonTooLarge, reasonInvalid, "unsupported_media_type", "busy",
	"engine_unavailable", "image_unavailable", "shutting_down", "unauthorized", "not_found",
}

// metrics are the handlers' instruments. They exist whether or not they
// are registered.
type metrics struct {
	executions      *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	rejected        *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricExecutions,
			Help: "POST /execute requests with valid input, by outcome: the run's status (success, error, timeout, out_of_memory), rejected (refused by the pre-check, nothing ran) or failed (the service could not run it).",
		}, []string{labelOutcome}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    metricRequestDuration,
			Help:    "Time to answer HTTP requests, queueing and execution included, by route template.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{labelRoute}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricRejected,
			Help: "Requests answered with an error status, by reason: the error code, with the codes of 400 grouped as malformed, of 413 as too_large and of 422 as invalid.",
		}, []string{labelReason}),
	}
	for _, o := range outcomes {
		m.executions.WithLabelValues(o)
	}
	for _, r := range reasons {
		m.rejected.WithLabelValues(r)
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) {
	// Registering twice is a programmer error: panic, as MustRegister does.
	reg.MustRegister(m.executions, m.requestDuration, m.rejected)
}

// rejectReason is the reason label of an error answer.
func rejectReason(ae *apiError) string {
	switch ae.Status {
	case http.StatusBadRequest:
		return reasonMalformed
	case http.StatusRequestEntityTooLarge:
		return reasonTooLarge
	case http.StatusUnprocessableEntity:
		return reasonInvalid
	}
	return ae.Code
}

type metricsKey struct{}

// countRejected counts an error answer of the request with ctx.
func countRejected(ctx context.Context, ae *apiError) {
	if m, ok := ctx.Value(metricsKey{}).(*metrics); ok {
		m.rejected.WithLabelValues(rejectReason(ae)).Inc()
	}
}

// countExecution counts how an execution request ended.
func (h *handler) countExecution(outcome string) {
	h.metrics.executions.WithLabelValues(outcome).Inc()
}

// routeLabel is the route template r matched, or routeUnmatched.
func routeLabel(r *http.Request) string {
	if rt := mux.CurrentRoute(r); rt != nil {
		if tpl, err := rt.GetPathTemplate(); err == nil {
			return tpl
		}
	}
	return routeUnmatched
}

// metricsHandler serves g in the Prometheus text format.
func metricsHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		// Serve what could be gathered, even if one collector failed.
		ErrorHandling: promhttp.ContinueOnError,
	})
}
