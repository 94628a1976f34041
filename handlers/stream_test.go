package handlers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/runner"
)

// Streamed executions (stream.go) through the real router, runner, engine
// and image over HTTP.

// sseEvent is one event as a client reads it.
type sseEvent struct {
	name string
	data json.RawMessage
	at   time.Duration // since the request started
}

// streamCall posts body to url with Accept: text/event-stream. each sees
// every event as it arrives; returning false stops reading (and closes the
// connection). It returns the response and the events read.
func streamCall(t *testing.T, ctx context.Context, url string, body any, each func(sseEvent) bool) (*http.Response, []sseEvent) {
	t.Helper()
	b, _ := json.Marshal(body)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp, nil
	}
	var events []sseEvent
	var ev sseEvent
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 128<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if ev.data != nil {
				t.Errorf("event %q has two data lines", ev.name)
			}
			ev.data = json.RawMessage(strings.TrimPrefix(line, "data: "))
		case line == "":
			if ev.name == "" && ev.data == nil {
				continue
			}
			ev.at = time.Since(start)
			if !json.Valid(ev.data) {
				t.Errorf("event %q: data is not JSON: %s", ev.name, ev.data)
			}
			events = append(events, ev)
			if each != nil && !each(ev) {
				return resp, events
			}
			ev = sseEvent{}
		default:
			t.Errorf("unexpected line %q", line)
		}
	}
	return resp, events
}

// texts joins the text of the stdout (or stderr) events.
func texts(events []sseEvent, name string) string {
	var b strings.Builder
	for _, ev := range events {
		if ev.name == name {
			var d struct{ Text string }
			_ = json.Unmarshal(ev.data, &d)
			b.WriteString(d.Text)
		}
	}
	return b.String()
}

