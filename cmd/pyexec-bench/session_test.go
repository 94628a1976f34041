package main

import (
	"math"
	"testing"
)

func TestSessionTargets(t *testing.T) {
	phases := []phaseResult{
		{Phase: "low-rate", Target: "session", Workload: "session-print", OK: 20, Latency: latencySummary{N: 20, P50: 4}},
		{Phase: "low-rate", Target: "session", Workload: "session-sine", OK: 10, Latency: latencySummary{N: 10, P50: 60}, ExecMSP50: 54},
		{Phase: "saturation", Target: "session", Workload: "session-sine", OK: 100, ThroughputRPS: 20},
		{Phase: "saturation", Target: "service", Workload: "sine", OK: 50, ThroughputRPS: 5},
	}
	got := sessionTargets(phases)
	if len(got) != 3 {
		t.Fatalf("%d targets, want 3", len(got))
	}
	want := []struct {
		value, limit float64
		met          bool
	}{{4, 5, true}, {60, 59, false}, {4, 5, false}}
	for i, w := range want {
		g := got[i]
		if float64(g.Value) != w.value || float64(g.Limit) != w.limit || g.Met != w.met {
			t.Errorf("target %d %q: value %v limit %v met %v, want %v %v %v", i, g.Name, g.Value, g.Limit, g.Met, w.value, w.limit, w.met)
		}
	}
	if !got[2].AtLeast || got[0].AtLeast {
		t.Errorf("directions: %+v", got)
	}

	// The saturation ratio is met at 5x; a missing phase is NaN and not met.
	phases[2].ThroughputRPS = 25
	if g := sessionTargets(phases)[2]; !g.Met || float64(g.Value) != 5 {
		t.Errorf("ratio at 5x: %+v", g)
	}
	for i, g := range sessionTargets(phases[3:]) {
		if g.Met || !math.IsNaN(float64(g.Value)) {
			t.Errorf("target %d without session phases: %+v", i, g)
		}
	}
}

func TestSessionPrintCheckIsExact(t *testing.T) {
	if err := sessionPrint.checkStdout("1\n"); err != nil {
		t.Errorf("1\\n: %v", err)
	}
	for _, s := range []string{"", "1", "11\n", "1\n1\n"} {
		if err := sessionPrint.checkStdout(s); err == nil {
			t.Errorf("stdout %q accepted", s)
		}
	}
}
