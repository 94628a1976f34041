package docs_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/pyexec/pyexec/handlers/docs"
	"github.com/pyexec/pyexec/internal/openapitest"
)

func mustLoad(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// operations lists every operation of doc as "METHOD /path".
func operations(doc *openapi3.T) map[string]*openapi3.Operation {
	ops := map[string]*openapi3.Operation{}
	for p, item := range doc.Paths.Map() {
		for m, op := range item.Operations() {
			ops[m+" "+p] = op
		}
	}
	return ops
}

func TestSpecValidates(t *testing.T) {
	doc := mustLoad(t)
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	if !json.Valid(docs.Spec()) {
		t.Error("Spec() is not valid JSON")
	}
	want := []string{
		"POST /execute", "POST /validate", "GET /templates", "GET /templates/{id}", "GET /health",
		"GET /metrics", "POST /admin/images/rebuild", "GET /admin/images", "GET /openapi.json",
		"GET /docs", "GET /redoc",
		"POST /sessions", "GET /sessions/{id}", "DELETE /sessions/{id}", "POST /sessions/{id}/execute",
		"GET /sessions/{id}/files/{name}", "PUT /sessions/{id}/files/{name}",
		"GET /livez", "GET /readyz", "POST /mcp",
	}
	ops := operations(doc)
	var got []string
	for k := range ops {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("operations:\n got %v\nwant %v", got, want)
	}
	ids := map[string]string{}
	for k, op := range ops {
		if op.OperationID == "" || op.Summary == "" || len(op.Tags) == 0 {
			t.Errorf("%s: operationId, summary and tags are required", k)
		}
		if prev, dup := ids[op.OperationID]; dup {
			t.Errorf("%s and %s share operationId %q", k, prev, op.OperationID)
		}
		ids[op.OperationID] = k
	}
}

// TestRefsResolve walks the raw JSON: every $ref must be a local JSON pointer
// to something that exists (the loader would also fail on a dangling one, but
// this says which).
func TestRefsResolve(t *testing.T) {
	var raw any
	if err := json.Unmarshal(docs.Spec(), &raw); err != nil {
		t.Fatal(err)
	}
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "$ref" {
					refs = append(refs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(raw)
	if len(refs) < 50 {
		t.Fatalf("only %d $refs found; the walk is broken", len(refs))
	}
	for _, ref := range refs {
		ptr, ok := strings.CutPrefix(ref, "#/")
		if !ok {
			t.Errorf("$ref %q is not local", ref)
			continue
		}
		node := raw
		for part := range strings.SplitSeq(ptr, "/") {
			part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
			m, ok := node.(map[string]any)
			if !ok || m[part] == nil {
				t.Errorf("$ref %q does not resolve (at %q)", ref, part)
				break
			}
			node = m[part]
		}
	}
	// Every component is used somewhere.
	comps := raw.(map[string]any)["components"].(map[string]any)
	for kind, v := range comps {
		if kind == "securitySchemes" {
			continue
		}
		for name := range v.(map[string]any) {
			if !slices.Contains(refs, "#/components/"+kind+"/"+name) {
				t.Errorf("components/%s/%s is never referenced", kind, name)
			}
		}
	}
}

// mediaExamples returns the examples of a media type by name (a single
// "example" is named "example").
func mediaExamples(m *openapi3.MediaType) map[string]any {
	out := map[string]any{}
	for name, e := range m.Examples {
		if e.Value != nil {
			out[name] = e.Value.Value
		}
	}
	if m.Example != nil {
		out["example"] = m.Example
	}
	return out
}

// schemaBreakers are the request examples that break the request schema on
// purpose (they show a 422); every other example must match its schema.
var schemaBreakers = []string{
	"POST /execute invalid_timeout",
	"POST /execute unknown_field",
	"POST /validate unknown_field",
}

// TestExamples checks that every operation has examples and that every
// example matches its schema (except schemaBreakers, which must not).
func TestExamples(t *testing.T) {
	doc := mustLoad(t)
	var broke []string
	for key, op := range operations(doc) {
		n := 0
		if rb := op.RequestBody; rb != nil {
			for ct, m := range rb.Value.Content {
				exs := mediaExamples(m)
				if len(exs) == 0 {
					t.Errorf("%s: request %s has no examples", key, ct)
				}
				for name, v := range exs {
					n++
					if err := m.Schema.Value.VisitJSON(v); err != nil {
						broke = append(broke, key+" "+name)
						if !slices.Contains(schemaBreakers, key+" "+name) {
							t.Errorf("%s: request example %s does not match the schema: %v", key, name, err)
						}
					}
				}
			}
		}
		for code, resp := range op.Responses.Map() {
			for ct, m := range resp.Value.Content {
				exs := mediaExamples(m)
				if len(exs) == 0 {
					t.Errorf("%s: response %s %s has no examples", key, code, ct)
				}
				for name, v := range exs {
					n++
					if err := m.Schema.Value.VisitJSON(v); err != nil {
						t.Errorf("%s: response %s example %s does not match the schema: %v", key, code, name, err)
					}
				}
			}
		}
		if n == 0 {
			t.Errorf("%s has no examples", key)
		}
	}
	slices.Sort(broke)
	if !slices.Equal(broke, schemaBreakers) {
		t.Errorf("request examples breaking the schema: %v, want exactly %v", broke, schemaBreakers)
	}
}

// TestExecuteExamples checks that POST /execute has a request and a
// response example for every kind of output, each showing that kind.
func TestExecuteExamples(t *testing.T) {
	exs, err := openapitest.Examples()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]openapitest.Example{}
	for _, ex := range exs {
		if ex.Status == 0 || ex.Response == nil {
			t.Errorf("%s %s: request example %s has no response example of the same name", ex.Method, ex.Path, ex.Name)
		}
		if ex.Path == "/execute" {
			byName[ex.Name] = ex
		}
	}
	type resp struct {
		Status string
		Output struct {
			Stdout     string
			Charts     []struct{ Type, Format string }
			DataFrames []json.RawMessage
			Variables  map[string]json.RawMessage
			Result     *struct{ Type string }
		}
		Error *struct {
			Type string
			Line *int
		}
		Resources struct {
			OOMKilled bool `json:"oom_killed"`
		}
	}
	tests := []struct {
		name string
		req  func(body map[string]any) bool
		ok   func(r resp) bool
	}{
		{"hello_world", nil, func(r resp) bool { return r.Status == "success" && r.Output.Stdout == "Hello World\n" }},
		{"exception", nil, func(r resp) bool { return r.Status == "error" && r.Error != nil && r.Error.Line != nil }},
		{"timeout", nil, func(r resp) bool { return r.Status == "timeout" && r.Error.Type == "TimeoutError" }},
		{"out_of_memory", nil, func(r resp) bool { return r.Status == "out_of_memory" && r.Resources.OOMKilled }},
		{"matplotlib_chart", nil, func(r resp) bool {
			return len(r.Output.Charts) == 1 && r.Output.Charts[0].Type == "matplotlib" && r.Output.Charts[0].Format == "png"
		}},
		{"plotly_figure", nil, func(r resp) bool {
			return len(r.Output.Charts) == 1 && r.Output.Charts[0].Type == "plotly" && r.Output.Charts[0].Format == "json"
		}},
		{"dataframe", nil, func(r resp) bool { return len(r.Output.DataFrames) == 1 }},
		{"variables", nil, func(r resp) bool { return len(r.Output.Variables) >= 3 && r.Output.Result != nil }},
		{"svg_chart", func(b map[string]any) bool { return b["chart_format"] == "svg" }, func(r resp) bool {
			return len(r.Output.Charts) == 1 && r.Output.Charts[0].Format == "svg"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex, ok := byName[tt.name]
			if !ok {
				t.Fatal("no such example")
			}
			if ex.Status != http.StatusOK {
				t.Fatalf("documented with status %d, want 200", ex.Status)
			}
			var body map[string]any
			if err := json.Unmarshal(ex.Body, &body); err != nil || body["code"] == nil {
				t.Fatalf("request %s: no code (%v)", ex.Body, err)
			}
			if tt.req != nil && !tt.req(body) {
				t.Errorf("request does not show %s: %s", tt.name, ex.Body)
			}
			var r resp
			if err := json.Unmarshal(ex.Response, &r); err != nil {
				t.Fatal(err)
			}
			if !tt.ok(r) {
				t.Errorf("response does not show %s: %.600s", tt.name, ex.Response)
			}
		})
	}
	// Error examples: 422 tied to requests, 429 documented.
	doc := mustLoad(t)
	op := doc.Paths.Find("/execute").Post
	for _, code := range []int{http.StatusUnprocessableEntity, http.StatusTooManyRequests} {
		r := op.Responses.Status(code)
		if r == nil || len(r.Value.Content.Get("application/json").Examples) == 0 {
			t.Errorf("/execute: no %d example", code)
		}
	}
	if h := op.Responses.Status(http.StatusTooManyRequests).Value.Headers["Retry-After"]; h == nil || !h.Value.Required {
		t.Error("/execute 429: Retry-After must be a required header")
	}
	n422 := 0
	for _, ex := range byName {
		if ex.Status == http.StatusUnprocessableEntity {
			n422++
		}
	}
	if n422 < 2 {
		t.Errorf("/execute: %d request examples tied to 422, want at least 2", n422)
	}
}

// TestDescriptions requires a description on every schema property and on
// every parameter, response and header, so the rendered docs explain every
// field.
func TestDescriptions(t *testing.T) {
	doc := mustLoad(t)
	seen := map[*openapi3.Schema]bool{}
	var visit func(where string, s *openapi3.SchemaRef)
	visit = func(where string, s *openapi3.SchemaRef) {
		if s == nil || s.Value == nil || seen[s.Value] {
			return
		}
		seen[s.Value] = true
		v := s.Value
		for name, p := range v.Properties {
			if p.Ref == "" && p.Value.Description == "" {
				t.Errorf("%s.%s has no description", where, name)
			}
			visit(where+"."+name, p)
		}
		visit(where+"[]", v.Items)
		if v.AdditionalProperties.Schema != nil {
			visit(where+"{}", v.AdditionalProperties.Schema)
		}
		for i, sub := range slices.Concat(v.OneOf, v.AnyOf, v.AllOf) {
			visit(fmt.Sprintf("%s<%d>", where, i), sub)
		}
	}
	for name, s := range doc.Components.Schemas {
		if s.Value.Description == "" {
			t.Errorf("schema %s has no description", name)
		}
		visit(name, s)
	}
	for key, op := range operations(doc) {
		if op.Description == "" && op.Summary == "" {
			t.Errorf("%s: no summary", key)
		}
		for _, p := range op.Parameters {
			if p.Value.Description == "" {
				t.Errorf("%s: parameter %s has no description", key, p.Value.Name)
			}
		}
		for code, r := range op.Responses.Map() {
			if r.Value.Description == nil || *r.Value.Description == "" {
				t.Errorf("%s: response %s has no description", key, code)
			}
			if _, err := strconv.Atoi(code); err != nil {
				t.Errorf("%s: response %q is not a status code", key, code)
			}
			for h, hv := range r.Value.Headers {
				if hv.Value.Description == "" {
					t.Errorf("%s: response %s header %s has no description", key, code, h)
				}
			}
		}
	}
}
