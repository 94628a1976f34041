// Package runner owns every container the service creates: it turns one
// execution request into one fresh, hardened, single-use container, talks to
// the supervisor inside it over the attach stream, decides the result from
// what the supervisor sends (verdict.go), enforces the deadline from outside,
// and removes the container on every path (success, error, timeout,
// client gone, engine error). It also admits work (MAX_WORKERS plus a bounded
// queue) and reaps containers left behind by an earlier run of the service.
//
// A container never serves two executions. The warm pool (pool.go) creates
// and starts containers ahead of demand, bare or with the analytics libraries
// recent code imported already loaded (flavor.go), so that a request does not
// wait for a start or an import; each still serves one execution. The
// validator (validator.go) is one long-lived, equally locked-down container
// that only parses code, never runs it. The runner never interprets the
// user's code itself; it forwards the policy rules to the validator and, for
// code the validator has not passed, to the sandbox, which enforce them.
// SetImage switches to a rebuilt image without failing executions in flight
// (image.go).
//
// Runner is safe for concurrent use. Close waits for every container it
// started to be removed.
package runner
