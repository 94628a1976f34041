package runner

import (
	"bufio"
	"bytes"
	"encoding/binary"
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

// The attach stream's own framing (the engine's, for a container without a
// TTY: moby's stdcopy): an 8-byte header, [stream, 0, 0, 0, size (big
// endian uint32)], then size bytes.
const (
	attachHeaderBytes = 8
	attachStdin       = 0
	attachStdout      = 1
	attachStderr      = 2
	attachSystemErr   = 3 // the engine's own error, ending the stream
	// maxSystemErrBytes bounds how much of an engine error is kept.
	maxSystemErrBytes = 4 << 10
)

// attachReader reads the stdout of an attach stream, writing what arrives
// on stderr to stderr as it goes: stdcopy.StdCopy's demultiplexing as a
// Reader, so that one goroutine reads both the stream and the frames in it
// (with StdCopy into an io.Pipe, each chunk was handed from one goroutine
// to another). err keeps the error that ended the underlying stream.
type attachReader struct {
	r      io.Reader
	stderr io.Writer
	left   int // bytes of the current stdout block not read yet
	header [attachHeaderBytes]byte
	err    error
}

func (a *attachReader) Read(p []byte) (int, error) {
	if a.err != nil {
		return 0, a.err
	}
	for a.left == 0 {
		if err := a.nextBlock(); err != nil {
			a.err = err
			return 0, err
		}
	}
	if len(p) > a.left {
		p = p[:a.left]
	}
	n, err := a.r.Read(p)
	a.left -= n
	switch {
	case err == io.EOF && a.left == 0:
		err = nil // the block is whole: the next header read sees the end
	case err != nil:
		a.err = noEOF(err)
		err = a.err
	}
	return n, err
}

// nextBlock reads a block header, and a stderr block whole.
func (a *attachReader) nextBlock() error {
	if _, err := io.ReadFull(a.r, a.header[:]); err != nil {
		return err // io.EOF between blocks: the stream's clean end
	}
	size := int64(binary.BigEndian.Uint32(a.header[4:]))
	switch a.header[0] {
	case attachStdin, attachStdout:
		a.left = int(size)
	case attachStderr:
		if _, err := io.CopyN(a.stderr, a.r, size); err != nil {
			return noEOF(err)
		}
	case attachSystemErr:
		var msg bytes.Buffer
		if _, err := io.CopyN(&msg, a.r, min(size, maxSystemErrBytes)); err != nil {
			return noEOF(err)
		}
		return fmt.Errorf("error from daemon in stream: %s", msg.String())
	default:
		return fmt.Errorf("unrecognized attach stream %d", a.header[0])
	}
	return nil
}

// noEOF turns the end of a stream inside a block into ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
