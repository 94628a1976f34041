package dockertest

import (
	"context"
	"errors"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"

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

	imgs, err := cli.ImageList(ctx, image.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
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
	c, err := cli.ContainerCreate(ctx, &container.Config{
		Image:      ref,
		Entrypoint: []string{"sleep"},
		Cmd:        []string{"300"},
		Labels:     map[string]string{labelManaged: "1", labelOwner: owner},
	}, &container.HostConfig{}, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := Containers(t, cli, owner); len(got) != 1 || got[0].State != "running" {
		t.Fatalf("want the container running before the stop, got %+v", got)
	}

	stop := StopEngine(t)
	if enginectl.Answers(time.Second) {
		t.Fatal("engine answers after StopEngine")
	}
	if _, err := cli.Ping(ctx); err == nil {
		t.Fatal("client ping succeeds after StopEngine")
	}
	start := StartEngine(t)
	t.Logf("figures: stop %v, start %v", stop.Round(time.Millisecond), start.Round(time.Millisecond))
	if stop > Scale(30*time.Second) || start > Scale(30*time.Second) {
		t.Errorf("stop %v / start %v above 30 s", stop, start)
	}

	// The old client works again: its connections are made per request.
	if _, err := cli.Ping(ctx); err != nil {
		t.Fatalf("ping after StartEngine: %v", err)
	}
	if _, _, err := cli.ImageInspectWithRaw(ctx, ref); err != nil {
		t.Errorf("image %s gone after the restart: %v", ref, err)
	}
	left := Containers(t, cli, owner)
	if len(left) != 1 || left[0].State == "running" {
		t.Errorf("want the container kept and stopped after the restart, got %+v", left)
	}
	for _, c := range left {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Error(err)
		}
	}
	AssertNoContainers(t, cli, owner)
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
