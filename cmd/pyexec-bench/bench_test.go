package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	seq := func(n int) []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = float64(i + 1)
		}
		return s
	}
	tests := []struct {
		name   string
		sorted []float64
		p      float64
		want   float64
	}{
		{"one value p50", []float64{7}, 50, 7},
		{"one value p99", []float64{7}, 99, 7},
		{"two values p50 is the lower", []float64{1, 2}, 50, 1},
		{"two values p51", []float64{1, 2}, 51, 2},
		{"1..10 p50", seq(10), 50, 5},
		{"1..10 p95", seq(10), 95, 10},
		{"1..20 p95 is the 19th, not the 20th", seq(20), 95, 19},
		{"1..20 p99 is the max", seq(20), 99, 20},
		{"1..100 p50", seq(100), 50, 50},
		{"1..100 p95", seq(100), 95, 95},
		{"1..100 p99", seq(100), 99, 99},
		{"1..100 p100", seq(100), 100, 100},
		{"1..1000 p99", seq(1000), 99, 990},
		{"1..1000 p99.9", seq(1000), 99.9, 999},
		{"tiny p is the min", seq(100), 0.001, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v..., %v) = %v, want %v", tt.sorted[0], tt.p, got, tt.want)
			}
		})
	}
	for _, p := range []float64{0, -1, 101, math.NaN()} {
		if got := percentile(seq(10), p); !math.IsNaN(got) {
			t.Errorf("percentile(p=%v) = %v, want NaN", p, got)
		}
	}
	if got := percentile(nil, 50); !math.IsNaN(got) {
		t.Errorf("percentile(empty) = %v, want NaN", got)
	}
}

func TestSummarize(t *testing.T) {
	in := []float64{30, 10, 20, 50, 40}
	got := summarize(in)
	want := latencySummary{N: 5, Min: 10, P50: 30, P95: 50, P99: 50, Max: 50, Mean: 30}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	if in[0] != 30 {
		t.Error("summarize sorted its input in place")
	}
	if got := summarize(nil); got != (latencySummary{}) {
		t.Errorf("summarize(nil) = %+v, want zero", got)
	}
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median = %v, want 2", got)
	}
}

func TestRatio(t *testing.T) {
	if got := ratio(10, 4); got != 2.5 {
		t.Errorf("ratio(10,4) = %v", got)
	}
	for _, c := range [][2]float64{{1, 0}, {math.NaN(), 1}, {1, math.NaN()}} {
		if got := ratio(c[0], c[1]); !math.IsNaN(got) {
			t.Errorf("ratio(%v) = %v, want NaN", c, got)
		}
	}
}

func TestLowRateCount(t *testing.T) {
	tests := []struct {
		d    time.Duration
		rate float64
		min  int
		want int
	}{
		{20 * time.Second, 0.5, 20, 20}, // the default for hello: 40 s
		{20 * time.Second, 0.5, 0, 10},
		{60 * time.Second, 0.5, 20, 30},
		{10 * time.Second, 0.5, 5, 5},
		{time.Second, 0.1, 0, 1},   // never zero
		{3 * time.Second, 1, 0, 3}, // an exact product is not rounded up
	}
	for _, tt := range tests {
		if got := lowRateCount(tt.d, tt.rate, tt.min); got != tt.want {
			t.Errorf("lowRateCount(%v, %v, %d) = %d, want %d", tt.d, tt.rate, tt.min, got, tt.want)
		}
	}
}

func TestParseCountsAndList(t *testing.T) {
	known := []string{"hello", "sine", "groupby"}
	got, err := parseCounts("hello=20, sine=5", known)
	if err != nil || got["hello"] != 20 || got["sine"] != 5 || len(got) != 2 {
		t.Errorf("parseCounts = %v, %v", got, err)
	}
	for _, bad := range []string{"hello", "hello=0", "hello=x", "nope=3", "hello=-1"} {
		if _, err := parseCounts(bad, known); err == nil {
			t.Errorf("parseCounts(%q) accepted", bad)
		}
	}
	list, err := parseList("sine,hello,sine", known)
	if err != nil || strings.Join(list, ",") != "sine,hello" {
		t.Errorf("parseList = %v, %v", list, err)
	}
	for _, bad := range []string{"", ",", "hello,bogus"} {
		if _, err := parseList(bad, known); err == nil {
			t.Errorf("parseList(%q) accepted", bad)
		}
	}
}

