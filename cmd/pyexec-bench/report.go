package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// printHeader prints what the numbers were measured on.
func printHeader(w io.Writer, r *report) {
	e, s, h := r.Engine, r.Service, r.Host
	fmt.Fprintf(w, "pyexec-bench  %s  target %s\n", r.StartedAt.Format(time.RFC3339), r.Target)
	fmt.Fprintf(w, "engine   docker %s, API %s (client %s), kernel %s, %s, %d CPUs, %s RAM, %s, cgroup %s/%s\n",
		e.Version, e.APIVersion, e.ClientAPIVersion, e.KernelVersion, e.OperatingSystem, e.CPUs,
		mb(e.MemTotalBytes), e.StorageDriver, e.CgroupDriver, e.CgroupVersion)
	fmt.Fprintf(w, "host     %s, %d CPUs, %s %s\n", h.Hostname, h.CPUs, h.GoVersion, h.OSArch)
	pid := "unknown (" + s.PIDError + ")"
	if s.PID > 0 {
		pid = fmt.Sprintf("%d, VmRSS at start %s", s.PID, mb(s.RSSStartBytes))
	}
	fmt.Fprintf(w, "service  pid %s, instance %s, image %s\n", pid, s.Instance, s.ImageTag)
	fmt.Fprintf(w, "settings %s\n", fmtSettings(s.Settings))
	if len(s.WarmContainers) == 0 {
		fmt.Fprintf(w, "warm     no pooled containers\n")
	}
	var total int64
	for _, c := range s.WarmContainers {
		fmt.Fprintf(w, "warm     %s  %-4s  %-30s  %s  preload %s ms  age %.0f s\n", c.ID, c.Flavor, c.Preload, mb(c.MemoryBytes), fmtMS(c.PreloadMS), c.AgeSeconds)
		total += c.MemoryBytes
	}
	if len(s.WarmContainers) > 0 {
		fmt.Fprintf(w, "warm     total %s in %d containers\n", mb(total), len(s.WarmContainers))
	}
	fmt.Fprintf(w, "load     low-rate %g req/s (open loop), saturation %d clients (closed loop) for %s\n\n",
		r.Rate, r.Concurrency, r.Duration)
}

func fmtSettings(m map[string]any) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		v := m[k]
		if f, ok := v.(float64); ok && f == math.Trunc(f) && math.Abs(f) < 1e15 {
			v = int64(f) // JSON numbers: 1048576, not 1.048576e+06
		}
		parts[i] = fmt.Sprintf("%s=%v", k, v)
	}
	return strings.Join(parts, " ")
}

// oneLine is a phase in one line, for progress output.
func oneLine(r phaseResult) string {
	return fmt.Sprintf("n=%d ok=%d 429=%d errors=%s p50=%s p95=%s p99=%s ms, %.2f req/s, exec p50 %s ms",
		r.Requests, r.OK, r.Busy, fmtCounts(r.Errors), fmtMS(nanIfEmpty(r, r.Latency.P50)),
		fmtMS(nanIfEmpty(r, r.Latency.P95)), fmtMS(nanIfEmpty(r, r.Latency.P99)), r.ThroughputRPS, fmtMS(float64(r.ExecMSP50))) + fmt.Sprintf(", cpu %s ms/req", fmtMS(float64(r.HostCPUMSPerOK)))
}

func nanIfEmpty(r phaseResult, v float64) float64 {
	if r.Latency.N == 0 {
		return math.NaN()
	}
	return v
}

// finish computes the ratios from the phases.
func finish(r *report) {
	find := func(phase, target, wl string) *phaseResult {
		for i := range r.Phases {
			p := &r.Phases[i]
			if p.Phase == phase && p.Target == target && p.Workload == wl {
				return p
			}
		}
		return nil
	}
	get := func(p *phaseResult, f func(*phaseResult) float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return f(p)
	}
	p50 := func(p *phaseResult) float64 { return p.p50() }
	rps := func(p *phaseResult) float64 {
		if p.OK == 0 {
			return math.NaN()
		}
		return p.ThroughputRPS
	}
	for _, wl := range r.Workloads {
		sl, nl := find("low-rate", "service", wl), find("low-rate", "naive", wl)
		ss, ns := find("saturation", "service", wl), find("saturation", "naive", wl)
		if nl == nil && ns == nil {
			continue
		}
		row := ratioRow{
			Workload:      wl,
			P50LowService: jsonFloat(get(sl, p50)),
			P50LowNaive:   jsonFloat(get(nl, p50)),
			RPSSatService: jsonFloat(get(ss, rps)),
			RPSSatNaive:   jsonFloat(get(ns, rps)),
		}
		row.P50Ratio = jsonFloat(ratio(float64(row.P50LowService), float64(row.P50LowNaive)))
		row.ThroughputRatio = jsonFloat(ratio(float64(row.RPSSatService), float64(row.RPSSatNaive)))
		r.Ratios = append(r.Ratios, row)
	}
	if slices.ContainsFunc(r.Phases, func(p phaseResult) bool { return p.Target == "session" }) {
		r.SessionTargets = sessionTargets(r.Phases)
	}
	if r.Lifecycle != nil {
		r.HelloOverLifecycle = jsonFloat(ratio(get(find("saturation", "service", "hello"), rps), get(r.Lifecycle, rps)))
	}
}

