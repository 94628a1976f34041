// Package openapitest holds the service to its OpenAPI document in tests:
// Validator checks HTTP requests and responses against the document that
// package handlers/docs embeds and serves, and Examples lists the documented
// example requests with the responses they are documented with.
//
// It is for tests only (kin-openapi stays out of the service binary): the
// handlers tests send every example through the real router, runner and
// engine, and check every answer against the document.
package openapitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/pyexec/pyexec/handlers/docs"
)

// Load parses and validates the document docs serves. Each call returns a
// new document: kin-openapi documents are not meant to be shared while
// loading, and callers may modify what they get.
func Load() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(docs.Spec())
	if err != nil {
		return nil, fmt.Errorf("load openapi.json: %w", err)
	}
	// Some request examples break the schema on purpose: they show what the
	// 4xx answers are for. The tests check every example against its schema
	// with that exception spelled out.
	if err := doc.Validate(loader.Context, openapi3.DisableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("validate openapi.json: %w", err)
	}
	return doc, nil
}

// Contract checks HTTP requests and responses against the OpenAPI document.
// It is safe for concurrent use.
type Contract struct {
	router routers.Router
	opts   *openapi3filter.Options
}

// Validator returns a Contract for the embedded document. An error means
// the document is broken, which the tests of handlers/docs catch.
func Validator() (*Contract, error) {
	doc, err := Load()
	if err != nil {
		return nil, err
	}
	// The document's server is "/" (wherever it is served from); without
	// servers the router matches requests to any host.
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi router: %w", err)
	}
	return &Contract{
		router: router,
		opts: &openapi3filter.Options{
			IncludeResponseStatus: true, // an undocumented status is an error
			AuthenticationFunc:    bearerAuth,
		},
	}, nil
}

// bearerAuth accepts a request for an operation that needs the admin token
// when it carries some bearer token: whether it is the right one is the
// service's business, not the document's.
func bearerAuth(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s := in.SecurityScheme
	if s == nil || s.Type != "http" || !strings.EqualFold(s.Scheme, "bearer") {
		return fmt.Errorf("security scheme %q is not supported", in.SecuritySchemeName)
	}
	scheme, token, _ := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return errors.New("no bearer token in the Authorization header")
	}
	return nil
}

// ValidateRequest checks r (method, path, query, headers, body) against the
// operation it is for. The body is read and put back, so r can be served
// afterwards.
func (c *Contract) ValidateRequest(r *http.Request) error {
	route, params, err := c.router.FindRoute(r)
	if err != nil {
		return fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, err)
	}
	var body []byte
	if r.Body != nil {
		if body, err = io.ReadAll(r.Body); err != nil {
			return fmt.Errorf("read request body: %w", err)
		}
		_ = r.Body.Close()
	}
	restore := func() { r.Body = io.NopCloser(bytes.NewReader(body)) }
	restore()
	defer restore()
	return openapi3filter.ValidateRequest(r.Context(), &openapi3filter.RequestValidationInput{
		Request:    r,
		PathParams: params,
		Route:      route,
		Options:    c.opts,
	})
}

// ValidateResponse checks a response to r: that status is documented for
// the operation, that the header has the documented Content-Type and
// required headers (Retry-After with 429), and that the body matches the
// schema. r is only used to find the operation; its body is not read.
//
// Bodies that are not JSON or plain text (the HTML pages) are checked for
// their Content-Type only.
func (c *Contract) ValidateResponse(r *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := c.router.FindRoute(r)
	if err != nil {
		return fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, err)
	}
	opts := *c.opts
	if resp := route.Operation.Responses.Status(status); resp != nil && resp.Value != nil {
		ct := header.Get("Content-Type")
		media := resp.Value.Content.Get(ct)
		if len(resp.Value.Content) > 0 && media == nil {
			return fmt.Errorf("%s %s: status %d: Content-Type %q is not documented", r.Method, r.URL.Path, status, ct)
		}
		if media != nil && !strings.HasPrefix(ct, "application/json") && !strings.HasPrefix(ct, "text/plain") {
			opts.ExcludeResponseBody = true
		}
	}
	return openapi3filter.ValidateResponse(r.Context(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request:    r,
			PathParams: params,
			Route:      route,
			Options:    &opts,
		},
		Status:  status,
		Header:  header,
		Body:    io.NopCloser(bytes.NewReader(body)),
		Options: &opts,
	})
}

