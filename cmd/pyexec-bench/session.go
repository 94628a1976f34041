package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"time"
)

// The session workload: cells sent to POST /sessions/{id}/execute after a
// warm-up cell has imported numpy and matplotlib, compared in the same run
// with single-shot POST /execute.

// sessionWarmup is the untimed first cell of every session.
const sessionWarmup = "import numpy as np\nimport matplotlib.pyplot as plt\n"

var (
	sessionPrint = workload{Name: "session-print", Code: "print(1)\n", StdoutExact: "1\n", Charts: -1}
	// sessionSine is the seed's sine-wave plot, the imports already done.
	sessionSine = workload{Name: "session-sine", Code: `x = np.linspace(0, 10, 100)
plt.figure(figsize=(10, 6))
plt.plot(x, np.sin(x))
plt.title('Sine Wave')
plt.show()
`, Charts: 1}
)

// Least counts of the session low-rate phases.
const (
	sessionPrintLowMin = 20
	// sessionSineLowMin: the target compares two medians (latency and
	// execution time), whose difference is noisy on few cells.
	sessionSineLowMin = 30
)

// Targets of issue 12.
const (
	sessionPrintP50MaxMS   = 5.0 // print(1) cell p50
	sessionSineOverExecMS  = 5.0 // sine cell p50 minus its execution p50
	sessionSineSatMinRatio = 5.0 // session sine req/s over single-shot sine req/s
)

// targetRow is one target and whether the run met it.
type targetRow struct {
	Name  string    `json:"name"`
	Value jsonFloat `json:"value"`
	Limit jsonFloat `json:"limit"`
	// Unit of Value and Limit: "ms" or "x".
	Unit string `json:"unit"`
	// AtLeast: Value must be >= Limit (else <=).
	AtLeast bool `json:"at_least"`
	Met     bool `json:"met"`
}

// sessionTargets computes the session targets from the phases: NaN and
// not met when a phase is missing or had no success.
func sessionTargets(phases []phaseResult) []targetRow {
	find := func(phase, target, wl string) *phaseResult {
		for i := range phases {
			p := &phases[i]
			if p.Phase == phase && p.Target == target && p.Workload == wl {
				return p
			}
		}
		return nil
	}
	p50 := func(p *phaseResult) float64 {
		if p == nil {
			return math.NaN()
		}
		return p.p50()
	}
	rps := func(p *phaseResult) float64 {
		if p == nil || p.OK == 0 {
			return math.NaN()
		}
		return p.ThroughputRPS
	}
	row := func(name string, v, limit float64, unit string, atLeast bool) targetRow {
		met := !math.IsNaN(v) && !math.IsNaN(limit) && (atLeast && v >= limit || !atLeast && v <= limit)
		return targetRow{Name: name, Value: jsonFloat(v), Limit: jsonFloat(limit), Unit: unit, AtLeast: atLeast, Met: met}
	}
	sine := find("low-rate", "session", sessionSine.Name)
	execP50 := math.NaN()
	if sine != nil {
		execP50 = float64(sine.ExecMSP50)
	}
	return []targetRow{
		row("session print(1) p50", p50(find("low-rate", "session", sessionPrint.Name)), sessionPrintP50MaxMS, "ms", false),
		row("session sine p50 (limit: its execution p50 + 5 ms)", p50(sine), execP50+sessionSineOverExecMS, "ms", false),
		row("session sine saturation / single-shot sine saturation",
			ratio(rps(find("saturation", "session", sessionSine.Name)), rps(find("saturation", "service", "sine"))),
			sessionSineSatMinRatio, "x", true),
	}
}

// createSession sends POST /sessions and returns the new session's ID.
func (s *service) createSession(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base.JoinPath("sessions").String(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Request-ID", fmt.Sprintf("%s-%d", s.prefix, s.seq.Add(1)))
	resp, err := s.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer drainClose(resp.Body)
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("POST /sessions: %d %s", resp.StatusCode, clip(string(raw), 300))
	}
	var body struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &body); err != nil || body.ID == "" {
		return "", fmt.Errorf("POST /sessions: no id in %s (%v)", clip(string(raw), 300), err)
	}
	return body.ID, nil
}

// deleteSession sends DELETE /sessions/{id}; 204 is success.
func (s *service) deleteSession(ctx context.Context, id string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.base.JoinPath("sessions", id).String(), nil)
	if err != nil {
		return err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer drainClose(resp.Body)
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("DELETE /sessions/%s: %d", shortID(id), resp.StatusCode)
	}
	return nil
}

