package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/pyexec/pyexec/runner"
)

// engineInfo describes the Docker engine both paths run on.
type engineInfo struct {
	Version          string `json:"version"`
	APIVersion       string `json:"api_version"`
	ClientAPIVersion string `json:"client_api_version"`
	KernelVersion    string `json:"kernel_version"`
	OperatingSystem  string `json:"operating_system"`
	CPUs             int    `json:"cpus"`
	MemTotalBytes    int64  `json:"mem_total_bytes"`
	StorageDriver    string `json:"storage_driver"`
	CgroupDriver     string `json:"cgroup_driver"`
	CgroupVersion    string `json:"cgroup_version"`
}

// serviceInfo describes the service under test.
type serviceInfo struct {
	PID            int               `json:"pid,omitempty"`
	PIDError       string            `json:"pid_error,omitempty"`
	Instance       string            `json:"instance"`
	ServiceID      string            `json:"service_id"`
	ImageTag       string            `json:"image_tag"`
	EngineVersion  string            `json:"engine_version"`
	EngineAPI      string            `json:"engine_api_version"`
	MaxWorkers     int               `json:"max_workers"`
	MaxQueue       int               `json:"max_queue"`
	PoolSize       int               `json:"pool_size"`
	Settings       map[string]any    `json:"settings"`
	WarmContainers []runner.WarmInfo `json:"warm_containers"`
	RSSStartBytes  int64             `json:"rss_start_bytes,omitempty"`
	// RSSMaxBytes is the largest VmRSS seen during the saturation phases.
	RSSMaxBytes  int64 `json:"rss_max_bytes,omitempty"`
	RSSSamples   int   `json:"rss_samples"`
	RefillFailed int64 `json:"pool_refill_failures"`
	Retired      int64 `json:"pool_retired"`
}

// ratioRow compares the service with the naive path for one workload.
type ratioRow struct {
	Workload        string    `json:"workload"`
	P50LowService   jsonFloat `json:"p50_low_service_ms"`
	P50LowNaive     jsonFloat `json:"p50_low_naive_ms"`
	P50Ratio        jsonFloat `json:"p50_low_ratio"`
	RPSSatService   jsonFloat `json:"rps_saturation_service"`
	RPSSatNaive     jsonFloat `json:"rps_saturation_naive"`
	ThroughputRatio jsonFloat `json:"throughput_ratio"`
}

// leakReport is the final container count by owner.
type leakReport struct {
	NaiveOwner string `json:"naive_owner"`
	NaiveLeft  int    `json:"naive_left"`
	// Service side, once settled (or at the deadline).
	ServiceOwner    string         `json:"service_owner"`
	ServiceSettled  bool           `json:"service_settled"`
	ServiceByRole   map[string]int `json:"service_containers_by_role"`
	ServicePoolIdle int            `json:"service_pool_idle"`
	ServiceUntrack  []string       `json:"service_untracked,omitempty"`
	CreatedMinusRm  int64          `json:"service_created_minus_removed"`
	Error           string         `json:"error,omitempty"`
}

// report is everything one run measured; -json writes it.
type report struct {
	StartedAt   time.Time     `json:"started_at"`
	Target      string        `json:"target"`
	Host        hostInfo      `json:"host"`
	Engine      engineInfo    `json:"engine"`
	Service     serviceInfo   `json:"service"`
	Duration    string        `json:"duration"`
	Rate        float64       `json:"rate"`
	Concurrency int           `json:"concurrency"`
	Workloads   []string      `json:"workloads"`
	NaiveImage  string        `json:"naive_image,omitempty"`
	NaiveLimits *limits       `json:"naive_limits,omitempty"`
	Phases      []phaseResult `json:"phases"`
	Ratios      []ratioRow    `json:"ratios,omitempty"`
	// SessionTargets are issue 12's session targets (report only).
	SessionTargets []targetRow  `json:"session_targets,omitempty"`
	Lifecycle      *phaseResult `json:"lifecycle,omitempty"`
	// HelloOverLifecycle is service hello throughput / raw lifecycle rate.
	HelloOverLifecycle jsonFloat  `json:"hello_throughput_over_lifecycle"`
	Leaks              leakReport `json:"leaks"`
	Warnings           []string   `json:"warnings,omitempty"`
	Breaches           []string   `json:"breaches,omitempty"`
}

