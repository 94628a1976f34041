// Package loadgen drives a pyexec service over HTTP with the mixed
// load (hello, a sine chart, a pandas groupby, a CPU loop, a timeout),
// records and classifies every answer against the reliability contract
// (every answer is a correct 200, or a 429 or 503 with Retry-After; no 500,
// no hung request), and starts the real binary for the fault tests and the
// soak run (Service). It is test tooling, never part of the service.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Workload is one kind of request and the check its 200 answer must pass.
type Workload struct {
	Name string
	Code string
	// Timeout is the request's "timeout" field in seconds (0: the
	// service's default).
	Timeout float64
	// Status is the result status a correct answer has.
	Status string
	// Stdout, when set, must appear in the answer's stdout.
	Stdout string
	// Charts is how many charts a correct answer has (-1: not checked).
	Charts int
}

// Mixed is the mixed load. The timeout workload asks for 2 s and
// sleeps longer, so its correct answer is status "timeout".
var Mixed = []Workload{
	{Name: "hello", Code: "print('Hello World')\n", Status: "success", Stdout: "Hello World", Charts: -1},
	{Name: "sine", Code: `import numpy as np
import matplotlib.pyplot as plt

x = np.linspace(0, 10, 100)
plt.figure(figsize=(10, 6))
plt.plot(x, np.sin(x))
plt.title('Sine Wave')
plt.show()
`, Status: "success", Charts: 1},
	{Name: "groupby", Code: `import numpy as np
import pandas as pd

rng = np.random.default_rng(20240601)
n = 100_000
df = pd.DataFrame({
    "group": rng.choice(list("ABCDEFGH"), size=n),
    "value": rng.normal(100.0, 15.0, size=n),
})
agg = df.groupby("group")["value"].agg(["size", "mean"])
print(f"rows={int(agg['size'].sum())} groups={len(agg)}")
`, Status: "success", Stdout: "rows=100000 groups=8", Charts: -1},
	{Name: "cpu", Code: `total = 0
for i in range(2_000_000):
    total += i * i % 7
print("cpu", total)
`, Status: "success", Stdout: fmt.Sprintf("cpu %d", cpuTotal(2_000_000)), Charts: -1},
	{Name: "timeout", Code: "import time\ntime.sleep(30)\nprint('not reached')\n", Timeout: 2, Status: "timeout", Charts: -1},
}

// cpuTotal is what the cpu workload prints, computed here.
func cpuTotal(n int64) int64 {
	var t int64
	for i := range n {
		t += i * i % 7
	}
	return t
}

// Answer is one request's outcome.
type Answer struct {
	Workload   string
	Start, End time.Time
	// HTTP is the status code, 0 when no answer came.
	HTTP int
	// Code is the error code of a non-2xx answer, or the result status of
	// a 200; for no answer, "hung" (client timeout) or "transport".
	Code       string
	RetryAfter bool
	// OK: a 200 that passed its workload's check.
	OK bool
	// Allowed: an answer the contract allows (OK, or 429/503 with
	// Retry-After). Everything else is a failure.
	Allowed bool
	Detail  string
}

// Class is how an answer is counted: "200 success", "503 engine_unavailable",
// "500 internal", "hung", "200 wrong hello", ...
func (a Answer) Class() string {
	switch {
	case a.HTTP == 0:
		return a.Code
	case a.HTTP == http.StatusOK && !a.OK:
		return "200 wrong " + a.Workload
	case (a.HTTP == http.StatusTooManyRequests || a.HTTP == http.StatusServiceUnavailable) && !a.RetryAfter:
		return strconv.Itoa(a.HTTP) + " " + a.Code + " (no Retry-After)"
	}
	return strconv.Itoa(a.HTTP) + " " + a.Code
}

// maxBody bounds what is read of one answer (charts are base64).
const maxBody = 16 << 20

// Client sends the workloads to one service.
type Client struct {
	URL string
	// Timeout is the client-side limit of one request: past it, the
	// request counts as hung. Set it to the longest execution plus margin.
	Timeout time.Duration
	HTTP    *http.Client
}

// NewClient returns a client for base (http://host:port), a fresh
// connection per request so that no request is lost to a keep-alive
// connection closed as idle, or to a service killed and started again.
func NewClient(base string, timeout time.Duration) *Client {
	return &Client{URL: base, Timeout: timeout, HTTP: &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true},
	}}
}

