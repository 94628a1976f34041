package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/pyexec/pyexec/policy"
	"github.com/pyexec/pyexec/runner"
)

// executeRequest is the body of POST /execute.
type executeRequest struct {
	Code *string `json:"code"`
	// Timeout in seconds; default TIMEOUT_SECONDS, at most MAX_TIMEOUT_SECONDS.
	Timeout *float64 `json:"timeout"`
	// ChartFormat is "png" (default) or "svg" for matplotlib charts.
	ChartFormat string `json:"chart_format,omitempty"`
	// Files are written into the working directory before the code runs
	// (files.go checks them).
	Files []fileBody `json:"files"`
}

// executeResponse is the original service's response shape, plus resources.
type executeResponse struct {
	Status string `json:"status"`
	// ExecutionTime is how long the code ran, in milliseconds.
	ExecutionTime int64              `json:"execution_time"`
	Output        outputBody         `json:"output"`
	Error         *runner.ExecError  `json:"error"`
	Violations    []policy.Violation `json:"violations,omitempty"`
	Resources     resourcesBody      `json:"resources"`
	RequestID     string             `json:"request_id"`
}

type outputBody struct {
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
	// Charts are Outputs.Charts as written (this field shadows that one,
	// in the same place in the JSON object).
	Charts []chartBody `json:"charts"`
	runner.Outputs
}

// chartBody is a runner.Chart as answers write it: an image's data (a JSON
// string of base64) is held as a Go string, which encoding/json writes at
// about 800 MB/s, where it validates a json.RawMessage again at about
// 210 MB/s (a micro-benchmark: 0.06 against 0.23 ms for a chart's 48 KB
// of base64, in every answer with one).
// Its fields are runner.Chart's, in the same order (TestChartBodies).
type chartBody struct {
	Type   string `json:"type"`
	Format string `json:"format"`
	Data   any    `json:"data"`
	Width  int    `json:"width,omitempty"`
	Height int    `json:"height,omitempty"`
	Title  string `json:"title,omitempty"`
	Error  string `json:"error,omitempty"`
}

// chartBodies are the charts as answers write them.
func chartBodies(charts []runner.Chart) []chartBody {
	out := make([]chartBody, len(charts))
	for i, c := range charts {
		out[i] = chartBody{Type: c.Type, Format: c.Format, Data: c.Data, Width: c.Width, Height: c.Height, Title: c.Title, Error: c.Error}
		if text, ok := c.PlainData(); ok {
			out[i].Data = text
		}
	}
	return out
}

type resourcesBody struct {
	CPUTimeMS        float64 `json:"cpu_time_ms"`
	PeakMemoryBytes  int64   `json:"peak_memory_bytes"`
	MemoryLimitBytes int64   `json:"memory_limit_bytes"`
	OOMKilled        bool    `json:"oom_killed"`
	// DurationMS is the whole request inside the service, queue included.
	DurationMS float64 `json:"duration_ms"`
	Sandbox    string  `json:"sandbox"`
	// Warm says the container came ready from the pool.
	Warm bool `json:"warm"`
}

func (h *handler) execute(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var body executeRequest
	if err := decodeJSONLimit(w, r, &body, h.bodyLimit()); err != nil {
		writeError(w, r, err)
		return
	}
	req, err := h.toRunRequest(r.Context(), body)
	if err != nil {
		writeError(w, r, err)
		return
	}
	logRequest(r, req)
	release, err := h.admitExecution(r.Context()) // auth.go: the key's quotas
	if err != nil {
		writeError(w, r, err)
		return
	}
	defer release()

	h.answerExecution(w, r, req, h.opts.Runner.Run, func(res runner.Result) any { return h.executeBody(w, r, res, start) })
}

// answerExecution runs req and answers it: the runner decides every
// outcome, refusals of the pre-check included; here a Result becomes body
// and an error a status. With Accept: text/event-stream the same body is
// the stream's last event (stream.go). /execute and a session's execute
// share it.
func (h *handler) answerExecution(w http.ResponseWriter, r *http.Request, req runner.Request, run runFunc, body func(runner.Result) any) {
	if wantsStream(r) {
		h.streamExecution(w, r, req, run, body)
		return
	}
	res, err := run(r.Context(), req)
	if err != nil {
		h.executionFailed(r.Context())
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, body(res))
}

// executionFailed counts and logs an execution that ended in an error
// rather than a Result.
func (h *handler) executionFailed(ctx context.Context) {
	h.countExecution(outcomeFailed)
	addLogField(ctx, "outcome", outcomeFailed)
}

