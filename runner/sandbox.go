package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/internal/engine"
	"github.com/pyexec/pyexec/internal/logctx"
)

// maxReportBytes is the largest report the supervisor passes on
// (MAX_REPORT_BYTES in images/context/supervisor/supervisor.c).
const maxReportBytes = 1 << 20

// maxStderrBytes bounds what is kept of the supervisor's own stderr (it only
// carries harness diagnostics; user output travels inside frames).
const maxStderrBytes = 16 << 10

// sandbox is one started container whose harness is attached and ready.
// It serves exactly one execution and is then discarded.
type sandbox struct {
	id string
	// preload is what the harness imported before the code (flavor.go).
	preload string
	ready   readyInfo
	// image is the image the container was created from.
	image string
	// readyAt is when the sandbox entered the pool (zero if cold).
	readyAt time.Time
	// warm says the sandbox came from the pool.
	warm bool
	// created is when the container was created.
	created time.Time

	conn   client.HijackedResponse
	frames chan frameOrErr
	stderr *cappedBuffer

	// quit is closed by discard; it releases a frame reader nobody listens to.
	quit chan struct{}
	// done is closed when the goroutine reading the stream (readFrames) has ended.
	done chan struct{}
	// streamEnd is closed when the attach stream has ended: the container
	// exited (or the connection was closed). nil until attached.
	streamEnd chan struct{}
}

type readyInfo struct {
	Preload   string            `json:"preload"`
	PreloadMS float64           `json:"preload_ms"`
	Versions  map[string]string `json:"versions"`
	// MemoryBytes is the container's memory use once ready.
	MemoryBytes int64 `json:"memory_bytes"`
}

// alive reports whether an idle sandbox's stream is still open and silent.
// A ready harness writes nothing until it gets code, so anything on the
// channel (end of stream, error, stray frame) means it cannot be used.
func (sb *sandbox) alive() bool {
	select {
	case <-sb.frames:
		return false
	default:
		return true
	}
}

type frameOrErr struct {
	f   frame
	err error
}

// wireRequest is the request body the supervisor hands to the runner child.
type wireRequest struct {
	Code    string          `json:"code"`
	Timeout float64         `json:"timeout"`
	Policy  json.RawMessage `json:"policy,omitempty"`
	Options map[string]any  `json:"options,omitempty"`
	// Files are written into the working directory before the code runs.
	Files []wireFile `json:"files,omitempty"`
}

// requestHeader is the line the supervisor reads before the body: the
// deadline in whole milliseconds (rounded up, at least 1) and the caps it
// enforces, and the body's length.
func requestHeader(timeout time.Duration, stdoutCap, stderrCap, outputsCap, length int) string {
	ms := max(1, (timeout + time.Millisecond - 1).Milliseconds())
	return fmt.Sprintf("run %d %d %d %d %d\n", ms, stdoutCap, stderrCap, outputsCap, length)
}

// prepare creates, attaches and starts a container and waits until its
// harness reports ready. On error nothing is left behind.
func (r *Runner) prepare(ctx context.Context, role, preload string) (*sandbox, error) {
	return r.prepareWith(ctx, role, preload, nil)
}

