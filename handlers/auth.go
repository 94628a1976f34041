package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pyexec/pyexec/internal/keys"
	"github.com/pyexec/pyexec/runner"
)

// API keys (Options.Keys, internal/keys): with keys configured, the routes
// that run code or hold state (/execute, /validate, /sessions*, /mcp) need
// "Authorization: Bearer <key>" or "X-API-Key: <key>"; a missing or unknown
// key is a 401 and nothing runs. Everything else stays open: /health,
// /livez, /readyz, /metrics, the docs, the playground's page and assets,
// and /templates (static examples, they run nothing). /admin keeps its own
// token. The key's name (never the key) is the request's principal: in the
// context, the log line (field "key") and the label of
// pyexec_key_requests_total.

const (
	metricKeyRequests = "pyexec_key_requests_total"
	labelKey          = "key"
	labelStatus       = "status"

	// keyNone labels requests when keys are off; keyUnauthenticated those
	// refused for a missing or unknown key. internal/keys reserves both
	// names.
	keyNone            = "none"
	keyUnauthenticated = "unauthenticated"

	logFieldKey = "key"
)

// protectedPath says whether path needs a key.
func protectedPath(path string) bool {
	switch {
	case path == "/execute", path == "/validate", path == "/sessions", path == "/mcp":
		return true
	case strings.HasPrefix(path, "/sessions/"), strings.HasPrefix(path, "/mcp/"):
		return true
	}
	return false
}

// authState is the handler's key state: metrics, and which key owns which
// session (sessions do not survive a restart, so neither does this).
type authState struct {
	requests *prometheus.CounterVec

	mu sync.Mutex
	// owners maps a session ID to the name of the key that created it;
	// sessions created without a principal are not recorded.
	owners map[string]string
	// pending counts sessions being created, by key name (admitSession to
	// the end of the request or sessionCreated).
	pending map[string]int
	// reservations are the pending creations by request context, so that
	// sessionCreated ends its own.
	reservations map[context.Context]func()
	// pruneAt is the size of owners that triggers a sweep.
	pruneAt int
}

func newAuthState() *authState {
	return &authState{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricKeyRequests,
			Help: `Requests to the routes that need an API key (/execute, /validate, /sessions*, /mcp), by key name ("none" when keys are off, "unauthenticated" for a missing or unknown key) and HTTP status.`,
		}, []string{labelKey, labelStatus}),
		owners:       map[string]string{},
		pending:      map[string]int{},
		reservations: map[context.Context]func(){},
		pruneAt:      64,
	}
}

// registerAuth registers the key metrics with reg.
func (a *authState) register(reg prometheus.Registerer) {
	reg.MustRegister(a.requests)
}

type principalKey struct{}

type authHandlerKey struct{}

// principal is the key of the request, nil when keys are off (or outside an
// HTTP request, as under -mcp-stdio).
func principal(ctx context.Context) *keys.Limiter {
	l, _ := ctx.Value(principalKey{}).(*keys.Limiter)
	return l
}

// principalName is the request's key name, "" without one.
func principalName(ctx context.Context) string {
	if l := principal(ctx); l != nil {
		return l.Name()
	}
	return ""
}

// withPrincipal returns ctx carrying the key l.
func withPrincipal(ctx context.Context, l *keys.Limiter) context.Context {
	return context.WithValue(ctx, principalKey{}, l)
}

// presentedKey is the key a request carries, if any: the Bearer token of
// Authorization, else X-API-Key (so that a proxy's Basic authorization can
// travel with an X-API-Key).
func presentedKey(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(tok)
	}
	return strings.TrimSpace(r.Header.Get("X-API-Key"))
}

