package main

import (
	"context"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// outcome is the result of one request, on either path.
type outcome struct {
	latency time.Duration
	code    int  // HTTP status (service path), 0 otherwise
	ok      bool // ran and produced what was expected
	busy    bool // 429: counted apart, excluded from latency
	// errKey classifies a failure: an HTTP status ("500"), "status_error",
	// "check", "client_timeout", "create", "exit_1", ...
	errKey string
	errMsg string
	// Service path only (NaN elsewhere via the phase summary).
	execMS  float64 // in-sandbox execution_time
	durMS   float64 // resources.duration_ms
	sandbox string  // resources.sandbox
}

// execFunc runs one request under ctx (which carries its timeout).
type execFunc func(ctx context.Context) outcome

// busyBackoff is how long a closed-loop client waits after a 429 or an
// error before trying again, so a full queue or a refusing service is not
// turned into a busy loop.
const busyBackoff = 100 * time.Millisecond

// maxClosedLoopRequests bounds a closed-loop phase whatever the duration.
const maxClosedLoopRequests = 1_000_000

// openLoop sends n requests at a fixed rate, each in its own goroutine, so a
// slow answer does not delay the next request (no coordinated omission).
// It returns the outcomes of the requests sent and the elapsed time from the
// first send to the last answer.
func openLoop(ctx context.Context, n int, rate float64, reqTimeout time.Duration, fn execFunc) ([]outcome, time.Duration) {
	interval := time.Duration(float64(time.Second) / rate)
	out := make([]outcome, n)
	var wg sync.WaitGroup
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	sent := 0
loop:
	for i := range n {
		if i > 0 {
			timer.Reset(time.Until(start.Add(time.Duration(i) * interval)))
			select {
			case <-ctx.Done():
				break loop
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
		sent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, reqTimeout)
			defer cancel()
			out[i] = fn(rctx)
		}()
	}
	wg.Wait()
	return out[:sent], time.Since(start)
}

// closedLoop runs c clients that each send a request as soon as their last
// one is answered, until d has passed (requests under way then finish). It
// returns every outcome and the elapsed time until the last answer.
func closedLoop(ctx context.Context, c int, d, reqTimeout time.Duration, fn execFunc) ([]outcome, time.Duration) {
	var (
		mu  sync.Mutex // guards out
		out []outcome
		wg  sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	var issued atomic.Int64
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if issued.Add(1) > maxClosedLoopRequests {
					return
				}
				rctx, cancel := context.WithTimeout(ctx, reqTimeout)
				o := fn(rctx)
				cancel()
				mu.Lock()
				out = append(out, o)
				mu.Unlock()
				if !o.ok {
					select {
					case <-ctx.Done():
					case <-time.After(busyBackoff):
					}
				}
			}
		}()
	}
	wg.Wait()
	return out, time.Since(start)
}

// phaseResult is one phase of one workload on one path.
type phaseResult struct {
	Phase       string  `json:"phase"`  // "low-rate" or "saturation"
	Target      string  `json:"target"` // "service", "naive" or "lifecycle"
	Workload    string  `json:"workload"`
	Rate        float64 `json:"rate,omitempty"`
	Concurrency int     `json:"concurrency,omitempty"`

	Requests int            `json:"requests"`
	OK       int            `json:"ok"`
	Busy     int            `json:"busy_429"`
	Errors   map[string]int `json:"errors"`
	// ErrorSamples holds the first few error messages.
	ErrorSamples []string `json:"error_samples,omitempty"`

	Latency       latencySummary `json:"latency"`
	ElapsedS      float64        `json:"elapsed_s"`
	ThroughputRPS float64        `json:"throughput_rps"`

	// Service only (NaN is written as null).
	ExecMSP50 jsonFloat `json:"execution_time_p50_ms"`
	// OverExecMSP50 is the median over requests of latency minus that
	// request's own execution_time: what the service adds to the code.
	OverExecMSP50 jsonFloat      `json:"over_execution_p50_ms"`
	DurationMSP50 jsonFloat      `json:"service_duration_p50_ms"`
	Sandboxes     map[string]int `json:"sandboxes,omitempty"`
	PoolHits      int64          `json:"pool_hits,omitempty"`
	PoolMisses    int64          `json:"pool_misses,omitempty"`
	// PoolRefillS is how long after the phase the pool took to be full
	// again (negative: it was not full within the wait).
	PoolRefillS jsonFloat `json:"pool_refill_s"`
	// HostCPUMSPerOK is the host's busy CPU during the phase per successful
	// request, in ms: what one execution costs the machine on this path.
	HostCPUMSPerOK jsonFloat `json:"host_cpu_ms_per_ok"`
	// RSSMaxBytes is the service process's largest VmRSS seen in the phase.
	RSSMaxBytes int64 `json:"rss_max_bytes,omitempty"`
}

const maxErrorSamples = 3

// aggregate summarises outcomes. Latency covers successful requests only;
// throughput is successful requests per second of elapsed time.
func aggregate(outs []outcome, elapsed time.Duration) phaseResult {
	r := phaseResult{
		Requests:       len(outs),
		Errors:         map[string]int{},
		ElapsedS:       elapsed.Seconds(),
		ExecMSP50:      jsonFloat(math.NaN()),
		OverExecMSP50:  jsonFloat(math.NaN()),
		DurationMSP50:  jsonFloat(math.NaN()),
		PoolRefillS:    jsonFloat(math.NaN()),
		HostCPUMSPerOK: jsonFloat(math.NaN()),
	}
	var lat, exec, dur, over []float64
	for _, o := range outs {
		switch {
		case o.busy:
			r.Busy++
		case !o.ok:
			r.Errors[o.errKey]++
			if len(r.ErrorSamples) < maxErrorSamples {
				r.ErrorSamples = append(r.ErrorSamples, o.errKey+": "+o.errMsg)
			}
		default:
			r.OK++
			lat = append(lat, durMS(o.latency))
			if o.sandbox != "" {
				if r.Sandboxes == nil {
					r.Sandboxes = map[string]int{}
				}
				r.Sandboxes[o.sandbox]++
				exec = append(exec, o.execMS)
				dur = append(dur, o.durMS)
				over = append(over, durMS(o.latency)-o.execMS)
			}
		}
	}
	r.Latency = summarize(lat)
	if elapsed > 0 {
		r.ThroughputRPS = float64(r.OK) / elapsed.Seconds()
	}
	if len(exec) > 0 {
		r.ExecMSP50 = jsonFloat(median(exec))
		r.DurationMSP50 = jsonFloat(median(dur))
		r.OverExecMSP50 = jsonFloat(median(over))
	}
	return r
}

// setHostCPU records the host's busy CPU during the phase (ms) per
// successful request.
func (r *phaseResult) setHostCPU(ms float64) {
	if r.OK > 0 {
		r.HostCPUMSPerOK = jsonFloat(ms / float64(r.OK))
	}
}

// p50 is the phase's median latency, NaN without successes.
func (r *phaseResult) p50() float64 {
	if r.Latency.N == 0 {
		return math.NaN()
	}
	return r.Latency.P50
}

// jsonFloat is a float64 that encodes NaN and infinities as null.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, v, 'f', -1, 64), nil
}
