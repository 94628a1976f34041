package handlers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"regexp"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/handlers/docs"
	"github.com/pyexec/pyexec/internal/keys"
	"github.com/pyexec/pyexec/internal/logctx"
	"github.com/pyexec/pyexec/runner"
	"github.com/pyexec/pyexec/web"
)

// Executor runs code; *runner.Runner implements it.
type Executor interface {
	Run(ctx context.Context, req runner.Request) (runner.Result, error)
	Validate(ctx context.Context, code string) (runner.Validation, error)
	Stats() runner.Stats
	Ping(ctx context.Context) error
}

// Options wire the handlers to the rest of the service.
type Options struct {
	Runner Executor
	Logger *logrus.Logger
	// DefaultTimeout applies when a request names none; MaxTimeout bounds it.
	DefaultTimeout time.Duration
	MaxTimeout     time.Duration
	// Health reports the engine and image; called by GET /health.
	Health func(ctx context.Context) Health
	// Settings are the settings in force, shown by GET /health.
	Settings map[string]any
	// ServiceID (SERVICE_ID), when set, is sent as X-Served-By on every
	// answer: which replica behind a load balancer served it.
	ServiceID string

	// Registerer receives the handlers' metrics (handlers/metrics.go) and
	// Gatherer is served at GET /metrics; main passes its private registry
	// as both. nil: no metrics, and /metrics answers 404.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer

	// AdminToken enables the /admin endpoints for requests bearing it
	// (Authorization: Bearer); empty: they answer 404. Images and Switcher
	// are required with it.
	AdminToken string
	Images     ImageBuilder
	Switcher   ImageSwitcher
	// AllowedPackages are the extra Debian packages a rebuild may ask for.
	AllowedPackages []string
	// RebuildTimeout bounds one rebuild; 0 means DefaultRebuildTimeout.
	RebuildTimeout time.Duration

	// Sessions serves the /sessions routes (sessions.go); nil: they are
	// off and answer 404 (MAX_SESSIONS=0).
	Sessions SessionRunner
	// MaxInputFiles and MaxInputBytes bound the input files of a request
	// (files.go); 0 means the defaults. The body limit of /execute and a
	// session's execute grows with MaxInputBytes.
	MaxInputFiles int
	MaxInputBytes int64

	// Keys are the API keys (auth.go); nil: keys are off and every route
	// is open.
	Keys *keys.Store
}

// New returns the service's router. It panics when the metrics cannot be
// registered (registered twice) or AdminToken comes without Images and
// Switcher: both are programmer errors.
func New(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
	if o.RebuildTimeout <= 0 {
		o.RebuildTimeout = DefaultRebuildTimeout
	}
	h := &handler{opts: o, metrics: newMetrics(), keyAuth: newAuthState()}
	if o.Registerer != nil {
		h.metrics.register(o.Registerer)
		h.keyAuth.register(o.Registerer)
	}
	r := mux.NewRouter()
	// mux does not run middleware for these two; wrap them by hand.
	r.NotFoundHandler = h.middleware(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		writeError(w, req, &apiError{Status: http.StatusNotFound, Code: "not_found", Message: "no such endpoint"})
	}))
	r.MethodNotAllowedHandler = h.middleware(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		writeError(w, req, &apiError{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "method not allowed"})
	}))
	r.HandleFunc("/execute", h.execute).Methods(http.MethodPost)
	r.HandleFunc("/validate", h.validate).Methods(http.MethodPost)
	r.HandleFunc("/templates", h.templates).Methods(http.MethodGet)
	r.HandleFunc("/templates/{id}", h.template).Methods(http.MethodGet)
	r.HandleFunc("/health", h.health).Methods(http.MethodGet)
	r.HandleFunc("/livez", h.livez).Methods(http.MethodGet)
	r.HandleFunc("/readyz", h.readyz).Methods(http.MethodGet)
	if o.Sessions != nil {
		h.sessionRoutes(r)
	}
	r.Handle("/mcp", h.mcpHandler()).Methods(http.MethodPost) // mcp.go: MCP over Streamable HTTP
	if o.Gatherer != nil {
		r.Handle("/metrics", metricsHandler(o.Gatherer)).Methods(http.MethodGet)
	}
	if o.AdminToken != "" {
		if o.Images == nil || o.Switcher == nil {
			panic("handlers: AdminToken without Images and Switcher")
		}
		h.admin = newAdmin(o)
		r.HandleFunc("/admin/images", h.requireToken(h.images)).Methods(http.MethodGet)
		r.HandleFunc("/admin/images/rebuild", h.requireToken(h.rebuild)).Methods(http.MethodPost)
	}
	docs.Register(r)
	web.Register(r) // GET /: the playground
	r.Use(h.middleware)
	r.Use(h.auth) // auth.go: API keys, inside the request log
	return r
}

type handler struct {
	opts    Options
	metrics *metrics
	// admin is nil when the admin endpoints are off.
	admin *admin
	// keyAuth is the API keys' state (auth.go).
	keyAuth *authState
}

type ctxKey int

const requestIDKey ctxKey = iota

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// statusRecorder remembers the status and size written.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (the rebuild
// extends its write deadline).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(p)
	s.bytes += n
	return n, err
}

// middleware assigns the request ID (accepting a sane X-Request-ID), puts a
// logger in the context, recovers panics, and logs one line per request.
func (h *handler) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-ID")
		if !requestIDRE.MatchString(id) {
			var b [8]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-ID", id)
		if h.opts.ServiceID != "" {
			w.Header().Set("X-Served-By", h.opts.ServiceID)
		}
		entry := h.opts.Logger.WithField("request_id", id)
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		ctx = logctx.With(ctx, entry)
		extra := logrus.Fields{}
		ctx = context.WithValue(ctx, logFieldsKey{}, extra)
		ctx = context.WithValue(ctx, metricsKey{}, h.metrics)
		r = r.WithContext(ctx)
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				entry.WithField("panic", p).Error("handler panic")
				if rec.status == 0 {
					writeError(rec, r, &apiError{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"})
				}
			}
			elapsed := time.Since(start)
			h.metrics.requestDuration.WithLabelValues(routeLabel(r)).Observe(elapsed.Seconds())
			fields := logrus.Fields{
				"method":      r.Method,
				"path":        r.URL.Path,
				"status":      rec.status,
				"duration_ms": float64(elapsed.Microseconds()) / 1000,
				"bytes_in":    r.ContentLength,
				"bytes_out":   rec.bytes,
			}
			for k, v := range extra {
				fields[k] = v
			}
			entry.WithFields(fields).Info("request")
		}()
		next.ServeHTTP(rec, r)
	})
}

type logFieldsKey struct{}

func logFields(ctx context.Context) logrus.Fields {
	f, _ := ctx.Value(logFieldsKey{}).(logrus.Fields)
	return f
}

// addLogField adds a field to the request's log line.
func addLogField(ctx context.Context, key string, v any) {
	if f := logFields(ctx); f != nil {
		f[key] = v
	}
}