// Do sends one execution and classifies its answer.
func (c *Client) Do(ctx context.Context, w Workload) (a Answer) {
	a = Answer{Workload: w.Name, Start: time.Now()}
	defer func() { a.End = time.Now() }()
	body := map[string]any{"code": w.Code}
	if w.Timeout > 0 {
		body["timeout"] = w.Timeout
	}
	b, _ := json.Marshal(body)
	rctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, c.URL+"/execute", bytes.NewReader(b))
	if err != nil {
		a.Code, a.Detail = "transport", err.Error()
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		a.Code, a.Detail = "transport", err.Error()
		if errors.Is(rctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			a.Code = "hung"
		}
		return a
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	a.HTTP = resp.StatusCode
	a.RetryAfter = resp.Header.Get("Retry-After") != ""
	if err != nil {
		a.HTTP, a.Code, a.Detail = 0, "transport", "reading the answer: "+err.Error()
		if errors.Is(rctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			a.Code = "hung"
		}
		return a
	}
	if resp.StatusCode != http.StatusOK {
		var eb struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		_ = json.Unmarshal(raw, &eb)
		a.Code, a.Detail = eb.Error.Code, eb.Error.Message
		if a.Code == "" {
			a.Code, a.Detail = "no_code", clip(string(raw), 200)
		}
		a.Allowed = (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && a.RetryAfter
		return a
	}
	var er struct {
		Status string `json:"status"`
		Output struct {
			Stdout string            `json:"stdout"`
			Charts []json.RawMessage `json:"charts"`
		} `json:"output"`
		Error *struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &er); err != nil {
		a.Code, a.Detail = "bad_json", err.Error()
		return a
	}
	a.Code = er.Status
	switch {
	case er.Status != w.Status:
		a.Detail = fmt.Sprintf("status %q, want %q", er.Status, w.Status)
		if er.Error != nil {
			a.Detail += ": " + er.Error.Type + ": " + clip(er.Error.Message, 200)
		}
	case w.Stdout != "" && !strings.Contains(er.Output.Stdout, w.Stdout):
		a.Detail = fmt.Sprintf("stdout %q lacks %q", clip(er.Output.Stdout, 100), w.Stdout)
	case w.Charts >= 0 && len(er.Output.Charts) != w.Charts:
		a.Detail = fmt.Sprintf("%d charts, want %d", len(er.Output.Charts), w.Charts)
	default:
		a.OK, a.Allowed = true, true
	}
	return a
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Recorder keeps every answer of a run.
type Recorder struct {
	mu      sync.Mutex
	answers []Answer
}

// Add records one answer.
func (r *Recorder) Add(a Answer) {
	r.mu.Lock()
	r.answers = append(r.answers, a)
	r.mu.Unlock()
}

// Answers returns a copy of the answers so far, in order of their end.
func (r *Recorder) Answers() []Answer {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]Answer(nil), r.answers...)
	sort.Slice(out, func(i, j int) bool { return out[i].End.Before(out[j].End) })
	return out
}

// Run starts clients closed-loop clients, each cycling through workloads
// (client i starts at workload i), until ctx ends; requests under way
// then are abandoned without being recorded. A client pauses for
// backoff after an answer that is not a success, so an outage is not a
// busy loop. Run returns when every client has stopped.
func (c *Client) Run(ctx context.Context, clients int, workloads []Workload, backoff time.Duration, rec *Recorder) {
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := i; ctx.Err() == nil; n++ {
				a := c.Do(ctx, workloads[n%len(workloads)])
				if ctx.Err() != nil {
					return
				}
				rec.Add(a)
				if !a.OK {
					select {
					case <-ctx.Done():
						return
					case <-time.After(backoff):
					}
				}
			}
		}()
	}
	wg.Wait()
}

// Summary counts answers by class.
type Summary struct {
	Requests int
	OK       int
	Failures int
	ByClass  map[string]int
	// Samples holds the first failure of each class.
	Samples map[string]string
}

// Summarize counts the answers that ended in [from, to) (zero times: no
// bound); allowed tells whether a non-contract answer is excused (e.g.
// connection refused while the service was killed), nil: none is.
func Summarize(answers []Answer, from, to time.Time, excused func(Answer) bool) Summary {
	s := Summary{ByClass: map[string]int{}, Samples: map[string]string{}}
	for _, a := range answers {
		if (!from.IsZero() && a.End.Before(from)) || (!to.IsZero() && !a.End.Before(to)) {
			continue
		}
		s.Requests++
		cl := a.Class()
		s.ByClass[cl]++
		if a.OK {
			s.OK++
		}
		if !a.Allowed && (excused == nil || !excused(a)) {
			s.Failures++
			if _, ok := s.Samples[cl]; !ok {
				s.Samples[cl] = fmt.Sprintf("%s at %s: %s", a.Workload, a.End.Format("15:04:05.000"), a.Detail)
			}
		}
	}
	return s
}

// String lists the classes, most frequent first.
func (s Summary) String() string {
	classes := make([]string, 0, len(s.ByClass))
	for c := range s.ByClass {
		classes = append(classes, c)
	}
	sort.Slice(classes, func(i, j int) bool {
		if s.ByClass[classes[i]] != s.ByClass[classes[j]] {
			return s.ByClass[classes[i]] > s.ByClass[classes[j]]
		}
		return classes[i] < classes[j]
	})
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests, %d ok, %d failures;", s.Requests, s.OK, s.Failures)
	for _, c := range classes {
		fmt.Fprintf(&b, " [%s]=%d", c, s.ByClass[c])
	}
	return b.String()
}

// FirstSuccessAfter returns how long after t the first correct answer
// ending after t came, and false when none came.
func FirstSuccessAfter(answers []Answer, t time.Time) (time.Duration, bool) {
	best := time.Duration(-1)
	for _, a := range answers {
		if a.OK && a.End.After(t) {
			if d := a.End.Sub(t); best < 0 || d < best {
				best = d
			}
		}
	}
	return best, best >= 0
}

// Timeline groups the answers by when they ended, in steps of step from
// origin, one line per step: "+10s..+15s: [200 success]=3 ...".
func Timeline(answers []Answer, origin time.Time, step time.Duration) string {
	if len(answers) == 0 {
		return ""
	}
	var b strings.Builder
	from := answers[0].End
	to := answers[len(answers)-1].End
	start := origin.Add(step * time.Duration((from.Sub(origin))/step))
	if from.Before(origin) {
		start = origin.Add(-step * time.Duration((origin.Sub(from))/step+1))
	}
	for t := start; !t.After(to); t = t.Add(step) {
		s := Summarize(answers, t, t.Add(step), nil)
		if s.Requests == 0 {
			continue
		}
		fmt.Fprintf(&b, "  %+6.0fs: %s\n", t.Sub(origin).Seconds(), s)
	}
	return b.String()
}