func (r *report) warn(o *options, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.Warnings = append(r.Warnings, msg)
	o.progress("WARNING: %s", msg)
}

// run is the whole benchmark; it returns the exit status.
func run(ctx context.Context, o *options) int {
	base, _ := localURL(o.rawURL) // checked by parseFlags
	rep := &report{StartedAt: time.Now().UTC(), Target: base.String(), Host: currentHost(),
		Duration: o.duration.String(), Rate: o.rate, Workloads: o.workloads, HelloOverLifecycle: jsonFloat(math.NaN())}
	prefix := fmt.Sprintf("bench-%d", os.Getpid())

	// 1. The service must be up and its pool full.
	probe := newService(base, 1, 15*time.Second, o.execTimeout, prefix)
	o.progress("waiting for %s/health to answer 200 with a full pool (up to %v)", base, o.readyTimeout)
	h, err := probe.waitReady(ctx, o.readyTimeout, true)
	probe.close()
	if h == nil || h.Status != "ok" {
		fmt.Fprintf(os.Stderr, "pyexec-bench: service not ready: %v\n", err)
		return exitSetup
	}
	if o.readyOnly {
		if err != nil {
			fmt.Fprintf(os.Stderr, "pyexec-bench: service not ready: %v\n", err)
			return exitSetup
		}
		o.progress("ready: image %s, pool idle %v", h.Image.Tag, poolIdle(h))
		return exitOK
	}
	if err != nil {
		rep.warn(o, "starting anyway: %v", err)
	}
	conc := o.concurrency
	if !o.concurrencySet {
		conc = h.Runner.MaxWorkers + 2
	}
	rep.Concurrency = conc
	svc := newService(base, conc, o.reqTimeout, o.execTimeout, prefix)
	defer svc.close()
	rep.Service = serviceInfo{
		Instance:      h.Runner.Instance,
		ServiceID:     h.settingString("service_id"),
		ImageTag:      h.Image.Tag,
		EngineVersion: h.Engine.Version,
		EngineAPI:     h.Engine.APIVersion,
		MaxWorkers:    h.Runner.MaxWorkers,
		MaxQueue:      h.Runner.MaxQueue,
		Settings:      redact(h.Settings),
	}
	if p := h.Runner.Pool; p != nil {
		rep.Service.PoolSize = p.Size
		rep.Service.WarmContainers = p.Containers
	}
	for _, c := range []struct {
		key string
		got int
	}{{"max_workers", h.Runner.MaxWorkers}, {"max_queue", h.Runner.MaxQueue}} {
		if v, ok := h.Settings[c.key].(float64); ok && int(v) != c.got {
			rep.warn(o, "/health settings.%s is %v but runner.%s is %d: the runner does not apply the setting as given",
				c.key, v, c.key, c.got)
		}
	}
	if rep.Service.ServiceID == "" {
		rep.warn(o, "/health settings have no service_id: the service's leak check is skipped")
	}

	// 2. The engine, through our own client.
	cli, err := client.New(client.FromEnv) // negotiates the API version
	if err != nil {
		fmt.Fprintf(os.Stderr, "pyexec-bench: docker client: %v\n", err)
		return exitSetup
	}
	defer cli.Close()
	{
		ectx, cancel := context.WithTimeout(ctx, 15*time.Second)
		// Negotiate once, up front, so that a failure shows here.
		_, err = cli.Ping(ectx, client.PingOptions{NegotiateAPIVersion: true})
		if err == nil {
			rep.Engine, err = describeEngine(ectx, cli)
		}
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "pyexec-bench: docker engine: %v\n", err)
			return exitSetup
		}
	}

	// 3. The service process, for its memory.
	var rss *rssSampler
	pid := o.pid
	if pid == 0 {
		port, _ := strconv.Atoi(base.Port())
		if pid, err = pidByPort(port); err != nil {
			rep.Service.PIDError = err.Error()
			rep.warn(o, "service memory not sampled: %v (pass -pid)", err)
		}
	}
	if pid > 0 {
		if v, err := readRSS(pid); err != nil {
			rep.Service.PIDError = err.Error()
			rep.warn(o, "service memory not sampled: pid %d: %v", pid, err)
		} else {
			rep.Service.PID, rep.Service.RSSStartBytes = pid, v
			rss = &rssSampler{pid: pid, every: o.rssEvery}
		}
	}
	printHeader(os.Stdout, rep)

	// 4. Workload by workload, the service then the naive baseline on the
	// same engine, phase by phase, so that background load drifting over
	// the run skews the ratios as little as possible. The raw lifecycle rate
	// is measured right after hello's saturation phases, which it bounds.
	naiveOwner := fmt.Sprintf("bench-naive-%d", os.Getpid())
	var nv *naive
	if o.naive {
		nv = setupNaive(ctx, o, rep, cli, h, naiveOwner)
	}
	lifecycleDone := !o.lifecycle || nv == nil
	for _, name := range o.workloads {
		w := workloadByName(name)
		svcFn := func(ctx context.Context) outcome { return svc.execute(ctx, w) }
		code := w.NaivePrelude + w.Code
		naiveFn := func(ctx context.Context) outcome { return nv.run(ctx, code, "exec", w.checkStdout) }
		n := lowRateCount(o.duration, o.rate, o.lowMin[name])

		rep.Phases = append(rep.Phases, servicePhase(ctx, o, rep, svc, nil, "low-rate", name, func() ([]outcome, time.Duration) {
			o.progress("service  low-rate    %-8s %d requests at %g/s", name, n, o.rate)
			return openLoop(ctx, n, o.rate, o.reqTimeout, svcFn)
		}))
		if nv != nil && ctx.Err() == nil {
			o.progress("naive    low-rate    %-8s %d requests at %g/s", name, n, o.rate)
			rep.Phases = append(rep.Phases, naivePhase(o, "low-rate", "naive", name, 0, func() ([]outcome, time.Duration) {
				return openLoop(ctx, n, o.rate, o.reqTimeout, naiveFn)
			}))
		}
		if ctx.Err() == nil {
			rep.Phases = append(rep.Phases, servicePhase(ctx, o, rep, svc, rss, "saturation", name, func() ([]outcome, time.Duration) {
				o.progress("service  saturation  %-8s %d clients for %v", name, conc, o.duration)
				return closedLoop(ctx, conc, o.duration, o.reqTimeout, svcFn)
			}))
		}
		if nv != nil && ctx.Err() == nil {
			o.progress("naive    saturation  %-8s %d clients for %v", name, conc, o.duration)
			rep.Phases = append(rep.Phases, naivePhase(o, "saturation", "naive", name, conc, func() ([]outcome, time.Duration) {
				return closedLoop(ctx, conc, o.duration, o.reqTimeout, naiveFn)
			}))
		}
		if !lifecycleDone && (name == "hello" || !slices.Contains(o.workloads, "hello")) && ctx.Err() == nil {
			lifecycleDone = true
			rep.Lifecycle = measureLifecycle(ctx, o, nv, conc)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if o.sessions && ctx.Err() == nil {
		sessionPhases(ctx, o, rep, svc, nv, rss)
	}
	if rss != nil {
		rss.mu.Lock()
		rep.Service.RSSMaxBytes, rep.Service.RSSSamples = rss.max, rss.samples
		if rss.lastErr != nil {
			rep.warn(o, "VmRSS sampling: %v", rss.lastErr)
		}
		rss.mu.Unlock()
	}

	// 5. Leaks, whatever happened above (even after Ctrl-C).
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.settleTimeout+time.Minute)
	rep.Leaks = checkLeaks(lctx, o, svc, cli, naiveOwner, rep.Service.ServiceID)
	cancel()

	finish(rep)
	checkThresholds(o, rep)
	printReport(os.Stdout, rep)
	if o.jsonPath != "" {
		if err := writeJSON(o.jsonPath, rep); err != nil {
			fmt.Fprintf(os.Stderr, "pyexec-bench: write %s: %v\n", o.jsonPath, err)
			return exitSetup
		}
	}
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "pyexec-bench: interrupted")
		return exitSetup
	case len(rep.Breaches) > 0:
		return exitBreach
	}
	return exitOK
}