// prepareWith is prepare with the image's entrypoint replaced (if not nil).
func (r *Runner) prepareWith(ctx context.Context, role, preload string, entrypoint []string) (_ *sandbox, retErr error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.StartTimeout)
	defer cancel()

	start := time.Now()
	sp := r.sandboxSpec(role, preload, entrypoint)
	sp.config.Image = r.Image() // Options.Image, or what SetImage switched to
	// The create is not cut off when ctx is cancelled (the client left): the
	// engine may finish a create whose caller stopped waiting, and the
	// runner would never learn that container's ID (the reconciler's
	// dangling case, removed only a grace period later). It is bounded by
	// StartTimeout; a cancelled ctx is seen right after it, with the
	// container known and discarded.
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.StartTimeout)
	resp, err := r.cli.ContainerCreate(cctx, client.ContainerCreateOptions{
		Config: sp.config, HostConfig: sp.host, NetworkingConfig: sp.network,
	})
	ccancel()
	if resp.ID != "" {
		r.owned.add(resp.ID)
	}
	if err != nil {
		err = classify(opCreate, err)
		if errors.Is(err, ErrNoImage) {
			r.noImage(sp.config.Image)
		}
		return nil, err
	}
	r.metrics.countCreated(role)
	sb := &sandbox{id: resp.ID, preload: preload, image: sp.config.Image, created: time.Now(), quit: make(chan struct{}), done: make(chan struct{})}
	log := logctx.From(ctx).WithFields(logrus.Fields{logContainerID: shortID(sb.id), logRole: role, logPreload: preloadName(preload)})
	log.WithFields(logrus.Fields{logImage: sb.image, logDurationMS: ms(time.Since(start))}).Debug("container created")
	defer func() {
		if retErr != nil {
			r.discard(ctx, sb)
		}
	}()
	if err := ctx.Err(); err != nil {
		close(sb.done) // nothing reads a stream
		return sb, err
	}

	// Attach before start so no frame is missed.
	hj, err := r.cli.ContainerAttach(ctx, sb.id, client.ContainerAttachOptions{
		Stream: true, Stdin: true, Stdout: true, Stderr: true,
	})
	if err != nil {
		close(sb.done)
		return sb, r.explain(ctx, sb, opAttach, err)
	}
	sb.conn = hj.HijackedResponse
	sb.frames = make(chan frameOrErr, 4)
	sb.stderr = &cappedBuffer{max: maxStderrBytes}
	r.readFrames(sb)

	if _, err := r.cli.ContainerStart(ctx, sb.id, client.ContainerStartOptions{}); err != nil {
		return sb, r.explain(ctx, sb, opStart, err)
	}
	log.WithField(logDurationMS, ms(time.Since(start))).Debug("container started")
	select {
	case fe := <-sb.frames:
		if fe.err != nil {
			if _, err := r.streamEnded(ctx, sb, fe.err); err != nil {
				return sb, err
			}
			return sb, fmt.Errorf("container %s not ready: %w (stderr: %q)", shortID(sb.id), fe.err, sb.stderr.String())
		}
		if fe.f.kind != frameReady {
			return sb, fmt.Errorf("%w: expected ready, got %q", errProtocol, fe.f.kind)
		}
		if err := json.Unmarshal(fe.f.payload, &sb.ready); err != nil {
			return sb, fmt.Errorf("%w: ready frame: %w", errProtocol, err)
		}
	case <-ctx.Done():
		return sb, fmt.Errorf("container %s not ready: %w", shortID(sb.id), ctx.Err())
	}
	if role != roleValidator {
		r.noteReady(sb)
	}
	log.WithField(logDurationMS, ms(time.Since(start))).Debug("container ready")
	return sb, nil
}

// readFrames starts the goroutine that demultiplexes the attach stream and
// parses the frames in it. It ends when the stream ends (the container
// exits or the connection is closed by discard).
func (r *Runner) readFrames(sb *sandbox) {
	sb.streamEnd = make(chan struct{})
	r.goroutines.Go(func() {
		defer close(sb.done)
		defer close(sb.frames)
		send := func(fe frameOrErr) bool {
			select {
			case sb.frames <- fe:
				return true
			case <-sb.quit:
				return false
			}
		}
		ar := engine.NewAttachReader(sb.conn.Reader, sb.stderr)
		// drain reads what is left of the stream, so that its end is seen.
		drain := func() {
			_, _ = io.Copy(io.Discard, ar)
			close(sb.streamEnd)
		}
		fr := newFrameReader(ar, r.opts.MaxOutputsBytes+4*r.opts.MaxStreamBytes+maxReportBytes)
		for {
			f, err := fr.next()
			switch {
			case err != nil && ar.Ended() != nil:
				close(sb.streamEnd) // the stream itself ended
				send(frameOrErr{err: err})
				return
			case err != nil:
				send(frameOrErr{err: err}) // a malformed frame
				drain()
				return
			case !send(frameOrErr{f: f}):
				drain()
				return
			}
		}
	})
}

