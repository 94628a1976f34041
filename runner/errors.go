package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// Errors callers branch on: the service could not run the code. Every
// engine failure on any path is one of them (classify); handlers map each
// to a status and a stable code.
var (
	// ErrBusy means every worker is busy and the queue is full.
	ErrBusy = errors.New("all workers busy and the queue is full")
	// ErrEngineDown means the Docker engine did not answer or failed: it
	// could not be reached, a call failed on its side, or the attach stream
	// of a running execution was cut.
	ErrEngineDown = errors.New("docker engine unavailable")
	// ErrNoImage means the analytics image is not in the engine.
	ErrNoImage = errors.New("analytics image not available")
	// ErrSandboxVanished means the container running the code disappeared
	// while it ran (removed from outside, e.g. by an operator), so there is
	// no result.
	ErrSandboxVanished = errors.New("the sandbox container disappeared while the code ran")
	// ErrClosed means the runner is shutting down.
	ErrClosed = errors.New("runner closed")
)

// Engine operations, as classify distinguishes them and errors name them.
const (
	opCreate  = "create container"
	opAttach  = "attach container"
	opStart   = "start container"
	opInspect = "inspect container"
	opKill    = "kill container"
	opRemove  = "remove container"
	opList    = "list containers"
	opImage   = "inspect image"
	opPing    = "connect to engine"
	// opStream is the attach stream of a started container: sending the
	// code and reading frames.
	opStream = "container stream"
)

// classify maps an error of an engine operation to the runner's sentinels;
// it is the one place that does. Errors already classified and context
// errors pass through (wrapped with op). An unreachable engine, a transport
// error or an engine-side failure is ErrEngineDown; NotFound is ErrNoImage
// on a create (the image is missing: the create names no other object) and
// ErrSandboxVanished on any other container operation. Anything else (an
// invalid request, a conflict) is returned wrapped, unclassified.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, ErrEngineDown), errors.Is(err, ErrNoImage), errors.Is(err, ErrSandboxVanished),
		errors.Is(err, ErrClosed), errors.Is(err, ErrBusy),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", op, err)
	case engineUnreachable(err):
		return fmt.Errorf("%w: %s: %w", ErrEngineDown, op, err)
	case errdefs.IsNotFound(err):
		if op == opCreate {
			return fmt.Errorf("%w: %s: %w", ErrNoImage, op, err)
		}
		return fmt.Errorf("%w: %s: %w", ErrSandboxVanished, op, err)
	case errdefs.IsInternal(err), errdefs.IsUnavailable(err), errdefs.IsUnknown(err):
		// The engine answered 5xx: it failed, not the request.
		return fmt.Errorf("%w: %s: %w", ErrEngineDown, op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// engineUnreachable reports whether err says the connection to the engine
// failed or broke: the client's connection error, any network operation
// error, a reset or refused socket, or a stream that ended early.
func engineUnreachable(err error) bool {
	var opErr *net.OpError
	return client.IsErrConnectionFailed(err) ||
		errors.As(err, &opErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.ErrClosedPipe) ||
		errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE)
}
