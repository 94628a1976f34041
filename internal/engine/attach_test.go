package engine

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/moby/moby/api/pkg/stdcopy"
)

// TestAttachReader: AttachReader reads an attach stream the way moby's
// stdcopy.StdCopy does, block boundaries anywhere, read sizes anything:
// the same stdout and stderr, and the same verdict at its end. A stream cut
// inside a block is the one difference: StdCopy calls that a clean end and
// drops the block's start; AttachReader says io.ErrUnexpectedEOF.
func TestAttachReader(t *testing.T) {
	block := func(stream byte, payload string) string {
		var b bytes.Buffer
		b.Write([]byte{stream, 0, 0, 0})
		_ = binary.Write(&b, binary.BigEndian, uint32(len(payload)))
		return b.String() + payload
	}
	big := strings.Repeat("销售额 sales\n", 9000) // past bufio's and a block's sizes
	cases := map[string]struct {
		stream  string
		wantErr string // "" for a clean end
	}{
		"stdout and stderr": {block(1, "PYEXEC1 ready 2\n{}\n") + block(2, "warning: 中文\n") + block(1, "tail"), ""},
		"empty blocks":      {block(1, "") + block(2, "") + block(1, "x"), ""},
		"stdin as stdout":   {block(0, "in") + block(1, "out"), ""},
		"large":             {block(1, big[:40000]) + block(2, big[:5000]) + block(1, big[40000:]), ""},
		"engine error":      {block(1, "before") + block(3, "container gone") + block(1, "never"), "error from daemon in stream: container gone"},
		"unknown stream":    {block(1, "a") + block(7, "b"), "unrecognized attach stream 7"},
		"cut in a header":   {block(1, "a") + block(1, "b")[:5], io.ErrUnexpectedEOF.Error()},
		"cut in stdout":     {block(1, "abcdef")[:10], io.ErrUnexpectedEOF.Error()},
		"cut in stderr":     {block(2, "abcdef")[:10], io.ErrUnexpectedEOF.Error()},
		"nothing":           {"", ""},
	}
	for name, c := range cases {
		for _, chunk := range []int{1, 7, 4096, 1 << 20} {
			var wantOut, wantErrOut bytes.Buffer
			_, wantErr := stdcopy.StdCopy(&wantOut, &wantErrOut, strings.NewReader(c.stream))
			var stderr bytes.Buffer
			ar := NewAttachReader(iotest.OneByteReader(strings.NewReader(c.stream)), &stderr)
			if chunk > 1 {
				ar = NewAttachReader(bufio.NewReaderSize(strings.NewReader(c.stream), max(16, chunk)), &stderr)
			}
			var out bytes.Buffer
			buf := make([]byte, chunk)
			var err error
			for {
				var n int
				n, err = ar.Read(buf)
				out.Write(buf[:n])
				if err != nil {
					break
				}
			}
			if err == io.EOF {
				err = nil
			}
			gotErr, refErr := "", ""
			if err != nil {
				gotErr = err.Error()
			}
			if wantErr != nil {
				refErr = wantErr.Error()
			}
			if gotErr != c.wantErr {
				t.Errorf("%s, reads of %d: error %q, want %q (stdcopy: %q)", name, chunk, gotErr, c.wantErr, refErr)
			}
			if c.wantErr == io.ErrUnexpectedEOF.Error() {
				if !strings.HasPrefix(out.String(), wantOut.String()) {
					t.Errorf("%s, reads of %d: stdout %q does not start with stdcopy's %q", name, chunk, out.String(), wantOut.String())
				}
				continue
			}
			if (refErr == "") != (gotErr == "") {
				t.Errorf("%s, reads of %d: error %q where stdcopy says %q", name, chunk, gotErr, refErr)
			}
			if out.String() != wantOut.String() || stderr.String() != wantErrOut.String() {
				t.Errorf("%s, reads of %d: stdout %d bytes, stderr %q; stdcopy: %d bytes, %q",
					name, chunk, out.Len(), stderr.String(), wantOut.Len(), wantErrOut.String())
			}
		}
	}
}