func TestLocalURL(t *testing.T) {
	good := []string{"http://127.0.0.1:18000", "http://localhost:8000/", "http://[::1]:8000", "http://127.0.0.2:80"}
	for _, s := range good {
		if _, err := localURL(s); err != nil {
			t.Errorf("localURL(%q): %v", s, err)
		}
	}
	bad := []string{
		"http://example.com:8000", "http://10.0.0.1:8000", "https://127.0.0.1:8000",
		"http://127.0.0.1", "http://127.0.0.1:8000/execute", "http://u:p@127.0.0.1:8000",
		"http://0.0.0.0:8000", "127.0.0.1:8000", "http://localhost.example.com:80",
		"http://127.0.0.1:99999",
	}
	for _, s := range bad {
		if _, err := localURL(s); err == nil {
			t.Errorf("localURL(%q) accepted", s)
		}
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tpyexec\nVmPeak:\t 1000 kB\nVmRSS:\t   45312 kB\nThreads:\t9\n"
	got, err := parseVmRSS(status)
	if err != nil || got != 45312*1024 {
		t.Errorf("parseVmRSS = %d, %v", got, err)
	}
	if _, err := parseVmRSS("Name:\tkthreadd\n"); err == nil {
		t.Error("parseVmRSS without VmRSS accepted")
	}
	if _, err := parseVmRSS("VmRSS:\t12 MB\n"); err == nil {
		t.Error("parseVmRSS with another unit accepted")
	}
}

func TestListenInodes(t *testing.T) {
	// Port 18000 is 0x4650; 0A is LISTEN, 01 ESTABLISHED.
	tcp6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:4650 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:4650 0000000000000000FFFF00000100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 20 4 30 10 -1
   2: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
`
	got := listenInodes(tcp6, 18000)
	if len(got) != 1 || got[0] != 123456 {
		t.Errorf("listenInodes(18000) = %v, want [123456]", got)
	}
	if got := listenInodes(tcp6, 8000); len(got) != 1 || got[0] != 777 {
		t.Errorf("listenInodes(8000) = %v, want [777]", got)
	}
	if got := listenInodes(tcp6, 40000); len(got) != 0 {
		t.Errorf("listenInodes(40000) = %v: an established socket is not a listener", got)
	}
	if got := listenInodes("", 1); len(got) != 0 {
		t.Errorf("listenInodes(empty) = %v", got)
	}
}

func TestAggregate(t *testing.T) {
	outs := []outcome{
		{latency: 10 * time.Millisecond, ok: true, execMS: 2, durMS: 8, sandbox: "none"},
		{latency: 30 * time.Millisecond, ok: true, execMS: 4, durMS: 25, sandbox: "data"},
		{latency: 20 * time.Millisecond, ok: true, execMS: 3, durMS: 15, sandbox: "none"},
		{latency: 1 * time.Millisecond, busy: true, code: 429},
		{latency: 5 * time.Second, errKey: "500", errMsg: "boom", code: 500},
		{latency: 5 * time.Millisecond, errKey: "check", errMsg: "no chart"},
		{latency: 5 * time.Millisecond, errKey: "500", errMsg: "boom again", code: 500},
		{latency: 5 * time.Millisecond, errKey: "status_error", errMsg: "x"},
	}
	r := aggregate(outs, 2*time.Second)
	if r.Requests != 8 || r.OK != 3 || r.Busy != 1 {
		t.Errorf("counts: %+v", r)
	}
	if r.Errors["500"] != 2 || r.Errors["check"] != 1 || r.Errors["status_error"] != 1 {
		t.Errorf("errors = %v", r.Errors)
	}
	if len(r.ErrorSamples) != maxErrorSamples {
		t.Errorf("samples = %v", r.ErrorSamples)
	}
	// Errors and 429s are out of the latency.
	if r.Latency.N != 3 || r.Latency.P50 != 20 || r.Latency.Max != 30 {
		t.Errorf("latency = %+v", r.Latency)
	}
	if r.ThroughputRPS != 1.5 {
		t.Errorf("throughput = %v, want 1.5", r.ThroughputRPS)
	}
	if r.ExecMSP50 != 3 || r.DurationMSP50 != 15 {
		t.Errorf("exec p50 %v, duration p50 %v", r.ExecMSP50, r.DurationMSP50)
	}
	// Per request: 10-2, 30-4, 20-3; not the difference of the medians (17).
	if r.OverExecMSP50 != 17 {
		t.Errorf("over exec p50 %v, want 17", r.OverExecMSP50)
	}
	skew := aggregate([]outcome{
		{latency: 100 * time.Millisecond, ok: true, execMS: 10, sandbox: "none"},
		{latency: 12 * time.Millisecond, ok: true, execMS: 11, sandbox: "none"},
		{latency: 13 * time.Millisecond, ok: true, execMS: 12, sandbox: "none"},
	}, time.Second)
	if skew.OverExecMSP50 != 1 || skew.Latency.P50-float64(skew.ExecMSP50) != 2 {
		t.Errorf("over exec p50 %v (latency p50 %v, exec p50 %v), want 1", skew.OverExecMSP50, skew.Latency.P50, skew.ExecMSP50)
	}
	if r.Sandboxes["none"] != 2 || r.Sandboxes["data"] != 1 {
		t.Errorf("sandboxes = %v", r.Sandboxes)
	}
	// A naive phase has no execution time: it must encode as null.
	n := aggregate([]outcome{{latency: time.Millisecond, ok: true}}, time.Second)
	b, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"execution_time_p50_ms":null`) || !strings.Contains(string(b), `"over_execution_p50_ms":null`) {
		t.Errorf("naive phase JSON: %s", b)
	}
	if e := aggregate(nil, 0); e.ThroughputRPS != 0 || e.Latency.N != 0 {
		t.Errorf("empty aggregate = %+v", e)
	}
}

