package docs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/gorilla/mux"
)

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":{"code":"not_found","message":"no such endpoint"}}`)
	})
	Register(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv
}

// get fetches path without transparent decompression, so gzip is visible.
func get(t *testing.T, srv *httptest.Server, method, path string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "identity")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{
		Transport:     &http.Transport{DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestRoutes(t *testing.T) {
	srv := newServer(t)
	tests := []struct {
		path, ctype, cache string
		page               bool
	}{
		{"/openapi.json", "application/json", "no-cache", false},
		{"/docs", "text/html; charset=utf-8", "no-cache", true},
		{"/redoc", "text/html; charset=utf-8", "no-cache", true},
		{"/docs/assets/swagger-ui-bundle.js", "text/javascript; charset=utf-8", "no-cache", false},
		{"/docs/assets/swagger-ui.css", "text/css; charset=utf-8", "no-cache", false},
		{"/docs/assets/redoc.standalone.js", "text/javascript; charset=utf-8", "no-cache", false},
		{"/docs/assets/favicon-32x32.png", "image/png", "no-cache", false},
		{"/docs/assets/swagger-init.js?v=" + loadSite().version, "text/javascript; charset=utf-8", cacheImmutable, false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := get(t, srv, http.MethodGet, tt.path, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			h := resp.Header
			if got := h.Get("Content-Type"); got != tt.ctype {
				t.Errorf("Content-Type = %q, want %q", got, tt.ctype)
			}
			if got := h.Get("Cache-Control"); got != tt.cache {
				t.Errorf("Cache-Control = %q, want %q", got, tt.cache)
			}
			if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Content-Encoding") != "" {
				t.Errorf("headers: %v", h)
			}
			if tt.page && !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
				t.Errorf("page without a restrictive CSP: %q", h.Get("Content-Security-Policy"))
			}
			etag := h.Get("ETag")
			if etag == "" {
				t.Fatal("no ETag")
			}
			if resp, _ := get(t, srv, http.MethodGet, tt.path, map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified {
				t.Errorf("If-None-Match: status %d, want 304", resp.StatusCode)
			}
			if resp, b := get(t, srv, http.MethodHead, tt.path, nil); resp.StatusCode != http.StatusOK || len(b) != 0 {
				t.Errorf("HEAD: status %d, %d bytes", resp.StatusCode, len(b))
			}
			if tt.ctype == "image/png" || len(body) < 1024 {
				return // not worth compressing
			}
			resp, gz := get(t, srv, http.MethodGet, tt.path, map[string]string{"Accept-Encoding": "br, gzip;q=0.8"})
			if resp.Header.Get("Content-Encoding") != "gzip" || !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
				t.Fatalf("no gzip: %v", resp.Header)
			}
			if resp.Header.Get("ETag") == etag {
				t.Error("gzip and identity share an ETag")
			}
			zr, err := gzip.NewReader(bytes.NewReader(gz))
			if err != nil {
				t.Fatal(err)
			}
			plain, err := io.ReadAll(zr)
			if err != nil || !bytes.Equal(plain, body) {
				t.Errorf("gzip body differs (%v)", err)
			}
		})
	}

	t.Run("spec", func(t *testing.T) {
		_, body := get(t, srv, http.MethodGet, "/openapi.json", nil)
		if !bytes.Equal(body, Spec()) {
			t.Error("/openapi.json differs from Spec()")
		}
	})
	t.Run("redirect", func(t *testing.T) {
		resp, _ := get(t, srv, http.MethodGet, "/docs/", nil)
		if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/docs" {
			t.Errorf("status %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	for _, path := range []string{"/docs/assets/nope.js", "/docs/assets/VERSIONS", "/docs/assets/redoc.LICENSE", "/docs/assets/../openapi.json", "/docs/assets/"} {
		t.Run("404 "+path, func(t *testing.T) {
			if resp, _ := get(t, srv, http.MethodGet, path, nil); resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMovedPermanently {
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	t.Run("POST", func(t *testing.T) {
		if resp, _ := get(t, srv, http.MethodPost, "/docs", nil); resp.StatusCode == http.StatusOK {
			t.Error("POST /docs answered 200")
		}
	})
}

var (
	attrRE = regexp.MustCompile(`(?i)\b(?:src|href)\s*=\s*"([^"]*)"`)
	urlRE  = regexp.MustCompile(`(?i)(?:https?:)?//[a-z0-9]`)
)

// TestPagesAreLocal checks that the pages and our own scripts name no other
// origin, and that every file they reference is served.
func TestPagesAreLocal(t *testing.T) {
	srv := newServer(t)
	for _, page := range []string{"/docs", "/redoc"} {
		t.Run(page, func(t *testing.T) {
			_, html := get(t, srv, http.MethodGet, page, nil)
			if m := urlRE.Find(html); m != nil {
				t.Errorf("page names another origin: %q", m)
			}
			if bytes.Contains(html, []byte("<script>")) || bytes.Contains(html, []byte("{{")) {
				t.Error("page has an inline script or an unexpanded placeholder")
			}
			if !bytes.Contains(html, []byte(`<meta http-equiv="Content-Security-Policy" content="`+metaCSP+`">`)) {
				t.Error("page has no CSP meta tag")
			}
			refs := attrRE.FindAllSubmatch(html, -1)
			if len(refs) < 4 {
				t.Fatalf("only %d references found", len(refs))
			}
			for _, m := range refs {
				ref := string(m[1])
				if !strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "//") {
					t.Errorf("reference %q is not a local absolute path", ref)
					continue
				}
				if resp, _ := get(t, srv, http.MethodGet, ref, nil); resp.StatusCode != http.StatusOK {
					t.Errorf("%s: status %d", ref, resp.StatusCode)
				}
			}
		})
	}
	for _, name := range []string{"swagger-init.js", "redoc-init.js", "pages.css"} {
		b, err := assetFiles.ReadFile("assets/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if m := urlRE.Find(b); m != nil {
			t.Errorf("%s names another origin: %q", name, m)
		}
	}
	// Swagger UI's default validatorUrl would fetch a badge from
	// validator.swagger.io.
	b, _ := assetFiles.ReadFile("assets/swagger-init.js")
	if !bytes.Contains(b, []byte("validatorUrl: null")) {
		t.Error("swagger-init.js must set validatorUrl: null")
	}
}

// TestVendoredAssets checks the third-party files against the checksums in
// assets/VERSIONS, so an edit or a partial update is noticed.
func TestVendoredAssets(t *testing.T) {
	f, err := os.Open("assets/VERSIONS")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 || strings.HasPrefix(fields[0], "#") || len(fields[2]) != 64 {
			continue
		}
		n++
		b, err := os.ReadFile("assets/" + fields[0])
		if err != nil {
			t.Error(err)
			continue
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != fields[2] {
			t.Errorf("%s: sha256 %s, VERSIONS says %s", fields[0], got, fields[2])
		}
	}
	if n < 5 {
		t.Errorf("VERSIONS lists %d files", n)
	}
}
