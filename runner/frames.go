package runner

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// The supervisor writes frames on the container's stdout:
//
//	"PYEXEC1 <kind> <length>\n" <payload> "\n"
//
// Only the trusted supervisor process writes there; the user's process has
// its own pipes, so nothing it prints can look like a frame here.
const frameMagic = "PYEXEC1"

// Frame kinds written by the supervisor (images/context/supervisor).
const (
	frameReady   = "ready"
	frameStdout  = "stdout"
	frameStderr  = "stderr"
	frameReport  = "report"
	frameOutputs = "outputs"
	frameExit    = "exit"
	frameError   = "error"
	// A validate.py answer: the validator's, or a session's checker's
	// (validator.go, session.go).
	frameValidation = "validation"
	// Streaming only (stream.go).
	frameStdoutChunk = "ostream"
	frameStderrChunk = "estream"
	frameEvent       = "event"
)

// maxHeaderBytes bounds a frame header line.
const maxHeaderBytes = 64

// errProtocol is wrapped by every malformed-stream error.
var errProtocol = errors.New("harness protocol violation")

type frame struct {
	kind    string
	payload []byte
}

// frameReader reads frames, refusing any payload over max bytes.
type frameReader struct {
	r   *bufio.Reader
	max int
}

func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// next returns the next frame; io.EOF when the stream ended between frames.
func (fr *frameReader) next() (frame, error) {
	header, err := fr.r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, io.EOF) && len(header) == 0 {
			return frame{}, io.EOF
		}
		if errors.Is(err, bufio.ErrBufferFull) || len(header) > maxHeaderBytes {
			return frame{}, fmt.Errorf("%w: header too long", errProtocol)
		}
		return frame{}, fmt.Errorf("%w: truncated header: %w", errProtocol, err)
	}
	if len(header) > maxHeaderBytes {
		return frame{}, fmt.Errorf("%w: header too long", errProtocol)
	}
	// header aliases the bufio buffer: copy it before reading further.
	fields := bytes.Fields(bytes.Clone(header))
	if len(fields) != 3 || string(fields[0]) != frameMagic {
		return frame{}, fmt.Errorf("%w: bad header %q", errProtocol, header)
	}
	n, err := strconv.Atoi(string(fields[2]))
	if err != nil || n < 0 {
		return frame{}, fmt.Errorf("%w: bad length %q", errProtocol, fields[2])
	}
	if n > fr.max {
		return frame{}, fmt.Errorf("%w: %s frame of %d bytes exceeds %d", errProtocol, fields[1], n, fr.max)
	}
	payload := make([]byte, n+1)
	if _, err := io.ReadFull(fr.r, payload); err != nil {
		return frame{}, fmt.Errorf("%w: truncated %s frame: %w", errProtocol, fields[1], err)
	}
	if payload[n] != '\n' {
		return frame{}, fmt.Errorf("%w: %s frame not terminated", errProtocol, fields[1])
	}
	return frame{kind: string(fields[1]), payload: payload[:n]}, nil
}
