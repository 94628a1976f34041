package handlers

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/internal/keys"
	"github.com/pyexec/pyexec/internal/loadgen"
	"github.com/pyexec/pyexec/policy"
	"github.com/pyexec/pyexec/runner"
)

// sineCode is the seed spec's chart example, with a Chinese title.
const sineCode = `import matplotlib.pyplot as plt
import numpy as np

x = np.linspace(0, 10, 100)
y = np.sin(x)

plt.figure(figsize=(10, 6))
plt.plot(x, y)
plt.title('正弦波 Sine Wave')
plt.show()
print("图表完成")
`

// mcpRouter is the real router (sessions on) over the real runner and
// engine, with mod applied to its Options; cleanup closes the runner and
// asserts no container remains.
func mcpRouter(t *testing.T, mod func(*Options)) (http.Handler, *runner.Runner) {
	t.Helper()
	cli := dockertest.Require(t)
	owner := dockertest.Owner(t)
	rules := policy.Default()
	rn, err := runner.New(cli, runner.Options{Image: dockertest.Image(t, cli), Owner: owner, Policy: &rules, PoolSize: 1, MaxSessions: 4})
	if err != nil {
		t.Fatal(err)
	}
	rn.Start(t.Context())
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	o := Options{
		Runner: rn, Sessions: rn, Logger: log, DefaultTimeout: 30 * time.Second, MaxTimeout: 60 * time.Second,
		MaxInputFiles: DefaultMaxInputFiles, MaxInputBytes: DefaultMaxInputBytes,
	}
	if mod != nil {
		mod(&o)
	}
	h := New(o)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := rn.Close(ctx); err != nil {
			t.Error(err)
		}
		dockertest.AssertNoContainers(t, cli, owner)
	})
	return h, rn
}

// headerTransport adds headers to every request (an API key, a request ID).
type headerTransport struct {
	header http.Header
	base   http.RoundTripper
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.header {
		r.Header[k] = v
	}
	return h.base.RoundTrip(r)
}

// connectHTTP connects the SDK's client to url (/mcp) with header on every
// request.
func connectHTTP(t *testing.T, url string, header http.Header) (*mcp.ClientSession, error) {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: headerTransport{header: header, base: tr}}
	c := mcp.NewClient(&mcp.Implementation{Name: "pyexec-test", Version: "1"}, nil)
	cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc}, nil)
	if err == nil {
		t.Cleanup(func() { _ = cs.Close() })
	}
	return cs, err
}

func callTool(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), dockertest.Scale(3*time.Minute))
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: protocol error: %v", name, err)
	}
	return res
}

// textOf joins the text content of res.
func textOf(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func imagesOf(res *mcp.CallToolResult) []*mcp.ImageContent {
	var out []*mcp.ImageContent
	for _, c := range res.Content {
		if ic, ok := c.(*mcp.ImageContent); ok {
			out = append(out, ic)
		}
	}
	return out
}

// structuredAs decodes res's structured content into a T.
func structuredAs[T any](t *testing.T, res *mcp.CallToolResult) T {
	t.Helper()
	var v T
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("structured content %s: %v", b, err)
	}
	return v
}

// mcpExecuted is what the tests read of execute_python's structured
// content (the REST body's shape).
type mcpExecuted struct {
	Status string `json:"status"`
	Output struct {
		Stdout string `json:"stdout"`
		Charts []struct {
			Type   string          `json:"type"`
			Format string          `json:"format"`
			Data   json.RawMessage `json:"data"`
			Width  int             `json:"width"`
			Height int             `json:"height"`
		} `json:"charts"`
		DataFrames []struct {
			Name  string  `json:"name"`
			Shape []int64 `json:"shape"`
		} `json:"dataframes"`
		Variables map[string]struct {
			Type string `json:"type"`
			Repr string `json:"repr"`
		} `json:"variables"`
		Files []struct {
			Name    string `json:"name"`
			Content []byte `json:"content"`
		} `json:"files"`
	} `json:"output"`
	Error *struct {
		Type      string `json:"type"`
		Traceback string `json:"traceback"`
	} `json:"error"`
	RequestID string `json:"request_id"`
	Session   *struct {
		ID         string `json:"id"`
		Executions int64  `json:"executions"`
	} `json:"session"`
}