// auth is the middleware of the keys: it runs inside h.middleware, so a 401
// has its request ID and log line.
func (h *handler) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !protectedPath(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		ctx := context.WithValue(r.Context(), authHandlerKey{}, h)
		label := keyNone
		if store := h.opts.Keys; store != nil {
			lim, ok := store.Authenticate(presentedKey(r))
			if !ok {
				reason := "missing"
				if presentedKey(r) != "" {
					reason = "unknown"
				}
				addLogField(ctx, logFieldKey, keyUnauthenticated)
				addLogField(ctx, "auth", reason)
				w.Header().Set("WWW-Authenticate", `Bearer realm="pyexec"`)
				writeError(w, r.WithContext(ctx), &apiError{Status: http.StatusUnauthorized, Code: "unauthorized",
					Message: reason + ` API key: send "Authorization: Bearer <key>" or "X-API-Key: <key>"`})
				h.countKeyRequest(keyUnauthenticated, http.StatusUnauthorized)
				return
			}
			ctx = withPrincipal(ctx, lim)
			label = lim.Name()
		}
		addLogField(ctx, logFieldKey, label)
		r = r.WithContext(ctx)
		next.ServeHTTP(w, r)
		status := http.StatusOK
		if rec, ok := w.(*statusRecorder); ok && rec.status != 0 {
			status = rec.status
		}
		h.countKeyRequest(label, status)
	})
}

func (h *handler) countKeyRequest(key string, status int) {
	if h.keyAuth == nil {
		return
	}
	h.keyAuth.requests.WithLabelValues(key, strconv.Itoa(status)).Inc()
}

// quotaError is the 429 of a key over a quota.
func quotaError(rf *keys.Refusal) *apiError {
	return &apiError{Status: http.StatusTooManyRequests, Code: rf.Code, Message: rf.Message, RetryAfter: rf.RetryAfter}
}

// admitExecution takes one execution slot of the context's key (its
// max_concurrent and per_minute): an *apiError 429 quota_exceeded or
// too_many_concurrent, with RetryAfter, when the key is over. release gives
// the slot back; it is a no-op when keys are off.
func (h *handler) admitExecution(ctx context.Context) (release func(), err error) {
	lim := principal(ctx)
	if lim == nil {
		return func() {}, nil
	}
	release, err = lim.Admit(time.Now())
	if err != nil {
		var rf *keys.Refusal
		if errors.As(err, &rf) {
			return nil, quotaError(rf)
		}
		return nil, err
	}
	return release, nil
}

// maxTimeoutFor is the longest timeout the context's key may ask for: its
// max_timeout_seconds, which never exceeds the service's MaxTimeout.
func (h *handler) maxTimeoutFor(ctx context.Context) time.Duration {
	limit := h.opts.MaxTimeout
	if lim := principal(ctx); lim != nil {
		if t := lim.Limits().MaxTimeout; t > 0 && t < limit {
			limit = t
		}
	}
	return limit
}

// defaultTimeoutFor is the timeout of a request that names none: the
// service's default, within the key's maximum.
func (h *handler) defaultTimeoutFor(ctx context.Context) time.Duration {
	return min(h.opts.DefaultTimeout, h.maxTimeoutFor(ctx))
}

// admitSession checks the context's key's max_sessions before a session is
// created: a 429 too_many_sessions when the key has that many. The
// creation stays counted until sessionCreated or the end of ctx.
func (h *handler) admitSession(ctx context.Context) error {
	lim := principal(ctx)
	if lim == nil || h.keyAuth == nil {
		return nil
	}
	max := lim.Limits().MaxSessions
	if max == 0 {
		return nil
	}
	name := lim.Name()
	a := h.keyAuth
	n := h.liveSessions(ctx, name)
	a.mu.Lock()
	defer a.mu.Unlock()
	if n+a.pending[name] >= max {
		return &apiError{Status: http.StatusTooManyRequests, Code: keys.CodeTooManySessions,
			Message:    fmt.Sprintf("this key may hold %d sessions and has that many; delete one (DELETE /sessions/{id}) or retry when one ends", max),
			RetryAfter: time.Second}
	}
	a.pending[name]++
	var once sync.Once
	done := func() {
		once.Do(func() {
			a.mu.Lock()
			a.pending[name]--
			if a.pending[name] <= 0 {
				delete(a.pending, name)
			}
			delete(a.reservations, ctx)
			a.mu.Unlock()
		})
	}
	if prev, ok := a.reservations[ctx]; ok {
		// A second admission on the same context: end the first.
		go prev()
	}
	a.reservations[ctx] = done
	context.AfterFunc(ctx, done)
	return nil
}