// engineCheckPeriod is how often a running execution checks that the
// engine still answers: a stopped engine may keep the attach stream of a
// container it is stopping open for its stop timeout.
const engineCheckPeriod = time.Second

// engineCheckTimeout bounds one such check; a loaded engine answers a ping
// well within it.
const engineCheckTimeout = 5 * time.Second

// exec sends the request to a ready sandbox and collects the result. The
// deadline is enforced here, from outside: past Timeout+KillGrace the
// container is killed. The caller discards the sandbox afterwards.
func (r *Runner) exec(ctx context.Context, sb *sandbox, req Request) (Result, error) {
	stream := req.OnEvent != nil
	wr := wireRequest{Code: req.Code, Timeout: req.Timeout.Seconds(), Policy: r.policyJSON,
		Options: streamOptions(r.outputOptions(req.Options), stream), Files: wireFiles(req.Files)}
	if req.policyChecked {
		wr.Policy = nil
	}
	body, err := json.Marshal(wr)
	if err != nil {
		return Result{}, fmt.Errorf("encode request: %w", err)
	}
	header := withStreamFlag(requestHeader(req.Timeout, r.opts.MaxStreamBytes, r.opts.MaxStreamBytes, r.opts.MaxOutputsBytes, len(body)), stream)
	em := newEmitter(req.OnEvent)
	start := time.Now()
	base := newResult(sb.preload, sb.warm, r.opts.MemoryBytes)
	if _, err := sb.conn.Conn.Write(append([]byte(header), body...)); err != nil {
		return r.diagnose(ctx, sb, base, start, fmt.Errorf("send code: %w", err))
	}
	_ = sb.conn.CloseWrite()

	timer := time.NewTimer(req.Timeout + r.opts.KillGrace)
	defer timer.Stop()
	check := time.NewTicker(engineCheckPeriod)
	defer check.Stop()
	var got execFrames
	for {
		select {
		case fe, ok := <-sb.frames:
			if !ok || fe.err != nil {
				return r.diagnose(ctx, sb, base, start, fe.err)
			}
			if em.take(fe.f) {
				continue
			}
			switch fe.f.kind {
			case frameExit:
				var ex wireExit
				if err := json.Unmarshal(fe.f.payload, &ex); err != nil {
					return Result{}, fmt.Errorf("%w: exit frame: %w", errProtocol, err)
				}
				em.finish()
				res := base
				compose(ex, got, req.Timeout, &res)
				return res, nil
			case frameError:
				return Result{}, fmt.Errorf("%w: harness refused the request: %s", errProtocol, fe.f.payload)
			default:
				if !got.add(fe.f) {
					return Result{}, fmt.Errorf("%w: unexpected %q frame", errProtocol, fe.f.kind)
				}
			}
		case <-check.C:
			if err := r.engineAnswers(ctx); err != nil {
				return Result{}, err
			}
		case <-timer.C:
			// The harness did not report its own timeout: kill from outside.
			if err := r.kill(ctx, sb); errors.Is(err, ErrEngineDown) {
				return Result{}, err
			}
			logctx.From(ctx).WithField(logContainerID, shortID(sb.id)).Debug("killed container at deadline")
			res := base
			timedOut(&res, req.Timeout, time.Since(start))
			return res, nil
		case <-ctx.Done():
			_ = r.kill(ctx, sb)
			return Result{}, ctx.Err()
		}
	}
}

// engineAnswers opens a new connection to the engine: ErrEngineDown when
// that fails. A ping is not enough: a stopping engine closes its socket at
// once but keeps answering on connections kept alive until it exits, after
// it has stopped every container.
func (r *Runner) engineAnswers(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, engineCheckTimeout)
	defer cancel()
	conn, err := r.cli.Dialer()(cctx)
	if err != nil {
		if err = classify(opPing, err); errors.Is(err, ErrEngineDown) {
			return err
		}
		return nil
	}
	_ = conn.Close()
	return nil
}

