package images

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"
)

// Labels on images with extra packages (the base image has only
// LabelContextHash, which every image built by pyexec carries).
const (
	// LabelBuildHash records the build hash (HashFor) the image was built from.
	LabelBuildHash = "io.pyexec.build-hash"
	// LabelPackages lists the extra packages, space-separated and sorted.
	LabelPackages = "io.pyexec.packages"
)

// ErrBadPackage means a package name is not a valid Debian package name.
var ErrBadPackage = errors.New("invalid package name")

// packageRE is Debian's rule for package names (Policy 5.6.1): lower case
// letters, digits, '+', '-' and '.', at least two characters, starting with
// a letter or digit. It also keeps names from reaching the shell of the
// generated Dockerfile as anything but words.
var packageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)

// Spec says what to build beyond the embedded context.
type Spec struct {
	// Packages are extra Debian packages, installed with apt in one more
	// layer over the base image. Empty means the base image itself.
	Packages []string
}

// normalize sorts and deduplicates the packages and checks their names.
func (s Spec) normalize() (Spec, error) {
	pkgs := slices.Clone(s.Packages)
	slices.Sort(pkgs)
	pkgs = slices.Compact(pkgs)
	for _, p := range pkgs {
		if !ValidPackageName(p) {
			return Spec{}, fmt.Errorf("%w: %q", ErrBadPackage, p)
		}
	}
	if len(pkgs) == 0 {
		pkgs = nil
	}
	return Spec{Packages: pkgs}, nil
}

// HashFor returns the build hash of spec: the context hash when there are
// no extra packages, else a hash of the context hash and the sorted package
// list. The image tag is its first 12 hex digits, so the tag changes with
// the package set while the base image keeps its name.
func (b *Builder) HashFor(spec Spec) (string, error) {
	s, err := spec.normalize()
	if err != nil {
		return "", err
	}
	return b.hashOf(s), nil
}

func (b *Builder) hashOf(s Spec) string {
	if len(s.Packages) == 0 {
		return b.hash
	}
	h := sha256.New()
	fmt.Fprintf(h, "context\x00%s\x00packages\x00%s", b.hash, strings.Join(s.Packages, "\x00"))
	return hex.EncodeToString(h.Sum(nil))
}

// TagFor returns the tag of the image built from spec.
func (b *Builder) TagFor(spec Spec) (string, error) {
	h, err := b.HashFor(spec)
	if err != nil {
		return "", err
	}
	return b.repo + ":" + h[:12], nil
}

// Build is the outcome of Rebuild.
type Build struct {
	// Tag names the image built.
	Tag string
	// Hash is the build hash (HashFor) the tag is made from.
	Hash string
	// Packages are the extra packages, sorted.
	Packages []string
	// BuiltAt is when the build finished.
	BuiltAt time.Time
	// Duration is how long the build took.
	Duration time.Duration
	// Shared says this caller joined a build another caller had started.
	Shared bool
}

// Rebuild builds the image for spec through the engine's ImageBuild, even
// when an image of that tag exists (the engine's layer cache makes that
// cheap when nothing changed). Extra packages are installed in a generated
// layer over the base image, which is built first if missing.
//
// Concurrent calls for the same spec share one build: the first caller
// starts it, later ones get its result with Shared set. The build goes on
// when a caller's ctx ends (others may be waiting); that caller gets
// ctx.Err().
func (b *Builder) Rebuild(ctx context.Context, spec Spec) (Build, error) {
	s, err := spec.normalize()
	if err != nil {
		return Build{}, err
	}
	key := b.hashOf(s)
	b.mu.Lock()
	call, shared := b.inflight[key]
	if !shared {
		call = &buildCall{done: make(chan struct{})}
		b.inflight[key] = call
		go func() {
			// The build outlives a caller that gives up; others may wait on it.
			call.res, call.err = b.run(context.WithoutCancel(ctx), s, key)
			b.mu.Lock()
			delete(b.inflight, key)
			b.mu.Unlock()
			close(call.done)
		}()
	}
	b.mu.Unlock()
	select {
	case <-call.done:
		res := call.res
		res.Packages = slices.Clone(res.Packages)
		res.Shared = shared
		return res, call.err
	case <-ctx.Done():
		return Build{}, ctx.Err()
	}
}

// Building reports whether a build is under way.
func (b *Builder) Building() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.inflight) > 0
}

