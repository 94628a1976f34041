// Package runner owns every container the service creates: it turns one
// execution request into one fresh, hardened, single-use container, talks to
// the supervisor inside it over the attach stream, decides the result from
// what the supervisor sends (verdict.go), enforces the deadline from outside,
// and removes the container on every path (success, error, timeout,
// client gone, engine error). It also admits work (MAX_WORKERS plus a bounded
// queue) and reaps containers left behind by an earlier run of the service.
//
// A container never serves two single-shot executions. Sessions
// (session.go) keep one dedicated container per session between cells, like
// a notebook kernel; the session table is the only map from a session ID to
// its container, and cells hold worker slots under the accounting rule stated
// there. A reconciler (reconcile.go) removes, every ReconcilePeriod, this
// instance's containers that nothing owns and any pyexec sandbox past its
// expiry label, whoever created it.
//
// The warm pool (pool.go) creates
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
// Run checks the code with the validator before it runs it, and every
// Result, refusals included, is built in verdict.go from one table of
// outcomes. Every engine failure is classified in one place (errors.go,
// classify): ErrEngineDown, ErrNoImage (only a create's NotFound),
// ErrSandboxVanished (a container removed while its code ran); a stream
// that ends without a result is explained by asking the engine.
//
// Runner is safe for concurrent use. Its goroutines (pool, reconciler,
// stream readers, removals) are counted in one tracker; Close waits for
// every one of them and for every container it started to be removed.
package runner