// Check sends ex through h and holds the exchange to the document:
//   - the request must match the schema, unless ex is documented with a
//     4xx answer (those examples may break it on purpose);
//   - when ex.Status is set, the answer must have that status, and the
//     fields that say how it ended must equal the documented response's:
//     "status" (/execute), "valid" (/validate) and "error.code" (errors);
//   - the answer must match the document (see ValidateResponse).
//
// It returns the recorded answer, also on a mismatch. Examples documented
// with 429 or 503 depend on load or on the engine; a test against the real
// service usually only sends them when it can cause that state.
func (c *Contract) Check(h http.Handler, ex Example) (*httptest.ResponseRecorder, error) {
	req := ex.Request()
	if ex.Status < 400 {
		if err := c.ValidateRequest(req); err != nil {
			return nil, fmt.Errorf("example %s: request: %w", ex.Name, err)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if ex.Status != 0 && rec.Code != ex.Status {
		return rec, fmt.Errorf("example %s: status %d, documented %d; body: %.500s", ex.Name, rec.Code, ex.Status, rec.Body.Bytes())
	}
	if ex.Response != nil {
		if err := sameOutcome(ex.Response, rec.Body.Bytes()); err != nil {
			return rec, fmt.Errorf("example %s: %w", ex.Name, err)
		}
	}
	if err := c.ValidateResponse(req, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
		return rec, fmt.Errorf("example %s: response: %w", ex.Name, err)
	}
	return rec, nil
}

// outcome is what sameOutcome compares: the fields that say how a request
// ended, as opposed to what it produced (times, IDs, memory).
type outcome struct {
	Status *string `json:"status"`
	Valid  *bool   `json:"valid"`
	Error  *struct {
		Code *string `json:"code"`
	} `json:"error"`
}

func sameOutcome(documented, got []byte) error {
	var want, have outcome
	if json.Unmarshal(documented, &want) != nil {
		return nil // not an object: nothing to compare
	}
	if err := json.Unmarshal(got, &have); err != nil {
		return fmt.Errorf("response is not a JSON object: %w", err)
	}
	if want.Status != nil && (have.Status == nil || *have.Status != *want.Status) {
		return fmt.Errorf(`"status" is %s, documented %q`, show(have.Status), *want.Status)
	}
	if want.Valid != nil && (have.Valid == nil || *have.Valid != *want.Valid) {
		return fmt.Errorf(`"valid" is %s, documented %t`, show(have.Valid), *want.Valid)
	}
	if want.Error != nil && want.Error.Code != nil {
		if have.Error == nil || have.Error.Code == nil || *have.Error.Code != *want.Error.Code {
			var code *string
			if have.Error != nil {
				code = have.Error.Code
			}
			return fmt.Errorf(`"error.code" is %s, documented %q`, show(code), *want.Error.Code)
		}
	}
	return nil
}

func show[T any](p *T) string {
	if p == nil {
		return "absent"
	}
	return fmt.Sprintf("%#v", *p)
}

// Example is one example request of the document, with the response
// documented under the same name, if any.
type Example struct {
	// Name is the example's key in the document, e.g. "hello_world".
	Name string
	// Summary is the example's one-line summary.
	Summary string
	// Method and Path are the operation's, e.g. "POST" and "/execute".
	Method string
	Path   string
	// Body is the request body, JSON.
	Body json.RawMessage
	// Status is the status of the response documented under the same name,
	// or 0 when none is.
	Status int
	// Response is that response's documented body, or nil.
	Response json.RawMessage
}

// Request returns a new request for the example, with Content-Type
// application/json.
func (ex Example) Request() *http.Request {
	req := httptest.NewRequest(ex.Method, ex.Path, bytes.NewReader(ex.Body))
	req.Header.Set("Content-Type", "application/json")
	return req
}

// exampleOps are the operations whose examples Examples lists.
var exampleOps = []struct{ method, path string }{
	{http.MethodPost, "/execute"},
	{http.MethodPost, "/validate"},
}

// Examples lists every documented example request of POST /execute and
// POST /validate, sorted by operation then name. A request example is tied
// to the response example of the same name, whatever its status.
func Examples() ([]Example, error) {
	doc, err := Load()
	if err != nil {
		return nil, err
	}
	var out []Example
	for _, op := range exampleOps {
		o := doc.Paths.Find(op.path).GetOperation(op.method)
		if o == nil || o.RequestBody == nil || o.RequestBody.Value == nil {
			return nil, fmt.Errorf("%s %s: no request body in the document", op.method, op.path)
		}
		media := o.RequestBody.Value.Content.Get("application/json")
		if media == nil {
			return nil, fmt.Errorf("%s %s: no JSON request body in the document", op.method, op.path)
		}
		for _, name := range sortedKeys(media.Examples) {
			e := media.Examples[name].Value
			if e == nil {
				return nil, fmt.Errorf("%s %s: example %s is unresolved", op.method, op.path, name)
			}
			body, err := json.Marshal(e.Value)
			if err != nil {
				return nil, fmt.Errorf("%s %s: example %s: %w", op.method, op.path, name, err)
			}
			ex := Example{Name: name, Summary: e.Summary, Method: op.method, Path: op.path, Body: body}
			if err := tieResponse(&ex, o); err != nil {
				return nil, fmt.Errorf("%s %s: %w", op.method, op.path, err)
			}
			out = append(out, ex)
		}
	}
	return out, nil
}

// tieResponse fills ex.Status and ex.Response from the response example
// named ex.Name, if there is exactly one.
func tieResponse(ex *Example, o *openapi3.Operation) error {
	found := false
	for code, resp := range o.Responses.Map() {
		if resp.Value == nil {
			continue
		}
		media := resp.Value.Content.Get("application/json")
		if media == nil || media.Examples[ex.Name] == nil || media.Examples[ex.Name].Value == nil {
			continue
		}
		if found {
			return fmt.Errorf("example %s is documented under two statuses", ex.Name)
		}
		status, err := strconv.Atoi(code)
		if err != nil {
			return fmt.Errorf("example %s: status %q: %w", ex.Name, code, err)
		}
		body, err := json.Marshal(media.Examples[ex.Name].Value.Value)
		if err != nil {
			return fmt.Errorf("example %s: response: %w", ex.Name, err)
		}
		ex.Status, ex.Response, found = status, body, true
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
