package web_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/internal/loadgen"
)

// screenshotsEnv names a directory where TestPlayground writes its
// screenshots (make screenshots sets it to web/screenshots); without it they
// go to the test's temporary directory.
const screenshotsEnv = "PYEXEC_SCREENSHOTS"

// chromiumPath finds Debian's chromium. Missing, the test fails under
// PYEXEC_REQUIRE_DOCKER=1 (make testdeps installs it) and skips otherwise.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if dockertest.Required() {
		t.Fatal("chromium not found; install it with: apt-get install -y chromium (make testdeps does)")
	}
	t.Skip("chromium not found")
	return ""
}

// service is the real pyexec binary on the real engine.
type service struct {
	*loadgen.Service
	owner string
}

// startService starts the binary with the test's settings, then extra
// (NAME=value; a later one wins).
func startService(t *testing.T, extra ...string) *service {
	t.Helper()
	cli := dockertest.Require(t)
	dockertest.Image(t, cli) // the binary then finds the image and builds nothing
	root, err := dockertest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := loadgen.Build(root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	port, err := loadgen.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	owner := dockertest.Owner(t)
	svc, err := loadgen.Start(bin, port, append([]string{
		"SERVICE_ID=" + owner,
		"BUILD_IMAGE=false",
		"MAX_WORKERS=3",
		"POOL_SIZE=2",
		"LOG_LEVEL=warn",
	}, extra...), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := svc.Stop(dockertest.Scale(30 * time.Second)); err != nil {
			t.Errorf("service stop: %v", err)
		}
		if t.Failed() {
			t.Logf("service output:\n%s", svc.Logs.String())
		}
		dockertest.AssertNoContainers(t, cli, owner)
	})
	if err := svc.WaitReady(dockertest.Scale(3*time.Minute), 1); err != nil {
		t.Fatal(err)
	}
	return &service{Service: svc, owner: owner}
}

// executions sums pyexec_executions_total over its labels.
func (s *service) executions(t *testing.T) float64 {
	t.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "pyexec_executions_total") {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		sum += v
		found = true
	}
	if !found {
		t.Fatal("pyexec_executions_total not in /metrics")
	}
	return sum
}

func (s *service) postJSON(t *testing.T, path string, body any) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(s.URL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// browser is one headless chromium tab on the service's page, with the
// page's requests and uncaught exceptions recorded.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string

	downloads string // where the browser saves downloads

	mu         sync.Mutex
	requests   []string
	exceptions []string
}

// recorder runs in the page before its own scripts: it records the
// Content-Security-Policy violations the page reports.
const recorder = `window.__csp = []; document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));`

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	path := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // chromium's sandbox refuses to run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		// Every host but the service's fails to resolve: a page that
		// needs the internet shows up broken.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx, base: base, downloads: t.TempDir()}
	if err := chromedp.Listen(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			b.requests = append(b.requests, e.Request.URL)
		case *runtime.EventExceptionThrown:
			msg := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
			b.exceptions = append(b.exceptions, msg)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: b.downloads}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: recorder}); err != nil {
		t.Fatal(err)
	}
	return b
}

