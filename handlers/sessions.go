package handlers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/pyexec/pyexec/runner"
)

// SessionRunner runs sessions; *runner.Runner implements it. Options.Sessions
// nil turns the session routes off (404).
type SessionRunner interface {
	CreateSession(ctx context.Context, o runner.SessionOptions) (runner.SessionInfo, error)
	RunInSession(ctx context.Context, id string, req runner.Request) (runner.Result, error)
	Session(ctx context.Context, id string) (runner.SessionInfo, error)
	SessionFile(ctx context.Context, id, name string) ([]byte, error)
	PutSessionFile(ctx context.Context, id, name string, data []byte) error
	DeleteSession(ctx context.Context, id string) error
}

// createSessionRequest is the (optional) body of POST /sessions.
type createSessionRequest struct {
	// Timeout is the default time limit of the session's cells, in
	// seconds; default TIMEOUT_SECONDS, at most MAX_TIMEOUT_SECONDS.
	Timeout *float64 `json:"timeout"`
}

// sessionCreated is the answer of POST /sessions.
type sessionCreated struct {
	ID                 string    `json:"id"`
	CreatedAt          time.Time `json:"created_at"`
	ExpiresAt          time.Time `json:"expires_at"`
	IdleTimeoutSeconds float64   `json:"idle_timeout_seconds"`
	MaxLifetimeSeconds float64   `json:"max_lifetime_seconds"`
	Timeout            float64   `json:"timeout"`
}

// sessionBody is GET /sessions/{id}.
type sessionBody struct {
	ID               string               `json:"id"`
	State            string               `json:"state"`
	CreatedAt        time.Time            `json:"created_at"`
	ExpiresAt        time.Time            `json:"expires_at"`
	LastUsedAt       time.Time            `json:"last_used_at"`
	AgeSeconds       float64              `json:"age_seconds"`
	IdleSeconds      float64              `json:"idle_seconds"`
	Timeout          float64              `json:"timeout"`
	Executions       int64                `json:"executions"`
	MemoryBytes      int64                `json:"memory_bytes"`
	MemoryLimitBytes int64                `json:"memory_limit_bytes"`
	Files            []runner.SessionFile `json:"files"`
	FilesSkipped     []runner.SkippedFile `json:"files_skipped,omitempty"`
}

// sessionOfCell is the "session" object of a session cell's answer.
type sessionOfCell struct {
	ID         string    `json:"id"`
	Executions int64     `json:"executions"`
	ExpiresAt  time.Time `json:"expires_at"`
	// Ended says this cell ended the session (a timeout the interrupt did
	// not stop, out of memory, a crash); EndReason says why.
	Ended     bool   `json:"ended"`
	EndReason string `json:"end_reason,omitempty"`
}

// sessionExecuteResponse is the /execute answer plus the session.
type sessionExecuteResponse struct {
	executeResponse
	Session *sessionOfCell `json:"session"`
}

// fileStored is the answer of PUT /sessions/{id}/files/{name}.
type fileStored struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// sessionRoutes registers the session routes on r.
func (h *handler) sessionRoutes(r *mux.Router) {
	r.HandleFunc("/sessions", h.createSession).Methods(http.MethodPost)
	r.HandleFunc("/sessions/{id}", h.getSession).Methods(http.MethodGet)
	r.HandleFunc("/sessions/{id}", h.deleteSession).Methods(http.MethodDelete)
	r.HandleFunc("/sessions/{id}/execute", h.executeInSession).Methods(http.MethodPost)
	r.HandleFunc("/sessions/{id}/files/{name:.+}", h.getSessionFile).Methods(http.MethodGet)
	r.HandleFunc("/sessions/{id}/files/{name:.+}", h.putSessionFile).Methods(http.MethodPut)
}

// maxSessionIDBytes bounds the ID in a path (IDs are 43 characters).
const maxSessionIDBytes = 64

// sessionID is the path's ID; an ID that cannot be one is simply not found.
func sessionID(r *http.Request) (string, error) {
	id := mux.Vars(r)["id"]
	if id == "" || len(id) > maxSessionIDBytes || !sessionAllowedIn(r.Context(), id) {
		return "", runner.ErrSessionNotFound // another key's session: not found either (auth.go)
	}
	addLogField(r.Context(), "session", id[:min(len(id), 12)])
	return id, nil
}