type mcpErrored struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	RetryAfter int `json:"retry_after"`
}

// mcpScenario is the test body shared by both transports: the tools and
// their schemas, a chart as a PNG image, an exception with its traceback,
// state across calls in a session, validation, templates, input and output
// files, a DataFrame, and refused arguments.
func mcpScenario(t *testing.T, cs *mcp.ClientSession) {
	ctx := t.Context()

	t.Run("tools", func(t *testing.T) {
		list, err := cs.ListTools(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tool := range list.Tools {
			names = append(names, tool.Name)
			schema, _ := json.Marshal(tool.InputSchema)
			var s struct {
				Type       string                     `json:"type"`
				Properties map[string]json.RawMessage `json:"properties"`
				Required   []string                   `json:"required"`
			}
			if err := json.Unmarshal(schema, &s); err != nil || s.Type != "object" {
				t.Errorf("%s: input schema %s is not an object schema", tool.Name, schema)
			}
			if tool.Description == "" {
				t.Errorf("%s: no description", tool.Name)
			}
			if tool.Name == toolExecute {
				for _, p := range []string{"code", "timeout", "session_id", "files", "chart_format"} {
					if _, ok := s.Properties[p]; !ok {
						t.Errorf("execute_python's schema lacks %q: %s", p, schema)
					}
				}
				if !slices.Equal(s.Required, []string{"code"}) {
					t.Errorf("execute_python requires %v, want [code]", s.Required)
				}
			}
		}
		slices.Sort(names)
		want := []string{toolCloseSession, toolCreateSession, toolExecute, toolTemplates, toolValidate}
		if !slices.Equal(names, want) {
			t.Errorf("tools %v, want %v", names, want)
		}
	})

	t.Run("chart", func(t *testing.T) {
		res := callTool(t, cs, toolExecute, map[string]any{"code": sineCode})
		if res.IsError {
			t.Fatalf("IsError: %s", textOf(res))
		}
		imgs := imagesOf(res)
		if len(imgs) != 1 {
			t.Fatalf("%d images, want 1; text: %s", len(imgs), textOf(res))
		}
		if imgs[0].MIMEType != "image/png" {
			t.Errorf("MIME type %q", imgs[0].MIMEType)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(imgs[0].Data))
		if err != nil {
			t.Fatalf("image does not decode as PNG: %v", err)
		}
		if cfg.Width != 1000 || cfg.Height != 600 {
			t.Errorf("PNG is %dx%d, want 1000x600", cfg.Width, cfg.Height)
		}
		if _, err := png.Decode(bytes.NewReader(imgs[0].Data)); err != nil {
			t.Errorf("PNG pixels: %v", err)
		}
		if txt := textOf(res); !strings.Contains(txt, "图表完成") || strings.Contains(txt, "iVBOR") {
			t.Errorf("text %q: want the stdout and no base64", txt)
		}
		body := structuredAs[mcpExecuted](t, res)
		if body.Status != runner.StatusSuccess || len(body.Output.Charts) != 1 {
			t.Fatalf("structured: %+v", body)
		}
		c := body.Output.Charts[0]
		if c.Format != "png" || c.Width != 1000 || c.Height != 600 || string(c.Data) != "null" {
			t.Errorf("structured chart %s %dx%d data %.40s: want png 1000x600, data null (it is the image)", c.Format, c.Width, c.Height, c.Data)
		}
	})

	t.Run("svg", func(t *testing.T) {
		res := callTool(t, cs, toolExecute, map[string]any{"code": sineCode, "chart_format": "svg"})
		imgs := imagesOf(res)
		if res.IsError || len(imgs) != 1 {
			t.Fatalf("IsError %v, %d images: %s", res.IsError, len(imgs), textOf(res))
		}
		if imgs[0].MIMEType != "image/svg+xml" || !bytes.Contains(imgs[0].Data, []byte("<svg")) {
			t.Errorf("svg chart: %s %.80q", imgs[0].MIMEType, imgs[0].Data)
		}
	})

	t.Run("exception", func(t *testing.T) {
		res := callTool(t, cs, toolExecute, map[string]any{"code": "print('之前')\n1/0\n"})
		if !res.IsError {
			t.Fatalf("1/0 is not an error result: %s", textOf(res))
		}
		txt := textOf(res)
		for _, want := range []string{"之前", "Traceback", "ZeroDivisionError", "line 2"} {
			if !strings.Contains(txt, want) {
				t.Errorf("text lacks %q:\n%s", want, txt)
			}
		}
		body := structuredAs[mcpExecuted](t, res)
		if body.Status != runner.StatusError || body.Error == nil || body.Error.Type != "ZeroDivisionError" {
			t.Errorf("structured: %+v", body)
		}
	})

	t.Run("session", func(t *testing.T) {
		res := callTool(t, cs, toolCreateSession, map[string]any{"timeout": 20})
		if res.IsError {
			t.Fatalf("create_session: %s", textOf(res))
		}
		created := structuredAs[sessionCreated](t, res)
		if created.ID == "" || created.Timeout != 20 || !strings.Contains(textOf(res), created.ID) {
			t.Fatalf("create_session: %+v, text %q", created, textOf(res))
		}
		res = callTool(t, cs, toolExecute, map[string]any{"code": "x = 41\n城市 = '北京'", "session_id": created.ID})
		if res.IsError {
			t.Fatalf("x = 41: %s", textOf(res))
		}
		res = callTool(t, cs, toolExecute, map[string]any{"code": "print(x + 1, 城市)", "session_id": created.ID})
		if res.IsError {
			t.Fatalf("print(x + 1): %s", textOf(res))
		}
		body := structuredAs[mcpExecuted](t, res)
		if body.Output.Stdout != "42 北京\n" || !strings.HasPrefix(textOf(res), "42 北京\n") {
			t.Errorf("stdout %q, text %q: want 42 北京", body.Output.Stdout, textOf(res))
		}
		if body.Session == nil || body.Session.ID != created.ID || body.Session.Executions != 2 {
			t.Errorf("session of the cell: %+v", body.Session)
		}
		res = callTool(t, cs, toolCloseSession, map[string]any{"session_id": created.ID})
		if res.IsError {
			t.Fatalf("close_session: %s", textOf(res))
		}
		res = callTool(t, cs, toolExecute, map[string]any{"code": "print(x)", "session_id": created.ID})
		if e := structuredAs[mcpErrored](t, res); !res.IsError || e.Error.Code != "session_not_found" {
			t.Errorf("closed session: IsError %v, %+v", res.IsError, e)
		}
	})

	t.Run("validate", func(t *testing.T) {
		res := callTool(t, cs, toolValidate, map[string]any{"code": "import subprocess\nsubprocess.run(['ls'])\n"})
		v := structuredAs[validateResponse](t, res)
		if res.IsError || v.Valid || len(v.Errors) == 0 || !strings.Contains(textOf(res), "subprocess") {
			t.Errorf("forbidden import: IsError %v, %+v, text %q", res.IsError, v, textOf(res))
		}
		res = callTool(t, cs, toolValidate, map[string]any{"code": "print('你好')"})
		if v := structuredAs[validateResponse](t, res); res.IsError || !v.Valid {
			t.Errorf("valid code: %+v", v)
		}
	})

	t.Run("templates", func(t *testing.T) {
		res := callTool(t, cs, toolTemplates, nil)
		all := structuredAs[templatesBody](t, res)
		if res.IsError || len(all.Templates) == 0 || !strings.Contains(textOf(res), all.Templates[0].ID) {
			t.Fatalf("list_templates: %s", textOf(res))
		}
		id := all.Templates[0].ID
		res = callTool(t, cs, toolTemplates, map[string]any{"id": id})
		if res.IsError || !strings.Contains(textOf(res), all.Templates[0].Code) {
			t.Errorf("list_templates %s: %s", id, textOf(res))
		}
	})

	t.Run("files and dataframe", func(t *testing.T) {
		csv := "城市,人口\n北京,2189\n上海,2487\n"
		code := "import pandas as pd\ndf = pd.read_csv('数据.csv')\nprint(df['人口'].sum())\n" +
			"df.to_csv('outputs/结果.csv', index=False)\ndf\n"
		res := callTool(t, cs, toolExecute, map[string]any{"code": code, "files": []map[string]any{
			{"name": "数据.csv", "content": base64.StdEncoding.EncodeToString([]byte(csv))},
		}})
		if res.IsError {
			t.Fatalf("IsError: %s", textOf(res))
		}
		body := structuredAs[mcpExecuted](t, res)
		if body.Output.Stdout != "4676\n" {
			t.Errorf("stdout %q", body.Output.Stdout)
		}
		if len(body.Output.DataFrames) == 0 || !slices.Equal(body.Output.DataFrames[0].Shape, []int64{2, 2}) {
			t.Errorf("dataframes: %+v", body.Output.DataFrames)
		}
		if len(body.Output.Files) != 1 || body.Output.Files[0].Name != "结果.csv" || string(body.Output.Files[0].Content) != csv {
			t.Errorf("output files: %+v", body.Output.Files)
		}
		txt := textOf(res)
		if !strings.Contains(txt, "结果.csv") || !strings.Contains(txt, "北京") || strings.Contains(txt, base64.StdEncoding.EncodeToString([]byte(csv))) {
			t.Errorf("text: want the file listed, the rows shown, no base64:\n%s", txt)
		}
	})

	t.Run("refused arguments", func(t *testing.T) {
		for _, tc := range []struct {
			args map[string]any
			code string // our code; "" for the SDK's schema check
		}{
			{map[string]any{"code": "print(1)", "files": []map[string]any{{"name": "../etc/x", "content": "aGk="}}}, "invalid_file_name"},
			{map[string]any{"code": "print(1)", "files": []map[string]any{{"name": "a.txt", "content": "不是base64"}}}, "invalid_file_content"},
			{map[string]any{"code": "print(1)", "timeout": 3600}, "invalid_timeout"},
			{map[string]any{"code": "print(1)", "session_id": "没有这个会话"}, "session_not_found"},
			{map[string]any{"code": "print(1)", "chart_format": "gif"}, ""},
			{map[string]any{"code": "print(1)", "timeout": 0}, ""},
			{map[string]any{"timeout": 1}, ""},
		} {
			res := callTool(t, cs, toolExecute, tc.args)
			if !res.IsError {
				t.Errorf("%v: not an error result: %s", tc.args, textOf(res))
				continue
			}
			if tc.code != "" {
				if e := structuredAs[mcpErrored](t, res); e.Error.Code != tc.code || !strings.HasPrefix(textOf(res), tc.code+": ") {
					t.Errorf("%v: %+v, text %q; want code %s", tc.args, e, textOf(res), tc.code)
				}
			}
		}
	})
}

// TestMCPHTTP runs the scenario with the SDK's client against /mcp of the
// real router, runner and engine; the tools see the HTTP request's context
// (its request ID), and a client that goes away ends its execution.
func TestMCPHTTP(t *testing.T) {
	h, rn := mcpRouter(t, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	cs, err := connectHTTP(t, srv.URL+"/mcp", http.Header{"X-Request-Id": {"mcp-test-ctx-7"}})
	if err != nil {
		t.Fatal(err)
	}
	mcpScenario(t, cs)

	t.Run("request context", func(t *testing.T) {
		res := callTool(t, cs, toolExecute, map[string]any{"code": "print(1)"})
		if body := structuredAs[mcpExecuted](t, res); body.RequestID != "mcp-test-ctx-7" {
			t.Errorf("request_id %q: the tool did not see the HTTP request's context", body.RequestID)
		}
	})

	// A client that goes away ends its execution, with the SDK's client
	// (the newest protocol) and with a plain POST of an older protocol
	// version, whose tool calls the SDK detaches from the request.
	sleeper := map[string]any{"code": "import time\nprint('开始', flush=True)\ntime.sleep(45)", "timeout": 55}
	goneAway := func(t *testing.T, call func(ctx context.Context) error) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- call(ctx) }()
		waitFor(t, dockertest.Scale(30*time.Second), func() bool { return rn.Stats().Running > 0 })
		time.Sleep(time.Second) // the code is sleeping now
		cancel()
		start := time.Now()
		if err := <-done; err == nil {
			t.Error("the call succeeded after its context was cancelled")
		}
		waitFor(t, dockertest.Scale(20*time.Second), func() bool { return rn.Stats().Running == 0 })
		t.Logf("execution ended %v after the client went away", time.Since(start).Round(time.Millisecond))
	}
	t.Run("client goes away", func(t *testing.T) {
		goneAway(t, func(ctx context.Context) error {
			_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: toolExecute, Arguments: sleeper})
			return err
		})
	})
	t.Run("plain POST goes away", func(t *testing.T) {
		goneAway(t, func(ctx context.Context) error {
			resp, err := mcpPost(ctx, srv.URL+"/mcp", "2025-06-18", toolExecute, sleeper)
			if err == nil {
				resp.Body.Close()
			}
			return err
		})
	})

	t.Run("plain POST", func(t *testing.T) {
		// What the README's curl example does: one tools/call, no
		// initialize, a JSON answer.
		resp, err := mcpPost(t.Context(), srv.URL+"/mcp", "", toolValidate, map[string]any{"code": "import socket"})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var rpc struct {
			Result struct {
				IsError           bool             `json:"isError"`
				StructuredContent validateResponse `json:"structuredContent"`
			} `json:"result"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&rpc); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" ||
			rpc.Result.IsError || rpc.Result.StructuredContent.Valid || rpc.Result.StructuredContent.RequestID == "" {
			t.Errorf("%d %s: %+v", resp.StatusCode, resp.Header.Get("Content-Type"), rpc)
		}
	})
}

// mcpPost POSTs one tools/call to url as curl would, with the
// MCP-Protocol-Version header when version is set.
func mcpPost(ctx context.Context, url, version, tool string, args map[string]any) (*http.Response, error) {
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call",
		"params": map[string]any{"name": tool, "arguments": args}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if version != "" {
		req.Header.Set("MCP-Protocol-Version", version)
	}
	return http.DefaultClient.Do(req)
}

func waitFor(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMCPStdio runs the scenario over `pyexec -mcp-stdio`: the real binary,
// built here, started by the SDK's CommandTransport on the real engine. Its
// stdout carries only MCP (the client would fail on anything else), its
// logs are on stderr, and closing stdin stops it with no container left.
func TestMCPStdio(t *testing.T) {
	cli := dockertest.Require(t)
	dockertest.Image(t, cli) // the binary finds the image and builds nothing
	root, err := dockertest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	bin, err := loadgen.Build(root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("go build: %v", time.Since(start).Round(time.Millisecond))
	owner := dockertest.Owner(t)
	cmd := exec.Command(bin, "-mcp-stdio")
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "API_KEYS_FILE=") }),
		"SERVICE_ID="+owner, "POOL_SIZE=1", "MAX_WORKERS=2", "MAX_SESSIONS=4", "BUILD_IMAGE=false", "LOG_LEVEL=info")
	var stderr loadgen.SyncBuffer
	cmd.Stderr = &stderr
	c := mcp.NewClient(&mcp.Implementation{Name: "pyexec-test", Version: "1"}, nil)
	cs, err := c.Connect(t.Context(), &mcp.CommandTransport{Command: cmd, TerminateDuration: dockertest.Scale(90 * time.Second)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = cs.Close()
		}
		if t.Failed() {
			t.Logf("pyexec stderr:\n%s", stderr.String())
		}
		dockertest.AssertNoContainers(t, cli, owner)
	})
	mcpScenario(t, cs)

	closed = true
	start = time.Now()
	if err := cs.Close(); err != nil { // closes stdin; waits for the exit
		t.Errorf("pyexec -mcp-stdio did not exit cleanly after stdin closed: %v", err)
	}
	t.Logf("exit after stdin closed: %v", time.Since(start).Round(time.Millisecond))
	logs := stderr.String()
	if !strings.Contains(logs, `"msg":"mcp tool call"`) || !strings.Contains(logs, `"tool":"execute_python"`) || !strings.Contains(logs, `"msg":"stopped"`) {
		t.Errorf("stderr lacks the tool calls' log lines or the stop:\n%s", logs)
	}
}

// TestMCPKeys checks /mcp with API keys configured: no key or an unknown
// key is a 401 before any MCP, a key's session is not another key's, and a
// key over its quota gets an error result with retry_after.
func TestMCPKeys(t *testing.T) {
	set, err := keys.Parse([]byte(`{"keys": [
		{"name": "team-a", "sha256": "` + keys.Hash("key-a-密钥-0123456789") + `", "per_minute": 3, "max_sessions": 1},
		{"name": "team-b", "sha256": "` + keys.Hash("key-b-0123456789") + `"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := mcpRouter(t, func(o *Options) { o.Keys = keys.NewStatic(set) })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}`
	for _, key := range []string{"", "not-a-key"} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/mcp", strings.NewReader(initialize))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body errorBody
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || body.Error.Code != "unauthorized" {
			t.Errorf("key %q: %d %+v, want 401 unauthorized", key, resp.StatusCode, body)
		}
	}
	if _, err := connectHTTP(t, srv.URL+"/mcp", nil); err == nil {
		t.Error("the SDK's client connected without a key")
	}

	a, err := connectHTTP(t, srv.URL+"/mcp", http.Header{"Authorization": {"Bearer key-a-密钥-0123456789"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := connectHTTP(t, srv.URL+"/mcp", http.Header{"X-Api-Key": {"key-b-0123456789"}})
	if err != nil {
		t.Fatal(err)
	}
	res := callTool(t, a, toolCreateSession, nil)
	if res.IsError {
		t.Fatalf("create_session: %s", textOf(res))
	}
	id := structuredAs[sessionCreated](t, res).ID
	res = callTool(t, a, toolCreateSession, nil)
	if e := structuredAs[mcpErrored](t, res); !res.IsError || e.Error.Code != keys.CodeTooManySessions {
		t.Errorf("second session of team-a (max_sessions 1): %+v", e)
	}
	res = callTool(t, b, toolExecute, map[string]any{"code": "print(1)", "session_id": id})
	if e := structuredAs[mcpErrored](t, res); !res.IsError || e.Error.Code != "session_not_found" {
		t.Errorf("team-b in team-a's session: %+v", e)
	}
	for i := range 3 {
		res = callTool(t, a, toolExecute, map[string]any{"code": "print('第', " + string(rune('1'+i)) + ")", "session_id": id})
		if res.IsError {
			t.Fatalf("call %d of team-a: %s", i+1, textOf(res))
		}
	}
	res = callTool(t, a, toolExecute, map[string]any{"code": "print(4)"})
	e := structuredAs[mcpErrored](t, res)
	if !res.IsError || e.RetryAfter < 1 || !strings.Contains(textOf(res), "retry after") {
		t.Errorf("4th call of team-a in a minute (per_minute 3): IsError %v, %+v, text %q", res.IsError, e, textOf(res))
	}
	if res = callTool(t, b, toolExecute, map[string]any{"code": "print('乙')"}); res.IsError {
		t.Errorf("team-b while team-a is over its quota: %s", textOf(res))
	}
	if res = callTool(t, a, toolCloseSession, map[string]any{"session_id": id}); res.IsError {
		t.Errorf("close_session: %s", textOf(res))
	}
}
