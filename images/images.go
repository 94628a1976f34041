package images

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"
)

//go:embed context
var contextFS embed.FS

// BaseImage is the image the Dockerfile starts from.
const BaseImage = "debian:trixie-slim"

// DefaultRepository names the analytics image.
const DefaultRepository = "pyexec-python"

// LabelContextHash on the image records the hash of its build context.
const LabelContextHash = "io.pyexec.context-hash"

// ErrNoImage means the image the binary expects is not in the engine.
var ErrNoImage = errors.New("analytics image not built")

// ErrNoBase means the base image is missing and cannot be pulled.
var ErrNoBase = errors.New("base image " + BaseImage + " missing and not pullable (run images/base.sh)")

// Engine is the part of the Docker client the builder uses.
type Engine interface {
	ImageBuild(ctx context.Context, buildContext io.Reader, options client.ImageBuildOptions) (client.ImageBuildResult, error)
	ImageInspect(ctx context.Context, image string, opts ...client.ImageInspectOption) (client.ImageInspectResult, error)
	ImagePull(ctx context.Context, ref string, options client.ImagePullOptions) (client.ImagePullResponse, error)
}

// Builder builds and finds the analytics image.
type Builder struct {
	cli  Engine
	repo string
	hash string
	log  *logrus.Entry

	mu sync.Mutex // guards inflight
	// inflight holds the builds under way by build hash (see HashFor),
	// each shared by its concurrent callers.
	inflight map[string]*buildCall

	metrics metrics
}

type buildCall struct {
	done chan struct{}
	res  Build
	err  error
}

// New returns a Builder for images named repo (DefaultRepository if empty).
func New(cli Engine, repo string, log *logrus.Entry) *Builder {
	if repo == "" {
		repo = DefaultRepository
	}
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	return &Builder{cli: cli, repo: repo, hash: ContextHash(), log: log,
		inflight: map[string]*buildCall{}, metrics: newMetrics()}
}

// Hash returns the content hash of the embedded build context.
func (b *Builder) Hash() string { return b.hash }

// Tag returns the image reference this binary expects.
func (b *Builder) Tag() string { return b.repo + ":" + b.hash[:12] }

// Present reports whether the expected image is in the engine.
func (b *Builder) Present(ctx context.Context) (bool, error) {
	_, err := b.cli.ImageInspect(ctx, b.Tag())
	if err == nil {
		return true, nil
	}
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	return false, fmt.Errorf("inspect image %s: %w", b.Tag(), err)
}

// Ensure builds the image unless the engine already has it, and returns its
// tag.
func (b *Builder) Ensure(ctx context.Context) (string, error) {
	ok, err := b.Present(ctx)
	if err != nil {
		return "", err
	}
	if ok {
		return b.Tag(), nil
	}
	return b.Build(ctx)
}

// Build builds the image from the embedded context. Concurrent calls share
// one build and its result (see Rebuild).
func (b *Builder) Build(ctx context.Context) (string, error) {
	res, err := b.Rebuild(ctx, Spec{})
	return res.Tag, err
}

func (b *Builder) build(ctx context.Context) (string, error) {
	if err := b.ensureBase(ctx); err != nil {
		return "", err
	}
	tarball, err := contextTar()
	if err != nil {
		return "", err
	}
	start := time.Now()
	b.log.WithField("image", b.Tag()).Info("building analytics image")
	resp, err := b.cli.ImageBuild(ctx, bytes.NewReader(tarball), client.ImageBuildOptions{
		Tags:        []string{b.Tag(), b.repo + ":latest"},
		Remove:      true,
		ForceRemove: true,
		PullParent:  false,
		Labels:      map[string]string{LabelContextHash: b.hash},
	})
	if err != nil {
		return "", fmt.Errorf("build image: %w", err)
	}
	defer resp.Body.Close()
	if err := b.drain(resp.Body); err != nil {
		return "", err
	}
	if ok, err := b.Present(ctx); err != nil || !ok {
		return "", fmt.Errorf("build image: finished but %s is missing (%v)", b.Tag(), err)
	}
	b.log.WithFields(logrus.Fields{"image": b.Tag(), "duration_ms": time.Since(start).Milliseconds()}).
		Info("built analytics image")
	return b.Tag(), nil
}

// drain reads a build's output to the end. Errors arrive inside the stream,
// so all of it is decoded.
func (b *Builder) drain(body io.Reader) error {
	dec := json.NewDecoder(body)
	for {
		var msg jsonstream.Message
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read build output: %w", err)
		}
		if msg.Error != nil {
			return fmt.Errorf("build image: %s", msg.Error.Message)
		}
		if s := strings.TrimSpace(msg.Stream); s != "" {
			b.log.WithField("step", s).Debug("image build")
		}
	}
}

func (b *Builder) ensureBase(ctx context.Context) error {
	if _, err := b.cli.ImageInspect(ctx, BaseImage); err == nil {
		return nil
	}
	rc, err := b.cli.ImagePull(ctx, BaseImage, client.ImagePullOptions{})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoBase, err)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var msg jsonstream.Message
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%w: %w", ErrNoBase, err)
		}
		if msg.Error != nil {
			return fmt.Errorf("%w: %s", ErrNoBase, msg.Error.Message)
		}
	}
}

// ContextHash is the sha256 of the embedded build context (paths and bytes).
func ContextHash() string {
	h := sha256.New()
	for _, f := range contextFiles() {
		data, err := contextFS.ReadFile(f)
		if err != nil {
			panic(err) // embedded: cannot fail
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func contextFiles() []string {
	var files []string
	err := fs.WalkDir(contextFS, "context", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		panic(err) // embedded: cannot fail
	}
	sort.Strings(files)
	return files
}

// contextTar packs the embedded context as the build's tar stream.
func contextTar() ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range contextFiles() {
		data, err := contextFS.ReadFile(f)
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{
			Name:    strings.TrimPrefix(f, "context/"),
			Mode:    0o644,
			Size:    int64(len(data)),
			ModTime: time.Unix(0, 0),
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
