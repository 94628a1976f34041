package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/internal/logctx"
)

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

	conn   types.HijackedResponse
	frames chan frameOrErr
	stderr *cappedBuffer

	// quit is closed by discard; it releases a frame reader nobody listens to.
	quit chan struct{}
	// done is closed when the demux and frame goroutines have both ended.
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
	resp, err := r.cli.ContainerCreate(ctx, sp.config, sp.host, sp.network, nil, "")
	if err != nil {
		return nil, r.classify(fmt.Errorf("create container: %w", err))
	}
	r.metrics.countCreated(role)
	sb := &sandbox{id: resp.ID, preload: preload, image: sp.config.Image, quit: make(chan struct{}), done: make(chan struct{})}
	log := logctx.From(ctx).WithFields(logrus.Fields{logContainerID: shortID(sb.id), logRole: role, logPreload: preloadName(preload)})
	log.WithFields(logrus.Fields{logImage: sb.image, logDurationMS: ms(time.Since(start))}).Debug("container created")
	defer func() {
		if retErr != nil {
			r.discard(ctx, sb)
		}
	}()

	// Attach before start so no frame is missed.
	hj, err := r.cli.ContainerAttach(ctx, sb.id, container.AttachOptions{
		Stream: true, Stdin: true, Stdout: true, Stderr: true,
	})
	if err != nil {
		close(sb.done)
		return sb, r.classify(fmt.Errorf("attach container %s: %w", shortID(sb.id), err))
	}
	sb.conn = hj
	sb.frames = make(chan frameOrErr, 4)
	sb.stderr = &cappedBuffer{max: maxStderrBytes}
	r.readFrames(sb)

	if err := r.cli.ContainerStart(ctx, sb.id, container.StartOptions{}); err != nil {
		return sb, r.classify(fmt.Errorf("start container %s: %w", shortID(sb.id), err))
	}
	log.WithField(logDurationMS, ms(time.Since(start))).Debug("container started")
	select {
	case fe := <-sb.frames:
		if fe.err != nil {
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

// readFrames starts the goroutines that demultiplex the attach stream and
// parse frames. Both end when the stream ends (the container exits or the
// connection is closed by discard).
func (r *Runner) readFrames(sb *sandbox) {
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	wg.Add(2)
	sb.streamEnd = make(chan struct{})
	go func() {
		defer wg.Done()
		_, err := stdcopy.StdCopy(pw, sb.stderr, sb.conn.Reader)
		close(sb.streamEnd)
		pw.CloseWithError(err) // nil err closes with io.EOF
	}()
	go func() {
		defer wg.Done()
		defer close(sb.frames)
		send := func(fe frameOrErr) bool {
			select {
			case sb.frames <- fe:
				return true
			case <-sb.quit:
				return false
			}
		}
		fr := newFrameReader(pr, r.opts.MaxOutputsBytes+4*r.opts.MaxStreamBytes+(1<<20))
		for {
			f, err := fr.next()
			if err != nil {
				send(frameOrErr{err: err})
				_, _ = io.Copy(io.Discard, pr) // let the demuxer finish
				return
			}
			if !send(frameOrErr{f: f}) {
				_, _ = io.Copy(io.Discard, pr)
				return
			}
		}
	}()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		wg.Wait()
		close(sb.done)
	}()
}

// exec sends the request to a ready sandbox and collects the result. The
// deadline is enforced here, from outside: past Timeout+KillGrace the
// container is killed. The caller discards the sandbox afterwards.
func (r *Runner) exec(ctx context.Context, sb *sandbox, req Request) (Result, error) {
	wr := wireRequest{Code: req.Code, Timeout: req.Timeout.Seconds(), Policy: r.policyJSON, Options: req.Options}
	if req.PolicyChecked {
		wr.Policy = nil
	}
	body, err := json.Marshal(wr)
	if err != nil {
		return Result{}, fmt.Errorf("encode request: %w", err)
	}
	header := requestHeader(req.Timeout, r.opts.MaxStreamBytes, r.opts.MaxStreamBytes, r.opts.MaxOutputsBytes, len(body))
	start := time.Now()
	if _, err := sb.conn.Conn.Write(append([]byte(header), body...)); err != nil {
		return Result{}, fmt.Errorf("send code to container %s: %w", shortID(sb.id), err)
	}
	_ = sb.conn.CloseWrite()

	timer := time.NewTimer(req.Timeout + r.opts.KillGrace)
	defer timer.Stop()
	res := Result{Flavor: FlavorOf(sb.preload), Warm: sb.warm, Outputs: emptyOutputs()}
	res.Resources.MemoryLimitBytes = r.opts.MemoryBytes
	var got execFrames
	for {
		select {
		case fe, ok := <-sb.frames:
			if !ok || fe.err != nil {
				return r.diagnose(ctx, sb, req, start, fe.err)
			}
			switch fe.f.kind {
			case frameExit:
				var ex wireExit
				if err := json.Unmarshal(fe.f.payload, &ex); err != nil {
					return Result{}, fmt.Errorf("%w: exit frame: %w", errProtocol, err)
				}
				compose(ex, got, req.Timeout, &res)
				return res, nil
			case frameError:
				return Result{}, fmt.Errorf("%w: harness refused the request: %s", errProtocol, fe.f.payload)
			default:
				if !got.add(fe.f) {
					return Result{}, fmt.Errorf("%w: unexpected %q frame", errProtocol, fe.f.kind)
				}
			}
		case <-timer.C:
			// The harness did not report its own timeout: kill from outside.
			r.kill(ctx, sb)
			logrus.WithField(logContainerID, shortID(sb.id)).Debug("killed container at deadline")
			return timeoutResult(sb, req, time.Since(start), r.opts.MemoryBytes), nil
		case <-ctx.Done():
			r.kill(ctx, sb)
			return Result{}, ctx.Err()
		}
	}
}

// diagnose explains a stream that ended without a result frame.
func (r *Runner) diagnose(ctx context.Context, sb *sandbox, req Request, start time.Time, streamErr error) (Result, error) {
	cctx, cancel := r.cleanupContext(ctx)
	defer cancel()
	// Give the engine a moment to record the exit.
	var state *container.State
	for i := 0; i < 20; i++ {
		info, err := r.cli.ContainerInspect(cctx, sb.id)
		if err != nil {
			return Result{}, r.classify(fmt.Errorf("inspect container %s: %w", shortID(sb.id), err))
		}
		state = info.State
		if state == nil || !state.Running {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	res := Result{Flavor: FlavorOf(sb.preload), Outputs: emptyOutputs(), ExecutionTime: time.Since(start)}
	res.Resources.MemoryLimitBytes = r.opts.MemoryBytes
	if state != nil && state.OOMKilled {
		res.Status = StatusOutOfMemory
		res.Resources.OOMKilled = true
		res.Error = &ExecError{Type: "MemoryError", Message: "execution ran out of memory and the sandbox was killed"}
		return res, nil
	}
	if streamErr != nil && errors.Is(streamErr, errProtocol) {
		return Result{}, streamErr
	}
	exit := -1
	if state != nil {
		exit = state.ExitCode
	}
	res.Status = StatusError
	res.Error = &ExecError{
		Type:    "SandboxError",
		Message: fmt.Sprintf("the sandbox ended without a result (exit code %d)", exit),
	}
	logrus.WithFields(logrus.Fields{logContainerID: shortID(sb.id), "stderr": sb.stderr.String()}).
		Warn("sandbox ended without a result")
	return res, nil
}

func timeoutResult(sb *sandbox, req Request, elapsed time.Duration, mem int64) Result {
	res := Result{
		Status:        StatusTimeout,
		Flavor:        FlavorOf(sb.preload),
		Outputs:       emptyOutputs(),
		ExecutionTime: elapsed,
		Error: &ExecError{
			Type:    "TimeoutError",
			Message: fmt.Sprintf("execution exceeded the time limit of %gs", req.Timeout.Seconds()),
		},
	}
	res.Resources.MemoryLimitBytes = mem
	return res
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
