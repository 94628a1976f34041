package handlers

// The MCP server: pyexec's tools for LLM agents, over the Model Context
// Protocol (github.com/modelcontextprotocol/go-sdk). The same server serves
// POST /mcp (Streamable HTTP, through the router's middleware: request ID,
// request log, keys and quotas) and `pyexec -mcp-stdio` (stdio).
//
// Every tool goes through the REST path's own code: toRunRequest and
// inputFiles check the arguments, the runner and the SessionRunner run, and
// executeBody shapes the result; errors are mapped by writeError. What
// differs is the wrapping: a result is MCP content (text for stdout, stderr
// and tracebacks, an image per chart) plus structured content in the shape
// of the REST body, and a failed execution or a refused request is a tool
// result with IsError set, never a protocol error.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/handlers/templates"
	"github.com/pyexec/pyexec/internal/logctx"
	"github.com/pyexec/pyexec/policy"
	"github.com/pyexec/pyexec/runner"
)

// MCP tool names.
const (
	toolExecute       = "execute_python"
	toolValidate      = "validate_python"
	toolTemplates     = "list_templates"
	toolCreateSession = "create_session"
	toolCloseSession  = "close_session"
)

// mcpRPCOverhead is what a tools/call body may hold besides an /execute
// body: the JSON-RPC envelope and the tool's name.
const mcpRPCOverhead = 16 << 10

// Caps of the text an execution result shows the model; the whole data is
// in the structured content.
const (
	mcpTextVariables   = 50       // variables listed
	mcpTextReprRunes   = 200      // runes of a variable's repr
	mcpTextFrameRows   = 10       // rows of a DataFrame shown
	mcpTextFrameBytes  = 4 << 10  // bytes of a DataFrame's rows shown
	mcpTextFilesListed = 50       // output files listed
	mcpMaxSVGImage     = 16 << 20 // an SVG is always smaller (runner caps)
)

// executeInput is the arguments of execute_python.
type executeInput struct {
	Code string `json:"code" jsonschema:"Python 3 source to run as __main__. Charts shown with plt.show() come back as images; print() output as text."`
	// Timeout is a pointer: absent means the default (a session's own).
	Timeout   *float64    `json:"timeout,omitempty" jsonschema:"Time limit in seconds (default: the service's TIMEOUT_SECONDS, or the session's timeout; at most the service's or the API key's maximum)."`
	SessionID string      `json:"session_id,omitempty" jsonschema:"Run in this session (from create_session): variables, imports and files persist between calls. Omit for a fresh, single-use sandbox."`
	Files     []inputFile `json:"files,omitempty" jsonschema:"Input files written into the working directory before the code runs."`
	// ChartFormat is png (default) or svg.
	ChartFormat string `json:"chart_format,omitempty" jsonschema:"Format of matplotlib charts: png (default, returned as image/png content) or svg (returned as image/svg+xml content)."`
}

// inputFile is an input file of execute_python.
type inputFile struct {
	Name    string `json:"name" jsonschema:"A plain file name such as sales.csv (no directories)."`
	Content string `json:"content" jsonschema:"The file's bytes in standard base64 (with padding)."`
}

// validateInput is the arguments of validate_python.
type validateInput struct {
	Code string `json:"code" jsonschema:"Python 3 source to check for syntax errors and policy violations without running it."`
}

// templatesInput is the arguments of list_templates.
type templatesInput struct {
	ID string `json:"id,omitempty" jsonschema:"A template's id: return that template with its code. Omit to list all templates."`
}

// createSessionInput is the arguments of create_session.
type createSessionInput struct {
	Timeout *float64 `json:"timeout,omitempty" jsonschema:"Default time limit in seconds of the session's executions (default: the service's TIMEOUT_SECONDS)."`
}

// closeSessionInput is the arguments of close_session.
type closeSessionInput struct {
	SessionID string `json:"session_id" jsonschema:"The session to close (from create_session)."`
}

// NewMCPServer returns the MCP server with pyexec's tools over o, for a
// transport other than /mcp (pyexec -mcp-stdio serves it with
// mcp.StdioTransport). Its calls have no API key: they run under the
// service's own limits. o.Registerer is ignored (the HTTP router registers
// the metrics).
func NewMCPServer(o Options) *mcp.Server {
	if o.Logger == nil {
		o.Logger = logrus.StandardLogger()
	}
	o.Registerer = nil
	h := &handler{opts: o, metrics: newMetrics()}
	return h.mcpServer()
}

