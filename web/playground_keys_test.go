package web_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/internal/keys"
)

// randomKey is a fresh API key, as `openssl rand -hex 32` makes them.
func randomKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// keyTraffic records, for one browser, what the page sends: the X-API-Key
// header of each API request, every URL, and everything logged to the
// console.
type keyTraffic struct {
	mu      sync.Mutex
	sent    map[string][]string // URL path -> X-API-Key values sent, "" for none
	urls    []string
	console []string
}

func watchKeyTraffic(b *browser, base string) *keyTraffic {
	kt := &keyTraffic{sent: map[string][]string{}}
	if err := chromedp.Listen(b.ctx, func(ev any) {
		kt.mu.Lock()
		defer kt.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			kt.urls = append(kt.urls, e.Request.URL)
			if !strings.HasPrefix(e.Request.URL, base+"/") {
				return
			}
			path := strings.TrimPrefix(e.Request.URL, base)
			if i := strings.IndexAny(path, "?#"); i >= 0 {
				path = path[:i]
			}
			v, _ := e.Request.Headers["X-API-Key"].(string)
			kt.sent[path] = append(kt.sent[path], v)
		case *runtime.EventConsoleAPICalled:
			for _, a := range e.Args {
				kt.console = append(kt.console, string(a.Value)+" "+a.Description)
			}
		case *runtime.EventExceptionThrown:
			kt.console = append(kt.console, e.ExceptionDetails.Text)
		}
	}); err != nil {
		b.t.Fatal(err)
	}
	return kt
}

// lastSent is the X-API-Key of the last request to path.
func (kt *keyTraffic) lastSent(t *testing.T, path string) string {
	t.Helper()
	kt.mu.Lock()
	defer kt.mu.Unlock()
	v := kt.sent[path]
	if len(v) == 0 {
		t.Fatalf("no request to %s recorded", path)
	}
	return v[len(v)-1]
}

// typeKey replaces the API key field's content by typing key, key by key.
func (b *browser) typeKey(key string) {
	b.t.Helper()
	b.do("type the API key",
		chromedp.Click(chromedp.CSS("#api-key")),
		chromedp.KeyEvent("a", chromedp.KeyModifiers(kb.ModifierCtrl)),
		chromedp.KeyEvent(kb.Delete),
		chromedp.SendKeys(chromedp.CSS("#api-key"), key))
}

// checkKeyHidden fails if key is anywhere in the page's markup, its text,
// its URL or the field's value attribute.
func (b *browser) checkKeyHidden(key string) {
	b.t.Helper()
	page := eval[string](b, `document.documentElement.outerHTML + "\n" + document.body.innerText + "\n" + location.href + "\n" +
		String(document.getElementById("api-key").getAttribute("value"))`)
	if strings.Contains(page, key) {
		b.t.Error("the API key is in the page's HTML, text or URL")
	}
}

