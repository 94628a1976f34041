// Package runner owns every container the service creates: it turns one
// execution request into one fresh, hardened, single-use container, talks to
// the harness inside it over the attach stream, enforces the deadline from
// outside, and removes the container on every path (success, error, timeout,
// client gone, engine error). It also admits work (MAX_WORKERS plus a bounded
// queue) and reaps containers left behind by an earlier run of the service.
//
// A container never serves two executions. The runner never interprets the
// user's code; it forwards the policy rules to the harness, which enforces them.
//
// Runner is safe for concurrent use. Close waits for every container it
// started to be removed.
package runner
