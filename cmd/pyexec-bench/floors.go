package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/pyexec/pyexec/internal/engine"
)

// The floors of a session cell, measured at the session phases' low rate:
// what a cell pays before the service does any work of its own. Every cell
// is one HTTP exchange with the service and one round trip through the
// engine's attach stream (the cell in on stdin, the answer out on stdout).
// On a small VM both cost far more after an idle gap than back to back,
// which is why they are measured at the same rate as the cells.
const (
	floorTarget = "floor"
	// floorHTTP: GET /livez, the service's HTTP stack without the engine.
	floorHTTP = "http-livez"
	// floorAttach: a line written to the attach stream of a container that
	// runs cat, and read back: the engine's stream both ways, no sandbox.
	floorAttach = "attach-echo"
	// floorLowMin is the least count of each floor phase.
	floorLowMin = 20
	// floorEchoTimeout bounds one attach round trip.
	floorEchoTimeout = 10 * time.Second
)

// floorPhases measures the two floors at the low rate; the attach floor
// needs the naive path (nv).
func floorPhases(ctx context.Context, o *options, rep *report, svc *service, nv *naive) {
	n := lowRateCount(o.duration, o.rate, floorLowMin)
	o.progress("floor    low-rate    %-8s %d requests at %g/s", floorHTTP, n, o.rate)
	rep.Phases = append(rep.Phases, naivePhase(o, "low-rate", floorTarget, floorHTTP, 0, func() ([]outcome, time.Duration) {
		return openLoop(ctx, n, o.rate, o.reqTimeout, svc.livez)
	}))
	if nv == nil || ctx.Err() != nil {
		return
	}
	echo, err := nv.startEcho(ctx)
	if err != nil {
		rep.warn(o, "attach floor skipped: %v", err)
		return
	}
	defer func() {
		if err := echo.close(ctx); err != nil {
			rep.warn(o, "attach floor: %v", err)
		}
	}()
	o.progress("floor    low-rate    %-8s %d round trips at %g/s", floorAttach, n, o.rate)
	// One stream: round trips never overlap (each takes milliseconds, the
	// interval is seconds), and a late one waits for the previous.
	rep.Phases = append(rep.Phases, naivePhase(o, "low-rate", floorTarget, floorAttach, 0, func() ([]outcome, time.Duration) {
		return openLoop(ctx, n, o.rate, o.reqTimeout, echo.roundTrip)
	}))
}

// livez sends GET /livez (no engine call) and checks for 200.
func (s *service) livez(ctx context.Context) outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base.JoinPath("livez").String(), nil)
	if err != nil {
		return outcome{errKey: "request", errMsg: err.Error()}
	}
	start := time.Now()
	resp, err := s.hc.Do(req)
	if err != nil {
		return outcome{latency: time.Since(start), errKey: "transport", errMsg: err.Error()}
	}
	defer drainClose(resp.Body)
	_, err = io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	o := outcome{latency: time.Since(start), code: resp.StatusCode}
	switch {
	case err != nil:
		o.errKey, o.errMsg = "read_body", err.Error()
	case resp.StatusCode != http.StatusOK:
		o.errKey = fmt.Sprint(resp.StatusCode)
	default:
		o.ok = true
	}
	return o
}

// attachEcho is a container running cat with its attach stream open, as a
// session's sandbox has (the naive path's image and hardening, logs off as
// in the service).
type attachEcho struct {
	n      *naive
	id     string
	conn   client.HijackedResponse
	stdout *engine.AttachReader // the stream's stdout (stderr dropped)
	busy   chan struct{}        // one round trip at a time on the stream
}

// echoLine is what each round trip writes and expects back.
var echoLine = []byte("x\n")

func (n *naive) startEcho(ctx context.Context) (*attachEcho, error) {
	cfg, host := n.spec("", "floor")
	cfg.Entrypoint = []string{"cat"}
	cfg.AttachStdin, cfg.AttachStdout, cfg.AttachStderr = true, true, true
	cfg.OpenStdin, cfg.StdinOnce = true, true
	host.LogConfig = container.LogConfig{Type: "none"}
	name := fmt.Sprintf("%s-%d", n.owner, n.seq.Add(1))
	created, err := n.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: cfg, HostConfig: host, NetworkingConfig: &network.NetworkingConfig{}, Name: name,
	})
	if err != nil {
		_ = n.remove(ctx, name)
		return nil, fmt.Errorf("create: %w", err)
	}
	e := &attachEcho{n: n, id: created.ID, busy: make(chan struct{}, 1)}
	hj, err := n.cli.ContainerAttach(ctx, created.ID, client.ContainerAttachOptions{
		Stream: true, Stdin: true, Stdout: true, Stderr: true,
	})
	if err != nil {
		return nil, fmt.Errorf("attach: %w (%v)", err, e.close(ctx))
	}
	e.conn = hj.HijackedResponse
	e.stdout = engine.NewAttachReader(hj.Reader, io.Discard)
	if _, err := n.cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		return nil, fmt.Errorf("start: %w (%v)", err, e.close(ctx))
	}
	// The first round trip is not timed: the process may still be starting.
	if o := e.roundTrip(ctx); !o.ok {
		return nil, fmt.Errorf("first round trip: %s (%v)", o.errMsg, e.close(ctx))
	}
	return e, nil
}

// roundTrip writes echoLine and reads it back from stdout.
func (e *attachEcho) roundTrip(ctx context.Context) outcome {
	select {
	case e.busy <- struct{}{}:
		defer func() { <-e.busy }()
	case <-ctx.Done():
		return outcome{errKey: "wait", errMsg: ctx.Err().Error()}
	}
	start := time.Now()
	fail := func(key string, err error) outcome {
		return outcome{latency: time.Since(start), errKey: key, errMsg: err.Error()}
	}
	_ = e.conn.Conn.SetDeadline(start.Add(floorEchoTimeout))
	if _, err := e.conn.Conn.Write(echoLine); err != nil {
		return fail("write", err)
	}
	got := make([]byte, len(echoLine))
	if _, err := io.ReadFull(e.stdout, got); err != nil {
		return fail("read", err)
	}
	if !bytes.Equal(got, echoLine) {
		return fail("check", fmt.Errorf("read back %q, want %q", got, echoLine))
	}
	return outcome{latency: time.Since(start), ok: true}
}

func (e *attachEcho) close(ctx context.Context) error {
	if e.conn.Conn != nil {
		e.conn.Close()
	}
	return e.n.remove(ctx, e.id)
}

// floorLine says what the floors leave of the session print(1) cell's
// p50; "" when a phase is missing.
func floorLine(phases []phaseResult) string {
	p50 := map[string]float64{}
	for _, p := range phases {
		if p.Phase == "low-rate" && p.OK > 0 &&
			(p.Target == floorTarget || (p.Target == "session" && p.Workload == sessionPrint.Name)) {
			p50[p.Workload] = p.p50()
		}
	}
	cell, okCell := p50[sessionPrint.Name]
	h, okH := p50[floorHTTP]
	a, okA := p50[floorAttach]
	if !okCell || !okH || !okA || math.IsNaN(cell+h+a) {
		return ""
	}
	return fmt.Sprintf("floors at the same rate: GET /livez p50 %s ms (HTTP alone), attach echo p50 %s ms (the engine's stream both ways, no sandbox); "+
		"session print(1) p50 %s ms, of which %s ms above both", fmtMS(h), fmtMS(a), fmtMS(cell), fmtMS(cell-h-a))
}
