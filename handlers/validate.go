package handlers

import (
	"net/http"

	"github.com/pyexec/pyexec/policy"
)

// validateRequest is the body of POST /validate.
type validateRequest struct {
	Code *string `json:"code"`
}

// validateResponse is the answer of POST /validate: problems in the code are
// listed, not treated as request errors.
type validateResponse struct {
	Valid     bool               `json:"valid"`
	Errors    []policy.Violation `json:"errors"`
	RequestID string             `json:"request_id"`
}

func (h *handler) validate(w http.ResponseWriter, r *http.Request) {
	var body validateRequest
	if err := decodeJSON(w, r, &body); err != nil {
		writeError(w, r, err)
		return
	}
	if body.Code == nil {
		writeError(w, r, unprocessable("missing_code", `field "code" is required`))
		return
	}
	resp := validateResponse{Valid: true, Errors: []policy.Violation{}, RequestID: requestID(r.Context())}
	if vs := policy.CheckSource(*body.Code, policy.MaxCodeBytes); len(vs) > 0 {
		resp.Valid, resp.Errors = false, vs
		writeJSON(w, http.StatusOK, resp)
		return
	}
	v, err := h.opts.Runner.Validate(r.Context(), *body.Code)
	if err != nil {
		writeError(w, r, err)
		return
	}
	resp.Valid, resp.Errors = v.Valid, v.Errors
	addLogField(r.Context(), "outcome", map[bool]string{true: "valid", false: "invalid"}[v.Valid])
	writeJSON(w, http.StatusOK, resp)
}