// mcpHandler is POST /mcp: the MCP server over Streamable HTTP.
//
// It is stateless (no Mcp-Session-Id) and answers application/json (a
// tool's result is one JSON-RPC response; curl works): every POST is one authenticated HTTP
// request whose context (request ID, logger, API key) the tool handlers
// see, since the SDK connects a stateless request's temporary MCP session
// with the request's context. A pyexec session is named by its session_id
// argument instead. The SDK detaches the handlers' contexts from the
// request's cancellation for protocol versions before 2026-07-28; the
// request's context is therefore also kept as a value (httpContextKey), so
// that a client that goes away cancels its execution, as on /execute.
func (h *handler) mcpHandler() http.Handler {
	srv := h.mcpServer()
	sh := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{
		Stateless:                    true,
		JSONResponse:                 true, // one JSON answer per POST: no server-to-client messages mid-call
		MaxRequestBodyBytes:          h.bodyLimit() + mcpRPCOverhead,
		PropagateRequestCancellation: true,
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), httpContextKey{}, r.Context())
		sh.ServeHTTP(w, r.WithContext(ctx))
	})
}

// httpContextKey holds the context of the /mcp HTTP request.
type httpContextKey struct{}

// mcpServer is the MCP server with the tools; the session tools only when
// sessions are on.
func (h *handler) mcpServer() *mcp.Server {
	srv := mcp.NewServer(&mcp.Implementation{Name: "pyexec", Title: "pyexec Python executor", Version: moduleVersion()}, &mcp.ServerOptions{
		Instructions: "Runs Python 3 in a sandbox with numpy, pandas, matplotlib, scipy, plotly and seaborn; no network. " +
			"Call execute_python with code; charts come back as images, print() output as text, DataFrames and variables " +
			"as structured content. For state that persists between calls, create_session first and pass its session_id.",
	})
	mcp.AddTool(srv, &mcp.Tool{
		Name:  toolExecute,
		Title: "Run Python",
		Description: "Run Python 3 code in an isolated sandbox (numpy, pandas, matplotlib, scipy, plotly, seaborn; no network) " +
			"and return its stdout and stderr as text, each matplotlib chart as an image, and DataFrames, variables and " +
			"files written under outputs/ as structured content. A Python exception, a timeout or a policy violation " +
			"is an error result carrying the traceback.",
		InputSchema: executeSchema(),
	}, mcpTool(h, toolExecute, h.mcpExecute))
	mcp.AddTool(srv, &mcp.Tool{
		Name:        toolValidate,
		Title:       "Check Python",
		Description: "Check Python code for syntax errors and for what the sandbox's policy forbids (e.g. subprocess, socket, eval), without running it.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true},
	}, mcpTool(h, toolValidate, h.mcpValidate))
	mcp.AddTool(srv, &mcp.Tool{
		Name:        toolTemplates,
		Title:       "List code templates",
		Description: "List example programs (charts, pandas, numpy); with an id, return that template's code, ready for execute_python.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true},
	}, mcpTool(h, toolTemplates, h.mcpTemplates))
	if h.opts.Sessions != nil {
		mcp.AddTool(srv, &mcp.Tool{
			Name:  toolCreateSession,
			Title: "Create a Python session",
			Description: "Start a Python session: one sandbox whose variables, imports and files persist across execute_python " +
				"calls that pass its session_id. Close it with close_session when done; it also ends when idle too long.",
			InputSchema: timeoutSchema[createSessionInput]("timeout"),
		}, mcpTool(h, toolCreateSession, h.mcpCreateSession))
		mcp.AddTool(srv, &mcp.Tool{
			Name:        toolCloseSession,
			Title:       "Close a Python session",
			Description: "End a session made by create_session, removing its sandbox and files.",
			Annotations: &mcp.ToolAnnotations{DestructiveHint: ptr(true), IdempotentHint: true},
		}, mcpTool(h, toolCloseSession, h.mcpCloseSession))
	}
	return srv
}

func ptr[T any](v T) *T { return &v }

// moduleVersion is the binary's module version ("(devel)" in a source
// build).
func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// executeSchema is execute_python's input schema: the one inferred from
// executeInput, with what struct tags cannot say.
func executeSchema() *jsonschema.Schema {
	s := timeoutSchema[executeInput]("timeout")
	s.Properties["chart_format"].Enum = []any{"png", "svg"}
	s.Properties["code"].MinLength = ptr(1)
	s.Properties["session_id"].MaxLength = ptr(maxSessionIDBytes)
	return s
}

