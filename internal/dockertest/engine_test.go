package dockertest

import (
	"context"
	"errors"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"

	"github.com/pyexec/pyexec/internal/enginectl"
)

// TestFaultEngineStopStart stops and starts the real engine with a
// container of its own running: the engine stops within its bound, comes
// back, keeps the images, and keeps the container (stopped).
func TestFaultEngineStopStart(t *testing.T) {
	RequireFaults(t)
	cli := RequireExclusive(t)
	ctx := context.Background()
	owner := Owner(t)

	list, err := cli.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	imgs := list.Items
	if len(imgs) == 0 {
		t.Fatal("no image on the engine to check survival with")
	}
	// Any image with sleep will do; the base image when present.
	ref := imgs[0].ID
	for _, img := range imgs {
		if slices.Contains(img.RepoTags, "debian:trixie-slim") {
			ref = img.ID
		}
	}
	c, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image:      ref,
			Entrypoint: []string{"sleep"},
			Cmd:        []string{"300"},
			Labels:     map[string]string{labelManaged: "1", labelOwner: owner},
		},
		HostConfig: &container.HostConfig{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := Containers(t, cli, owner); len(got) != 1 || got[0].State != "running" {
		t.Fatalf("want the container running before the stop, got %+v", got)
	}

	stop := StopEngine(t)
	if enginectl.Answers(time.Second) {
		t.Fatal("engine answers after StopEngine")
	}
	if _, err := cli.Ping(ctx, client.PingOptions{}); err == nil {
		t.Fatal("client ping succeeds after StopEngine")
	}
	start := StartEngine(t)
	t.Logf("figures: stop %v, start %v", stop.Round(time.Millisecond), start.Round(time.Millisecond))
	if stop > Scale(30*time.Second) || start > Scale(30*time.Second) {
		t.Errorf("stop %v / start %v above 30 s", stop, start)
	}

	// The old client works again: its connections are made per request.
	if _, err := cli.Ping(ctx, client.PingOptions{}); err != nil {
		t.Fatalf("ping after StartEngine: %v", err)
	}
	if _, err := cli.ImageInspect(ctx, ref); err != nil {
		t.Errorf("image %s gone after the restart: %v", ref, err)
	}
	left := Containers(t, cli, owner)
	if len(left) != 1 || left[0].State == "running" {
		t.Errorf("want the container kept and stopped after the restart, got %+v", left)
	}
	for _, c := range left {
		if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Error(err)
		}
	}
	AssertNoContainers(t, cli, owner)
}

// TestNegotiatedAPIVersion checks the client's API version negotiation
// against the real engine: Require negotiates the version the engine
// reports (capped at the client's maximum), which must be one the client
// supports. A client bump whose MinAPIVersion passes the engine's API
// (1.41 for Docker 20.10) fails here, and in Require, instead of skipping.
func TestNegotiatedAPIVersion(t *testing.T) {
	cli := Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sv, err := cli.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if sv.APIVersion == "" {
		t.Fatal("the engine reports no API version")
	}
	want := sv.APIVersion
	if versions.GreaterThan(want, client.MaxAPIVersion) {
		want = client.MaxAPIVersion
	}
	got := cli.ClientVersion()
	t.Logf("engine %s API %s (min %s); client API %s to %s; negotiated %s",
		sv.Version, sv.APIVersion, sv.MinAPIVersion, client.MinAPIVersion, client.MaxAPIVersion, got)
	if got != want {
		t.Errorf("negotiated API version %s, want %s (engine %s, client max %s)", got, want, sv.APIVersion, client.MaxAPIVersion)
	}
	if versions.LessThan(got, client.MinAPIVersion) {
		t.Errorf("negotiated API version %s below the client's minimum %s", got, client.MinAPIVersion)
	}
	if sv.MinAPIVersion != "" && versions.LessThan(got, sv.MinAPIVersion) {
		t.Errorf("negotiated API version %s below the engine's minimum %s", got, sv.MinAPIVersion)
	}
	// A fresh client negotiates the same on its own (no Require).
	fresh, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	ping, err := fresh.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	if err != nil {
		t.Fatalf("ping with negotiation: %v", err)
	}
	if ping.APIVersion != sv.APIVersion || fresh.ClientVersion() != want {
		t.Errorf("fresh client: ping API %s, negotiated %s; want %s, %s", ping.APIVersion, fresh.ClientVersion(), sv.APIVersion, want)
	}
}

// TestEngineLockShared checks that two shared holders coexist and that an
// exclusive attempt fails while they hold the lock.
func TestEngineLockShared(t *testing.T) {
	lockEngine(t, false)
	lockEngine(t, false)
	f, err := os.OpenFile(LockPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Fatalf("exclusive lock under shared holders: got %v, want EWOULDBLOCK", err)
	}
}
