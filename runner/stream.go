package runner

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Streaming: with Request.OnEvent set, the request header asks the
// supervisor for the output as it arrives (flagStream): "ostream" and
// "estream" frames carry the next bytes of stdout and stderr kept under the
// caps (so they add up to the final stdout and stderr frames), and "event"
// frames carry the child's events (a chart rendered by show()), passed on
// uninterpreted. The final frames are the same as without streaming, so the
// Result is too. Here the chunks become text (a character split between two
// chunks waits for its end) and each chart is sanitized by sanitizeOutputs,
// like the charts of the Result.

// Kinds of Event.
const (
	EventStdout = "stdout"
	EventStderr = "stderr"
	EventChart  = "chart"
)

// Event is one piece of streamed output.
type Event struct {
	// Kind is EventStdout, EventStderr or EventChart.
	Kind string
	// Text is the next chunk of stdout or stderr (valid UTF-8).
	Text string
	// Chart is the chart a show() rendered, sanitized as Result's charts are.
	Chart *Chart
}

// flagStream is the request header's flag that asks for streaming
// (FLAG_STREAM in images/context/supervisor/supervisor.c).
const flagStream = 1

// streamFlushInterval is how often, at most, the supervisor passes output on
// (STREAM_FLUSH_MS in supervisor.c).
const streamFlushInterval = 50 * time.Millisecond

// optStream is the child's option that makes it send chart events
// (runner_child.py).
const optStream = "stream"

// withStreamFlag adds the flags field to a request header when streaming.
func withStreamFlag(header string, stream bool) string {
	if !stream {
		return header
	}
	return strings.TrimSuffix(header, "\n") + " " + strconv.Itoa(flagStream) + "\n"
}

// flagCheck is the cell header's flag that says a check request for the
// session's checker comes before the body (supervisor.c: FLAG_CHECK); its
// length follows the flags.
const flagCheck = 2

// withCheckFlag is a cell header (cellHeader's) announcing a check request
// of n bytes before the body, streamed or not.
func withCheckFlag(header string, stream bool, n int) string {
	flags := flagCheck
	if stream {
		flags |= flagStream
	}
	return strings.TrimSuffix(header, "\n") + " " + strconv.Itoa(flags) + " " + strconv.Itoa(n) + "\n"
}

// streamOptions are the child's options of a streamed request.
func streamOptions(opts map[string]any, stream bool) map[string]any {
	if stream {
		opts[optStream] = true
	}
	return opts
}

// emitter turns the streaming frames of one execution into Events, in
// order, on the goroutine that reads the frames. A nil emitter (no
// OnEvent) takes no frame.
type emitter struct {
	on func(Event)
	// outTail and errTail hold the start of a character whose end is in
	// the next chunk.
	outTail, errTail []byte
}

func newEmitter(on func(Event)) *emitter {
	if on == nil {
		return nil
	}
	return &emitter{on: on}
}

// take handles f if it is a streaming frame; false for any other frame.
func (em *emitter) take(f frame) bool {
	if em == nil {
		return false
	}
	switch f.kind {
	case frameStdoutChunk:
		em.text(EventStdout, &em.outTail, f.payload)
	case frameStderrChunk:
		em.text(EventStderr, &em.errTail, f.payload)
	case frameEvent:
		if c := decodeChartEvent(f.payload); c != nil {
			em.on(Event{Kind: EventChart, Chart: c})
		}
	default:
		return false
	}
	return true
}

// finish sends what is left of a split character (at the end, it can only
// be replaced, as the final text replaces it).
func (em *emitter) finish() {
	if em == nil {
		return
	}
	for _, t := range []struct {
		kind string
		tail *[]byte
	}{{EventStdout, &em.outTail}, {EventStderr, &em.errTail}} {
		if len(*t.tail) > 0 {
			em.on(Event{Kind: t.kind, Text: streamText(*t.tail)})
			*t.tail = nil
		}
	}
}

func (em *emitter) text(kind string, tail *[]byte, chunk []byte) {
	b := append(*tail, chunk...)
	cut := completeUTF8(b)
	*tail = append([]byte(nil), b[cut:]...)
	if cut > 0 {
		em.on(Event{Kind: kind, Text: streamText(b[:cut])})
	}
}

// completeUTF8 is the length of b without a trailing incomplete character
// (the first bytes of a valid encoding whose last bytes are missing).
func completeUTF8(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}

// chartEvent is the child's chart event (untrusted).
type chartEvent struct {
	Chart *Chart `json:"chart"`
}

// decodeChartEvent decodes a chart event and sanitizes its chart as the
// Result's charts are (sanitizeOutputs); nil when it is malformed.
func decodeChartEvent(payload []byte) *Chart {
	var ev chartEvent
	if err := json.Unmarshal(payload, &ev); err != nil || ev.Chart == nil {
		return nil
	}
	o := Outputs{Charts: []Chart{*ev.Chart}}
	sanitizeOutputs(&o)
	return &o.Charts[0]
}