// logRequest adds what identifies the code and its files to the request's
// log line.
func logRequest(r *http.Request, req runner.Request) {
	sum := sha256.Sum256([]byte(req.Code))
	addLogField(r.Context(), "code_sha256", hex.EncodeToString(sum[:6]))
	addLogField(r.Context(), "code_bytes", len(req.Code))
	if len(req.Files) > 0 {
		n := 0
		for _, f := range req.Files {
			n += len(f.Data)
		}
		addLogField(r.Context(), "input_files", len(req.Files))
		addLogField(r.Context(), "input_bytes", n)
	}
}

// wholeMS is d in the nearest whole milliseconds, as execution_time gives
// it. Cutting the fraction off instead made every execution look 0.5 ms
// shorter on average than the sandbox measured (in microseconds).
func wholeMS(d time.Duration) int64 {
	return d.Round(time.Millisecond).Milliseconds()
}

// executeBody is the answer of an execution that ran (or was refused by the
// pre-check): /execute's, and a session cell's without its session.
func (h *handler) executeBody(w http.ResponseWriter, r *http.Request, res runner.Result, start time.Time) executeResponse {
	outcome := res.Status
	if res.Rejected {
		outcome = outcomeRejected
	}
	h.countExecution(outcome)
	addLogField(r.Context(), "outcome", outcome)
	execMS := wholeMS(res.ExecutionTime)
	addLogField(r.Context(), "exec_ms", execMS)
	addLogField(r.Context(), "stdout_bytes", res.StdoutBytes)
	addLogField(r.Context(), "stderr_bytes", res.StderrBytes)
	if res.Image != "" {
		// Which image ran the code, for operators following an image switch.
		w.Header().Set("X-Sandbox-Image", res.Image)
		addLogField(r.Context(), "image", res.Image)
		addLogField(r.Context(), "warm", res.Warm)
	}
	resp := executeResponse{
		Status:        res.Status,
		ExecutionTime: execMS,
		Output: outputBody{
			Stdout:          res.Stdout,
			Stderr:          res.Stderr,
			StdoutTruncated: res.StdoutTruncated,
			StderrTruncated: res.StderrTruncated,
			Charts:          chartBodies(res.Outputs.Charts),
			Outputs:         res.Outputs,
		},
		Error:      res.Error,
		Violations: res.Violations,
		Resources: resourcesBody{
			CPUTimeMS:        float64(res.Resources.CPUTime.Microseconds()) / 1000,
			PeakMemoryBytes:  res.Resources.PeakMemoryBytes,
			MemoryLimitBytes: res.Resources.MemoryLimitBytes,
			OOMKilled:        res.Resources.OOMKilled,
			DurationMS:       float64(time.Since(start).Microseconds()) / 1000,
			Sandbox:          res.Flavor,
			Warm:             res.Warm,
		},
		RequestID: requestID(r.Context()),
	}
	if resp.Output.Files == nil {
		resp.Output.Files = []runner.OutputFile{}
	}
	return resp
}

// toRunRequest validates the body and applies defaults.
func (h *handler) toRunRequest(ctx context.Context, b executeRequest) (runner.Request, error) {
	if b.Code == nil {
		return runner.Request{}, unprocessable("missing_code", `field "code" is required`)
	}
	code := *b.Code
	if vs := policy.CheckSource(code, policy.MaxCodeBytes); len(vs) > 0 {
		return runner.Request{}, invalidCode(vs)
	}
	timeout := h.defaultTimeoutFor(ctx)
	if b.Timeout != nil {
		t := *b.Timeout
		if maxT := h.maxTimeoutFor(ctx); t <= 0 || t > maxT.Seconds() {
			return runner.Request{}, unprocessable("invalid_timeout",
				fmt.Sprintf("timeout must be greater than 0 and at most %g seconds", maxT.Seconds()))
		}
		timeout = time.Duration(t * float64(time.Second))
	}
	opts := map[string]any{}
	switch b.ChartFormat {
	case "", "png":
	case "svg":
		opts["chart_format"] = "svg"
	default:
		return runner.Request{}, unprocessable("invalid_chart_format", `chart_format must be "png" or "svg"`)
	}
	files, err := h.inputFiles(b.Files) // files.go
	if err != nil {
		return runner.Request{}, err
	}
	// Tenant: the key's name shares the warm pool fairly (runner/fair.go).
	return runner.Request{Code: code, Timeout: timeout, Options: opts, Files: files, Tenant: principalName(ctx)}, nil
}

// invalidCode is the 422 for code that fails policy.CheckSource.
func invalidCode(vs []policy.Violation) *apiError {
	return &apiError{
		Status:     http.StatusUnprocessableEntity,
		Code:       "invalid_code",
		Message:    policy.Violations(vs).Error(),
		Violations: vs,
	}
}
