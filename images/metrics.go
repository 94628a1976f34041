package images

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names and label values of package images.
const (
	metricBuilds        = "pyexec_image_builds_total"
	metricBuildDuration = "pyexec_image_build_duration_seconds"

	labelResult   = "result"
	resultSuccess = "success"
	resultFailure = "failure"

	metricHeals = "pyexec_image_heals_total"
	// Results of heals (Healer): the image in use rebuilt, the service
	// fallen back to the base image, the image restored by someone else
	// (BUILD_IMAGE=false), a rebuild that failed (retried after a backoff).
	healRebuilt  = "rebuilt"
	healFallback = "fallback"
	healRestored = "restored"
	healFailed   = "failed"
)

// metrics are the builder's instruments. They exist (and count) whether
// or not they are registered.
type metrics struct {
	builds   *prometheus.CounterVec
	duration prometheus.Histogram
}

func newMetrics() metrics {
	m := metrics{
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricBuilds,
			Help: "Image builds through the engine (shared builds count once), by result: success or failure.",
		}, []string{labelResult}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    metricBuildDuration,
			Help:    "Duration of image builds, successful or not.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200},
		}),
	}
	// Both results exist from the start, so rate() works on the first one.
	m.builds.WithLabelValues(resultSuccess)
	m.builds.WithLabelValues(resultFailure)
	return m
}

func (m metrics) observe(err error, d time.Duration) {
	result := resultSuccess
	if err != nil {
		result = resultFailure
	}
	m.builds.WithLabelValues(result).Inc()
	m.duration.Observe(d.Seconds())
}

// RegisterMetrics registers the builder's metrics with reg (a private
// registry made by main). Call it once.
func (b *Builder) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{b.metrics.builds, b.metrics.duration} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("images: register metrics: %w", err)
		}
	}
	return nil
}

// healMetrics are the Healer's instruments.
type healMetrics struct {
	heals *prometheus.CounterVec
}

func newHealMetrics() healMetrics {
	m := healMetrics{heals: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricHeals,
		Help: "Heals of a missing analytics image, by result: rebuilt, fallback (to the base image), restored (by someone else), failed (a rebuild that failed; retried).",
	}, []string{labelResult})}
	for _, r := range []string{healRebuilt, healFallback, healRestored, healFailed} {
		m.heals.WithLabelValues(r)
	}
	return m
}

// RegisterMetrics registers the Healer's metrics with reg. Call it once.
func (h *Healer) RegisterMetrics(reg prometheus.Registerer) error {
	if err := reg.Register(h.metrics.heals); err != nil {
		return fmt.Errorf("images: register metrics: %w", err)
	}
	return nil
}