// servicePhase runs one phase against the service: the pool is full
// before it starts, pool hits and misses are read around it, the RSS is
// sampled during it (when rss is set), and the time the pool then takes to
// refill is recorded.
func servicePhase(ctx context.Context, o *options, rep *report, svc *service, rss *rssSampler,
	phase, name string, drive func() ([]outcome, time.Duration)) phaseResult {
	before, err := svc.waitReady(ctx, o.refillTimeout, true)
	if err != nil {
		rep.warn(o, "before service %s %s: %v", phase, name, err)
	}
	var outs []outcome
	var elapsed time.Duration
	var cpu float64
	rssMax := rss.during(ctx, func() {
		cpu = hostCPUDuring(func() { outs, elapsed = drive() })
	})
	res := aggregate(outs, elapsed)
	res.setHostCPU(cpu)
	res.Phase, res.Target, res.Workload = phase, "service", name
	res.RSSMaxBytes = rssMax
	if phase == "low-rate" {
		res.Rate = o.rate
	} else {
		res.Concurrency = rep.Concurrency
	}
	// How long the pool takes to be full again; the next phase waits for it.
	t0 := time.Now()
	after, err := svc.waitReady(ctx, o.refillTimeout, true)
	if err != nil {
		rep.warn(o, "after service %s %s: %v", phase, name, err)
		res.PoolRefillS = -1
	} else {
		res.PoolRefillS = jsonFloat(math.Round(time.Since(t0).Seconds()*10) / 10)
	}
	if before != nil && after != nil && before.Runner.Pool != nil && after.Runner.Pool != nil {
		res.PoolHits = after.Runner.Pool.Hits - before.Runner.Pool.Hits
		res.PoolMisses = after.Runner.Pool.Misses - before.Runner.Pool.Misses
	}
	if after != nil && after.Runner.Pool != nil {
		rep.Service.RefillFailed = after.Runner.Pool.RefillFailures
		rep.Service.Retired = after.Runner.Pool.Retired
	}
	o.progress("         -> %s", oneLine(res))
	return res
}

