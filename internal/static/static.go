// Package static serves files embedded in the binary: each is prepared once
// as a Blob (its bytes, a gzip copy when that is worth it, and an ETag for
// each) and served with conditional requests, HEAD and ranges. The API
// documentation pages (handlers/docs) and the playground (web) use it. It
// owns no routes and sets no page headers (CSP and the like are the
// caller's).
package static

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Blob is one file ready to serve. It is immutable and safe to share.
type Blob struct {
	ctype  string
	body   []byte
	etag   string
	gz     []byte
	gzETag string
}

// NewBlob prepares body, served with the Content-Type ctype. Text over 1 KiB
// is gzipped once here when that saves at least a tenth.
func NewBlob(ctype string, body []byte) *Blob {
	sum := sha256.Sum256(body)
	tag := hex.EncodeToString(sum[:8])
	b := &Blob{ctype: ctype, body: body, etag: `"` + tag + `"`}
	if !strings.HasPrefix(ctype, "image/png") && len(body) > 1024 {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // a valid level: no error
		_, _ = zw.Write(body)                                    // a bytes.Buffer does not fail
		_ = zw.Close()
		if buf.Len() < len(body)*9/10 {
			b.gz = buf.Bytes()
			b.gzETag = `"` + tag + `-gz"`
		}
	}
	return b
}

// Gzipped reports whether b has a gzip copy (served to clients that take
// it).
func (b *Blob) Gzipped() bool { return b.gz != nil }

// Serve writes b, gzipped when the client takes it, with Cache-Control
// cache, nosniff, and conditional requests (If-None-Match -> 304), HEAD and
// ranges handled by http.ServeContent.
func Serve(w http.ResponseWriter, r *http.Request, b *Blob, cache string) {
	h := w.Header()
	h.Set("Content-Type", b.ctype)
	h.Set("Cache-Control", cache)
	h.Set("X-Content-Type-Options", "nosniff")
	body, etag := b.body, b.etag
	if b.gz != nil {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Values("Accept-Encoding")) {
			body, etag = b.gz, b.gzETag
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("ETag", etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reports whether Accept-Encoding values allow gzip: gzip or *
// listed without q=0.
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(part, ";")
			name = strings.ToLower(strings.TrimSpace(name))
			if (name == "gzip" || name == "x-gzip" || name == "*") && !zeroQ(params) {
				return true
			}
		}
	}
	return false
}

// zeroQ reports whether coding parameters say q=0 (not acceptable).
func zeroQ(params string) bool {
	for p := range strings.SplitSeq(params, ";") {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err == nil && q == 0
		}
	}
	return false
}
