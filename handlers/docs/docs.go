package docs

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
	specPath   = "/openapi.json"
	swaggerUI  = "/docs"
	reDoc      = "/redoc"
	assetsPath = "/docs/assets/"
)

//go:embed openapi.json
var spec []byte

//go:embed pages/*.html
var pageFiles embed.FS

//go:embed assets
var assetFiles embed.FS

// Spec returns the OpenAPI document, as served at /openapi.json. The caller
// may modify the slice.
func Spec() []byte { return bytes.Clone(spec) }

// Cache lifetimes. The pages and the document revalidate every time (a
// cheap 304 with the ETag), so a new binary is seen at once; an asset
// requested with the current ?v= (as the pages do) never changes and is
// cached for a year.
const (
	cacheRevalidate = "no-cache"
	cacheImmutable  = "public, max-age=31536000, immutable"
)

// pageCSP lets the pages load scripts, styles, images and the document from
// this origin only; it is what keeps them from contacting other hosts. The
// UIs set inline styles (style-src 'unsafe-inline'), ReDoc runs its search
// index in a blob: worker, and both draw icons from data: URLs. ReDoc 2
// always tries to show its logo from cdn.redoc.ly in the menu footer (there
// is no option to turn it off); img-src blocks that request and ReDoc hides
// the broken image.
//
// It is sent as a header and repeated in a <meta> tag of each page, so a
// proxy that drops the header does not lift it (frame-ancestors is header
// only).
const (
	metaCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
		"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; " +
		"base-uri 'none'; form-action 'none'"
	pageCSP = metaCSP + "; frame-ancestors 'none'"
)

// site is everything Register serves, built once on first use: compressing
// the bundles takes a moment that a process which never serves the docs
// should not pay.
type site struct {
	spec    *static.Blob
	swagger *static.Blob
	redoc   *static.Blob
	assets  map[string]*static.Blob // by file name
	version string                  // hash of all assets, the ?v= of the pages' links
}

// servedExt are the asset types served; the license files and VERSIONS stay
// in the source tree only.
var servedExt = map[string]string{
	".js":  "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
	".png": "image/png",
}

var loadSite = sync.OnceValue(func() *site {
	s := &site{assets: map[string]*static.Blob{}, spec: static.NewBlob("application/json", spec)}
	entries, err := fs.ReadDir(assetFiles, "assets")
	if err != nil {
		panic(fmt.Sprintf("docs: embedded assets: %v", err)) // the embed directive guarantees them
	}
	h := sha256.New()
	for _, e := range entries {
		ctype, ok := servedExt[path.Ext(e.Name())]
		if !ok || e.IsDir() {
			continue
		}
		body, err := assetFiles.ReadFile("assets/" + e.Name())
		if err != nil {
			panic(fmt.Sprintf("docs: embedded asset %s: %v", e.Name(), err))
		}
		fmt.Fprintf(h, "%s %d\n", e.Name(), len(body))
		h.Write(body)
		s.assets[e.Name()] = static.NewBlob(ctype, body)
	}
	s.version = hex.EncodeToString(h.Sum(nil)[:6])
	page := func(name string) *static.Blob {
		body, err := pageFiles.ReadFile("pages/" + name)
		if err != nil {
			panic(fmt.Sprintf("docs: embedded page %s: %v", name, err))
		}
		body = bytes.ReplaceAll(body, []byte("{{version}}"), []byte(s.version))
		body = bytes.ReplaceAll(body, []byte("{{csp}}"), []byte(metaCSP))
		return static.NewBlob("text/html; charset=utf-8", body)
	}
	s.swagger = page("swagger.html")
	s.redoc = page("redoc.html")
	return s
})

// assetNames are the files served under /docs/assets/, sorted.
func assetNames() []string {
	var names []string
	entries, _ := fs.ReadDir(assetFiles, "assets") // embedded: cannot fail
	for _, e := range entries {
		if _, ok := servedExt[path.Ext(e.Name())]; ok && !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names
}

// Register adds the documentation routes to r: GET (and HEAD) /openapi.json,
// /docs (Swagger UI), /redoc (ReDoc) and /docs/assets/{file}; /docs/
// redirects to /docs. Only the embedded asset names match the asset route,
// so any other path falls through to r's NotFoundHandler.
func Register(r *mux.Router) {
	get := []string{http.MethodGet, http.MethodHead}
	r.HandleFunc(specPath, func(w http.ResponseWriter, req *http.Request) {
		static.Serve(w, req, loadSite().spec, cacheRevalidate)
	}).Methods(get...)
	r.HandleFunc(swaggerUI, func(w http.ResponseWriter, req *http.Request) {
		setPageHeaders(w.Header())
		static.Serve(w, req, loadSite().swagger, cacheRevalidate)
	}).Methods(get...)
	r.HandleFunc(reDoc, func(w http.ResponseWriter, req *http.Request) {
		setPageHeaders(w.Header())
		static.Serve(w, req, loadSite().redoc, cacheRevalidate)
	}).Methods(get...)
	r.HandleFunc(swaggerUI+"/", func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, swaggerUI, http.StatusMovedPermanently)
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

func setPageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}