// TestPlaygroundKeys drives the playground against the real service run
// with API_KEYS_FILE: without a key Run shows a request for one and focuses
// the field; with the key typed, runs, sessions, uploads and downloads work;
// the key survives a reload of the tab (sessionStorage) and never appears in
// the page, its URLs, the console or the service's log; a key over its
// quota shows the Retry-After.
func TestPlaygroundKeys(t *testing.T) {
	chromiumPath(t)
	good, quota := randomKey(t), randomKey(t)
	file := filepath.Join(t.TempDir(), "keys.json")
	body := fmt.Sprintf(`{"keys": [{"name": "playground", "sha256": %q},
		{"name": "quota", "sha256": %q, "per_minute": 1}]}`, keys.Hash(good), keys.Hash(quota))
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	svc := startService(t, "API_KEYS_FILE="+file, "LOG_LEVEL=info")
	b := newBrowser(t, svc.URL)
	kt := watchKeyTraffic(b, svc.URL)
	const code = "print('你好，世界', 6 * 7)"
	const want = "你好，世界 42\n"
	stdout := `(document.querySelector("#results pre.stdout")||{}).textContent`

	t.Run("no-key-asks-for-one", func(t *testing.T) {
		b.t = t
		b.open("/")
		if v := eval[string](b, `document.getElementById("api-key").type`); v != "password" {
			t.Errorf("the API key field is of type %q, want password", v)
		}
		if lbl := eval[string](b, `document.getElementById("api-key").labels[0].textContent.trim()`); !strings.HasPrefix(lbl, "API key") {
			t.Errorf("the API key field's label %q", lbl)
		}
		b.setCode("#editor", code)
		b.do("click Run", chromedp.Click(chromedp.CSS("#run")))
		b.waitJS("the 401 message", `!!document.querySelector("#results .error-box")`, 30*time.Second)
		msg := eval[string](b, `document.querySelector("#results .error-box").textContent`)
		if !strings.Contains(msg, "unauthorized") || !strings.Contains(msg, "needs an API key") || !strings.Contains(msg, "API key field") {
			t.Errorf("401 message %q", msg)
		}
		if kt.lastSent(t, "/execute") != "" {
			t.Error("a key was sent before one was typed")
		}
		if id := eval[string](b, `document.activeElement.id`); id != "api-key" {
			t.Errorf("focus on %q after the 401, want the API key field", id)
		}
		if v := eval[string](b, `document.getElementById("api-key").getAttribute("aria-invalid") || ""`); v != "true" {
			t.Errorf("aria-invalid %q after the 401", v)
		}
		b.checkClean()
	})

	t.Run("unknown-key", func(t *testing.T) {
		b.t = t
		b.typeKey("not-a-key-0123456789")
		b.do("Enter in the field runs", chromedp.KeyEvent("\r"))
		b.waitJS("the 401 message for an unknown key", `((document.querySelector("#results .error-box")||{}).textContent || "").includes("did not accept this API key")`, 30*time.Second)
		if got := kt.lastSent(t, "/execute"); got != "not-a-key-0123456789" {
			t.Errorf("X-API-Key sent %q", got)
		}
		b.checkClean()
	})

	t.Run("key-typed-run-works", func(t *testing.T) {
		b.t = t
		b.typeKey(good)
		if v := eval[string](b, `document.getElementById("api-key").getAttribute("aria-invalid") || ""`); v != "" {
			t.Errorf("aria-invalid %q after typing", v)
		}
		b.do("click Run", chromedp.Click(chromedp.CSS("#run")))
		b.waitJS("the output", stdout+` === `+strconv.Quote(want), 60*time.Second)
		if got := kt.lastSent(t, "/execute"); got != good {
			t.Error("the typed key was not sent as X-API-Key with /execute")
		}
		// /validate as you type sends it too.
		b.setCode("#editor", "import os")
		b.waitJS("the validation underline", `!!document.querySelector("#editor .cm-lintRange-error")`, 10*time.Second)
		if got := kt.lastSent(t, "/validate"); got != good {
			t.Error("the key was not sent with /validate")
		}
		b.checkKeyHidden(good)
		b.checkClean()
	})

	t.Run("reload-keeps-key", func(t *testing.T) {
		b.t = t
		b.do("reload", chromedp.Reload())
		b.waitJS("the page to be ready", `document.body.dataset.ready === "1"`, 20*time.Second)
		if eval[string](b, `document.getElementById("api-key").value`) != good {
			t.Fatal("the key is not in the field after a reload")
		}
		if eval[string](b, `sessionStorage.getItem("pyexec.apiKey")`) != good {
			t.Error("the key is not in sessionStorage")
		}
		if n := eval[int](b, `localStorage.length`); n != 0 {
			t.Errorf("localStorage holds %d items", n)
		}
		b.setCode("#editor", code)
		b.ctrlEnter()
		b.waitJS("the output after the reload", stdout+` === `+strconv.Quote(want), 60*time.Second)
		b.checkKeyHidden(good)
		b.checkClean()
	})

	t.Run("session-with-key", func(t *testing.T) {
		b.t = t
		b.open("/")
		b.do("session mode on", chromedp.Click(chromedp.CSS("#session-mode")))
		b.waitJS("the session", `!document.getElementById("session").hidden && document.querySelector("#session-info code")`, 60*time.Second)
		csv := filepath.Join(t.TempDir(), "城市.csv")
		if err := os.WriteFile(csv, []byte("城市,人口\n北京,2189\n上海,2487\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		b.do("upload", chromedp.SetUploadFiles(chromedp.CSS("#upload"), []string{csv}))
		b.waitJS("the upload", `[...document.querySelectorAll("#session-files a")].some((a) => a.textContent === "城市.csv")`, 30*time.Second)
		b.setCode(`#cells .cell:nth-child(1) .cell-editor`, "import pandas as pd\nprint(pd.read_csv('城市.csv')['人口'].sum())")
		b.ctrlEnter()
		b.waitJS("the cell's output", `(document.querySelector("#cells .cell:nth-child(1) pre.stdout")||{}).textContent === "4676\n"`, 60*time.Second)
		// The file list's link: fetched with the key, saved from a blob.
		saved := filepath.Join(b.downloads, "城市.csv")
		_ = os.Remove(saved)
		b.do("download", chromedp.Click(chromedp.CSS(`#session-files a[download="城市.csv"]`)))
		var got []byte
		dockertest.WaitFor(t, "the downloaded file", 20*time.Second, func() bool {
			var err error
			got, err = os.ReadFile(saved)
			return err == nil && len(got) > 0
		})
		if !strings.HasPrefix(string(got), "城市,人口\n北京,2189") {
			t.Errorf("downloaded %q", got)
		}
		id := eval[string](b, `document.querySelector("#session-info code").title`)
		for _, p := range []string{"/sessions", "/sessions/" + id + "/execute", "/sessions/" + id + "/files/" + "%E5%9F%8E%E5%B8%82.csv"} {
			if kt.lastSent(t, p) != good {
				t.Errorf("the key was not sent with %s", p)
			}
		}
		b.do("end the session", chromedp.Click(chromedp.CSS("#end-session")))
		b.waitJS("session mode off", `document.getElementById("session").hidden`, 30*time.Second)
		if kt.lastSent(t, "/sessions/"+id) != good {
			t.Error("the key was not sent with DELETE /sessions/{id}")
		}
		b.checkKeyHidden(good)
		b.checkClean()
	})

	t.Run("quota-shows-retry-after", func(t *testing.T) {
		b.t = t
		b.open("/")
		b.typeKey(quota)
		b.setCode("#editor", code)
		b.do("click Run", chromedp.Click(chromedp.CSS("#run")))
		b.waitJS("the first run", stdout+` === `+strconv.Quote(want), 60*time.Second)
		b.do("click Run", chromedp.Click(chromedp.CSS("#run")))
		b.waitJS("the 429", `!!document.querySelector("#results .error-box")`, 30*time.Second)
		msg := eval[string](b, `document.querySelector("#results .error-box").textContent`)
		m := regexp.MustCompile(`Try again in (\d+) s\.`).FindStringSubmatch(msg)
		if !strings.Contains(msg, "quota_exceeded") || m == nil {
			t.Fatalf("429 message %q lacks quota_exceeded and the Retry-After", msg)
		}
		if s, _ := strconv.Atoi(m[1]); s < 1 || s > 60 {
			t.Errorf("Retry-After %d s, want 1 to 60", s)
		}
		b.checkKeyHidden(quota)
		b.checkClean()
	})

	t.Cleanup(func() {
		kt.mu.Lock()
		defer kt.mu.Unlock()
		for _, k := range []string{good, quota} {
			for _, u := range kt.urls {
				if strings.Contains(u, k) {
					t.Errorf("a key is in a requested URL: %s", u[:min(len(u), 40)])
				}
			}
			for _, c := range kt.console {
				if strings.Contains(c, k) {
					t.Error("a key was logged to the console")
				}
			}
			if strings.Contains(svc.Logs.String(), k) {
				t.Error("a key is in the service's log")
			}
		}
	})
}