func (h *handler) createSession(w http.ResponseWriter, r *http.Request) {
	var body createSessionRequest
	if r.ContentLength != 0 || r.Header.Get("Content-Type") != "" {
		if err := decodeJSON(w, r, &body); err != nil {
			writeError(w, r, err)
			return
		}
	}
	timeout := h.defaultTimeoutFor(r.Context())
	if body.Timeout != nil {
		t := *body.Timeout
		if maxT := h.maxTimeoutFor(r.Context()); t <= 0 || t > maxT.Seconds() {
			writeError(w, r, unprocessable("invalid_timeout",
				fmt.Sprintf("timeout must be greater than 0 and at most %g seconds", maxT.Seconds())))
			return
		}
		timeout = time.Duration(t * float64(time.Second))
	}
	if err := h.admitSession(r.Context()); err != nil { // auth.go: the key's max_sessions
		writeError(w, r, err)
		return
	}
	defer h.endSessionReservation(r.Context())
	info, err := h.opts.Sessions.CreateSession(r.Context(), runner.SessionOptions{Timeout: timeout})
	if err != nil {
		writeError(w, r, err)
		return
	}
	h.sessionCreated(r.Context(), info.ID)
	addLogField(r.Context(), "session", info.ID[:min(len(info.ID), 12)])
	w.Header().Set("Location", "/sessions/"+info.ID)
	writeJSON(w, http.StatusCreated, sessionCreated{
		ID: info.ID, CreatedAt: info.CreatedAt.UTC(), ExpiresAt: info.ExpiresAt.UTC(),
		IdleTimeoutSeconds: info.IdleTimeout.Seconds(), MaxLifetimeSeconds: info.ExpiresAt.Sub(info.CreatedAt).Seconds(),
		Timeout: info.Timeout.Seconds(),
	})
}

func (h *handler) getSession(w http.ResponseWriter, r *http.Request) {
	id, err := sessionID(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	info, err := h.opts.Sessions.Session(r.Context(), id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	now := time.Now()
	writeJSON(w, http.StatusOK, sessionBody{
		ID: info.ID, State: info.State, CreatedAt: info.CreatedAt.UTC(), ExpiresAt: info.ExpiresAt.UTC(),
		LastUsedAt: info.LastUsed.UTC(), AgeSeconds: seconds(now.Sub(info.CreatedAt)),
		IdleSeconds: seconds(now.Sub(info.LastUsed)), Timeout: info.Timeout.Seconds(),
		Executions: info.Executions, MemoryBytes: info.MemoryBytes, MemoryLimitBytes: info.MemoryLimitBytes,
		Files: info.Files, FilesSkipped: info.FilesSkipped,
	})
}

// seconds is d in seconds, to the millisecond.
func seconds(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }

func (h *handler) deleteSession(w http.ResponseWriter, r *http.Request) {
	id, err := sessionID(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := h.opts.Sessions.DeleteSession(r.Context(), id); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) executeInSession(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id, err := sessionID(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var body executeRequest
	if err := decodeJSONLimit(w, r, &body, h.bodyLimit()); err != nil {
		writeError(w, r, err)
		return
	}
	req, err := h.toRunRequest(r.Context(), body)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if body.Timeout == nil {
		req.Timeout = 0 // the session's default
	}
	release, err := h.admitExecution(r.Context()) // auth.go: the key's quotas
	if err != nil {
		writeError(w, r, err)
		return
	}
	defer release()
	cellBody := func(res runner.Result) any {
		resp := sessionExecuteResponse{executeResponse: h.executeBody(w, r, res, start)}
		if s := res.Session; s != nil {
			resp.Session = &sessionOfCell{ID: s.ID, Executions: s.Executions, ExpiresAt: s.ExpiresAt.UTC(), Ended: s.Ended, EndReason: s.EndReason}
			if s.Ended {
				addLogField(r.Context(), "session_ended", s.EndReason)
			}
		}
		return resp
	}
	run := func(ctx context.Context, req runner.Request) (runner.Result, error) {
		return h.opts.Sessions.RunInSession(ctx, id, req)
	}
	h.answerExecution(w, r, req, run, cellBody) // execute.go
}

func (h *handler) getSessionFile(w http.ResponseWriter, r *http.Request) {
	id, err := sessionID(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	name := mux.Vars(r)["name"]
	if err := runner.CheckFilePath(name); err != nil {
		writeError(w, r, fileNameError(-1, err))
		return
	}
	data, err := h.opts.Sessions.SessionFile(r.Context(), id, name)
	if err != nil {
		writeError(w, r, err)
		return
	}
	addLogField(r.Context(), "file_bytes", len(data))
	writeFile(w, name, data)
}

func (h *handler) putSessionFile(w http.ResponseWriter, r *http.Request) {
	id, err := sessionID(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	name := mux.Vars(r)["name"]
	if err := runner.CheckFileName(name); err != nil {
		writeError(w, r, fileNameError(-1, err))
		return
	}
	limit := h.maxInputBytes()
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, r, filesTooLarge(limit))
			return
		}
		writeError(w, r, badRequest("unreadable_body", "could not read the request body"))
		return
	}
	if err := h.opts.Sessions.PutSessionFile(r.Context(), id, name, data); err != nil {
		writeError(w, r, err)
		return
	}
	addLogField(r.Context(), "file_bytes", len(data))
	writeJSON(w, http.StatusCreated, fileStored{Name: name, Size: int64(len(data))})
}
