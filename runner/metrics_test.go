package runner

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pyexec/pyexec/internal/dockertest"
)

// metricValue reads the gauge or counter name{label=value} (label "" for
// one without labels) from reg; ok false when it is not registered.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) (float64, bool) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				match = match || l.GetName() == label && l.GetValue() == value
			}
			if !match {
				continue
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// wantMetric fails the test unless name{label=value} is registered and
// reads want.
func wantMetric(t *testing.T, reg *prometheus.Registry, name, label, value string, want float64) {
	t.Helper()
	got, ok := metricValue(t, reg, name, label, value)
	switch {
	case !ok:
		t.Errorf("%s{%s=%q} not registered", name, label, value)
	case got != want:
		t.Errorf("%s{%s=%q} = %v, want %v", name, label, value, got, want)
	}
}

// TestSessionMetricsCount: every outcome and end reason has its series
// from the start, at 0, and the counting helpers move only their own.
func TestSessionMetricsCount(t *testing.T) {
	reg := prometheus.NewRegistry()
	r, err := New(nil, Options{Image: "img", Owner: "me", SeccompProfile: []byte(`{}`), MaxSessions: 5, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	wantMetric(t, reg, metricSessionsActive, "", "", 0)
	wantMetric(t, reg, metricSessionsMax, "", "", 5)
	for _, o := range cellOutcomes {
		wantMetric(t, reg, metricSessionCells, metricLabelOutcome, o, 0)
	}
	for _, reason := range endReasons {
		wantMetric(t, reg, metricSessionsEnded, metricLabelReason, reason, 0)
	}
	wantMetric(t, reg, metricCreated, metricLabelRole, roleSession, 0)

	for _, res := range []Result{
		{Status: StatusSuccess}, {Status: StatusSuccess}, {Status: StatusError},
		{Status: StatusError, Rejected: true}, {Status: StatusTimeout}, {Status: StatusOutOfMemory},
		{Status: "something new"}, // counted as an error
	} {
		r.countSessionCell(&res)
	}
	for o, want := range map[string]float64{
		CellOutcomeSuccess: 2, CellOutcomeError: 2, CellOutcomeRejected: 1, CellOutcomeTimeout: 1, CellOutcomeOutOfMemory: 1,
	} {
		wantMetric(t, reg, metricSessionCells, metricLabelOutcome, o, want)
	}
	r.countSessionEnded(EndIdle)
	r.countSessionEnded(EndIdle)
	r.countSessionEnded(EndTimeout)
	r.countSessionEnded("no such reason")
	for _, reason := range endReasons {
		want := map[string]float64{EndIdle: 2, EndTimeout: 1}[reason]
		wantMetric(t, reg, metricSessionsEnded, metricLabelReason, reason, want)
	}
	if _, ok := metricValue(t, reg, metricSessionsEnded, metricLabelReason, "no such reason"); ok {
		t.Errorf("an unknown reason got a series of its own")
	}
}

// TestSessionMetricsEngine: pyexec_sessions_active follows real sessions,
// and their containers are counted under role="session".
func TestSessionMetricsEngine(t *testing.T) {
	cli := dockertest.Require(t)
	reg := prometheus.NewRegistry()
	owner := dockertest.Owner(t)
	r, err := New(cli, Options{Image: dockertest.Image(t, cli), Owner: owner, MaxSessions: 3, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dockertest.Scale(60*time.Second))
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Errorf("close runner: %v", err)
		}
		dockertest.AssertNoContainers(t, cli, owner)
	})
	var ids []string
	for range 2 {
		info, err := r.CreateSession(t.Context(), SessionOptions{})
		if err != nil {
			t.Fatalf("CreateSession: %v", err)
		}
		ids = append(ids, info.ID)
	}
	wantMetric(t, reg, metricSessionsActive, "", "", 2)
	wantMetric(t, reg, metricSessionsMax, "", "", 3)
	wantMetric(t, reg, metricCreated, metricLabelRole, roleSession, 2)
	if r.SessionCount() != 2 {
		t.Errorf("SessionCount %d, want 2", r.SessionCount())
	}
	res, err := r.RunInSession(t.Context(), ids[0], Request{Code: "x = 41\nprint(x + 1)", Timeout: dockertest.Scale(30 * time.Second)})
	if err != nil || res.Status != StatusSuccess || res.Stdout != "42\n" {
		t.Fatalf("cell: %v, %s %q", err, res.Status, res.Stdout)
	}
	if err := r.DeleteSession(t.Context(), ids[0]); err != nil {
		t.Fatal(err)
	}
	wantMetric(t, reg, metricSessionsActive, "", "", 1)
	if r.SessionCount() != 1 {
		t.Errorf("SessionCount %d after DELETE, want 1", r.SessionCount())
	}
}
