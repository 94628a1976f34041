package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxBodyBytes bounds a request body that carries no files; code itself is
// bounded by the policy. Bodies with files have handler.bodyLimit.
const maxBodyBytes = 1 << 20

// decodeJSON reads a JSON object body of at most maxBodyBytes into v
// strictly: the right content type, a bounded size, valid UTF-8, no unknown
// fields, nothing after it.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeJSONLimit(w, r, v, maxBodyBytes)
}

// decodeJSONLimit is decodeJSON with a body of at most limit bytes.
func decodeJSONLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return &apiError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type",
			Message: "Content-Type must be application/json"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &apiError{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
				Message: fmt.Sprintf("request body exceeds %d bytes", limit)}
		}
		return badRequest("unreadable_body", "could not read the request body")
	}
	if !utf8.Valid(body) {
		return badRequest("invalid_utf8", "request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr) && typeErr.Field == "":
			return badRequest("malformed_json", "request body must be a JSON object")
		case errors.As(err, &typeErr):
			return unprocessable("invalid_field", fmt.Sprintf("field %q has the wrong type (got a JSON %s)", typeErr.Field, typeErr.Value))
		case errors.As(err, &syntaxErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return badRequest("malformed_json", "request body is not valid JSON")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			// encoding/json has no typed error for this; its text is stable.
			return unprocessable("unknown_field", strings.TrimPrefix(err.Error(), "json: "))
		default:
			return badRequest("malformed_json", "request body must be a JSON object")
		}
	}
	if dec.More() {
		return badRequest("malformed_json", "request body has data after the JSON object")
	}
	return nil
}

// writeJSON writes v as the whole answer, with its length, and sends it at
// once: the client has the answer before the request's log line is written
// (router.go), instead of waiting for the end of a chunked body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// A type the answer should never hold: a bug, said as one.
		status = http.StatusInternalServerError
		b.Reset()
		_ = enc.Encode(errorBody{Error: errorDetail{Code: "internal", Message: "the answer could not be encoded"}})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
	_ = http.NewResponseController(w).Flush()
}