// explain classifies an error of op on sb's container. When classify
// cannot tell (an untyped error, such as an attach the engine refused), it
// asks the engine about the container: gone is ErrSandboxVanished, no
// answer is ErrEngineDown; otherwise err stays unclassified.
func (r *Runner) explain(ctx context.Context, sb *sandbox, op string, err error) error {
	err = classify(op, err)
	if classified(err) {
		return err
	}
	cctx, cancel := r.cleanupContext(ctx)
	defer cancel()
	if _, ierr := r.cli.ContainerInspect(cctx, sb.id, client.ContainerInspectOptions{}); ierr != nil {
		if ierr = classify(opInspect, ierr); classified(ierr) {
			return fmt.Errorf("%w (after %w)", ierr, err)
		}
	}
	return err
}

// classified reports whether err is one of the sentinels classify gives.
func classified(err error) bool {
	return errors.Is(err, ErrEngineDown) || errors.Is(err, ErrSandboxVanished) || errors.Is(err, ErrNoImage)
}

// streamEnded asks the engine why sb's attach stream ended (streamErr is
// what the reader saw, nil for a clean end). It returns the container's
// final state when the container itself ended, or the error that explains
// the end: ErrSandboxVanished when the container is gone, ErrEngineDown when
// the engine does not answer or the stream was cut under a running
// container.
func (r *Runner) streamEnded(ctx context.Context, sb *sandbox, streamErr error) (*container.State, error) {
	cctx, cancel := r.cleanupContext(ctx)
	defer cancel()
	// Give the engine a moment to record the exit.
	var state *container.State
	for i := 0; i < 20; i++ {
		info, err := r.cli.ContainerInspect(cctx, sb.id, client.ContainerInspectOptions{})
		if err != nil {
			return nil, classify(opInspect, err)
		}
		state = info.Container.State
		if state == nil || !state.Running {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if state == nil {
		state = &container.State{ExitCode: -1}
	}
	if state.Status == "removing" || state.Dead {
		// Removed from outside (docker rm -f): the removal killed it.
		return nil, fmt.Errorf("%w: container %s is %s", ErrSandboxVanished, shortID(sb.id), state.Status)
	}
	if state.OOMKilled {
		return state, nil
	}
	if state.Running {
		if streamErr == nil {
			streamErr = io.EOF
		}
		return nil, classify(opStream, streamErr)
	}
	// The container exited: by itself, or killed by an engine going down.
	if err := r.engineAnswers(ctx); err != nil {
		return nil, err
	}
	return state, nil
}

// diagnose explains a stream that ended without an exit frame: the engine
// or the container is gone (errors), or the container ended (a Result).
func (r *Runner) diagnose(ctx context.Context, sb *sandbox, base Result, start time.Time, streamErr error) (Result, error) {
	state, err := r.streamEnded(ctx, sb, streamErr)
	if err != nil {
		return Result{}, err
	}
	res := base
	res.ExecutionTime = time.Since(start)
	if state.OOMKilled {
		outOfMemory(&res)
		return res, nil
	}
	if errors.Is(streamErr, errProtocol) && !engineUnreachable(streamErr) {
		return Result{}, streamErr
	}
	noResult(&res, state.ExitCode)
	logctx.From(ctx).WithFields(logrus.Fields{logContainerID: shortID(sb.id), "stderr": sb.stderr.String()}).
		Warn("sandbox ended without a result")
	return res, nil
}

// decodeOutputs parses the untrusted outputs frame into the fixed shape; on
// any error the outputs stay empty and say why.
func decodeOutputs(payload []byte, out *Outputs) {
	var o Outputs
	if err := json.Unmarshal(payload, &o); err != nil {
		*out = emptyOutputs()
		out.CollectError = "rich outputs were malformed and were dropped"
		return
	}
	if o.Charts == nil {
		o.Charts = []Chart{}
	}
	if o.DataFrames == nil {
		o.DataFrames = []DataFrame{}
	}
	if o.Variables == nil {
		o.Variables = map[string]Variable{}
	}
	sanitizeFiles(&o)   // session.go
	sanitizeOutputs(&o) // sanitize.go
	*out = o
}

// cappedBuffer keeps the first max bytes written to it.
type cappedBuffer struct {
	mu  sync.Mutex // guards buf
	buf []byte
	max int
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (c *cappedBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