// do runs actions, failing the test on error.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression into T (a promise is awaited).
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS waits until expr is truthy, at most limit (scaled).
func (b *browser) waitJS(what, expr string, limit time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(dockertest.Scale(limit))
	var err error
	for {
		_, err = chromedp.Run(b.ctx, chromedp.Poll[chromedp.Void](expr,
			chromedp.WithPollingTimeout(time.Until(deadline)), chromedp.WithPollingInterval(25*time.Millisecond)))
		// A poll that started as the page was replaced finds its
		// JavaScript context gone: poll again in the new one.
		if err == nil || !strings.Contains(err.Error(), "Cannot find context") || time.Now().After(deadline) {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if err != nil {
		b.mu.Lock()
		exc := append([]string(nil), b.exceptions...)
		b.mu.Unlock()
		b.t.Fatalf("waiting for %s (%s): %v\nexceptions: %q\nstatus: %q\nresults: %q\ncells: %q\nfocus: %q", what, expr, err, exc,
			eval[string](b, `document.getElementById("status").textContent`),
			eval[string](b, `(document.getElementById("results")||{}).textContent || ""`),
			eval[[]string](b, `[...document.querySelectorAll("#cells .cell")].map((c) => c.className + " " + c.querySelector(".prompt").textContent + " " + c.querySelector(".cell-out").textContent.slice(0, 300))`),
			eval[string](b, `(document.activeElement && document.activeElement.outerHTML.slice(0, 120)) || ""`))
	}
}

// open loads the page at path and waits until it has set itself up.
func (b *browser) open(path string) {
	b.t.Helper()
	// From a blank page, so that a link that differs only in its
	// fragment loads the page again.
	b.do("open "+path, chromedp.Navigate("about:blank"), chromedp.Navigate(b.base+path))
	b.waitJS("the page to be ready", `document.body.dataset.ready === "1"`, 20*time.Second)
}

// setCode replaces the code of the editor under sel as a user would: focus,
// select all, and type (inserted as one input, so the editor's bracket
// closing and auto-indent leave it as written).
func (b *browser) setCode(sel, code string) {
	b.t.Helper()
	b.do("set code",
		chromedp.Click(chromedp.CSS(sel+" .cm-content")),
		chromedp.KeyEvent("a", chromedp.KeyModifiers(kb.ModifierCtrl)),
		chromedp.KeyEvent(kb.Delete),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Call(ctx, input.InsertText, input.InsertTextParams{Text: code})
			return err
		}),
		chromedp.KeyEvent(kb.Escape), // close the completion list the typing opened
	)
	b.waitJS("the editor to hold the code",
		fmt.Sprintf(`[...document.querySelectorAll(%q)].map((l) => l.textContent).join("\n") === %q`, sel+" .cm-line", code),
		5*time.Second)
}

// checkDownload waits for the download link of an output file under sel,
// checks that it is a blob: URL, clicks it as a user would, and checks that
// the file saved under that name starts with prefix.
func (b *browser) checkDownload(sel, name, prefix string) {
	b.t.Helper()
	css := sel + ` .files a[download="` + name + `"]`
	b.waitJS("the download link of "+name, fmt.Sprintf(`document.querySelector(%q)`, css), 60*time.Second)
	if href := eval[string](b, fmt.Sprintf(`document.querySelector(%q).href`, css)); !strings.HasPrefix(href, "blob:") {
		b.t.Errorf("download link %q", href)
	}
	path := filepath.Join(b.downloads, name)
	_ = os.Remove(path)
	b.do("download", chromedp.Click(chromedp.CSS(css)))
	var got []byte
	dockertest.WaitFor(b.t, "the downloaded "+name, 10*time.Second, func() bool {
		var err error
		got, err = os.ReadFile(path)
		return err == nil && len(got) > 0
	})
	if !strings.HasPrefix(string(got), prefix) {
		b.t.Errorf("downloaded %s: %q, want it to start with %q", name, got, prefix)
	}
}

// ctrlEnter presses Ctrl+Enter in the focused editor.
func (b *browser) ctrlEnter() {
	b.t.Helper()
	b.do("Ctrl+Enter", chromedp.KeyEvent("\r", chromedp.KeyModifiers(kb.ModifierCtrl)))
}

// requestsSince returns the URLs requested after the n-th.
func (b *browser) requestsSince(n int) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.requests[n:]...)
}

func (b *browser) requestCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.requests)
}