// checkThresholds records every breach: flags, leaks.
func checkThresholds(o *options, r *report) {
	for _, p := range r.Phases {
		if p.Target != "service" {
			continue
		}
		switch p.Phase {
		case "low-rate":
			for _, q := range []struct {
				name string
				v    float64
			}{{"p50", p.Latency.P50}, {"p95", p.Latency.P95}, {"p99", p.Latency.P99}} {
				limit := o.maxLatency[p.Workload][q.name]
				if limit == nil || *limit <= 0 {
					continue
				}
				if p.Latency.N == 0 {
					r.Breaches = append(r.Breaches, fmt.Sprintf("%s low-rate %s: no successful request", p.Workload, q.name))
				} else if q.v > durMS(*limit) {
					r.Breaches = append(r.Breaches, fmt.Sprintf("%s low-rate %s %s ms > %v", p.Workload, q.name, fmtMS(q.v), *limit))
				}
			}
		case "saturation":
			if m := o.minRPS[p.Workload]; m != nil && *m > 0 && p.ThroughputRPS < *m {
				r.Breaches = append(r.Breaches, fmt.Sprintf("%s saturation throughput %.2f req/s < %g", p.Workload, p.ThroughputRPS, *m))
			}
		}
	}
	if o.maxErrors >= 0 {
		n := 0
		for _, p := range r.Phases {
			if p.Target == "service" || p.Target == "session" {
				for _, c := range p.Errors {
					n += c
				}
			}
		}
		if n > o.maxErrors {
			r.Breaches = append(r.Breaches, fmt.Sprintf("service errors %d > %d", n, o.maxErrors))
		}
	}
	if o.maxRSSMB > 0 && float64(r.Service.RSSMaxBytes) > o.maxRSSMB*1e6 {
		r.Breaches = append(r.Breaches, fmt.Sprintf("service VmRSS %s > %g MB", mb(r.Service.RSSMaxBytes), o.maxRSSMB))
	}
	l := r.Leaks
	if l.NaiveLeft > 0 {
		r.Breaches = append(r.Breaches, fmt.Sprintf("leak: %d naive containers (owner %s) were left (now removed)", l.NaiveLeft, l.NaiveOwner))
	}
	if len(l.ServiceUntrack) > 0 {
		r.Breaches = append(r.Breaches, fmt.Sprintf("leak: service %s has containers beyond its idle pool and validator: %s",
			l.ServiceOwner, strings.Join(l.ServiceUntrack, ", ")))
	}
	if l.Error != "" {
		r.Breaches = append(r.Breaches, "leak check failed: "+l.Error)
	}
}