// setupNaive prepares the naive path: the service's image (or -image) and
// limits. nil (with a warning) when it cannot run.
func setupNaive(ctx context.Context, o *options, rep *report, cli *client.Client, h *healthBody, owner string) *naive {
	image := o.image
	if image == "" {
		image = h.Image.Tag
	}
	ictx, cancel := context.WithTimeout(ctx, 15*time.Second)
	_, err := cli.ImageInspect(ictx, image)
	cancel()
	if err != nil {
		rep.warn(o, "naive baseline skipped: image %q: %v", image, err)
		return nil
	}
	lim := limits{
		MemoryBytes: int64(h.settingNumber("memory_limit_bytes", 512<<20)),
		CPUs:        h.settingNumber("cpu_limit", 1),
		PidsLimit:   int64(h.settingNumber("pids_limit", 128)),
		TmpfsBytes:  int64(h.settingNumber("tmpfs_bytes", 64<<20)),
	}
	nv, err := newNaive(cli, image, owner, lim)
	if err != nil {
		rep.warn(o, "naive baseline skipped: %v", err)
		return nil
	}
	rep.NaiveImage, rep.NaiveLimits = image, &lim
	return nv
}

// naivePhase runs and summarises one phase that does not involve the service.
func naivePhase(o *options, phase, target, name string, conc int, drive func() ([]outcome, time.Duration)) phaseResult {
	var outs []outcome
	var el time.Duration
	cpu := hostCPUDuring(func() { outs, el = drive() })
	res := aggregate(outs, el)
	res.setHostCPU(cpu)
	res.Phase, res.Target, res.Workload, res.Concurrency = phase, target, name, conc
	if phase == "low-rate" {
		res.Rate = o.rate
	}
	o.progress("         -> %s", oneLine(res))
	return res
}

// measureLifecycle is the engine's raw rate: print(1) through the naive path
// by conc clients for the duration. Every execution of the service costs one
// such lifecycle too (its pool only moves it off the request path), so this
// bounds the service's throughput on this engine.
func measureLifecycle(ctx context.Context, o *options, nv *naive, conc int) *phaseResult {
	check := func(stdout string) error {
		if strings.TrimSpace(stdout) != "1" {
			return fmt.Errorf("stdout %q, want 1", clip(stdout, 80))
		}
		return nil
	}
	o.progress("engine   lifecycle   print(1) %d clients for %v", conc, o.duration)
	res := naivePhase(o, "saturation", "lifecycle", "print(1)", conc, func() ([]outcome, time.Duration) {
		return closedLoop(ctx, conc, o.duration, o.reqTimeout, func(ctx context.Context) outcome {
			return nv.run(ctx, lifecycleCode, "lifecycle", check)
		})
	})
	return &res
}

