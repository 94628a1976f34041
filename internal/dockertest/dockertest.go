// Package dockertest helps tests that need the real Docker engine and the
// real analytics image. Tests skip when no engine answers, unless
// PYEXEC_REQUIRE_DOCKER=1 (CI), where they fail instead. No mocks.
//
// It also owns the engine lock that orders engine tests across processes
// (Require shares it, RequireExclusive holds it alone) and the fault
// helpers that stop and start the engine (StopEngine, StartEngine).
package dockertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/pyexec/pyexec/images"
)

// LabelManaged and LabelOwner mirror the runner's labels (runner imports
// nothing from here, and here nothing from runner, to keep tests of runner
// free to use this package).
const (
	labelManaged = "io.pyexec.managed"
	labelOwner   = "io.pyexec.owner"
)

var (
	imageOnce sync.Once
	imageTag  string
	imageErr  error
)

// Required reports whether engine tests must fail rather than skip.
func Required() bool { return os.Getenv("PYEXEC_REQUIRE_DOCKER") == "1" }

// Require returns a client to a live engine, or skips (fails in CI). It
// holds the engine lock (LockPath) shared until the test ends, so that no
// fault test stops the engine under it.
func Require(t testing.TB) *client.Client {
	t.Helper()
	return require(t, false)
}

func require(t testing.TB, exclusive bool) *client.Client {
	t.Helper()
	// A fault test that RequireFaults let through must run.
	required := Required() || (exclusive && Faults())
	if testing.Short() && !required {
		t.Skip("engine test skipped under -short")
	}
	lockEngine(t, exclusive)
	// The client negotiates the API version by default; negotiate now, with
	// the ping, so that a failed negotiation fails here.
	cli, err := client.New(client.FromEnv)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var ping client.PingResult
		ping, err = cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
		if err != nil && ping.APIVersion != "" {
			// The engine answered, with an API version this client
			// refuses: a client bump dropped it. Never skip that.
			t.Fatalf("docker engine API %s not usable by github.com/moby/moby/client (API %s to %s): %v",
				ping.APIVersion, client.MinAPIVersion, client.MaxAPIVersion, err)
		}
	}
	if err != nil {
		if required {
			t.Fatalf("docker engine required (PYEXEC_REQUIRE_DOCKER=1) but unavailable: %v", err)
		}
		t.Skipf("no docker engine: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Image returns the tag of the analytics image this code expects, building
// it once per test binary when the engine does not have it.
func Image(t testing.TB, cli *client.Client) string {
	t.Helper()
	imageOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		imageTag, imageErr = images.New(cli, "", nil).Ensure(ctx)
	})
	if imageErr != nil {
		t.Fatalf("analytics image: %v", imageErr)
	}
	return imageTag
}

// Owner returns a fresh owner label value, unique to this test.
func Owner(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	return "test-" + name + "-" + hex.EncodeToString(b[:])
}

// Containers lists every container (any state) carrying the owner label.
func Containers(t testing.TB, cli *client.Client, owner string) []container.Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", labelManaged+"=1", labelOwner+"="+owner),
	})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	return list.Items
}

// AssertNoContainers fails the test if any container of owner remains.
func AssertNoContainers(t testing.TB, cli *client.Client, owner string) {
	t.Helper()
	if left := Containers(t, cli, owner); len(left) > 0 {
		ids := make([]string, 0, len(left))
		for _, c := range left {
			ids = append(ids, c.ID[:12]+"("+string(c.State)+")")
		}
		t.Errorf("%d container(s) of %s left behind: %s", len(left), owner, strings.Join(ids, " "))
		// Do not leak them into other tests.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, c := range left {
			_, _ = cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
		}
	}
}

// Scale multiplies a test time bound by PYEXEC_TEST_TIMEOUT_MULT (default 1).
func Scale(d time.Duration) time.Duration {
	if f, err := strconv.ParseFloat(os.Getenv("PYEXEC_TEST_TIMEOUT_MULT"), 64); err == nil && f > 0 {
		return time.Duration(float64(d) * f)
	}
	return d
}

// WaitFor polls cond every 50 ms until it holds, failing the test when the
// limit (scaled by Scale) passes first.
func WaitFor(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Scale(limit))
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
