// Package web serves the playground: GET / is a single page to write, run
// and look at Python (CodeMirror 6 editor, results drawn from the /execute
// and /sessions answers, plotly figures interactive), with its assets under
// /ui/.
//
// Everything is embedded from dist/, which build.mjs makes from src/ and the
// npm packages pinned in package-lock.json (`make web`); dist/ is committed,
// so building the service needs no Node.js. The licences of the bundled
// libraries are in dist/ next to the bundles (served nowhere). The page uses
// relative URLs only, so it works under any prefix behind a proxy of the same
// origin, and loads nothing from another origin: its Content-Security-Policy
// (pageCSP) forbids it.
//
// It never touches Docker or the runner and imports nothing from handlers
// (handlers.New calls Register). Everything in it is safe for concurrent use.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/gorilla/mux"

	"github.com/pyexec/pyexec/internal/static"
)

// Routes served by Register.
const (
	pagePath   = "/"
	assetsPath = "/ui/"
)

//go:embed dist
var distFiles embed.FS

// Cache lifetimes: the page revalidates every time (a cheap 304 with the
// ETag), so a new binary is seen at once; an asset requested with the
// current ?v= (as the page does) never changes and is cached for a year.
const (
	cacheRevalidate = "no-cache"
	cacheImmutable  = "public, max-age=31536000, immutable"
)

// metaCSP is the page's Content-Security-Policy, directive by directive:
//
//   - default-src 'none': anything not listed below is refused (objects,
//     frames, fonts, media, manifests, workers).
//   - script-src 'self': the two bundles from this origin; no inline
//     script, no eval. CodeMirror needs neither. plotly.js-dist-min would
//     need 'unsafe-eval': its WebGL traces (scattergl, which plotly express
//     picks for large scatters, splom, parcoords...) compile their shaders
//     with Function(); plotly.js-strict-dist-min, the same plotly.js built
//     with those functions precompiled, is bundled instead and needs none.
//   - style-src 'self' 'unsafe-inline': plotly.js writes its rules (modebar,
//     hover labels, drag layers) into a <style> element it creates
//     (Lib.addStyleRule) and warns "Cannot addRelatedStyleRule, probably due
//     to strict CSP" without it; CodeMirror sets a style attribute on its
//     content (tab-size) but otherwise uses constructed style sheets, which
//     CSP does not govern. Styles cannot run script, and img-src and
//     connect-src keep CSS from reaching another host.
//   - img-src 'self' data: blob:: charts are <img> with data: URLs (PNG, and
//     SVG drawn as an image, never inlined); plotly's "download plot as PNG"
//     draws the figure through a blob: URL.
//   - connect-src 'self': fetch to this service's API only.
//   - base-uri 'none', form-action 'none': no <base> to re-root the
//     relative URLs, no form posts anywhere.
//
// It is sent as a header and repeated in a <meta> tag of the page, so a
// proxy that drops the header does not lift it; frame-ancestors 'none'
// (no framing, against clickjacking) works in the header only.
const (
	metaCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
		"img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'"
	pageCSP = metaCSP + "; frame-ancestors 'none'"
)

// servedExt are the asset types served; licences and the page's template
// stay in the binary unserved.
var servedExt = map[string]string{
	".js":  "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
	".svg": "image/svg+xml",
}

// site is everything Register serves, built on first use: compressing the
// bundles takes a moment that a process which never serves the page should
// not pay.
type site struct {
	page    *static.Blob
	assets  map[string]*static.Blob // by file name
	version string                  // hash of all assets, the ?v= of the page's links
}

var loadSite = sync.OnceValue(func() *site {
	s := &site{assets: map[string]*static.Blob{}}
	h := sha256.New()
	for _, name := range assetNames() {
		body, err := distFiles.ReadFile("dist/" + name)
		if err != nil {
			panic(fmt.Sprintf("web: embedded asset %s: %v", name, err)) // the embed directive guarantees them
		}
		fmt.Fprintf(h, "%s %d\n", name, len(body))
		h.Write(body)
		s.assets[name] = static.NewBlob(servedExt[path.Ext(name)], body)
	}
	s.version = hex.EncodeToString(h.Sum(nil)[:6])
	body, err := distFiles.ReadFile("dist/index.html")
	if err != nil {
		panic(fmt.Sprintf("web: embedded page: %v", err))
	}
	body = bytes.ReplaceAll(body, []byte("{{version}}"), []byte(s.version))
	body = bytes.ReplaceAll(body, []byte("{{csp}}"), []byte(metaCSP))
	s.page = static.NewBlob("text/html; charset=utf-8", body)
	return s
})

// assetNames are the files served under /ui/, sorted.
func assetNames() []string {
	var names []string
	entries, _ := fs.ReadDir(distFiles, "dist") // embedded: cannot fail
	for _, e := range entries {
		if _, ok := servedExt[path.Ext(e.Name())]; ok && !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names
}

// Register adds the playground's routes to r: GET (and HEAD) / and
// /ui/{file}. Only the embedded asset names match the asset route, so any
// other path falls through to r's NotFoundHandler.
func Register(r *mux.Router) {
	get := []string{http.MethodGet, http.MethodHead}
	r.HandleFunc(pagePath, func(w http.ResponseWriter, req *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		static.Serve(w, req, loadSite().page, cacheRevalidate)
	}).Methods(get...)

	names := assetNames()
	for i, n := range names {
		names[i] = regexp.QuoteMeta(n)
	}
	r.HandleFunc(assetsPath+"{file:"+strings.Join(names, "|")+"}", func(w http.ResponseWriter, req *http.Request) {
		st := loadSite()
		b := st.assets[mux.Vars(req)["file"]]
		if b == nil { // unreachable: the route matches embedded names only
			http.NotFound(w, req)
			return
		}
		cache := cacheRevalidate
		if req.URL.Query().Get("v") == st.version {
			cache = cacheImmutable
		}
		static.Serve(w, req, b, cache)
	}).Methods(get...)
}