// describeEngine reads the engine's version and host facts.
func describeEngine(ctx context.Context, cli *client.Client) (engineInfo, error) {
	v, err := cli.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return engineInfo{}, err
	}
	e := engineInfo{Version: v.Version, APIVersion: v.APIVersion, ClientAPIVersion: cli.ClientVersion()}
	if res, err := cli.Info(ctx, client.InfoOptions{}); err == nil {
		info := res.Info
		e.OperatingSystem, e.CPUs, e.MemTotalBytes = info.OperatingSystem, info.NCPU, info.MemTotal
		e.StorageDriver, e.CgroupDriver, e.CgroupVersion = info.Driver, info.CgroupDriver, info.CgroupVersion
		e.KernelVersion = info.KernelVersion
	}
	return e, nil
}

// checkLeaks counts what is left. The naive owner must have nothing (what
// is found is removed, and reported). The service may keep its idle pool and
// its validator; once it has settled (nothing running, queued or filling),
// any other container with its owner label is a leak.
func checkLeaks(ctx context.Context, o *options, svc *service, cli *client.Client, naiveOwner, serviceID string) leakReport {
	lr := leakReport{NaiveOwner: naiveOwner, ServiceOwner: serviceID}
	if left, err := listOwned(ctx, cli, naiveOwner); err != nil {
		lr.Error = "list naive containers: " + err.Error()
	} else {
		lr.NaiveLeft = len(left)
		nv := &naive{cli: cli, cleanupTimeout: 30 * time.Second}
		for _, c := range left {
			_ = nv.remove(ctx, c.ID) // reported as a leak all the same
		}
	}
	if serviceID == "" {
		return lr
	}
	deadline := time.Now().Add(o.settleTimeout)
	for {
		h, _, herr := svc.health(ctx)
		list, lerr := listOwned(ctx, cli, serviceID)
		if herr != nil || lerr != nil {
			lr.Error = fmt.Sprintf("service leak check: health: %v; list: %v", herr, lerr)
		} else {
			lr.Error = ""
			lr.ServiceByRole = map[string]int{}
			tracked := map[string]bool{}
			filling := 0
			lr.ServicePoolIdle = 0
			if p := h.Runner.Pool; p != nil {
				lr.ServicePoolIdle, filling = sum(p.Idle), sum(p.Filling)
				for _, c := range p.Containers {
					tracked[c.ID] = true
				}
			}
			lr.ServiceUntrack = nil
			for _, c := range list {
				role := c.Labels[labelRole]
				lr.ServiceByRole[role]++
				if role == "warm" && !tracked[shortID(c.ID)] {
					lr.ServiceUntrack = append(lr.ServiceUntrack, fmt.Sprintf("%s (warm, %s)", shortID(c.ID), c.State))
				}
				if role != "warm" && role != "validator" {
					lr.ServiceUntrack = append(lr.ServiceUntrack, fmt.Sprintf("%s (%s, %s)", shortID(c.ID), role, c.State))
				}
			}
			if lr.ServiceByRole["validator"] > 1 {
				lr.ServiceUntrack = append(lr.ServiceUntrack, fmt.Sprintf("%d validator containers", lr.ServiceByRole["validator"]))
			}
			lr.CreatedMinusRm = h.Runner.ContainersCreated - h.Runner.ContainersRemoved
			lr.ServiceSettled = h.Runner.Running == 0 && h.Runner.Queued == 0 && filling == 0
			if lr.ServiceSettled && len(lr.ServiceUntrack) == 0 {
				return lr
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return lr
		}
		select {
		case <-ctx.Done():
			return lr
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func poolIdle(h *healthBody) string {
	if h.Runner.Pool == nil {
		return "(no pool)"
	}
	return fmt.Sprintf("%v of %d", h.Runner.Pool.Idle, h.Runner.Pool.Size)
}

// redact hides values of settings whose names suggest a secret, in case a
// service version reports one: the report is printed and saved.
func redact(settings map[string]any) map[string]any {
	out := make(map[string]any, len(settings))
	for k, v := range settings {
		lk := strings.ToLower(k)
		secret := strings.Contains(lk, "token") || strings.Contains(lk, "secret") ||
			strings.Contains(lk, "password") || strings.HasSuffix(lk, "_key")
		if s, ok := v.(string); ok && secret && s != "" && s != "unset" && s != "set" && s != "redacted" {
			v = "<redacted>"
		}
		out[k] = v
	}
	return out
}