// run does one build and counts it.
func (b *Builder) run(ctx context.Context, s Spec, hash string) (Build, error) {
	start := time.Now()
	var tag string
	var err error
	if len(s.Packages) == 0 {
		tag, err = b.build(ctx)
	} else {
		tag, err = b.buildExtras(ctx, s, hash)
	}
	d := time.Since(start)
	b.metrics.observe(err, d)
	if err != nil {
		return Build{}, err
	}
	return Build{Tag: tag, Hash: hash, Packages: s.Packages, BuiltAt: time.Now().UTC(), Duration: d}, nil
}

// buildExtras builds the layer of extra packages over the base image.
func (b *Builder) buildExtras(ctx context.Context, s Spec, hash string) (string, error) {
	ok, err := b.Present(ctx)
	if err != nil {
		return "", err
	}
	if !ok {
		if _, err := b.Rebuild(ctx, Spec{}); err != nil {
			return "", fmt.Errorf("base image: %w", err)
		}
	}
	tag := b.repo + ":" + hash[:12]
	tarball, err := extrasTar(b.Tag(), s.Packages)
	if err != nil {
		return "", err
	}
	start := time.Now()
	log := b.log.WithFields(logrus.Fields{"image": tag, "packages": strings.Join(s.Packages, " ")})
	log.Info("building analytics image with extra packages")
	resp, err := b.cli.ImageBuild(ctx, bytes.NewReader(tarball), client.ImageBuildOptions{
		Tags:        []string{tag},
		Remove:      true,
		ForceRemove: true,
		PullParent:  false,
		Labels: map[string]string{
			LabelContextHash: b.hash,
			LabelBuildHash:   hash,
			LabelPackages:    strings.Join(s.Packages, " "),
		},
	})
	if err != nil {
		return "", fmt.Errorf("build image: %w", err)
	}
	defer resp.Body.Close()
	if err := b.drain(resp.Body); err != nil {
		return "", err
	}
	if _, err := b.cli.ImageInspect(ctx, tag); err != nil {
		return "", fmt.Errorf("build image: finished but %s is missing: %w", tag, err)
	}
	log.WithField("duration_ms", time.Since(start).Milliseconds()).Info("built analytics image")
	return tag, nil
}

// extrasTar is the build context of the extra layer: one generated
// Dockerfile. It installs as root, strips setuid bits again like the base
// image does, and hands the image back to the sandbox user.
func extrasTar(base string, pkgs []string) ([]byte, error) {
	dockerfile := "# Generated by pyexec: extra packages over the base analytics image.\n" +
		"FROM " + base + "\n" +
		"USER root\n" +
		"RUN apt-get update \\\n" +
		" && apt-get install -y --no-install-recommends " + strings.Join(pkgs, " ") + " \\\n" +
		" && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/* \\\n" +
		" && (find / -xdev -perm /6000 -type f -exec chmod a-s {} + || true)\n" +
		"USER 10001:10001\n"
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile)), ModTime: time.Unix(0, 0)}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write([]byte(dockerfile)); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Image describes an analytics image in the engine.
type Image struct {
	// Tag is the reference it was looked up by; ID is the engine's.
	Tag string
	ID  string
	// Hash is the build hash (HashFor); ContextHash the embedded context's
	// hash of the base it was built on.
	Hash        string
	ContextHash string
	// Packages are the extra packages, sorted (nil for the base image).
	Packages []string
	// Created is when the engine made the image.
	Created time.Time
}

// Inspect describes the image tag. A missing image is ErrNoImage.
func (b *Builder) Inspect(ctx context.Context, tag string) (Image, error) {
	info, err := b.cli.ImageInspect(ctx, tag)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return Image{}, fmt.Errorf("%w: %s", ErrNoImage, tag)
		}
		return Image{}, fmt.Errorf("inspect image %s: %w", tag, err)
	}
	img := Image{Tag: tag, ID: info.ID}
	if info.Config != nil {
		l := info.Config.Labels
		img.ContextHash = l[LabelContextHash]
		img.Hash = l[LabelBuildHash]
		if img.Hash == "" {
			img.Hash = img.ContextHash
		}
		if p := strings.Fields(l[LabelPackages]); len(p) > 0 {
			img.Packages = p
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, info.Created); err == nil {
		img.Created = t.UTC()
	}
	return img, nil
}

// ValidPackageName reports whether name is a valid Debian package name.
func ValidPackageName(name string) bool {
	return len(name) <= 128 && packageRE.MatchString(name)
}