// checkClean fails on uncaught exceptions and CSP violations so far.
func (b *browser) checkClean() {
	b.t.Helper()
	b.mu.Lock()
	exc := append([]string(nil), b.exceptions...)
	b.mu.Unlock()
	if len(exc) > 0 {
		b.t.Errorf("uncaught exceptions in the page: %q", exc)
	}
	if v := eval[[]string](b, `window.__csp || []`); len(v) > 0 {
		b.t.Errorf("Content-Security-Policy violations: %q", v)
	}
}

// screenshot writes the viewport, or with full the whole page, as PNG.
func (b *browser) screenshot(dir, name string, full bool) {
	b.t.Helper()
	shot := chromedp.CaptureScreenshot()
	if full {
		shot = chromedp.FullScreenshot(100) // quality 100: PNG
	}
	png, err := chromedp.Run(b.ctx, shot)
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", filepath.Join(dir, name))
}

// TestPlayground drives the playground in headless Chromium against the
// real service on the real engine: every point of "What it must show" of
// issue 13, in one browser, one page load after another.
func TestPlayground(t *testing.T) {
	chromiumPath(t) // fail or skip before starting anything
	svc := startService(t)
	b := newBrowser(t, svc.URL)
	shots := os.Getenv(screenshotsEnv)
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	t.Run("headers", func(t *testing.T) {
		resp, err := http.Get(svc.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("CSP %q lacks %q", csp, want)
			}
		}
		for _, bad := range []string{"unsafe-eval", "script-src 'self' 'unsafe-inline'", "*"} {
			if strings.Contains(csp, bad) {
				t.Errorf("CSP %q allows %q", csp, bad)
			}
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("X-Content-Type-Options %q", got)
		}
		if got := resp.Header.Get("Referrer-Policy"); got != "no-referrer" {
			t.Errorf("Referrer-Policy %q", got)
		}
	})

	t.Run("offline", func(t *testing.T) {
		b.t = t
		n := b.requestCount()
		b.open("/")
		reqs := b.requestsSince(n)
		if len(reqs) < 3 {
			t.Fatalf("only %d requests recorded: %q", len(reqs), reqs)
		}
		if ext := externalRequests(svc.URL, reqs); len(ext) > 0 {
			t.Errorf("requests to other origins: %q", ext)
		}
		if title := eval[string](b, `document.title`); title == "" {
			t.Error("the page has no title")
		}
		b.checkClean()
	})

	t.Run("sine-template-ctrl-enter", func(t *testing.T) {
		b.t = t
		b.open("/")
		// chromedp's SetValue fires input and change, as a user's pick does.
		b.do("pick the template", chromedp.SetValue(chromedp.CSS("#template"), "line-chart"))
		b.waitJS("the template in the editor", `document.querySelector("#editor .cm-content").textContent.includes("Sine Wave")`, 5*time.Second)
		b.do("focus the editor", chromedp.Click(chromedp.CSS("#editor .cm-content")))
		b.ctrlEnter()
		b.waitJS("the chart", `(() => { const i = document.querySelector("#results img.chart-img"); return i && i.complete && i.naturalWidth > 0; })()`, 60*time.Second)
		size := eval[[]int](b, `(() => { const i = document.querySelector("#results img.chart-img"); return [i.naturalWidth, i.naturalHeight]; })()`)
		if len(size) != 2 || size[0] != 1000 || size[1] != 600 {
			t.Errorf("chart natural size %v, want 1000×600", size)
		}
		if src := eval[string](b, `document.querySelector("#results img.chart-img").getAttribute("src").slice(0, 22)`); src != "data:image/png;base64," {
			t.Errorf("chart src starts %q", src)
		}
		b.checkClean()
	})

	t.Run("share-link-run-on-load", func(t *testing.T) {
		b.t = t
		b.open("/?template=line-chart&run=1")
		b.waitJS("the chart run on load", `(() => { const i = document.querySelector("#results img.chart-img"); return i && i.complete && i.naturalWidth === 1000; })()`, 60*time.Second)
		// The fragment form carries the code itself.
		code := "print('shared ' + str(6 * 7))"
		b.open("/#code=" + base64URL(code) + "&run=1")
		b.waitJS("the shared code's output", `(document.querySelector("#results pre.stdout")||{}).textContent === "shared 42\n"`, 60*time.Second)
		// The Share button gives the link to edited code.
		edited := "print('edited ' + str(6 * 7))\n"
		b.setCode("#editor", edited)
		b.do("share", chromedp.Click(chromedp.CSS("#share")))
		b.waitJS("the link", `document.getElementById("share-url").value !== ""`, 5*time.Second)
		link := eval[string](b, `document.getElementById("share-url").value`)
		if want := svc.URL + "/#code=" + base64URL(edited); link != want {
			t.Errorf("share link %q, want %q", link, want)
		}
		b.open(strings.TrimPrefix(link, svc.URL) + "&run=1")
		b.waitJS("the shared link's output", `(document.querySelector("#results pre.stdout")||{}).textContent === "edited 42\n"`, 60*time.Second)
		b.checkClean()
	})

	t.Run("plotly", func(t *testing.T) {
		b.t = t
		b.open("/?template=plotly-line")
		b.do("run", chromedp.Click(chromedp.CSS("#run")))
		b.waitJS("the plotly graph", `document.querySelectorAll("#results .plotly-chart svg.main-svg .scatterlayer .trace").length >= 2`, 60*time.Second)
		if n := eval[int](b, `document.querySelectorAll("#results .plotly-chart .scatterlayer .trace path.js-line").length`); n < 2 {
			t.Errorf("%d drawn lines, want 2", n)
		}
		b.checkClean()
	})

	t.Run("dataframe", func(t *testing.T) {
		b.t = t
		b.open("/")
		b.setCode("#editor", "import numpy as np\nimport pandas as pd\n"+
			"df = pd.DataFrame({'city': ['Oslo', 'Lima', 'Pune'], 'temp_c': [4.5, np.nan, 27.9]}, index=['a', 'b', 'c'])\n"+
			"df.index.name = 'key'\ndf\n")
		b.ctrlEnter()
		b.waitJS("the table", `document.querySelector("#results table.dataframe")`, 60*time.Second)
		type table struct {
			Head  []string   `json:"head"`
			Types []string   `json:"types"`
			Index []string   `json:"index"`
			Rows  [][]string `json:"rows"`
			Cap   string     `json:"cap"`
		}
		got := eval[table](b, `(() => { const t = document.querySelector("#results table.dataframe");
			const txt = (n) => n.textContent;
			return { head: [...t.tHead.rows[0].cells].map(txt), types: [...t.tHead.rows[1].cells].map(txt),
			  index: [...t.tBodies[0].rows].map((r) => r.cells[0].textContent),
			  rows: [...t.tBodies[0].rows].map((r) => [...r.cells].slice(1).map(txt)), cap: t.caption.textContent }; })()`)
		want := table{
			Head:  []string{"key", "city", "temp_c"},
			Types: []string{"object", "object", "float64"},
			Index: []string{"a", "b", "c"},
			Rows:  [][]string{{"Oslo", "4.5"}, {"Lima", ""}, {"Pune", "27.9"}},
		}
		if fmt.Sprint(got.Head, got.Index, got.Rows) != fmt.Sprint(want.Head, want.Index, want.Rows) {
			t.Errorf("table head %q index %q rows %q; want %q %q %q", got.Head, got.Index, got.Rows, want.Head, want.Index, want.Rows)
		}
		if len(got.Types) != 3 || got.Types[2] != "float64" {
			t.Errorf("dtypes row %q", got.Types)
		}
		if !strings.Contains(got.Cap, "3 rows") {
			t.Errorf("caption %q lacks the row count", got.Cap)
		}
		b.checkClean()
	})

	t.Run("validate-as-you-type", func(t *testing.T) {
		b.t = t
		b.open("/")
		code, body := svc.postJSON(t, "/validate", map[string]string{"code": "import os"})
		var v struct {
			Errors []struct {
				Line    int    `json:"line"`
				Message string `json:"message"`
			} `json:"errors"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &v) != nil || len(v.Errors) == 0 || v.Errors[0].Line != 1 {
			t.Fatalf("/validate of import os: %d %s", code, body)
		}
		before := svc.executions(t)
		n := b.requestCount()
		b.do("clear the editor", chromedp.Click(chromedp.CSS("#editor .cm-content")),
			chromedp.KeyEvent("a", chromedp.KeyModifiers(kb.ModifierCtrl)), chromedp.KeyEvent(kb.Delete))
		b.do("type", chromedp.KeyEvent("import os"))
		typed := time.Now()
		b.waitJS("the underline", `(() => { const r = document.querySelector("#editor .cm-lintRange-error");
			return r && r.closest(".cm-line") === document.querySelector("#editor .cm-content .cm-line"); })()`, time.Second)
		t.Logf("underlined %v after the last key", time.Since(typed).Round(time.Millisecond))
		// The message on hover.
		box := eval[[]float64](b, `(() => { const r = document.querySelector("#editor .cm-lintRange-error").getBoundingClientRect();
			return [r.left + r.width / 2, r.top + r.height / 2]; })()`)
		b.do("hover", chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, box[0], box[1]))
		b.waitJS("the tooltip", fmt.Sprintf(`(() => { const t = document.querySelector(".cm-tooltip-lint"); return t && t.textContent.includes(%q); })()`, v.Errors[0].Message), 5*time.Second)
		for _, u := range b.requestsSince(n) {
			if strings.Contains(u, "/execute") {
				t.Errorf("typing ran the code: %s", u)
			}
		}
		if after := svc.executions(t); after != before {
			t.Errorf("executions went from %v to %v while typing", before, after)
		}
		b.checkClean()
	})

	t.Run("error-line", func(t *testing.T) {
		b.t = t
		b.open("/")
		b.setCode("#editor", "total = 0\nfor i in range(3):\n    total += i\nraise ValueError(f'bad total {total}')\nprint('not reached')\n")
		b.ctrlEnter()
		b.waitJS("the error", `document.querySelector("#results .error-box")`, 60*time.Second)
		head := eval[string](b, `document.querySelector("#results .error-head").textContent`)
		if !strings.Contains(head, "ValueError") || !strings.Contains(head, "bad total 3") {
			t.Errorf("error head %q", head)
		}
		line := eval[int](b, `[...document.querySelectorAll("#editor .cm-content .cm-line")].findIndex((l) => l.classList.contains("cm-run-error-line")) + 1`)
		if line != 4 {
			t.Errorf("highlighted line %d, want 4", line)
		}
		b.checkClean()
	})

	t.Run("untrusted-output-is-text", func(t *testing.T) {
		b.t = t
		b.open("/")
		payload := `<img src=x onerror="window.__pwned=1">`
		b.setCode("#editor", "import pandas as pd\nimport matplotlib.pyplot as plt\nimport plotly.graph_objects as go\n"+
			"p = '"+payload+"'\n"+
			"s = '<script>window.__pwned=2</script>'\n"+
			"plt.figure(); plt.title(s); plt.plot([1, 2]); plt.show()\n"+
			"fig = go.Figure(go.Bar(x=[p, 'b'], y=[1, 2], name=s)); fig.update_layout(title=s); fig.show()\n"+
			"print(p)\n"+
			"pd.DataFrame({p: [p, s]}, index=[s, p])\n")
		b.ctrlEnter()
		b.waitJS("the outputs", `document.querySelector("#results table.dataframe") && document.querySelector("#results .plotly-chart svg.main-svg .gtitle")`, 60*time.Second)
		b.do("give handlers time to fire", chromedp.Sleep(500*time.Millisecond))
		if pwned := eval[bool](b, `window.__pwned !== undefined`); pwned {
			t.Fatal("the payload ran")
		}
		cells := eval[[]string](b, `[...document.querySelectorAll("#results table.dataframe td, #results table.dataframe th")].map((c) => c.textContent)`)
		if !containsAll(cells, payload, "<script>window.__pwned=2</script>") {
			t.Errorf("table cells %q do not show the payloads as text", cells)
		}
		if n := eval[int](b, `document.querySelectorAll("#results img:not(.chart-img), #results script, #results iframe").length`); n != 0 {
			t.Errorf("%d elements made from output", n)
		}
		title := eval[string](b, `document.querySelector("#results .plotly-chart .gtitle").textContent`)
		if !strings.Contains(title, "window.__pwned=2") {
			t.Errorf("plotly title %q: the text of the title is not shown", title)
		}
		if out := eval[string](b, `document.querySelector("#results pre.stdout").textContent`); out != payload+"\n" {
			t.Errorf("stdout %q", out)
		}
		b.checkClean()
	})

	t.Run("session", func(t *testing.T) {
		b.t = t
		code, body := svc.postJSON(t, "/sessions", map[string]any{})
		if code == http.StatusCreated {
			var s struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(body, &s)
			req, _ := http.NewRequest(http.MethodDelete, svc.URL+"/sessions/"+s.ID, nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		} else {
			t.Fatalf("POST /sessions: %d %s (the sessions API of issue 12 is needed)", code, body)
		}
		b.open("/")
		b.do("session mode on", chromedp.Click(chromedp.CSS("#session-mode")))
		b.waitJS("the session", `!document.getElementById("session").hidden && document.querySelector("#session-info code") && document.querySelectorAll("#cells .cell").length === 1`, 60*time.Second)
		id := eval[string](b, `document.querySelector("#session-info code").title`)
		b.setCode(`#cells .cell:nth-child(1) .cell-editor`, "x = 41")
		b.ctrlEnter()
		b.waitJS("cell 1 to run", `document.querySelector("#cells .cell:nth-child(1) .prompt").textContent === "[1]"`, 60*time.Second)
		b.do("add a cell", chromedp.Click(chromedp.CSS("#add-cell")))
		b.setCode(`#cells .cell:nth-child(2) .cell-editor`, "x + 1")
		b.ctrlEnter()
		b.waitJS("42", `(document.querySelector("#cells .cell:nth-child(2) .result code")||{}).textContent === "42"`, 60*time.Second)
		if out := eval[string](b, `document.querySelector("#cells .cell:nth-child(1) .cell-out").textContent`); !strings.Contains(out, "success") {
			t.Errorf("cell 1 lost its output: %q", out)
		}

		// A CSV through the file picker, another dropped on the page.
		csv := filepath.Join(t.TempDir(), "cities.csv")
		if err := os.WriteFile(csv, []byte("city,pop\nOslo,709\nLima,10092\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		b.do("upload", chromedp.SetUploadFiles(chromedp.CSS("#upload"), []string{csv}))
		b.waitJS("the upload", `[...document.querySelectorAll("#session-files a")].some((a) => a.textContent === "cities.csv")`, 30*time.Second)
		b.do("drop", chromedp.Evaluate[chromedp.Void](`(() => { const dt = new DataTransfer();
			dt.items.add(new File(["k,v\na,1\n"], "dropped.csv", { type: "text/csv" }));
			document.body.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true })); })()`))
		b.waitJS("the dropped file", `[...document.querySelectorAll("#session-files a")].some((a) => a.textContent === "dropped.csv")`, 30*time.Second)
		b.do("add a cell", chromedp.Click(chromedp.CSS("#add-cell")))
		b.setCode(`#cells .cell:nth-child(3) .cell-editor`, "import pandas as pd\ndf = pd.read_csv('cities.csv')\ndf['pop'] = df['pop'] + x - 41 + len(pd.read_csv('dropped.csv'))\ndf")
		b.ctrlEnter()
		b.waitJS("the CSV's table", `document.querySelector("#cells .cell:nth-child(3) table.dataframe")`, 60*time.Second)
		rows := eval[[][]string](b, `[...document.querySelectorAll("#cells .cell:nth-child(3) table.dataframe tbody tr")].map((r) => [...r.cells].map((c) => c.textContent))`)
		if fmt.Sprint(rows) != fmt.Sprint([][]string{{"0", "Oslo", "710"}, {"1", "Lima", "10093"}}) {
			t.Errorf("CSV table rows %q", rows)
		}
		b.screenshot(shots, "playground-session.png", true)

		// An earlier cell run again: the session counts on.
		b.do("re-run cell 1", chromedp.Click(chromedp.CSS(`#cells .cell:nth-child(1) .run-cell`)))
		b.waitJS("cell 1 re-run", `document.querySelector("#cells .cell:nth-child(1) .prompt").textContent === "[4]"`, 60*time.Second)

		// A template with an input file: the file goes into the session and
		// the template's code into a new cell; what it writes under
		// outputs/ comes back as a download.
		// One change event (SetValue fires it): a second one would add a
		// second cell, and Ctrl+Enter would run that one.
		b.do("pick read-csv", chromedp.SetValue(chromedp.CSS("#template"), "read-csv"))
		b.waitJS("the template's cell", `document.querySelectorAll("#cells .cell").length === 4 && document.activeElement.closest(".cell:nth-child(4)")`, 30*time.Second)
		b.ctrlEnter()
		b.checkDownload("#cells .cell:nth-child(4)", "summary.csv", "region,")
		if n := eval[int](b, `document.querySelectorAll("#cells .cell").length`); n != 4 {
			t.Errorf("%d cells after picking one template, want 4", n)
		}

		// Stop: a running cell's Run button reads Stop; pressing it aborts
		// the request, the service interrupts the code, and the session
		// keeps its variables.
		b.do("add a cell", chromedp.Click(chromedp.CSS("#add-cell")))
		b.setCode(`#cells .cell:nth-child(5) .cell-editor`, "n = 0\nwhile True:\n    n += 1")
		b.ctrlEnter()
		b.waitJS("the Stop button", `document.querySelector("#cells .cell:nth-child(5) .run-cell").textContent === "Stop"`, 60*time.Second)
		time.Sleep(300 * time.Millisecond) // the loop runs
		b.do("stop", chromedp.Click(chromedp.CSS(`#cells .cell:nth-child(5) .run-cell`)))
		b.waitJS("the cell stopped", `document.querySelector("#cells .cell:nth-child(5) .cell-out").textContent.includes("KeyboardInterrupt") &&
			document.querySelector("#cells .cell:nth-child(5) .run-cell").textContent === "Run"`, 30*time.Second)
		b.do("add a cell", chromedp.Click(chromedp.CSS("#add-cell")))
		b.setCode(`#cells .cell:nth-child(6) .cell-editor`, "x + 1, n > 0")
		b.ctrlEnter()
		// Well before the loop's 30 s limit: the service stopped it.
		b.waitJS("the state after the stop", `(document.querySelector("#cells .cell:nth-child(6) .result code")||{}).textContent === "(42, True)"`, 10*time.Second)

		expires := eval[string](b, `document.querySelector("#session-info time").getAttribute("datetime")`)
		if at, err := time.Parse(time.RFC3339, expires); err != nil || at.Before(time.Now()) {
			t.Errorf("session expiry shown %q", expires)
		}
		b.do("end the session", chromedp.Click(chromedp.CSS("#end-session")))
		b.waitJS("session mode off", `document.getElementById("session").hidden && !document.getElementById("session-mode").checked`, 30*time.Second)
		resp, err := http.Get(svc.URL + "/sessions/" + id)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /sessions/%s after End session: %s, want 404", id, resp.Status)
		}
		b.checkClean()
	})

	t.Run("output-files", func(t *testing.T) {
		b.t = t
		b.open("/?template=read-csv&run=1")
		b.checkDownload("#results", "summary.csv", "region,")
		b.checkClean()
	})

	t.Run("layout", func(t *testing.T) {
		b.t = t
		for _, width := range []int64{1280, 390} {
			b.do("viewport", chromedp.EmulateViewport(width, 900))
			b.open("/?template=time-series&run=1")
			b.waitJS("the results", `document.querySelector("#results table.dataframe") && document.querySelector("#results img.chart-img")`, 60*time.Second)
			// Wide content scrolls in its own box; the page never does.
			b.do("settle", chromedp.Sleep(300*time.Millisecond))
			w := eval[[]int](b, `[document.documentElement.scrollWidth, document.documentElement.clientWidth, document.body.scrollWidth]`)
			if w[0] > w[1] || w[2] > w[1] {
				t.Errorf("at %d px the page scrolls horizontally: scrollWidth %d, body %d, clientWidth %d", width, w[0], w[2], w[1])
			}
			unlabelled := eval[[]string](b, `[...document.querySelectorAll("input, select, textarea, button, [contenteditable=true]")]
				.filter((e) => e.offsetParent !== null || e.type === "file")
				.filter((e) => !((e.labels && e.labels.length) || e.getAttribute("aria-label") || e.getAttribute("aria-labelledby") || (e.tagName === "BUTTON" && e.textContent.trim())))
				.map((e) => e.outerHTML.slice(0, 80))`)
			if len(unlabelled) > 0 {
				t.Errorf("controls without a label at %d px: %q", width, unlabelled)
			}
			if title := eval[string](b, `document.title`); title == "" {
				t.Error("no title")
			}
		}
		b.do("viewport", chromedp.EmulateViewport(1280, 900))
		b.checkClean()
	})

	t.Cleanup(func() {
		if ext := externalRequests(svc.URL, b.requestsSince(0)); len(ext) > 0 {
			t.Errorf("over the whole test, requests to other origins: %q", ext)
		}
	})

	t.Run("screenshots", func(t *testing.T) {
		b.t = t
		b.do("viewport", chromedp.EmulateViewport(1280, 900))
		// The README's picture: a chart and a table.
		b.open("/?template=time-series&run=1")
		b.waitJS("the chart and the table", `(() => { const i = document.querySelector("#results img.chart-img");
			return i && i.complete && i.naturalWidth > 0 && document.querySelector("#results table.dataframe"); })()`, 60*time.Second)
		b.do("viewport", chromedp.EmulateViewport(1280, 1000))
		b.screenshot(shots, "playground.png", false)
		b.do("viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
		b.open("/?template=time-series&run=1")
		b.waitJS("the chart and the table", `(() => { const i = document.querySelector("#results img.chart-img");
			return i && i.complete && i.naturalWidth > 0 && document.querySelector("#results table.dataframe"); })()`, 60*time.Second)
		b.do("scroll to the results", chromedp.Evaluate[chromedp.Void](`document.getElementById("results-title").scrollIntoView()`))
		b.screenshot(shots, "playground-390.png", false)
		b.do("viewport", chromedp.EmulateViewport(1280, 900))
		b.checkClean()
	})
}

// externalRequests are the URLs of reqs outside base's origin (data: and
// blob: URLs are the page's own).
func externalRequests(base string, reqs []string) []string {
	var out []string
	for _, u := range reqs {
		if !strings.HasPrefix(u, base+"/") && !strings.HasPrefix(u, "data:") && !strings.HasPrefix(u, "blob:") {
			out = append(out, u)
		}
	}
	return out
}

func base64URL(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func containsAll(list []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, s := range list {
			if s == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