// printReport prints the tables, ratios, memory and verdict.
func printReport(w io.Writer, r *report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\ttarget\tworkload\tconc\tn\tok\t429\terrors\tp50 ms\tp95 ms\tp99 ms\treq/s\tcpu ms/req\texec p50 ms\tsandbox\tpool hit/miss\trefill s\t")
	rows := append([]phaseResult{}, r.Phases...)
	if r.Lifecycle != nil {
		rows = append(rows, *r.Lifecycle)
	}
	for _, p := range rows {
		conc := "-"
		if p.Concurrency > 0 {
			conc = fmt.Sprint(p.Concurrency)
		}
		pool, refill := "-", "-"
		if p.Target == "service" || p.Target == "session" {
			pool = fmt.Sprintf("%d/%d", p.PoolHits, p.PoolMisses)
			refill = fmtMS(float64(p.PoolRefillS))
			if p.PoolRefillS < 0 {
				refill = "timeout"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t\n",
			p.Phase, p.Target, p.Workload, conc, p.Requests, p.OK, p.Busy, fmtCounts(p.Errors),
			fmtMS(nanIfEmpty(p, p.Latency.P50)), fmtMS(nanIfEmpty(p, p.Latency.P95)), fmtMS(nanIfEmpty(p, p.Latency.P99)),
			p.ThroughputRPS, fmtMS(float64(p.HostCPUMSPerOK)), fmtMS(float64(p.ExecMSP50)), fmtCounts(p.Sandboxes), pool, refill)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "latency: client-side, successful requests only (429 and errors apart); service: POST sent to body read;"+
		" naive: create to output read (the removal after it is not in the latency but is in req/s);"+
		" cpu ms/req: the whole host's busy CPU during the phase per successful request")
	for _, p := range rows {
		for _, s := range p.ErrorSamples {
			fmt.Fprintf(w, "  error %s %s %s: %s\n", p.Phase, p.Target, p.Workload, s)
		}
	}

	if len(r.Ratios) > 0 {
		fmt.Fprintln(w, "\nservice / naive (p50: lower is better for the service; throughput: higher is)")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "workload\tp50 low service ms\tp50 low naive ms\tp50 ratio\tsat service req/s\tsat naive req/s\tthroughput ratio\t")
		for _, x := range r.Ratios {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", x.Workload,
				fmtMS(float64(x.P50LowService)), fmtMS(float64(x.P50LowNaive)), fmtRatio(float64(x.P50Ratio)),
				fmtRate(float64(x.RPSSatService)), fmtRate(float64(x.RPSSatNaive)), fmtRatio(float64(x.ThroughputRatio)))
		}
		_ = tw.Flush()
	}
	if l := r.Lifecycle; l != nil {
		fmt.Fprintf(w, "\nengine lifecycle: %.2f containers/s (print(1), create+start+wait+logs+remove, %d clients); service hello throughput / lifecycle = %s\n",
			l.ThroughputRPS, l.Concurrency, fmtRatio(float64(r.HelloOverLifecycle)))
	}

	if len(r.SessionTargets) > 0 {
		fmt.Fprintln(w, "\nsession targets (issue 12; report only)")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, t := range r.SessionTargets {
			op, verdict := "<=", "NOT MET"
			if t.AtLeast {
				op = ">="
			}
			if t.Met {
				verdict = "met"
			}
			fmt.Fprintf(tw, "%s\t%s %s\t%s %s %s\t%s\t\n", t.Name, fmtRate(float64(t.Value)), t.Unit, op,
				fmtRate(float64(t.Limit)), t.Unit, verdict)
		}
		_ = tw.Flush()
		for _, p := range r.Phases {
			if p.Target == "session" && p.Phase == "low-rate" && !math.IsNaN(float64(p.OverExecMSP50)) {
				fmt.Fprintf(w, "  %s: per cell, latency minus its own execution_time, p50 %s ms (execution_time is to the nearest ms)\n",
					p.Workload, fmtMS(float64(p.OverExecMSP50)))
			}
		}
		if line := floorLine(r.Phases); line != "" {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}

	s := r.Service
	fmt.Fprintln(w)
	if s.PID > 0 {
		fmt.Fprintf(w, "service memory: VmRSS max %s during saturation (%d samples), %s at start; issue target < 100 MB\n",
			mb(s.RSSMaxBytes), s.RSSSamples, mb(s.RSSStartBytes))
	} else {
		fmt.Fprintf(w, "service memory: not sampled (%s)\n", s.PIDError)
	}
	fmt.Fprintf(w, "pool: %d refill failures, %d retired in total\n", s.RefillFailed, s.Retired)
	l := r.Leaks
	fmt.Fprintf(w, "leaks: naive owner %s: %d left", l.NaiveOwner, l.NaiveLeft)
	if l.ServiceOwner != "" {
		fmt.Fprintf(w, "; service owner %s: containers by role %s, pool idle %d, settled %v, created-removed %d",
			l.ServiceOwner, fmtCounts(l.ServiceByRole), l.ServicePoolIdle, l.ServiceSettled, l.CreatedMinusRm)
	}
	fmt.Fprintln(w)
	for _, x := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", x)
	}
	if len(r.Breaches) == 0 {
		fmt.Fprintln(w, "result: PASS")
		return
	}
	for _, b := range r.Breaches {
		fmt.Fprintf(w, "FAIL: %s\n", b)
	}
}

func fmtRate(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

// writeJSON writes the report atomically enough for a script: a temp file
// in the same directory, renamed.
func writeJSON(path string, r *report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
