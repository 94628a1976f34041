package web

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gorilla/mux"
)

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
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
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
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

// TestPage checks GET /: its security headers, the CSP repeated in the
// page, relative links only, and that every asset it links is served.
func TestPage(t *testing.T) {
	srv := newServer(t)
	resp, body := get(t, srv, http.MethodGet, "/", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %s", resp.Status)
	}
	want := map[string]string{
		"Content-Security-Policy": pageCSP,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"X-Frame-Options":         "DENY",
		"Content-Type":            "text/html; charset=utf-8",
		"Cache-Control":           cacheRevalidate,
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	for _, bad := range []string{"unsafe-eval", "*", "http:", "https:"} {
		if strings.Contains(pageCSP, bad) {
			t.Errorf("CSP allows %q: %s", bad, pageCSP)
		}
	}
	if !strings.Contains(pageCSP, "script-src 'self';") || !strings.Contains(pageCSP, "frame-ancestors 'none'") {
		t.Errorf("CSP %s", pageCSP)
	}
	page := string(body)
	if !strings.Contains(page, `<meta http-equiv="Content-Security-Policy" content="`+metaCSP+`">`) {
		t.Error("the page does not repeat the CSP in a meta tag")
	}
	if strings.Contains(page, "{{") {
		t.Error("placeholders left in the page")
	}
	if regexp.MustCompile(`(?i)<script(\s[^>]*)?>[^<]`).MatchString(page) || regexp.MustCompile(`(?i)\son\w+=`).MatchString(page) {
		t.Error("inline script in the page")
	}
	if m := regexp.MustCompile(`(?:src|href|action)="(/|[a-z]+:)`).FindAllString(page, -1); len(m) > 0 {
		t.Errorf("absolute URLs in the page (it must work under a proxy prefix): %q", m)
	}
	links := regexp.MustCompile(`(?:src|href)="(ui/[^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(links) < 3 {
		t.Fatalf("the page links %d assets", len(links))
	}
	for _, l := range links {
		resp, body := get(t, srv, http.MethodGet, "/"+l[1], nil)
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("%s: %s", l[1], resp.Status)
		}
		if got := resp.Header.Get("Cache-Control"); got != cacheImmutable {
			t.Errorf("%s: Cache-Control %q", l[1], got)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", l[1])
		}
	}
	if resp, _ := get(t, srv, http.MethodHead, "/", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD /: %s", resp.Status)
	}
}

// TestAssets checks the served assets: types, gzip, revalidation, and that
// the licences and the page's template are not served.
func TestAssets(t *testing.T) {
	srv := newServer(t)
	st := loadSite()
	for name, ctype := range map[string]string{"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8",
		"plotly.min.js": "text/javascript; charset=utf-8", "favicon.svg": "image/svg+xml"} {
		resp, body := get(t, srv, http.MethodGet, "/ui/"+name, map[string]string{"Accept-Encoding": "gzip"})
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ctype {
			t.Errorf("%s: %s %q", name, resp.Status, resp.Header.Get("Content-Type"))
			continue
		}
		if resp.Header.Get("Cache-Control") != cacheRevalidate {
			t.Errorf("%s without ?v=: Cache-Control %q", name, resp.Header.Get("Cache-Control"))
		}
		raw, _ := distFiles.ReadFile("dist/" + name)
		if resp.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(zr)
		} else if st.assets[name].Gzipped() {
			t.Errorf("%s: not gzipped for a client that takes gzip", name)
		}
		if !bytes.Equal(body, raw) {
			t.Errorf("%s: served bytes differ from the embedded file", name)
		}
		etag := resp.Header.Get("ETag")
		resp, _ = get(t, srv, http.MethodGet, "/ui/"+name, map[string]string{"Accept-Encoding": "gzip", "If-None-Match": etag})
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("%s with If-None-Match: %s", name, resp.Status)
		}
	}
	for _, name := range []string{"index.html", "VERSIONS", "plotly.LICENSE", "app.js.LICENSES.txt", "nope.js"} {
		if resp, _ := get(t, srv, http.MethodGet, "/ui/"+name, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("/ui/%s: %s, want 404", name, resp.Status)
		}
	}
}

// TestNoMarkupFromData holds the page's sources to their rule: the DOM is
// built with createElement and textContent; nothing is parsed as HTML and
// the dataframes' html field is never read. The bundle is checked too, so
// no library in it writes markup either.
func TestNoMarkupFromData(t *testing.T) {
	sinks := regexp.MustCompile(`\.innerHTML\s*[+]?=|\.outerHTML\s*[+]?=|insertAdjacentHTML|document\.write|DOMParser|createContextualFragment|srcdoc|\beval\s*\(|new Function\b|\.html\b`)
	files, _ := filepath.Glob("src/*.js")
	if len(files) < 4 {
		t.Fatalf("sources: %v", files)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(src))
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			if strings.HasPrefix(strings.TrimSpace(line), "//") {
				continue
			}
			if m := sinks.FindString(line); m != "" {
				t.Errorf("%s:%d: %q: %s", f, n, m, line)
			}
		}
	}
	// Relative URLs only: the page works under any prefix behind a proxy.
	absolute := regexp.MustCompile("(request\\(\"[A-Z]+\",\\s*|fetch\\(|new URL\\(|\\.src\\s*=\\s*|href:\\s*)[\"'`]/")
	for _, f := range files {
		src, _ := os.ReadFile(f)
		if m := absolute.FindAll(src, -1); len(m) > 0 {
			t.Errorf("%s: absolute paths %q", f, m)
		}
	}
	app, _ := distFiles.ReadFile("dist/app.js")
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "new Function"} {
		if bytes.Contains(app, []byte(bad)) {
			t.Errorf("dist/app.js contains %q", bad)
		}
	}
}

// TestDistMatchesLock checks that dist/ is what build.mjs made from the lock
// file: every file's sha256 is in dist/VERSIONS, every package there is at
// the version package-lock.json pins, and each bundle has its licence.
func TestDistMatchesLock(t *testing.T) {
	versions, err := distFiles.ReadFile("dist/VERSIONS")
	if err != nil {
		t.Fatal(err)
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	raw, err := os.ReadFile("package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &lock); err != nil {
		t.Fatal(err)
	}
	hashes := map[string]string{}
	pkgs := 0
	for _, line := range strings.Split(string(versions), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch len(f) {
		case 2:
			hashes[f[0]] = f[1]
		case 3:
			pkgs++
			if got := lock.Packages["node_modules/"+f[0]].Version; got != f[1] {
				t.Errorf("dist has %s %s, package-lock.json pins %q", f[0], f[1], got)
			}
		}
	}
	if pkgs < 5 {
		t.Errorf("VERSIONS lists %d packages", pkgs)
	}
	entries, _ := distFiles.ReadDir("dist")
	for _, e := range entries {
		if e.Name() == "VERSIONS" {
			continue
		}
		b, _ := distFiles.ReadFile("dist/" + e.Name())
		sum := sha256.Sum256(b)
		if hashes[e.Name()] != hex.EncodeToString(sum[:]) {
			t.Errorf("dist/%s differs from the build (edited by hand? run make web)", e.Name())
		}
		delete(hashes, e.Name())
	}
	for name := range hashes {
		t.Errorf("VERSIONS lists %s, not in dist/", name)
	}
	for _, lic := range []string{"app.js.LICENSES.txt", "plotly.LICENSE"} {
		if b, err := distFiles.ReadFile("dist/" + lic); err != nil || !bytes.Contains(b, []byte("Permission is hereby granted")) {
			t.Errorf("licence %s missing or empty: %v", lic, err)
		}
	}
}