// endSessionReservation ends the admitSession reservation of ctx, if any
// (a creation that failed; one that succeeded ended it in sessionCreated).
func (h *handler) endSessionReservation(ctx context.Context) {
	if h.keyAuth == nil {
		return
	}
	h.keyAuth.mu.Lock()
	done := h.keyAuth.reservations[ctx]
	h.keyAuth.mu.Unlock()
	if done != nil {
		done()
	}
}

// liveSessions counts the sessions of key name that the runner still
// knows, forgetting the others.
func (h *handler) liveSessions(ctx context.Context, name string) int {
	a := h.keyAuth
	a.mu.Lock()
	var ids []string
	for id, owner := range a.owners {
		if owner == name {
			ids = append(ids, id)
		}
	}
	a.mu.Unlock()
	n := 0
	for _, id := range ids {
		if h.sessionGone(ctx, id) {
			a.mu.Lock()
			delete(a.owners, id)
			a.mu.Unlock()
			continue
		}
		n++
	}
	return n
}

// sessionGone says whether the runner no longer knows session id.
func (h *handler) sessionGone(ctx context.Context, id string) bool {
	if h.opts.Sessions == nil {
		return true
	}
	_, err := h.opts.Sessions.Session(ctx, id)
	return errors.Is(err, runner.ErrSessionNotFound)
}

// sessionCreated records that the context's key owns session id, and ends
// its admitSession reservation.
func (h *handler) sessionCreated(ctx context.Context, id string) {
	name := principalName(ctx)
	if name == "" || h.keyAuth == nil {
		return
	}
	a := h.keyAuth
	a.mu.Lock()
	a.owners[id] = name
	done := a.reservations[ctx]
	sweep := len(a.owners) >= a.pruneAt
	a.mu.Unlock()
	if done != nil {
		done()
	}
	if sweep {
		h.sweepOwners(context.WithoutCancel(ctx))
	}
}

// sweepOwners forgets the sessions the runner no longer knows, so that the
// map stays as large as the live sessions.
func (h *handler) sweepOwners(ctx context.Context) {
	a := h.keyAuth
	a.mu.Lock()
	ids := make([]string, 0, len(a.owners))
	for id := range a.owners {
		ids = append(ids, id)
	}
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, id := range ids {
		if h.sessionGone(ctx, id) {
			a.mu.Lock()
			delete(a.owners, id)
			a.mu.Unlock()
		}
	}
	a.mu.Lock()
	a.pruneAt = max(64, 2*len(a.owners))
	a.mu.Unlock()
}

// sessionAllowed says whether the context's key may use session id: the
// key that created it, or anyone when it was created without a key. Others
// get 404 session_not_found, as for a session that does not exist.
func (h *handler) sessionAllowed(ctx context.Context, id string) bool {
	if h.keyAuth == nil {
		return true
	}
	a := h.keyAuth
	a.mu.Lock()
	owner := a.owners[id]
	a.mu.Unlock()
	return owner == principalName(ctx)
}

// sessionAllowedIn is sessionAllowed for code that has only the request
// (sessionID): the auth middleware put the handler in ctx.
func sessionAllowedIn(ctx context.Context, id string) bool {
	h, ok := ctx.Value(authHandlerKey{}).(*handler)
	if !ok {
		return true
	}
	return h.sessionAllowed(ctx, id)
}
