package handlers

import (
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pyexec/pyexec/internal/logctx"
	"github.com/pyexec/pyexec/runner"
)

// Streamed executions (Server-Sent Events): POST /execute and POST
// /sessions/{id}/execute with "Accept: text/event-stream" answer
// "stdout"/"stderr" events ({"text": chunk}) as the code prints, a "chart"
// event per chart as show() renders it (an element of output.charts), and
// last a "result" event whose data is the body the plain call answers, or
// an "error" event ({"status", "error", "request_id"}) when the execution
// failed after the stream began. The headers go out with the first event:
// a request refused before it (validation, 4xx, an engine fault) answers
// the plain JSON error with its status. A client that goes away, or cannot
// be written to, cancels the request's context, which ends the execution.

// sseKeepalive is how long the stream may stay silent before a comment
// (a variable for tests).
var sseKeepalive = 15 * time.Second

// sseWriteTimeout bounds one write to the client: a client that stops
// reading holds the execution (which waits for its events) no longer.
const sseWriteTimeout = 10 * time.Second

// wantsStream says the request accepts text/event-stream.
func wantsStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err == nil && mt == "text/event-stream" {
				return true
			}
		}
	}
	return false
}

// sseWriter writes the events of one response. Events come from the
// execution's goroutine and keepalives from a ticker: mu orders them.
type sseWriter struct {
	w  http.ResponseWriter
	r  *http.Request
	rc *http.ResponseController
	// cancel ends the execution when the client cannot be written to.
	cancel context.CancelFunc

	mu      sync.Mutex // guards the fields below and every write
	started bool
	failed  bool
	last    time.Time // of the last write
}

func newSSEWriter(w http.ResponseWriter, r *http.Request, cancel context.CancelFunc) *sseWriter {
	return &sseWriter{w: w, r: r, rc: http.NewResponseController(w), cancel: cancel}
}

// begin sends the headers once; mu is held.
func (s *sseWriter) begin() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	s.w.WriteHeader(http.StatusOK)
}

// write writes raw SSE text and flushes it; mu is held. A failed write
// ends the execution.
func (s *sseWriter) write(text string) {
	if s.failed {
		return
	}
	s.begin()
	_ = s.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	_, err := s.w.Write([]byte(text))
	if err == nil {
		err = s.rc.Flush()
	}
	s.last = time.Now()
	if err != nil {
		s.failed = true
		logctx.From(s.r.Context()).WithError(err).Debug("stream write failed; ending the execution")
		s.cancel()
	}
}

// send writes one event whose data is v as one line of JSON.
func (s *sseWriter) send(name string, v any) {
	data, err := marshalLine(v)
	if err != nil {
		logctx.From(s.r.Context()).WithError(err).Error("encode event")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.write("event: " + name + "\ndata: " + data + "\n\n")
}

// marshalLine is v as JSON without HTML escaping and without the newline
// an Encoder adds (JSON strings never hold a raw newline).
func marshalLine(v any) (string, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// streamText is the data of a stdout or stderr event.
type streamText struct {
	Text string `json:"text"`
}

// event is runner.Request.OnEvent: one event per chunk or chart.
func (s *sseWriter) event(ev runner.Event) {
	switch ev.Kind {
	case runner.EventStdout, runner.EventStderr:
		s.send(ev.Kind, streamText{Text: ev.Text})
	case runner.EventChart:
		if ev.Chart != nil {
			s.send(ev.Kind, ev.Chart)
		}
	}
}

// keepalive writes a comment after every sseKeepalive of silence (which
// starts the stream) until the returned stop is called; stop waits for it.
func (s *sseWriter) keepalive() (stop func()) {
	done := make(chan struct{})
	ended := make(chan struct{})
	s.mu.Lock()
	s.last = time.Now()
	s.mu.Unlock()
	go func() {
		defer close(ended)
		t := time.NewTicker(sseKeepalive / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				s.mu.Lock()
				if now.Sub(s.last) >= sseKeepalive {
					s.write(": keepalive\n\n")
				}
				s.mu.Unlock()
			}
		}
	}()
	return func() {
		close(done)
		<-ended
	}
}

// streamError is the data of an error event.
type streamError struct {
	Status    int         `json:"status"`
	Error     errorDetail `json:"error"`
	RequestID string      `json:"request_id,omitempty"`
}

// fail answers err: the plain JSON error while nothing was streamed, else
// an error event with the status and body the plain answer would have had
// (writeError's mapping, recorded).
func (s *sseWriter) fail(err error) {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		writeError(s.w, s.r, err)
		return
	}
	rec := &errorRecorder{header: http.Header{}}
	writeError(rec, s.r, err)
	var body errorBody
	if jerr := json.Unmarshal(rec.body, &body); jerr != nil {
		body.Error = errorDetail{Code: "internal", Message: "internal error"}
	}
	s.send("error", streamError{Status: rec.status, Error: body.Error, RequestID: body.RequestID})
}

// errorRecorder keeps what writeError writes.
type errorRecorder struct {
	header http.Header
	status int
	body   []byte
}

func (e *errorRecorder) Header() http.Header { return e.header }

func (e *errorRecorder) WriteHeader(status int) { e.status = status }

func (e *errorRecorder) Write(p []byte) (int, error) {
	e.body = append(e.body, p...)
	return len(p), nil
}

// runFunc is Executor.Run or SessionRunner.RunInSession bound to its session.
type runFunc func(ctx context.Context, req runner.Request) (runner.Result, error)

// streamExecution runs req with its events streamed to the client, then
// sends the result event: body(res), the plain call's answer. Errors before
// the first event answer as the plain call does.
func (h *handler) streamExecution(w http.ResponseWriter, r *http.Request, req runner.Request, run runFunc, body func(runner.Result) any) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	s := newSSEWriter(w, r, cancel)
	addLogField(r.Context(), "stream", true)
	req.OnEvent = s.event
	stop := s.keepalive()
	res, err := run(ctx, req)
	stop()
	if err != nil {
		h.executionFailed(r.Context())
		s.fail(err)
		return
	}
	s.send("result", body(res))
}
