package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestTagFollowsPackages(t *testing.T) {
	b := New(nil, "repo", nil)
	base, err := b.TagFor(Spec{})
	if err != nil || base != b.Tag() {
		t.Fatalf("TagFor(no packages) = %q, %v; want the base tag %q", base, err, b.Tag())
	}
	one, _ := b.TagFor(Spec{Packages: []string{"python3-sympy"}})
	two, _ := b.TagFor(Spec{Packages: []string{"python3-sympy", "python3-networkx"}})
	same, _ := b.TagFor(Spec{Packages: []string{"python3-networkx", "python3-sympy", "python3-sympy"}})
	if one == base || two == base || one == two {
		t.Errorf("tags do not follow the package set: base %s, one %s, two %s", base, one, two)
	}
	if same != two {
		t.Errorf("order or duplicates change the tag: %s vs %s", same, two)
	}
	if b.Hash() != ContextHash() {
		t.Error("the context hash moved")
	}
	for _, bad := range []string{"", "A", "x", "-rf", "pkg;rm", "pkg name", "pkg\n", "python3-sympy=1.0", "../x"} {
		if _, err := b.TagFor(Spec{Packages: []string{bad}}); !errors.Is(err, ErrBadPackage) {
			t.Errorf("package %q: err = %v, want ErrBadPackage", bad, err)
		}
	}
}

func TestExtrasDockerfile(t *testing.T) {
	tarball, err := extrasTar("repo:base", []string{"python3-sympy", "python3-networkx"})
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(tarball))
	hdr, err := tr.Next()
	if err != nil || hdr.Name != "Dockerfile" {
		t.Fatalf("first entry %v, %v", hdr, err)
	}
	data, _ := io.ReadAll(tr)
	df := string(data)
	for _, want := range []string{"FROM repo:base\n", "install -y --no-install-recommends python3-sympy python3-networkx", "chmod a-s", "USER 10001:10001\n"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q:\n%s", want, df)
		}
	}
	if !strings.HasSuffix(df, "USER 10001:10001\n") {
		t.Errorf("Dockerfile does not end as the sandbox user:\n%s", df)
	}
	if _, err := tr.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("more than the Dockerfile in the context: %v", err)
	}
}

// blockingEngine builds nothing: ImageBuild waits for release and counts
// its calls; every image exists.
type blockingEngine struct {
	builds  atomic.Int64
	release chan struct{}
	mu      sync.Mutex
	opts    []client.ImageBuildOptions
}

func (e *blockingEngine) ImageBuild(ctx context.Context, _ io.Reader, o client.ImageBuildOptions) (client.ImageBuildResult, error) {
	e.builds.Add(1)
	e.mu.Lock()
	e.opts = append(e.opts, o)
	e.mu.Unlock()
	select {
	case <-e.release:
	case <-ctx.Done():
		return client.ImageBuildResult{}, ctx.Err()
	}
	return client.ImageBuildResult{Body: io.NopCloser(strings.NewReader(`{"stream":"Step 1/4 : FROM x"}` + "\n"))}, nil
}

func (e *blockingEngine) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (client.ImageInspectResult, error) {
	return client.ImageInspectResult{InspectResponse: image.InspectResponse{
		ID:      "sha256:" + ref,
		Created: "2026-11-27T15:04:05.123Z",
		Config: &dockerspec.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{Labels: map[string]string{
			LabelContextHash: "ctx", LabelBuildHash: "build", LabelPackages: "python3-sympy",
		}}},
	}}, nil
}

func (e *blockingEngine) ImagePull(context.Context, string, client.ImagePullOptions) (client.ImagePullResponse, error) {
	return nil, errors.New("no pulls")
}

func TestConcurrentRebuildsShareOneBuild(t *testing.T) {
	e := &blockingEngine{release: make(chan struct{})}
	b := New(e, "repo", nil)
	spec := Spec{Packages: []string{"python3-sympy"}}
	const callers = 4
	results := make(chan Build, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := b.Rebuild(t.Context(), spec)
			if err != nil {
				t.Error(err)
			}
			results <- res
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.builds.Load() == 0 || !b.Building() {
		if time.Now().After(deadline) {
			t.Fatal("no build started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let every caller join
	close(e.release)
	wg.Wait()
	close(results)
	shared := 0
	want, _ := b.TagFor(spec)
	for res := range results {
		if res.Tag != want || len(res.Packages) != 1 || res.BuiltAt.IsZero() {
			t.Errorf("result %+v, want tag %s", res, want)
		}
		if res.Shared {
			shared++
		}
	}
	if n := e.builds.Load(); n != 1 {
		t.Errorf("%d builds for %d concurrent callers, want 1", n, callers)
	}
	if shared != callers-1 {
		t.Errorf("%d callers shared, want %d", shared, callers-1)
	}
	if b.Building() {
		t.Error("still building after the build ended")
	}
	o := e.opts[0]
	if len(o.Tags) != 1 || o.Tags[0] != want || o.Labels[LabelPackages] != "python3-sympy" || o.Labels[LabelContextHash] != b.Hash() {
		t.Errorf("build options: tags %v labels %v", o.Tags, o.Labels)
	}

	// A later call builds again (the engine's cache makes that cheap).
	e2 := &blockingEngine{release: make(chan struct{})}
	close(e2.release)
	b.cli = e2
	if res, err := b.Rebuild(t.Context(), spec); err != nil || res.Shared || e2.builds.Load() != 1 {
		t.Errorf("second rebuild: %+v %v, %d builds", res, err, e2.builds.Load())
	}
}

func TestInspectReadsLabels(t *testing.T) {
	b := New(&blockingEngine{}, "repo", nil)
	img, err := b.Inspect(t.Context(), "repo:abc")
	if err != nil {
		t.Fatal(err)
	}
	if img.ContextHash != "ctx" || img.Hash != "build" || len(img.Packages) != 1 || img.Packages[0] != "python3-sympy" ||
		!img.Created.Equal(time.Date(2026, 11, 27, 15, 4, 5, 123e6, time.UTC)) {
		t.Errorf("Inspect = %+v", img)
	}
}
