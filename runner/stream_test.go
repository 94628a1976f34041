package runner

import (
	"encoding/json"
	"strings"
	"testing"
)

// The emitter without an engine: text split inside a character, chart
// events sanitized as the Result's charts are, malformed events dropped.
// The real-engine streaming tests are in handlers/stream_test.go.

func TestEmitterText(t *testing.T) {
	var got []Event
	em := newEmitter(func(ev Event) { got = append(got, ev) })
	word := []byte("数据✓") // 3-byte characters
	for _, f := range []frame{
		{kind: frameStdoutChunk, payload: word[:1]}, // the first byte of 数
		{kind: frameStderrChunk, payload: []byte("e")},
		{kind: frameStdoutChunk, payload: word[1:5]}, // the end of 数, the start of 据
		{kind: frameStdoutChunk, payload: word[5:]},
		{kind: frameStdoutChunk, payload: []byte{0xff, 'a', 0xe6}}, // invalid, then a start cut by the cap
	} {
		if !em.take(f) {
			t.Fatalf("%s frame not taken", f.kind)
		}
	}
	if em.take(frame{kind: frameStdout, payload: []byte("final")}) {
		t.Error("the final stdout frame was taken as a stream frame")
	}
	em.finish()
	var out, errText strings.Builder
	for _, ev := range got {
		switch ev.Kind {
		case EventStdout:
			out.WriteString(ev.Text)
		case EventStderr:
			errText.WriteString(ev.Text)
		default:
			t.Errorf("event %+v", ev)
		}
		if strings.ContainsRune(ev.Text, '\uFFFD') && ev.Text != "\uFFFDa" && ev.Text != "\uFFFD" {
			t.Errorf("a character was split: %q", ev.Text)
		}
	}
	whole := append(append([]byte{}, word...), 0xff, 'a', 0xe6)
	if out.String() != streamText(whole) || errText.String() != "e" {
		t.Errorf("stdout %q (want %q), stderr %q", out.String(), streamText(whole), errText.String())
	}
}

func TestEmitterCharts(t *testing.T) {
	var got []Event
	em := newEmitter(func(ev Event) { got = append(got, ev) })
	svg := `<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`
	events := []string{
		`{"chart":{"type":"matplotlib","format":"svg","data":` + quoteJSON(svg) + `,"title":"销售额"}}`,
		`{"chart":{"type":"matplotlib","format":"png","data":"iVBORw0KGgo=","error":"forged"}}`,
		`not json`,
		`{"other":1}`,
		`{"chart":[1,2]}`,
	}
	for _, e := range events {
		if !em.take(frame{kind: frameEvent, payload: []byte(e)}) {
			t.Fatal("event frame not taken")
		}
	}
	if len(got) != 2 {
		t.Fatalf("%d events, want the 2 well-formed charts: %+v", len(got), got)
	}
	// The same verdict as the Result's charts get.
	for i, e := range events[:2] {
		var ev chartEvent
		if err := json.Unmarshal([]byte(e), &ev); err != nil {
			t.Fatal(err)
		}
		want := Outputs{Charts: []Chart{*ev.Chart}}
		sanitizeOutputs(&want)
		if g, w := mustJSON(t, got[i].Chart), mustJSON(t, want.Charts[0]); g != w {
			t.Errorf("chart %d: %s, want %s", i, g, w)
		}
		if got[i].Chart.Error == "" || got[i].Chart.Data != nil {
			t.Errorf("chart %d kept: %+v", i, got[i].Chart)
		}
	}
	if got[0].Chart.Title != "销售额" {
		t.Errorf("title %q", got[0].Chart.Title)
	}
}

func TestEmitterOff(t *testing.T) {
	em := newEmitter(nil)
	if em.take(frame{kind: frameStdoutChunk, payload: []byte("x")}) {
		t.Error("a nil emitter took a stream frame (the runner must refuse it)")
	}
	em.finish() // no panic
	if h := withStreamFlag("run 1 2 3 4 5\n", false); h != "run 1 2 3 4 5\n" {
		t.Errorf("plain header %q", h)
	}
	if o := streamOptions(map[string]any{}, false); len(o) != 0 {
		t.Errorf("plain options %v", o)
	}
}

func quoteJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
