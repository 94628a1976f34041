// Command pyexec-bench drives a running pyexec over HTTP and compares it,
// on the same engine and in the same run, with the naive way of running code
// in a container: one fresh container per execution, no pool.
//
//	go run ./cmd/pyexec-bench -url http://127.0.0.1:18000 [-duration 20s] [-rate 0.5]
//	    [-concurrency N] [-workloads hello,sine,groupby] [-naive=true] [-json out.json]
//
// For each workload it measures two phases, each against the service and
// then through the naive path (interleaved, so drifting background load
// skews the ratios less): a fixed low rate (open loop, -rate requests per
// second, at least -low-min requests) and saturation (closed loop with
// -concurrency clients for -duration; default MAX_WORKERS+2 from /health).
// After hello it measures the engine's raw container lifecycle rate
// (print(1) through the naive path at saturation). It samples the service
// process's VmRSS during saturation, prints each warm container's memory,
// and at the end checks that neither path left containers behind.
//
// Then (-sessions) it measures session cells: on one session, after an
// untimed warm-up cell importing numpy and matplotlib, print(1) and the
// sine-wave plot at the low rate; then the floors of a cell at the same
// rate (GET /livez alone, and a line through a cat container's attach stream
// and back: floors.go); then the sine cell at saturation with one warmed-up
// session per client. It prints issue 12's session targets and whether they
// are met (report only), and deletes the sessions.
//
// The naive path uses the service's image (or -image) and limits, and
// runner/hostconfig.go's hardening (runner/seccomp's profile included),
// except that it keeps the json-file log driver to read the output back.
//
// Latency is client-side and counts successful requests only; 429 answers
// are counted apart. The exit status is 0 when all went well, 1 on a
// threshold breach (flags -max-p50-hello etc.; none by default) or a leaked
// container, 2 when the benchmark could not run.
//
// It only targets 127.0.0.1, ::1 or localhost; the Docker engine comes from
// DOCKER_HOST etc. like the service's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Exit statuses.
const (
	exitOK     = 0
	exitBreach = 1 // threshold breached or containers leaked
	exitSetup  = 2 // bad flags, service or engine unavailable
)

// options are the parsed flags.
type options struct {
	rawURL         string
	image          string
	duration       time.Duration
	rate           float64
	concurrency    int
	workloadList   string
	lowMinList     string
	naive          bool
	sessions       bool
	lifecycle      bool
	jsonPath       string
	pid            int
	reqTimeout     time.Duration
	execTimeout    float64
	readyTimeout   time.Duration
	refillTimeout  time.Duration
	settleTimeout  time.Duration
	rssEvery       time.Duration
	readyOnly      bool
	quiet          bool
	maxRSSMB       float64
	maxErrors      int
	maxLatency     map[string]map[string]*time.Duration // workload -> "p50"/"p95"/"p99"
	minRPS         map[string]*float64
	workloads      []string
	lowMin         map[string]int
	concurrencySet bool
}

func main() {
	o, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "pyexec-bench: %v\n", err)
		os.Exit(exitSetup)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, o)
	stop()
	os.Exit(code)
}