// timeoutSchema is T's inferred schema with the field timeout a positive
// number.
func timeoutSchema[T any](timeout string) *jsonschema.Schema {
	s, err := jsonschema.For[T](nil)
	if err != nil {
		panic(err) // the input types are fixed: a programmer error
	}
	s.Properties[timeout].ExclusiveMinimum = ptr(0.0)
	return s
}

// mcpTool wraps a tool's body: the call's context (logger, request ID,
// log fields, cancellation by the HTTP client) and one log line per call.
func mcpTool[In any](h *handler, name string, body func(context.Context, In) *mcp.CallToolResult) mcp.ToolHandlerFor[In, any] {
	return func(ctx context.Context, _ *mcp.CallToolRequest, in In) (*mcp.CallToolResult, any, error) {
		start := time.Now()
		ctx, cancel := h.mcpCallContext(ctx)
		defer cancel()
		res := body(ctx, in)
		fields := logrus.Fields{}
		for k, v := range logFields(ctx) {
			fields[k] = v
		}
		fields["tool"] = name
		fields["is_error"] = res.IsError
		fields["duration_ms"] = float64(time.Since(start).Microseconds()) / 1000
		logctx.From(ctx).WithFields(fields).Info("mcp tool call")
		return res, nil, nil
	}
}

// mcpCallContext is the context of one tool call. Over /mcp it carries the
// HTTP request's values (the middleware's request ID, logger and metrics,
// and the API key), is cancelled with the HTTP request, and gets log fields
// of its own (a JSON-RPC batch may run calls at once); over stdio it gets a
// request ID, a logger and log fields here.
func (h *handler) mcpCallContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := func() bool { return false }
	if hc, ok := ctx.Value(httpContextKey{}).(context.Context); ok {
		stop = context.AfterFunc(hc, cancel)
	}
	fields := logrus.Fields{}
	if requestID(ctx) == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id := hex.EncodeToString(b[:])
		ctx = context.WithValue(ctx, requestIDKey, id)
		ctx = logctx.With(ctx, h.opts.Logger.WithFields(logrus.Fields{"request_id": id, "transport": "stdio"}))
		ctx = context.WithValue(ctx, metricsKey{}, h.metrics)
	} else {
		for k, v := range logFields(ctx) {
			fields[k] = v
		}
	}
	ctx = context.WithValue(ctx, logFieldsKey{}, fields)
	return ctx, func() { stop(); cancel() }
}

// ---------------------------------------------------------------- tools

func (h *handler) mcpExecute(ctx context.Context, in executeInput) *mcp.CallToolResult {
	start := time.Now()
	body := executeRequest{Code: &in.Code, Timeout: in.Timeout, ChartFormat: in.ChartFormat}
	for _, f := range in.Files {
		body.Files = append(body.Files, fileBody{Name: ptr(f.Name), Content: ptr(f.Content)})
	}
	req, err := h.toRunRequest(ctx, body) // the key's timeout bound included
	if err != nil {
		return h.toolError(ctx, err)
	}
	if in.SessionID != "" {
		if err := h.mcpSession(ctx, in.SessionID); err != nil {
			return h.toolError(ctx, err)
		}
		if in.Timeout == nil {
			req.Timeout = 0 // the session's default
		}
	}
	logRequest(ctxRequest(ctx), req)
	release, err := h.admitExecution(ctx)
	if err != nil {
		return h.toolError(ctx, err)
	}
	defer release()

	var res runner.Result
	if in.SessionID != "" {
		res, err = h.opts.Sessions.RunInSession(ctx, in.SessionID, req)
	} else {
		res, err = h.opts.Runner.Run(ctx, req)
	}
	if err != nil {
		h.executionFailed(ctx) // execute.go
		return h.toolError(ctx, err)
	}
	resp := sessionExecuteResponse{executeResponse: h.executeBody(newMemWriter(), ctxRequest(ctx), res, start)}
	if s := res.Session; s != nil {
		resp.Session = &sessionOfCell{ID: s.ID, Executions: s.Executions, ExpiresAt: s.ExpiresAt.UTC(), Ended: s.Ended, EndReason: s.EndReason}
	}
	return executeResult(resp, res)
}