// cell runs one cell of w in session id. Session answers may not name a
// sandbox; they are counted as "session" so that execution_time is kept.
func (s *service) cell(ctx context.Context, id string, w workload) outcome {
	o := s.executeAt(ctx, w, "sessions", id, "execute")
	if o.ok && o.sandbox == "" {
		o.sandbox = "session"
	}
	return o
}

// openSessions creates n sessions and runs the warm-up cell in each, in
// parallel. It returns the IDs created (even on error, for deletion).
func (s *service) openSessions(ctx context.Context, n int, reqTimeout time.Duration) ([]string, error) {
	ids := make([]string, n)
	errs := make([]error, n)
	warm := workload{Name: "session-warmup", Code: sessionWarmup, Charts: -1}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, reqTimeout)
			defer cancel()
			id, err := s.createSession(rctx)
			if err != nil {
				errs[i] = err
				return
			}
			ids[i] = id
			if o := s.cell(rctx, id, warm); !o.ok {
				errs[i] = fmt.Errorf("warm-up cell: %s %s", o.errKey, o.errMsg)
			}
		}()
	}
	wg.Wait()
	created := ids[:0]
	for _, id := range ids {
		if id != "" {
			created = append(created, id)
		}
	}
	return created, errors.Join(errs...)
}

// closeSessions deletes the sessions, whatever ctx's state.
func (s *service) closeSessions(ctx context.Context, o *options, rep *report, ids []string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	for _, id := range ids {
		if err := s.deleteSession(ctx, id); err != nil {
			rep.warn(o, "delete session: %v", err)
		}
	}
}

// sessionPhases measures the session workload: at the low rate on one
// session (print(1), then the sine cell), then at saturation with one
// session per client (the sine cell). Sessions are warmed up untimed and
// deleted at the end. Between the two, the floors of a cell at the same low
// rate (floors.go; the attach floor needs the naive path, nv).
func sessionPhases(ctx context.Context, o *options, rep *report, svc *service, nv *naive, rss *rssSampler) {
	conc := rep.Concurrency
	o.progress("session  setup       1 session, warm-up cell")
	ids, err := svc.openSessions(ctx, 1, o.reqTimeout)
	if err != nil {
		svc.closeSessions(ctx, o, rep, ids)
		rep.warn(o, "session low-rate phases skipped: %v", err)
		return
	}
	id := ids[0]
	for _, c := range []struct {
		w   workload
		min int
	}{{sessionPrint, sessionPrintLowMin}, {sessionSine, sessionSineLowMin}} {
		if ctx.Err() != nil {
			break
		}
		n := lowRateCount(o.duration, o.rate, c.min)
		fn := func(ctx context.Context) outcome { return svc.cell(ctx, id, c.w) }
		res := servicePhase(ctx, o, rep, svc, nil, "low-rate", c.w.Name, func() ([]outcome, time.Duration) {
			o.progress("session  low-rate    %-8s %d cells at %g/s", c.w.Name, n, o.rate)
			return openLoop(ctx, n, o.rate, o.reqTimeout, fn)
		})
		res.Target = "session"
		rep.Phases = append(rep.Phases, res)
	}
	svc.closeSessions(ctx, o, rep, ids)
	if ctx.Err() != nil {
		return
	}
	floorPhases(ctx, o, rep, svc, nv)
	if ctx.Err() != nil {
		return
	}

	o.progress("session  setup       %d sessions, warm-up cells", conc)
	ids, err = svc.openSessions(ctx, conc, o.reqTimeout)
	defer svc.closeSessions(ctx, o, rep, ids)
	if err != nil {
		rep.warn(o, "session saturation phase skipped: %v", err)
		return
	}
	// Each client holds a session while its cell runs: with as many
	// sessions as clients, every client always finds one free.
	free := make(chan string, len(ids))
	for _, id := range ids {
		free <- id
	}
	fn := func(ctx context.Context) outcome {
		id := <-free
		defer func() { free <- id }()
		return svc.cell(ctx, id, sessionSine)
	}
	res := servicePhase(ctx, o, rep, svc, rss, "saturation", sessionSine.Name, func() ([]outcome, time.Duration) {
		o.progress("session  saturation  %-8s %d clients for %v", sessionSine.Name, conc, o.duration)
		return closedLoop(ctx, conc, o.duration, o.reqTimeout, fn)
	})
	res.Target = "session"
	rep.Phases = append(rep.Phases, res)
}