func parseFlags(fs *flag.FlagSet, args []string) (*options, error) {
	o := &options{maxLatency: map[string]map[string]*time.Duration{}, minRPS: map[string]*float64{}}
	fs.StringVar(&o.rawURL, "url", "http://127.0.0.1:8000", "base URL of the running service (loopback only)")
	fs.StringVar(&o.image, "image", "", "image for the naive path (default: the service's, from /health image.tag)")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "length of each saturation phase; the low-rate phase covers it too")
	fs.Float64Var(&o.rate, "rate", 0.5, "requests per second of the low-rate phase (open loop)")
	fs.IntVar(&o.concurrency, "concurrency", 0, "clients of the saturation phase (default: /health runner.max_workers + 2)")
	fs.StringVar(&o.workloadList, "workloads", strings.Join(workloadNames(), ","), "workloads to run, in order")
	fs.StringVar(&o.lowMinList, "low-min", defaultLowMin(), "least requests of the low-rate phase per workload (name=count,...)")
	fs.BoolVar(&o.naive, "naive", true, "also measure the naive baseline (a fresh container per execution, no pool)")
	fs.BoolVar(&o.sessions, "sessions", true, "also measure session cells (POST /sessions/{id}/execute) after the workloads")
	fs.BoolVar(&o.lifecycle, "lifecycle", true, "with -naive, also measure the engine's raw container lifecycle rate")
	fs.StringVar(&o.jsonPath, "json", "", "also write the full report as JSON to this file")
	fs.IntVar(&o.pid, "pid", 0, "PID of the service process (default: found by the listening port)")
	fs.DurationVar(&o.reqTimeout, "request-timeout", 120*time.Second, "client-side limit of one request, queueing included")
	fs.Float64Var(&o.execTimeout, "exec-timeout", 30, `"timeout" field of each /execute request, in seconds`)
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 5*time.Minute, "how long to wait at start for /health 200 and a full pool")
	fs.DurationVar(&o.refillTimeout, "refill-timeout", 60*time.Second, "how long to wait for the pool to refill between phases")
	fs.DurationVar(&o.settleTimeout, "settle-timeout", 60*time.Second, "how long the final leak check waits for the service to settle")
	fs.DurationVar(&o.rssEvery, "rss-every", 100*time.Millisecond, "VmRSS sampling period")
	fs.BoolVar(&o.readyOnly, "ready-only", false, "wait for /health 200 and a full pool, then exit (for scripts)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines on stderr")
	fs.Float64Var(&o.maxRSSMB, "max-rss-mb", 0, "fail if the service's max VmRSS exceeds this many MB (10^6 bytes); 0: report only")
	fs.IntVar(&o.maxErrors, "max-errors", -1, "fail if the service phases had more errors (429 excluded); -1: report only")
	for _, w := range workloadNames() {
		o.maxLatency[w] = map[string]*time.Duration{}
		for _, p := range []string{"p50", "p95", "p99"} {
			o.maxLatency[w][p] = fs.Duration("max-"+p+"-"+w, 0,
				fmt.Sprintf("fail if the service's low-rate %s latency for %s exceeds this; 0: report only", p, w))
		}
		o.minRPS[w] = fs.Float64("min-rps-"+w, 0,
			fmt.Sprintf("fail if the service's saturation throughput for %s is below this (req/s); 0: report only", w))
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "concurrency" {
			o.concurrencySet = true
		}
	})
	var err error
	if _, err = localURL(o.rawURL); err != nil {
		return nil, fmt.Errorf("-url: %w", err)
	}
	if o.workloads, err = parseList(o.workloadList, workloadNames()); err != nil {
		return nil, fmt.Errorf("-workloads: %w", err)
	}
	if o.lowMin, err = parseCounts(o.lowMinList, workloadNames()); err != nil {
		return nil, fmt.Errorf("-low-min: %w", err)
	}
	switch {
	case o.duration < time.Second || o.duration > time.Hour:
		return nil, errors.New("-duration: want 1s to 1h")
	case !(o.rate >= 0.01 && o.rate <= 1000):
		return nil, errors.New("-rate: want 0.01 to 1000 requests per second")
	case o.concurrencySet && (o.concurrency < 1 || o.concurrency > 1024):
		return nil, errors.New("-concurrency: want 1 to 1024")
	case o.reqTimeout < time.Second || o.reqTimeout > 30*time.Minute:
		return nil, errors.New("-request-timeout: want 1s to 30m")
	case !(o.execTimeout > 0 && o.execTimeout <= 3600):
		return nil, errors.New("-exec-timeout: want seconds, more than 0 and at most 3600")
	case o.readyTimeout <= 0 || o.readyTimeout > time.Hour:
		return nil, errors.New("-ready-timeout: want up to 1h")
	case o.refillTimeout < 0 || o.refillTimeout > 30*time.Minute:
		return nil, errors.New("-refill-timeout: want 0 to 30m")
	case o.settleTimeout < 0 || o.settleTimeout > 30*time.Minute:
		return nil, errors.New("-settle-timeout: want 0 to 30m")
	case o.rssEvery < 10*time.Millisecond:
		return nil, errors.New("-rss-every: want at least 10ms")
	case o.pid < 0:
		return nil, errors.New("-pid: want a process ID")
	}
	// A low-rate phase holds at most this many requests in flight at once.
	for _, w := range o.workloads {
		if n := lowRateCount(o.duration, o.rate, o.lowMin[w]); n > 100000 {
			return nil, fmt.Errorf("low-rate phase of %s would send %d requests; lower -rate or -duration", w, n)
		}
	}
	return o, nil
}

func defaultLowMin() string {
	parts := make([]string, len(workloads))
	for i, w := range workloads {
		parts[i] = w.Name + "=" + strconv.Itoa(w.LowMin)
	}
	return strings.Join(parts, ",")
}

// progress writes a line to stderr unless -quiet.
func (o *options) progress(format string, args ...any) {
	if o.quiet {
		return
	}
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// hostInfo describes the machine the benchmark itself runs on.
type hostInfo struct {
	Hostname  string `json:"hostname"`
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	OSArch    string `json:"os_arch"`
}

func currentHost() hostInfo {
	h, _ := os.Hostname()
	return hostInfo{Hostname: h, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OSArch: runtime.GOOS + "/" + runtime.GOARCH}
}