// mcpSession checks a session_id argument: sessions on, an ID that can be
// one, and the caller's (its API key's) session.
func (h *handler) mcpSession(ctx context.Context, id string) error {
	if h.opts.Sessions == nil {
		return &apiError{Status: http.StatusNotFound, Code: "sessions_disabled", Message: "sessions are off on this service (MAX_SESSIONS=0)"}
	}
	addLogField(ctx, "session", id[:min(len(id), 12)])
	if len(id) > maxSessionIDBytes || !h.sessionAllowed(ctx, id) {
		return runner.ErrSessionNotFound
	}
	return nil
}

func (h *handler) mcpValidate(ctx context.Context, in validateInput) *mcp.CallToolResult {
	resp := validateResponse{Valid: true, Errors: []policy.Violation{}, RequestID: requestID(ctx)}
	if vs := policy.CheckSource(in.Code, policy.MaxCodeBytes); len(vs) > 0 {
		resp.Valid, resp.Errors = false, vs
	} else {
		v, err := h.opts.Runner.Validate(ctx, in.Code)
		if err != nil {
			return h.toolError(ctx, err)
		}
		resp.Valid, resp.Errors = v.Valid, v.Errors
	}
	addLogField(ctx, "outcome", map[bool]string{true: "valid", false: "invalid"}[resp.Valid])
	text := "valid: the code passes the syntax check and the policy"
	if !resp.Valid {
		var b strings.Builder
		b.WriteString("invalid:")
		for _, v := range resp.Errors {
			b.WriteString("\n- " + v.Error())
		}
		text = b.String()
	}
	// Invalid code is the answer asked for, not a failed call.
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}, StructuredContent: resp}
}

func (h *handler) mcpTemplates(ctx context.Context, in templatesInput) *mcp.CallToolResult {
	if in.ID != "" {
		t, ok := templates.ByID(in.ID)
		if !ok {
			return h.toolError(ctx, &apiError{Status: http.StatusNotFound, Code: "not_found", Message: "no such template; call list_templates without an id for the list"})
		}
		text := fmt.Sprintf("%s (%s): %s\n\n%s", t.Title, t.ID, t.Description, t.Code)
		if len(t.Files) > 0 {
			names := make([]string, len(t.Files))
			for i, f := range t.Files {
				names[i] = f.Name
			}
			text += "\n\nInput files (pass structuredContent.files as execute_python's files): " + strings.Join(names, ", ")
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}, StructuredContent: t}
	}
	all := templates.All()
	var b strings.Builder
	for _, t := range all {
		fmt.Fprintf(&b, "- %s [%s] %s: %s\n", t.ID, t.Category, t.Title, t.Description)
	}
	b.WriteString("Call list_templates with an id for a template's code.")
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: b.String()}}, StructuredContent: templatesBody{Templates: all}}
}

func (h *handler) mcpCreateSession(ctx context.Context, in createSessionInput) *mcp.CallToolResult {
	// As POST /sessions (sessions.go).
	timeout := h.defaultTimeoutFor(ctx)
	if in.Timeout != nil {
		t := *in.Timeout
		if maxT := h.maxTimeoutFor(ctx); t <= 0 || t > maxT.Seconds() {
			return h.toolError(ctx, unprocessable("invalid_timeout",
				fmt.Sprintf("timeout must be greater than 0 and at most %g seconds", maxT.Seconds())))
		}
		timeout = time.Duration(t * float64(time.Second))
	}
	if err := h.admitSession(ctx); err != nil {
		return h.toolError(ctx, err)
	}
	info, err := h.opts.Sessions.CreateSession(ctx, runner.SessionOptions{Timeout: timeout})
	if err != nil {
		return h.toolError(ctx, err)
	}
	h.sessionCreated(ctx, info.ID)
	addLogField(ctx, "session", info.ID[:min(len(info.ID), 12)])
	body := sessionCreated{
		ID: info.ID, CreatedAt: info.CreatedAt.UTC(), ExpiresAt: info.ExpiresAt.UTC(),
		IdleTimeoutSeconds: info.IdleTimeout.Seconds(), MaxLifetimeSeconds: info.ExpiresAt.Sub(info.CreatedAt).Seconds(),
		Timeout: info.Timeout.Seconds(),
	}
	text := fmt.Sprintf("session_id: %s\nPass it to execute_python to run code in this session; it ends after %g s idle or at %s. Close it with close_session when done.",
		info.ID, body.IdleTimeoutSeconds, body.ExpiresAt.Format(time.RFC3339))
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}, StructuredContent: body}
}

