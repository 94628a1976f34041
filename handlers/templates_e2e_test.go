package handlers

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pyexec/pyexec/handlers/templates"
	"github.com/pyexec/pyexec/runner"
)

// TestTemplatesRun runs every template through the real service: each must
// succeed under the language policy, and each chart template must chart.
func TestTemplatesRun(t *testing.T) {
	h, _ := realRouter(t, func(o *runner.Options) { o.PoolSize = 2 })

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/templates", nil))
	var list templatesBody
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &list) != nil || len(list.Templates) != len(templates.All()) {
		t.Fatalf("GET /templates: %d %.300s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/templates/no-such-template", nil))
	if rec.Code != 404 {
		t.Errorf("unknown template: %d", rec.Code)
	}

	for _, tpl := range list.Templates {
		t.Run(tpl.ID, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/templates/"+tpl.ID, nil))
			var one templates.Template
			if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &one) != nil || one.Code != tpl.Code {
				t.Fatalf("GET /templates/%s: %d", tpl.ID, rec.Code)
			}
			// The template as the page sends it: its code and its files.
			body, _ := json.Marshal(map[string]any{"code": tpl.Code, "files": tpl.Files, "timeout": 60})
			req := httptest.NewRequest(http.MethodPost, "/execute", strings.NewReader(string(body)))
			req.Header.Set("Content-Type", "application/json")
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var out struct {
				Status string `json:"status"`
				Error  any    `json:"error"`
				Output struct {
					Stdout     string            `json:"stdout"`
					Charts     []json.RawMessage `json:"charts"`
					DataFrames []json.RawMessage `json:"dataframes"`
					Files      []json.RawMessage `json:"files"`
				} `json:"output"`
			}
			if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &out) != nil {
				t.Fatalf("execute: %d %.500s", rec.Code, rec.Body)
			}
			if out.Status != runner.StatusSuccess {
				t.Fatalf("status %q, error %v", out.Status, out.Error)
			}
			if len(tpl.Files) > 0 && len(out.Output.Files) == 0 {
				t.Errorf("a template that reads files wrote none to outputs/")
			}
			switch tpl.Category {
			case "matplotlib", "plotly", "seaborn":
				if len(out.Output.Charts) == 0 {
					t.Errorf("%s template produced no chart", tpl.Category)
				}
			default:
				if out.Output.Stdout == "" && len(out.Output.DataFrames) == 0 && len(out.Output.Charts) == 0 {
					t.Errorf("template produced nothing to show")
				}
			}
		})
	}
}
