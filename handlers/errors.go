package handlers

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/pyexec/pyexec/images"
	"github.com/pyexec/pyexec/internal/logctx"
	"github.com/pyexec/pyexec/policy"
	"github.com/pyexec/pyexec/runner"
)

// apiError is a request the service refuses, with its status and a stable
// machine-readable code.
type apiError struct {
	Status     int
	Code       string
	Message    string
	Violations []policy.Violation
	// RetryAfter, when set, becomes the Retry-After header (whole seconds,
	// at least 1).
	RetryAfter time.Duration
}

func (e *apiError) Error() string { return e.Message }

func badRequest(code, msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: code, Message: msg}
}

func unprocessable(code, msg string) *apiError {
	return &apiError{Status: http.StatusUnprocessableEntity, Code: code, Message: msg}
}

// errorBody is the JSON of every non-2xx answer.
type errorBody struct {
	Error     errorDetail `json:"error"`
	RequestID string      `json:"request_id,omitempty"`
}

type errorDetail struct {
	Code       string             `json:"code"`
	Message    string             `json:"message"`
	Violations []policy.Violation `json:"violations,omitempty"`
}

// retryAfterSeconds is what a 429 or 503 tells clients to wait.
const retryAfterSeconds = 1

// writeError is the only place that maps an error to a status code.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
	case errors.Is(err, runner.ErrSessionNotFound):
		ae = &apiError{Status: http.StatusNotFound, Code: "session_not_found", Message: err.Error()}
		var gone *runner.SessionGoneError
		if !errors.As(err, &gone) {
			ae.Message = "no such session: it never existed, or it ended some time ago"
		}
	case errors.Is(err, runner.ErrSessionBusy):
		ae = &apiError{Status: http.StatusConflict, Code: "session_busy",
			Message: "the session is busy and its queue is full; retry when its running execution is done"}
	case errors.Is(err, runner.ErrTooManySessions):
		ae = &apiError{Status: http.StatusTooManyRequests, Code: "too_many_sessions",
			Message: "the maximum number of sessions exist; retry later or delete one"}
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	case errors.Is(err, runner.ErrFileNotFound):
		ae = &apiError{Status: http.StatusNotFound, Code: "file_not_found", Message: err.Error()}
	case errors.Is(err, runner.ErrFileRefused):
		ae = &apiError{Status: http.StatusUnprocessableEntity, Code: "file_refused", Message: err.Error()}
	case errors.Is(err, runner.ErrInvalidFile):
		ae = &apiError{Status: http.StatusUnprocessableEntity, Code: "invalid_file_name", Message: err.Error()}
	case errors.Is(err, runner.ErrBusy):
		ae = &apiError{Status: http.StatusTooManyRequests, Code: "busy", Message: "all workers are busy and the queue is full; retry later"}
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	case errors.Is(err, runner.ErrEngineDown):
		ae = &apiError{Status: http.StatusServiceUnavailable, Code: "engine_unavailable", Message: "the container engine is unavailable"}
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	case errors.Is(err, runner.ErrSandboxVanished):
		ae = &apiError{Status: http.StatusServiceUnavailable, Code: "sandbox_vanished",
			Message: "the sandbox container disappeared while the code ran (removed from outside, e.g. by an operator); the code may have run in part, retry"}
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	case errors.Is(err, runner.ErrNoImage), errors.Is(err, images.ErrNoImage):
		ae = &apiError{Status: http.StatusServiceUnavailable, Code: "image_unavailable", Message: "the sandbox image is not ready"}
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	case errors.Is(err, runner.ErrClosed):
		ae = &apiError{Status: http.StatusServiceUnavailable, Code: "shutting_down", Message: "the service is shutting down"}
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this. 499 as nginx logs it.
		ae = &apiError{Status: 499, Code: "client_closed", Message: "client closed the request"}
	case errors.Is(err, context.DeadlineExceeded):
		ae = &apiError{Status: http.StatusServiceUnavailable, Code: "deadline", Message: "the service could not finish in time"}
	default:
		logctx.From(r.Context()).WithError(err).Error("internal error")
		ae = &apiError{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	}
	if ae.Status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pyexec admin"`)
	}
	if ae.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(max(1, (ae.RetryAfter+time.Second-1)/time.Second))))
	}
	countRejected(r.Context(), ae)
	addLogField(r.Context(), "error_code", ae.Code)
	writeJSON(w, ae.Status, errorBody{
		Error:     errorDetail{Code: ae.Code, Message: ae.Message, Violations: ae.Violations},
		RequestID: requestID(r.Context()),
	})
}