func (h *handler) mcpCloseSession(ctx context.Context, in closeSessionInput) *mcp.CallToolResult {
	if err := h.mcpSession(ctx, in.SessionID); err != nil {
		return h.toolError(ctx, err)
	}
	if err := h.opts.Sessions.DeleteSession(ctx, in.SessionID); err != nil {
		return h.toolError(ctx, err)
	}
	return &mcp.CallToolResult{
		Content:           []mcp.Content{&mcp.TextContent{Text: "session " + in.SessionID + " closed"}},
		StructuredContent: map[string]any{"id": in.SessionID, "closed": true},
	}
}

// ---------------------------------------------------------------- results

// executeResult is an execution's tool result:
//   - text: stdout as printed; then, labelled, stderr, the error (the
//     traceback), policy violations, the value of the final expression, a
//     summary of DataFrames, variables and output files;
//   - an image per matplotlib chart: image/png (raw PNG) or, with
//     chart_format svg, image/svg+xml;
//   - structured content: the REST body (of /execute, or of a session's
//     execute), with the image charts' data left out (null: they are the
//     images). Plotly figures stay there as JSON.
//
// IsError is set unless the code ran to its end.
func executeResult(resp sessionExecuteResponse, res runner.Result) *mcp.CallToolResult {
	var content []mcp.Content
	var text []string
	out := resp.Output
	if out.Stdout != "" || out.StdoutTruncated {
		s := out.Stdout
		if out.StdoutTruncated {
			s += fmt.Sprintf("\n[stdout truncated: %d bytes written]", res.StdoutBytes)
		}
		text = append(text, s)
	}
	if out.Stderr != "" || out.StderrTruncated {
		s := "[stderr]\n" + out.Stderr
		if out.StderrTruncated {
			s += fmt.Sprintf("\n[stderr truncated: %d bytes written]", res.StderrBytes)
		}
		text = append(text, s)
	}
	failed := resp.Status != runner.StatusSuccess || res.Rejected
	if failed {
		s := "[" + resp.Status + "]"
		if res.Rejected {
			s = "[rejected: nothing ran]"
		}
		if e := resp.Error; e != nil && len(resp.Violations) == 0 {
			if e.Traceback != "" {
				s += "\n" + strings.TrimRight(e.Traceback, "\n")
			} else {
				s += fmt.Sprintf("\n%s: %s", e.Type, e.Message)
			}
		}
		for _, v := range resp.Violations {
			s += "\n- " + v.Error()
		}
		text = append(text, s)
	}
	if r := out.Result; r != nil {
		text = append(text, "[result] "+r.Repr)
	}
	text = append(text, frameSummaries(out.DataFrames)...)
	if s := variableSummary(out.Variables); s != "" {
		text = append(text, s)
	}
	if s := filesSummary(out.Files, out.FilesTruncated); s != "" {
		text = append(text, s)
	}
	if s := resp.Session; s != nil && s.Ended {
		text = append(text, "[session ended: "+s.EndReason+"; create a new one to go on]")
	}

	charts := make([]runner.Chart, len(out.Outputs.Charts))
	copy(charts, out.Outputs.Charts)
	var images []mcp.Content
	for i, c := range charts {
		img, note := chartContent(i, c)
		if img != nil {
			images = append(images, img)
			charts[i].Data = json.RawMessage("null")
		}
		if note != "" {
			text = append(text, note)
		}
	}
	resp.Output.Charts = chartBodies(charts)
	if len(text) == 0 && len(images) == 0 {
		text = append(text, "[no output]")
	}
	if len(text) > 0 {
		content = append(content, &mcp.TextContent{Text: strings.Join(text, "\n\n")})
	}
	content = append(content, images...)
	var structured any = resp
	if resp.Session == nil {
		structured = resp.executeResponse // exactly /execute's shape
	}
	return &mcp.CallToolResult{Content: content, StructuredContent: structured, IsError: failed}
}

// chartContent is chart i as image content, or nil with a note for the
// text (a refused chart, a plotly figure).
func chartContent(i int, c runner.Chart) (mcp.Content, string) {
	if c.Error != "" {
		return nil, fmt.Sprintf("[chart %d refused: %s]", i, c.Error)
	}
	var mime string
	switch c.Format {
	case "png":
		mime = "image/png"
	case "svg":
		mime = "image/svg+xml"
	default:
		title := ""
		if c.Title != "" {
			title = " " + c.Title
		}
		return nil, fmt.Sprintf("[chart %d: %s figure%s as %s in structuredContent.output.charts[%d]]", i, c.Type, title, c.Format, i)
	}
	var b64 string
	if err := json.Unmarshal(c.Data, &b64); err != nil {
		return nil, fmt.Sprintf("[chart %d: unreadable data]", i)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) > mcpMaxSVGImage {
		return nil, fmt.Sprintf("[chart %d: unreadable data]", i)
	}
	return &mcp.ImageContent{Data: raw, MIMEType: mime}, ""
}

