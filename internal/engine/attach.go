package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

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

// AttachReader reads the stdout of an attach stream, writing what arrives
// on stderr to stderr as it goes: stdcopy.StdCopy's demultiplexing as a
// Reader, so that one goroutine can read both the stream and what is in it
// (the runner's frames; with StdCopy into an io.Pipe, each chunk was
// handed from one goroutine to another). A stream cut inside a block is
// io.ErrUnexpectedEOF, where StdCopy reports a clean end.
type AttachReader struct {
	r      io.Reader
	stderr io.Writer
	left   int // bytes of the current stdout block not read yet
	header [attachHeaderBytes]byte
	err    error // what ended the underlying stream
}

// NewAttachReader reads the stdout of the attach stream r; stderr gets its
// stderr.
func NewAttachReader(r io.Reader, stderr io.Writer) *AttachReader {
	return &AttachReader{r: r, stderr: stderr}
}

// Ended is the error that ended the underlying stream (io.EOF for a clean
// end), nil while it is open.
func (a *AttachReader) Ended() error { return a.err }

func (a *AttachReader) Read(p []byte) (int, error) {
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
func (a *AttachReader) nextBlock() error {
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
