package main

import (
	"fmt"
	"io"
	"sort"
)

// print writes the figures for a person (and for the README).
func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\nsoak: %s of mixed load, %d clients, MAX_WORKERS=%d\n", r.Duration, r.Clients, r.Workers)
	fmt.Fprintf(w, "requests: %d, correct 200: %d, outside the contract: %d\n", r.Requests, r.OK, r.Failures)
	classes := make([]string, 0, len(r.ByClass))
	for c := range r.ByClass {
		classes = append(classes, c)
	}
	sort.Slice(classes, func(i, j int) bool { return r.ByClass[classes[i]] > r.ByClass[classes[j]] })
	fmt.Fprintln(w, "answers by class:")
	for _, c := range classes {
		fmt.Fprintf(w, "  %-45s %d\n", c, r.ByClass[c])
	}
	for c, s := range r.FailureSample {
		fmt.Fprintf(w, "  first %s: %s\n", c, s)
	}
	fmt.Fprintln(w, "faults:")
	for _, e := range r.Events {
		rec := "no success after it"
		if e.Recovered {
			rec = fmt.Sprintf("first success %.1fs after it was back (%.1fs after the fault)", e.RecoveryS, e.FromFaultS)
		}
		switch e.Kind {
		case "engine_restart":
			fmt.Fprintf(w, "  %s engine restart: stop %.1fs, down %.1fs from the stop signal, start %.1fs; %s\n",
				e.At.Format("15:04:05"), e.StopS, e.Back.Sub(e.At).Seconds(), e.StartS, rec)
		default:
			fmt.Fprintf(w, "  %s service SIGKILL: new process serving after %.1fs; %s\n",
				e.At.Format("15:04:05"), e.Back.Sub(e.At).Seconds(), rec)
		}
	}
	fmt.Fprintf(w, "RSS: %.1f MB at start, %.1f MB at end (process started after the kill: %.1f MB when serving)\n",
		mb(r.RSSStartBytes), mb(r.RSSEndBytes), mb(r.RSSRestartBytes))
	fmt.Fprintf(w, "goroutines: %.0f at start, %.0f at end\n", r.GoroutinesStart, r.GoroutinesEnd)
	fmt.Fprintf(w, "service exit after SIGTERM: %s\n", r.ServiceExit)
	fmt.Fprintf(w, "containers left: %d\n", r.ContainersLeft)
	fmt.Fprintf(w, "service log: %s\n", r.Log)
	fmt.Fprintf(w, "timeline (answers by end, seconds from the start):\n%s", r.timeline)
	if r.Passed {
		fmt.Fprintln(w, "PASS")
		return
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
	fmt.Fprintln(w, "FAIL")
}