// frameSummaries describe DataFrames for the model: name, shape, columns
// and the first rows.
func frameSummaries(frames []runner.DataFrame) []string {
	var out []string
	for i, f := range frames {
		shape := make([]string, len(f.Shape))
		for j, n := range f.Shape {
			shape[j] = fmt.Sprint(n)
		}
		s := fmt.Sprintf("[dataframe %s (%s), %s; all rows sent in structuredContent.output.dataframes[%d]]\ncolumns: %s",
			f.Name, f.Kind, strings.Join(shape, "x"), i, compactJSON(f.Columns))
		var rows []json.RawMessage
		if json.Unmarshal(f.Data, &rows) == nil {
			var b strings.Builder
			for j, r := range rows {
				if j == mcpTextFrameRows || b.Len() > mcpTextFrameBytes {
					fmt.Fprintf(&b, "\n... %d more rows", int64(len(rows)-j)+max(f.TotalRows-int64(len(rows)), 0))
					break
				}
				b.WriteString("\n" + compactJSON(r))
			}
			s += b.String()
		}
		out = append(out, s)
	}
	return out
}

// variableSummary lists the code's top-level variables, one a line.
func variableSummary(vars map[string]runner.Variable) string {
	if len(vars) == 0 {
		return ""
	}
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString("[variables]")
	for i, n := range names {
		if i == mcpTextVariables {
			fmt.Fprintf(&b, "\n... %d more", len(names)-i)
			break
		}
		v := vars[n]
		fmt.Fprintf(&b, "\n%s (%s) = %s", n, v.Type, truncateRunes(v.Repr, mcpTextReprRunes))
	}
	return b.String()
}

// filesSummary lists the output files by name, size and type; their bytes
// are only in the structured content.
func filesSummary(files []runner.OutputFile, truncated bool) string {
	if len(files) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("[output files; content (base64) in structuredContent.output.files]")
	for i, f := range files {
		if i == mcpTextFilesListed {
			fmt.Fprintf(&b, "\n... %d more", len(files)-i)
			break
		}
		fmt.Fprintf(&b, "\n%s (%d bytes, %s)", f.Name, f.Size, f.Mime)
	}
	if truncated {
		b.WriteString("\n[more files were written than are returned]")
	}
	return b.String()
}

func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// mcpErrorBody is an error result's structured content: the REST error
// body, and how long to wait before a retry (429, 503).
type mcpErrorBody struct {
	errorBody
	RetryAfter int `json:"retry_after,omitempty"`
}

// toolError is a refused request or a failed execution as a tool result
// (IsError): writeError maps err as for REST, and the result carries its
// code and message, as text and as the REST error body.
func (h *handler) toolError(ctx context.Context, err error) *mcp.CallToolResult {
	w := newMemWriter()
	writeError(w, ctxRequest(ctx), err)
	var body mcpErrorBody
	if json.Unmarshal(w.body.Bytes(), &body.errorBody) != nil {
		body.Error = errorDetail{Code: "internal", Message: "internal error"}
	}
	text := body.Error.Code + ": " + body.Error.Message
	if ra := w.header.Get("Retry-After"); ra != "" {
		fmt.Sscan(ra, &body.RetryAfter)
		text += " (retry after " + ra + " s)"
	}
	for _, v := range body.Error.Violations {
		text += "\n- " + v.Error()
	}
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: text}}, StructuredContent: body}
}

// ctxRequest is a request carrying ctx, for the REST helpers that only read
// their request's context (writeError, executeBody, logRequest).
func ctxRequest(ctx context.Context) *http.Request {
	r, _ := http.NewRequestWithContext(ctx, http.MethodPost, "/mcp", nil)
	return r
}

// memWriter is a ResponseWriter in memory: what the REST helpers write for
// a tool call.
type memWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newMemWriter() *memWriter                   { return &memWriter{header: http.Header{}} }
func (m *memWriter) Header() http.Header         { return m.header }
func (m *memWriter) WriteHeader(status int)      { m.status = status }
func (m *memWriter) Write(p []byte) (int, error) { return m.body.Write(p) }
