package handlers

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"

	"github.com/pyexec/pyexec/runner"
)

// fileBody is an input file in a request body (POST /execute and a
// session's execute).
type fileBody struct {
	Name *string `json:"name"`
	// Content is the file's bytes in standard base64 (padding required).
	Content *string `json:"content"`
}

// Default limits on the input files of one request (MAX_INPUT_FILES,
// MAX_INPUT_BYTES).
const (
	DefaultMaxInputFiles = runner.DefaultMaxInputFiles
	DefaultMaxInputBytes = runner.DefaultMaxInputBytes
)

// bodyOverhead is what a request body may hold besides its files' base64:
// the code (at most policy.MaxCodeBytes, escaped) and the other fields.
const bodyOverhead = 1<<20 + 64<<10

// maxInputFiles and maxInputBytes are the limits in force.
func (h *handler) maxInputFiles() int {
	if h.opts.MaxInputFiles > 0 {
		return h.opts.MaxInputFiles
	}
	return DefaultMaxInputFiles
}

func (h *handler) maxInputBytes() int64 {
	if h.opts.MaxInputBytes > 0 {
		return h.opts.MaxInputBytes
	}
	return DefaultMaxInputBytes
}

// bodyLimit bounds a body that may carry input files: 1 MiB + 4/3 of
// MAX_INPUT_BYTES (base64) + 64 KiB. Anything past it is 413.
func (h *handler) bodyLimit() int64 {
	n := h.maxInputBytes()
	return bodyOverhead + (n+2)/3*4
}

// inputFiles checks and decodes the files of a request: plain names
// (runner.CheckFileName), no duplicates, at most MAX_INPUT_FILES of them, at
// most MAX_INPUT_BYTES decoded in all, valid base64. Every refusal is a 422
// with its own code; nothing reaches the runner then.
func (h *handler) inputFiles(in []fileBody) ([]runner.File, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if max := h.maxInputFiles(); len(in) > max {
		return nil, unprocessable("too_many_files", fmt.Sprintf("%d files, at most %d are allowed", len(in), max))
	}
	limit := h.maxInputBytes()
	seen := make(map[string]bool, len(in))
	var total int64
	for i, f := range in {
		if f.Name == nil {
			return nil, unprocessable("invalid_file_name", fmt.Sprintf("files[%d]: field \"name\" is required", i))
		}
		if err := runner.CheckFileName(*f.Name); err != nil {
			return nil, fileNameError(i, err)
		}
		if seen[*f.Name] {
			return nil, unprocessable("duplicate_file_name", fmt.Sprintf("files[%d]: the name %q is used twice", i, *f.Name))
		}
		seen[*f.Name] = true
		if f.Content == nil {
			return nil, unprocessable("invalid_file_content", fmt.Sprintf("files[%d]: field \"content\" is required", i))
		}
		total += int64(base64.StdEncoding.DecodedLen(len(*f.Content)))
		if total > limit+2 { // DecodedLen counts padding as data
			return nil, filesTooLarge(limit)
		}
	}
	out := make([]runner.File, len(in))
	total = 0
	for i, f := range in {
		data, err := base64.StdEncoding.DecodeString(*f.Content)
		if err != nil {
			return nil, unprocessable("invalid_file_content", fmt.Sprintf("files[%d] (%q): content is not valid base64", i, *f.Name))
		}
		total += int64(len(data))
		if total > limit {
			return nil, filesTooLarge(limit)
		}
		out[i] = runner.File{Name: *f.Name, Data: data}
	}
	return out, nil
}

// fileNameError is the 422 of a name runner.CheckFileName refused.
func fileNameError(i int, err error) *apiError {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, runner.ErrInvalidFile.Error()+": ")
	if i >= 0 {
		msg = fmt.Sprintf("files[%d]: %s", i, msg)
	}
	return unprocessable("invalid_file_name", msg+"; a file name is one plain name, such as sales.csv")
}

func filesTooLarge(limit int64) *apiError {
	return unprocessable("files_too_large", fmt.Sprintf("the files add up to more than %d bytes", limit))
}

// contentDisposition is an attachment header for name (RFC 6266): an ASCII
// fallback and the UTF-8 name in filename*.
func contentDisposition(name string) string {
	base := name
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' {
			base = name[i+1:]
			break
		}
	}
	fallback := make([]byte, 0, len(base))
	for i := 0; i < len(base); i++ {
		c := base[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '%' {
			c = '_'
		}
		fallback = append(fallback, c)
	}
	return fmt.Sprintf(`attachment; filename="%s"; filename*=UTF-8''%s`, fallback, rfc5987(base))
}

// rfc5987 percent-encodes s as an RFC 5987 value (attr-char kept).
func rfc5987(s string) string {
	const hex = "0123456789ABCDEF"
	out := make([]byte, 0, len(s)*3)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '!', c == '#', c == '$', c == '&', c == '+', c == '-', c == '.', c == '^', c == '_', c == '`', c == '|', c == '~':
			out = append(out, c)
		default:
			out = append(out, '%', hex[c>>4], hex[c&15])
		}
	}
	return string(out)
}

// writeFile answers a file download: the bytes, their type by extension,
// as an attachment that a browser neither sniffs nor renders in the
// service's origin.
func writeFile(w http.ResponseWriter, name string, data []byte) {
	h := w.Header()
	h.Set("Content-Type", runner.MimeType(name))
	h.Set("Content-Disposition", contentDisposition(name))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", fmt.Sprint(len(data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}
