package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/pyexec/pyexec/runner"
)

// maxResponseBytes bounds what is read of one response (charts are base64).
const maxResponseBytes = 64 << 20

// service talks to a running pyexec over HTTP.
type service struct {
	base   *url.URL
	hc     *http.Client
	prefix string // X-Request-ID prefix, so the service's logs can be matched
	seq    atomic.Int64
	// execTimeout is the "timeout" field of every request, in seconds.
	execTimeout float64
}

func newService(base *url.URL, conns int, reqTimeout time.Duration, execTimeout float64, prefix string) *service {
	tr := &http.Transport{
		Proxy:                 nil, // never through a proxy: the target is local
		MaxIdleConns:          conns + 4,
		MaxIdleConnsPerHost:   conns + 4,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: reqTimeout,
		DisableCompression:    true,
	}
	return &service{
		base:        base,
		hc:          &http.Client{Transport: tr, Timeout: reqTimeout},
		prefix:      prefix,
		execTimeout: execTimeout,
	}
}

func (s *service) close() { s.hc.CloseIdleConnections() }

// healthBody is the part of GET /health the benchmark reads.
type healthBody struct {
	Status string `json:"status"`
	Engine struct {
		Reachable  bool   `json:"reachable"`
		Version    string `json:"version"`
		APIVersion string `json:"api_version"`
		Error      string `json:"error"`
	} `json:"engine"`
	Image struct {
		Tag      string `json:"tag"`
		Present  bool   `json:"present"`
		Current  bool   `json:"current"`
		Building bool   `json:"building"`
		Error    string `json:"error"`
	} `json:"image"`
	// Runner and its pool are the service's own types, decoded from JSON.
	Runner   runner.Stats   `json:"runner"`
	Settings map[string]any `json:"settings"`
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// full says the pool has all its containers idle (true without a pool).
func (h *healthBody) poolFull() bool {
	p := h.Runner.Pool
	return p == nil || sum(p.Idle) >= p.Size
}

// settingString returns a setting as text ("" when absent).
func (h *healthBody) settingString(key string) string {
	switch v := h.Settings[key].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// settingNumber returns a numeric setting, or def when absent.
func (h *healthBody) settingNumber(key string, def float64) float64 {
	if v, ok := h.Settings[key].(float64); ok {
		return v
	}
	return def
}

// health fetches GET /health; a 503 (degraded) still returns the body.
func (s *service) health(ctx context.Context) (*healthBody, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base.JoinPath("health").String(), nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer drainClose(resp.Body)
	var h healthBody
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&h); err != nil {
		return nil, resp.StatusCode, fmt.Errorf("decode /health (status %d): %w", resp.StatusCode, err)
	}
	return &h, resp.StatusCode, nil
}

// waitReady polls /health until it answers 200 with a full pool, or until
// timeout. It returns the last body; err says why it gave up.
func (s *service) waitReady(ctx context.Context, timeout time.Duration, needFull bool) (*healthBody, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last *healthBody
	var lastErr error
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		h, code, err := s.health(ctx)
		switch {
		case err != nil:
			lastErr = err
		case code != http.StatusOK:
			last, lastErr = h, fmt.Errorf("/health answers %d (%s; image %s building=%v %s)",
				code, h.Status, h.Image.Tag, h.Image.Building, h.Image.Error)
		case needFull && !h.poolFull():
			last, lastErr = h, fmt.Errorf("pool not full: idle %v of %d, filling %v",
				h.Runner.Pool.Idle, h.Runner.Pool.Size, h.Runner.Pool.Filling)
		default:
			return h, nil
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("not ready after %v: %w", timeout, lastErr)
		case <-tick.C:
		}
	}
}

// executeRequest and executeResponse are the parts of POST /execute used.
type executeRequest struct {
	Code    string  `json:"code"`
	Timeout float64 `json:"timeout"`
}

type executeResponse struct {
	Status        string  `json:"status"`
	ExecutionTime float64 `json:"execution_time"`
	Output        struct {
		Stdout string            `json:"stdout"`
		Charts []json.RawMessage `json:"charts"`
	} `json:"output"`
	Error *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	Resources struct {
		DurationMS float64 `json:"duration_ms"`
		Sandbox    string  `json:"sandbox"`
	} `json:"resources"`
}

// execute sends one POST /execute and classifies the answer. Latency is
// from just before the request is written to the end of the body.
func (s *service) execute(ctx context.Context, w workload) outcome {
	return s.executeAt(ctx, w, "execute")
}

// executeAt is execute against path (under the base URL), which takes the
// /execute body and answers like /execute: "execute" or
// "sessions/{id}/execute".
func (s *service) executeAt(ctx context.Context, w workload, path ...string) outcome {
	body, err := json.Marshal(executeRequest{Code: w.Code, Timeout: s.execTimeout})
	if err != nil {
		return outcome{errKey: "encode", errMsg: err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base.JoinPath(path...).String(), bytes.NewReader(body))
	if err != nil {
		return outcome{errKey: "request", errMsg: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-ID", fmt.Sprintf("%s-%d", s.prefix, s.seq.Add(1)))

	start := time.Now()
	resp, err := s.hc.Do(req)
	if err != nil {
		key := ctxKey(ctx)
		if key == "" {
			key = "transport"
		}
		return outcome{latency: time.Since(start), errKey: key, errMsg: err.Error()}
	}
	defer drainClose(resp.Body)
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	lat := time.Since(start)
	o := outcome{latency: lat, code: resp.StatusCode}
	if err != nil {
		o.errKey, o.errMsg = "read_body", err.Error()
		return o
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusTooManyRequests:
		o.busy = true
		return o
	default:
		o.errKey, o.errMsg = strconv.Itoa(resp.StatusCode), clip(string(raw), 300)
		return o
	}
	var er executeResponse
	if err := json.Unmarshal(raw, &er); err != nil {
		o.errKey, o.errMsg = "decode", err.Error()
		return o
	}
	o.execMS, o.durMS, o.sandbox = er.ExecutionTime, er.Resources.DurationMS, er.Resources.Sandbox
	if er.Status != "success" {
		o.errKey = "status_" + er.Status
		if er.Error != nil {
			o.errMsg = clip(er.Error.Type+": "+er.Error.Message, 300)
		}
		return o
	}
	if err := w.checkStdout(er.Output.Stdout); err != nil {
		o.errKey, o.errMsg = "check", err.Error()
		return o
	}
	if w.Charts >= 0 && len(er.Output.Charts) != w.Charts {
		o.errKey, o.errMsg = "check", fmt.Sprintf("%d charts, want %d", len(er.Output.Charts), w.Charts)
		return o
	}
	o.ok = true
	return o
}

// ctxKey names why ctx ended: "client_timeout" (-request-timeout),
// "interrupted" (SIGINT/SIGTERM), or "" while it is live.
func ctxKey(ctx context.Context) string {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "client_timeout"
	case ctx.Err() != nil:
		return "interrupted"
	}
	return ""
}

// drainClose reads a little of what is left so the connection can be reused.
func drainClose(rc io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(rc, 64<<10))
	_ = rc.Close()
}