// streamServer is the real service (sessions on) over HTTP, with a warm
// pool and a 64 KiB cap on stdout and stderr.
func streamServer(t *testing.T) (*httptest.Server, *runner.Runner) {
	t.Helper()
	h, rn := realSessionRouter(t, func(o *runner.Options) {
		o.PoolSize = 2
		o.MaxStreamBytes = 64 << 10
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, rn
}

// waitPool waits until the warm pool is full again.
func waitPool(t *testing.T, rn *runner.Runner) {
	t.Helper()
	dockertest.WaitFor(t, "a full warm pool", time.Minute, func() bool {
		p := rn.Stats().Pool
		idle := 0
		if p != nil {
			for _, n := range p.Idle {
				idle += n
			}
		}
		return p != nil && idle >= p.Size
	})
}

// comparable is an answer as JSON with what varies between two runs of the
// same code zeroed: the timings, the request ID, and which sandbox served it
// (warm from the pool or cold, and its flavor).
func comparable(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%v: %s", err, data)
	}
	m["execution_time"], m["request_id"] = 0, ""
	res, _ := m["resources"].(map[string]any)
	if res == nil {
		t.Fatalf("no resources in %s", data)
	}
	for _, k := range []string{"duration_ms", "cpu_time_ms", "peak_memory_bytes", "warm", "sandbox"} {
		res[k] = nil
	}
	if s, ok := m["session"].(map[string]any); ok {
		s["executions"], s["expires_at"] = nil, nil
	}
	return m
}

func TestStreamExecute(t *testing.T) {
	srv, rn := streamServer(t)
	ctx := t.Context()
	url := srv.URL + "/execute"
	// Warm the validator and the pool's flavors.
	if resp, _ := post(t, url, map[string]any{"code": "print(1)"}); resp.StatusCode != http.StatusOK {
		t.Fatalf("warm-up: %d", resp.StatusCode)
	}
	waitPool(t, rn)

	t.Run("as printed", func(t *testing.T) {
		code := "import time\nfor i in range(5): print(i, flush=True); time.sleep(0.5)"
		resp, events := streamCall(t, ctx, url, map[string]any{"code": code}, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		for k, want := range map[string]string{"Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s: %q, want %q", k, got, want)
			}
		}
		if resp.Header.Get("X-Request-ID") == "" {
			t.Error("no X-Request-ID")
		}
		var outs []sseEvent
		for _, ev := range events {
			if ev.name == "stdout" {
				outs = append(outs, ev)
			}
		}
		if len(outs) < 4 {
			t.Fatalf("%d stdout events, want one per print or so: %v", len(outs), events)
		}
		if limit := dockertest.Scale(300 * time.Millisecond); outs[0].at > limit {
			t.Errorf("first stdout event after %v, want within %v", outs[0].at, limit)
		}
		if spread := outs[len(outs)-1].at - outs[0].at; spread < 1500*time.Millisecond {
			t.Errorf("stdout events spread over %v, want about 2 s (not all at the end)", spread)
		}
		last := events[len(events)-1]
		if last.name != "result" {
			t.Fatalf("last event %q, want result", last.name)
		}
		var body executeResponse
		if err := json.Unmarshal(last.data, &body); err != nil {
			t.Fatal(err)
		}
		if body.Status != runner.StatusSuccess || body.Output.Stdout != "0\n1\n2\n3\n4\n" || texts(events, "stdout") != body.Output.Stdout {
			t.Errorf("result %s; streamed %q", last.data, texts(events, "stdout"))
		}
		t.Logf("first stdout event after %v, last after %v, result after %v", outs[0].at, outs[len(outs)-1].at, last.at)
	})

	t.Run("result equals the plain body", func(t *testing.T) {
		// (A warning's format differs between a cold and a warm data
		// sandbox; the code sets its own.)
		code := "import warnings\nimport pandas as pd\nimport matplotlib.pyplot as plt\n" +
			"warnings.formatwarning = lambda m, c, *a, **k: f'{c.__name__}: {m}\\n'\n" +
			"print('你好，世界')\nwarnings.warn('警告')\n" +
			"df = pd.DataFrame({'城市': ['北京', '上海'], 'n': [1, 2]})\n" +
			"plt.plot([1, 2, 3]); plt.title('销售额'); plt.show()\n" +
			"total = int(df.n.sum())\ndf"
		req := map[string]any{"code": code}
		presp, err := http.Post(url, "application/json", strings.NewReader(mustMarshal(t, req)))
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := io.ReadAll(presp.Body)
		presp.Body.Close()
		if presp.StatusCode != http.StatusOK || !strings.HasPrefix(presp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("plain call: %d %s", presp.StatusCode, presp.Header.Get("Content-Type"))
		}
		_, events := streamCall(t, ctx, url, req, nil)
		if len(events) == 0 || events[len(events)-1].name != "result" {
			t.Fatalf("events %v", events)
		}
		got, want := comparable(t, events[len(events)-1].data), comparable(t, plain)
		for _, d := range jsonDiff("", got, want) {
			t.Errorf("result event differs from the plain body: %s", d)
		}
		if want["status"] != runner.StatusSuccess {
			t.Errorf("the code did not run: %s", plain)
		}
		if !strings.Contains(texts(events, "stdout"), "你好，世界") || !strings.Contains(texts(events, "stderr"), "警告") {
			t.Errorf("streamed stdout %q stderr %q", texts(events, "stdout"), texts(events, "stderr"))
		}
	})

	t.Run("a chart per show", func(t *testing.T) {
		code := "import matplotlib.pyplot as plt\n" +
			"print('前')\nplt.plot([1, 2]); plt.title('第一张图'); plt.show()\n" +
			"print('中')\nplt.bar(['甲', '乙'], [3, 4]); plt.title('第二张图'); plt.show()\nprint('后')"
		_, events := streamCall(t, ctx, url, map[string]any{"code": code}, nil)
		var order []string
		var charts []json.RawMessage
		for _, ev := range events {
			switch ev.name {
			case "chart":
				charts = append(charts, ev.data)
				order = append(order, "chart")
			case "stdout":
				var d struct{ Text string }
				_ = json.Unmarshal(ev.data, &d)
				order = append(order, strings.TrimSpace(d.Text))
			default:
				order = append(order, ev.name)
			}
		}
		if len(charts) != 2 || events[len(events)-1].name != "result" {
			t.Fatalf("events %v, want two charts then the result", order)
		}
		if s := strings.Join(order, " "); !strings.HasPrefix(s, "前 chart") || !strings.Contains(s, "中 chart") {
			t.Errorf("order %s: each chart after what was printed before its show()", s)
		}
		var body executeResponse
		if err := json.Unmarshal(events[len(events)-1].data, &body); err != nil {
			t.Fatal(err)
		}
		if len(body.Output.Charts) != 2 {
			t.Fatalf("result has %d charts", len(body.Output.Charts))
		}
		for i, c := range charts {
			if want := normJSON(t, []byte(mustMarshal(t, body.Output.Charts[i]))); normJSON(t, c) != want {
				t.Errorf("chart event %d differs from output.charts[%d]", i, i)
			}
			var ch runner.Chart
			_ = json.Unmarshal(c, &ch)
			if ch.Type != "matplotlib" || ch.Format != "png" || ch.Error != "" || len(ch.Data) < 100 {
				t.Errorf("chart %d: %s %s %q (%d bytes)", i, ch.Type, ch.Format, ch.Error, len(ch.Data))
			}
		}
	})

	t.Run("stdout past the cap", func(t *testing.T) {
		code := "print('字' * 100000)\nprint('end')"
		_, events := streamCall(t, ctx, url, map[string]any{"code": code}, nil)
		if len(events) == 0 || events[len(events)-1].name != "result" {
			t.Fatalf("no result: %d events", len(events))
		}
		var body executeResponse
		if err := json.Unmarshal(events[len(events)-1].data, &body); err != nil {
			t.Fatal(err)
		}
		streamed := texts(events, "stdout")
		// The cap may cut a character, which becomes U+FFFD in both.
		if kept := strings.TrimSuffix(streamed, "\uFFFD"); !body.Output.StdoutTruncated || len(kept) > 64<<10 || len(kept) < 60<<10 ||
			streamed != body.Output.Stdout || strings.Contains(streamed, "end") {
			t.Errorf("streamed %d bytes, result %d bytes truncated=%v", len(streamed), len(body.Output.Stdout), body.Output.StdoutTruncated)
		}
	})

	t.Run("errors before the stream are plain JSON", func(t *testing.T) {
		for _, body := range []any{map[string]any{"code": 1}, map[string]any{"timeout": 5}} {
			resp, events := streamCall(t, ctx, url, body, nil)
			if resp.StatusCode != http.StatusUnprocessableEntity || resp.Header.Get("Content-Type") != "application/json" || events != nil {
				t.Errorf("%v: %d %s", body, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
		}
		resp, _ := streamCall(t, ctx, srv.URL+"/sessions/"+strings.Repeat("A", 43)+"/execute", map[string]any{"code": "1"}, nil)
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("unknown session: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})

	t.Run("disconnect ends the execution", func(t *testing.T) {
		waitPool(t, rn)
		removed := rn.Stats().ContainersRemoved
		code := "import time\nfor i in range(100): print(i, flush=True); time.sleep(0.1)"
		start := time.Now()
		_, events := streamCall(t, ctx, url, map[string]any{"code": code, "timeout": 30}, func(ev sseEvent) bool {
			return ev.name != "stdout" // hang up after the first output
		})
		if len(events) == 0 || events[len(events)-1].name != "stdout" {
			t.Fatalf("events %v", events)
		}
		dockertest.WaitFor(t, "the execution to end", 5*time.Second, func() bool { return rn.Stats().Running == 0 })
		rn.Wait()
		if took := time.Since(start); took > 8*time.Second {
			t.Errorf("the execution ran on for %v after the client left (the code takes 10 s)", took)
		}
		if got := rn.Stats().ContainersRemoved; got <= removed {
			t.Errorf("no container removed after the client left (%d, %d before)", got, removed)
		}
	})
}

func TestStreamSession(t *testing.T) {
	srv, _ := streamServer(t)
	ctx := t.Context()
	resp, created := post(t, srv.URL+"/sessions", map[string]any{})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %v", resp.StatusCode, created)
	}
	url := srv.URL + "/sessions/" + created["id"].(string) + "/execute"
	cell := func(code string) (sessionExecuteResponse, []sseEvent) {
		t.Helper()
		_, events := streamCall(t, ctx, url, map[string]any{"code": code}, nil)
		if len(events) == 0 || events[len(events)-1].name != "result" {
			t.Fatalf("cell %q: events %v", code, events)
		}
		var body sessionExecuteResponse
		if err := json.Unmarshal(events[len(events)-1].data, &body); err != nil {
			t.Fatal(err)
		}
		return body, events
	}

	body, events := cell("import time\nx = 41\nprint('第一格', flush=True)\ntime.sleep(1)\nprint('完')")
	outs := 0
	for _, ev := range events {
		if ev.name == "stdout" {
			outs++
		}
	}
	if body.Status != runner.StatusSuccess || body.Session == nil || texts(events, "stdout") != "第一格\n完\n" || outs < 2 {
		t.Errorf("streamed cell: %+v, %d stdout events %q", body, outs, texts(events, "stdout"))
	}
	// A plain cell sees the streamed cell's state.
	resp, plain := post(t, url, map[string]any{"code": "x += 1\nprint(x)"})
	if resp.StatusCode != http.StatusOK || plain["output"].(map[string]any)["stdout"] != "42\n" {
		t.Errorf("plain cell: %d %v", resp.StatusCode, plain)
	}
	body, events = cell("print(x)")
	if body.Output.Stdout != "42\n" || texts(events, "stdout") != "42\n" {
		t.Errorf("streamed cell after a plain one: %q / %q", body.Output.Stdout, texts(events, "stdout"))
	}

	// A client that leaves: as without streaming, the cell is interrupted
	// (a KeyboardInterrupt) instead of running on for its 10 s, and the
	// session stays usable with its state.
	_, events = streamCall(t, ctx, url, map[string]any{"code": "import time\nfor i in range(100): print(i, flush=True); time.sleep(0.1)"},
		func(ev sseEvent) bool { return ev.name != "stdout" })
	if len(events) == 0 {
		t.Fatal("no event before leaving")
	}
	resp, plain = post(t, url, map[string]any{"code": "print(i < 99, x)"})
	if resp.StatusCode != http.StatusOK || plain["output"].(map[string]any)["stdout"] != "True 42\n" {
		t.Errorf("after the client left: %d %v", resp.StatusCode, plain)
	}
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func normJSON(t *testing.T, data []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return mustMarshal(t, v)
}

// jsonDiff lists the paths where two decoded JSON values differ.
func jsonDiff(path string, a, b any) []string {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		var out []string
		for k := range am {
			out = append(out, jsonDiff(path+"."+k, am[k], bm[k])...)
		}
		for k := range bm {
			if _, ok := am[k]; !ok {
				out = append(out, path+"."+k+": missing in the first")
			}
		}
		return out
	}
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok && bok && len(as) == len(bs) {
		var out []string
		for i := range as {
			out = append(out, jsonDiff(fmt.Sprintf("%s[%d]", path, i), as[i], bs[i])...)
		}
		return out
	}
	ab, _ := json.Marshal(a)
	bb, _ := json.Marshal(b)
	if string(ab) != string(bb) {
		return []string{fmt.Sprintf("%s: %.200s != %.200s", path, ab, bb)}
	}
	return nil
}

// scriptedRunner sends scripted events through OnEvent, then answers.
type scriptedRunner struct {
	fakeRunner
	events []runner.Event
	pause  time.Duration // before answering
}

func (s *scriptedRunner) Run(ctx context.Context, req runner.Request) (runner.Result, error) {
	for _, ev := range s.events {
		if req.OnEvent == nil {
			return runner.Result{}, fmt.Errorf("no OnEvent on a streamed request")
		}
		req.OnEvent(ev)
	}
	select {
	case <-time.After(s.pause):
	case <-ctx.Done():
		return runner.Result{}, ctx.Err()
	}
	if s.err == nil && req.OnEvent == nil && len(s.events) > 0 {
		return runner.Result{}, fmt.Errorf("OnEvent on a plain request")
	}
	return s.res, s.err
}

func streamDo(h http.Handler, accept string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/execute", strings.NewReader(`{"code":"print(1)"}`))
	req.Header.Set("Content-Type", "application/json")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestStreamWriter(t *testing.T) {
	log := logrus.New()
	log.SetLevel(logrus.PanicLevel)
	router := func(s *scriptedRunner) http.Handler {
		return New(Options{Runner: s, Logger: log, DefaultTimeout: 30 * time.Second, MaxTimeout: newTestMaxTimeout})
	}
	ok := runner.Result{Status: runner.StatusSuccess, Stdout: "一\n", Outputs: runner.Outputs{Charts: []runner.Chart{}}}
	chart := &runner.Chart{Type: "matplotlib", Format: "png", Data: json.RawMessage(`"iVBORw0KGgo="`), Title: "图"}
	events := []runner.Event{{Kind: runner.EventStdout, Text: "一\n"}, {Kind: runner.EventChart, Chart: chart}, {Kind: runner.EventStderr, Text: "<e>"}}

	t.Run("events then result", func(t *testing.T) {
		rec := streamDo(router(&scriptedRunner{fakeRunner: fakeRunner{res: ok}, events: events}), "application/json, text/event-stream;q=0.9")
		want := "event: stdout\ndata: {\"text\":\"一\\n\"}\n\n" +
			"event: chart\ndata: {\"type\":\"matplotlib\",\"format\":\"png\",\"data\":\"iVBORw0KGgo=\",\"title\":\"图\"}\n\n" +
			"event: stderr\ndata: {\"text\":\"<e>\"}\n\nevent: result\ndata: {\"status\":\"success\""
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Body.String(), want) ||
			rec.Header().Get("Content-Type") != "text/event-stream; charset=utf-8" || rec.Header().Get("X-Accel-Buffering") != "no" {
			t.Errorf("%d %v\n%s", rec.Code, rec.Header(), rec.Body.String())
		}
		if !strings.HasSuffix(rec.Body.String(), "}\n\n") || strings.Count(rec.Body.String(), "event: result") != 1 {
			t.Errorf("body does not end with one result event:\n%s", rec.Body.String())
		}
	})

	t.Run("plain without the header", func(t *testing.T) {
		rec := streamDo(router(&scriptedRunner{fakeRunner: fakeRunner{res: ok}}), "application/json")
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || strings.Contains(rec.Body.String(), "event:") {
			t.Errorf("%d %s", rec.Code, rec.Body.String())
		}
	})

	t.Run("failure before any event", func(t *testing.T) {
		rec := streamDo(router(&scriptedRunner{fakeRunner: fakeRunner{err: runner.ErrEngineDown}}), "text/event-stream")
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Content-Type") != "application/json" ||
			!strings.Contains(rec.Body.String(), `"engine_unavailable"`) {
			t.Errorf("%d %s %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
		}
	})

	t.Run("failure after an event", func(t *testing.T) {
		rec := streamDo(router(&scriptedRunner{fakeRunner: fakeRunner{err: runner.ErrEngineDown}, events: events[:1]}), "text/event-stream")
		body := rec.Body.String()
		i := strings.Index(body, "event: error\ndata: ")
		if rec.Code != http.StatusOK || i < 0 || strings.Contains(body, "event: result") {
			t.Fatalf("%d\n%s", rec.Code, body)
		}
		var e streamError
		if err := json.Unmarshal([]byte(strings.TrimSpace(body[i+len("event: error\ndata: "):])), &e); err != nil ||
			e.Status != http.StatusServiceUnavailable || e.Error.Code != "engine_unavailable" || e.RequestID == "" {
			t.Errorf("error event %+v (%v)", e, err)
		}
	})

	t.Run("keepalive", func(t *testing.T) {
		defer func(d time.Duration) { sseKeepalive = d }(sseKeepalive)
		sseKeepalive = 30 * time.Millisecond
		rec := streamDo(router(&scriptedRunner{fakeRunner: fakeRunner{res: ok}, pause: 300 * time.Millisecond}), "text/event-stream")
		body := rec.Body.String()
		if rec.Code != http.StatusOK || !strings.HasPrefix(body, ": keepalive\n\n") || !strings.Contains(body, "event: result\n") {
			t.Errorf("%d\n%s", rec.Code, body)
		}
	})
}

func TestWantsStream(t *testing.T) {
	for accept, want := range map[string]bool{
		"text/event-stream":                    true,
		"Text/Event-Stream; charset=utf-8":     true,
		"application/json, text/event-stream":  true,
		"application/json":                     false,
		"*/*":                                  false,
		"":                                     false,
		"text/event-streams, application/json": false,
	} {
		r := httptest.NewRequest(http.MethodPost, "/execute", nil)
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		if got := wantsStream(r); got != want {
			t.Errorf("Accept %q: %v, want %v", accept, got, want)
		}
	}
}
