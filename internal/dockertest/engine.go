package dockertest

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/pyexec/pyexec/internal/enginectl"
)

// LockPath is the engine lock: Require holds it shared, RequireExclusive
// exclusively, for the test's duration.
const LockPath = enginectl.LockPath

// FaultsEnv enables the fault tests (engine stopped, image removed,
// instance killed); make test runs them in a serial step of their own.
const FaultsEnv = "PYEXEC_FAULT_TESTS"

// RequireFaults skips the test unless PYEXEC_FAULT_TESTS=1. With it set the
// test runs, and the engine it needs is required.
func RequireFaults(t testing.TB) {
	t.Helper()
	if os.Getenv(FaultsEnv) != "1" {
		t.Skip("fault test: run by make test's serial fault step (PYEXEC_FAULT_TESTS=1)")
	}
}

// Faults reports whether fault tests run (PYEXEC_FAULT_TESTS=1).
func Faults() bool { return os.Getenv(FaultsEnv) == "1" }

// lockEngine takes the engine lock for the rest of the test, waiting as
// long as it takes and logging once when it has to wait.
func lockEngine(t testing.TB, exclusive bool) {
	t.Helper()
	kind := "shared"
	if exclusive {
		kind = "exclusive"
	}
	var waitStart time.Time
	release, err := enginectl.Lock(exclusive, func() {
		waitStart = time.Now()
		t.Logf("waiting for the %s engine lock %s (another test holds it)", kind, LockPath)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !waitStart.IsZero() {
		t.Logf("got the %s engine lock after %v", kind, time.Since(waitStart).Round(time.Millisecond))
	}
	t.Cleanup(release)
}

// RequireExclusive is Require for tests that stop the engine or remove
// shared images: it holds the engine lock exclusively until the test ends,
// so no other engine test (in any process using this package) runs
// meanwhile. Use it instead of Require, never with it in the same test
// (the two locks would wait for each other).
func RequireExclusive(t testing.TB) *client.Client {
	t.Helper()
	return require(t, true)
}

// engineMu serializes stopping and starting the engine within a process.
var engineMu sync.Mutex

// StopEngine stops dockerd (SIGTERM, SIGKILL past a bounded wait) and
// waits until it has exited and its socket no longer answers; it logs and
// returns how long that took. It registers a cleanup that starts the engine
// again if the test leaves it stopped. Hold RequireExclusive first.
func StopEngine(t testing.TB) time.Duration {
	t.Helper()
	engineMu.Lock()
	defer engineMu.Unlock()
	t.Cleanup(func() {
		if !enginectl.Answers(2 * time.Second) {
			t.Log("engine left stopped by the test; starting it again")
			if _, err := enginectl.Start(Scale(90 * time.Second)); err != nil {
				t.Errorf("start engine in cleanup: %v", err)
			}
		}
	})
	d, err := enginectl.Stop(Scale(45 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("engine stopped in %v", d.Round(time.Millisecond))
	return d
}

// StartEngine starts the engine with images/engine.sh (found by walking up
// from the working directory to go.mod) and waits until it answers; it logs
// and returns how long that took.
func StartEngine(t testing.TB) time.Duration {
	t.Helper()
	engineMu.Lock()
	defer engineMu.Unlock()
	d, err := enginectl.Start(Scale(90 * time.Second))
	if err != nil {
		t.Fatalf("start engine: %v", err)
	}
	t.Logf("engine started in %v", d.Round(time.Millisecond))
	return d
}

// ModuleRoot returns the directory holding go.mod, walking up from the
// working directory.
func ModuleRoot() (string, error) { return enginectl.ModuleRoot() }