func TestOpenLoopKeepsRateWhenSlow(t *testing.T) {
	// Each request takes 3 intervals; an open loop still sends on time.
	var inflight, peak atomic.Int32
	fn := func(ctx context.Context) outcome {
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(60 * time.Millisecond)
		inflight.Add(-1)
		return outcome{ok: true, latency: 60 * time.Millisecond}
	}
	start := time.Now()
	outs, _ := openLoop(t.Context(), 5, 50, time.Second, fn) // every 20 ms
	if len(outs) != 5 {
		t.Fatalf("sent %d, want 5", len(outs))
	}
	if peak.Load() < 2 {
		t.Errorf("peak concurrency %d: requests waited for each other", peak.Load())
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("took %v", el)
	}
}

func TestClosedLoopStopsAndBacksOff(t *testing.T) {
	var calls atomic.Int32
	fn := func(ctx context.Context) outcome {
		calls.Add(1)
		if _, ok := ctx.Deadline(); !ok {
			t.Error("request without a deadline")
		}
		return outcome{busy: true}
	}
	outs, el := closedLoop(t.Context(), 2, 250*time.Millisecond, time.Second, fn)
	// With the 100 ms back-off after a 429, two clients make about 6 calls.
	if n := len(outs); n < 2 || n > 10 {
		t.Errorf("%d calls in %v: back-off not applied", n, el)
	}
	if el > 2*time.Second {
		t.Errorf("took %v", el)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if outs, _ := closedLoop(ctx, 3, time.Minute, time.Second, fn); len(outs) != 0 {
		t.Errorf("cancelled loop sent %d", len(outs))
	}
}

func TestWorkloadChecks(t *testing.T) {
	if err := workloadByName("hello").checkStdout("Hello World\n"); err != nil {
		t.Error(err)
	}
	if err := workloadByName("hello").checkStdout("Hello\n"); err == nil {
		t.Error("wrong hello output accepted")
	}
	if err := workloadByName("groupby").checkStdout("...\nrows=100000 groups=8\n"); err != nil {
		t.Error(err)
	}
	if err := workloadByName("sine").checkStdout(""); err != nil {
		t.Errorf("sine checks no stdout: %v", err)
	}
	if w := workloadByName("sine"); w.Charts != 1 || !strings.Contains(w.NaivePrelude+w.Code, "plt.show()") {
		t.Errorf("sine workload: %+v", w)
	}
}

func TestParseFlags(t *testing.T) {
	parse := func(args ...string) (*options, error) {
		fs := flag.NewFlagSet("bench", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		return parseFlags(fs, args)
	}
	o, err := parse("-url", "http://127.0.0.1:18000", "-max-p50-hello", "20ms", "-max-p99-hello", "60ms", "-low-min", "hello=5")
	if err != nil {
		t.Fatal(err)
	}
	if *o.maxLatency["hello"]["p50"] != 20*time.Millisecond || *o.maxLatency["hello"]["p99"] != 60*time.Millisecond {
		t.Errorf("latency thresholds not parsed: %v", o.maxLatency["hello"])
	}
	if o.concurrencySet || o.lowMin["hello"] != 5 || len(o.workloads) != 3 {
		t.Errorf("options = %+v", o)
	}
	for _, bad := range [][]string{
		{"-url", "http://192.168.1.1:80"},
		{"-workloads", "hello,nope"},
		{"-rate", "0"},
		{"-concurrency", "0"},
		{"-duration", "10ms"},
		{"extra"},
	} {
		if _, err := parse(bad...); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

func TestThresholdsAndRatios(t *testing.T) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o, err := parseFlags(fs, []string{"-max-p50-hello", "20ms", "-max-p99-hello", "60ms", "-min-rps-hello", "5", "-max-rss-mb", "100"})
	if err != nil {
		t.Fatal(err)
	}
	r := &report{
		Workloads: []string{"hello"},
		Phases: []phaseResult{
			{Phase: "low-rate", Target: "service", Workload: "hello", Latency: latencySummary{N: 20, P50: 15, P95: 50, P99: 70}},
			{Phase: "saturation", Target: "service", Workload: "hello", OK: 80, ThroughputRPS: 4},
			{Phase: "low-rate", Target: "naive", Workload: "hello", Latency: latencySummary{N: 20, P50: 600}},
			{Phase: "saturation", Target: "naive", Workload: "hello", OK: 30, ThroughputRPS: 2},
		},
		Lifecycle: &phaseResult{OK: 40, ThroughputRPS: 5},
		Service:   serviceInfo{RSSMaxBytes: 120e6},
	}
	finish(r)
	checkThresholds(o, r)
	if len(r.Ratios) != 1 || r.Ratios[0].P50Ratio != 0.025 || r.Ratios[0].ThroughputRatio != 2 {
		t.Errorf("ratios = %+v", r.Ratios)
	}
	if r.HelloOverLifecycle != 0.8 {
		t.Errorf("hello/lifecycle = %v", r.HelloOverLifecycle)
	}
	want := []string{"p99 70.0 ms > 60ms", "throughput 4.00 req/s < 5", "VmRSS 120.0 MB > 100 MB"}
	all := strings.Join(r.Breaches, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("breaches lack %q:\n%s", w, all)
		}
	}
	if strings.Contains(all, "p50") {
		t.Errorf("p50 15 ms under 20 ms reported:\n%s", all)
	}
	if len(r.Breaches) != 3 {
		t.Errorf("%d breaches:\n%s", len(r.Breaches), all)
	}
	r.Leaks = leakReport{NaiveLeft: 1, NaiveOwner: "bench-naive-1"}
	r.Breaches = nil
	checkThresholds(o, r)
	if !strings.Contains(strings.Join(r.Breaches, "\n"), "leak: 1 naive") {
		t.Errorf("leak not a breach: %v", r.Breaches)
	}
}

func TestRedact(t *testing.T) {
	in := map[string]any{"admin_token": "s3cr3t", "other_token": "unset", "api_key": "k", "max_workers": 4.0, "service_id": "x"}
	got := redact(in)
	if got["admin_token"] != "<redacted>" || got["api_key"] != "<redacted>" {
		t.Errorf("secrets kept: %v", got)
	}
	if got["other_token"] != "unset" || got["max_workers"] != 4.0 || got["service_id"] != "x" {
		t.Errorf("plain settings changed: %v", got)
	}
	if in["admin_token"] != "s3cr3t" {
		t.Error("input modified")
	}
}
