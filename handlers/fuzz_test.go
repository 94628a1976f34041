package handlers

import (
	"encoding/json"
	"net/http"
	"testing"
)

// FuzzExecuteRequest feeds arbitrary bodies and content types to POST
// /execute and /validate: every answer must be JSON with an expected status,
// and the runner may only be reached by a request that passed every check.
func FuzzExecuteRequest(f *testing.F) {
	seeds := []struct{ ctype, body string }{
		{"application/json", `{"code":"print(1)"}`},
		{"application/json", `{"code":"print(1)","timeout":2.5,"chart_format":"svg"}`},
		{"application/json", `{"code":"","timeout":0}`},
		{"application/json", `{"code":"x","timeout":-1e308}`},
		{"application/json", `{"code":"\u0000"}`},
		{"application/json", "{\"code\":\"\xff\"}"},
		{"application/json", `{"code":null}`},
		{"application/json", `{"code":["a"]}`},
		{"application/json", `[]`},
		{"application/json", `{"code":"a"}{"code":"b"}`},
		{"application/json; charset=utf-8", `{"code":"1","extra":1}`},
		{"text/plain", `{"code":"print(1)"}`},
		{"", ``},
		{"application/json", `{"code":"print(1)","timeout":1e999}`},
		{"application/json", `{"timeout":"NaN"}`},
	}
	for _, s := range seeds {
		f.Add(s.ctype, []byte(s.body), false)
		f.Add(s.ctype, []byte(s.body), true)
	}
	f.Fuzz(func(t *testing.T, ctype string, body []byte, validate bool) {
		fr := &fakeRunner{}
		path := "/execute"
		if validate {
			path = "/validate"
		}
		rec := do(newTestRouter(fr), http.MethodPost, path, ctype, string(body))
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge,
			http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		default:
			t.Fatalf("status %d for %q %q: %s", rec.Code, ctype, body, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("body not JSON: %q", rec.Body)
		}
		if rec.Code != http.StatusOK && fr.calls.Load() != 0 {
			t.Fatalf("runner called for a rejected request (%d)", rec.Code)
		}
		if rec.Code == http.StatusOK && !validate {
			// Only a request that passed every check reaches the runner,
			// with a timeout inside the allowed range.
			if fr.calls.Load() != 1 || fr.last.Timeout <= 0 || fr.last.Timeout > newTestMaxTimeout {
				t.Fatalf("accepted request reached the runner %d times with timeout %v", fr.calls.Load(), fr.last.Timeout)
			}
		}
	})
}
