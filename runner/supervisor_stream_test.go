package runner

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Streaming in the supervisor (FLAG_STREAM), with a scripted child as in
// supervisor_test.go: ostream/estream chunks as output arrives, adding up to
// the final stdout/stderr frames, event messages passed on in order and
// within their budget, and the old header unchanged.

// streamChild plays a child that prints over time and sends chart events.
const streamChild = `import os, sys, time
mode = os.environ["FAKE_MODE"]
def send(kind, payload):
    os.write(3, b"%s %d\n" % (kind.encode(), len(payload)) + payload)
send("ready", b'{"preload":"none","preload_ms":1.5,"memory_bytes":1024}')
def serve(body):
    if mode == "events":
        os.write(1, "第一\n".encode())
        time.sleep(0.5)
        os.write(2, b"warn\n")
        send("event", b'{"chart":{"type":"matplotlib","format":"png","data":"x"}}')
        os.write(1, b"second\n")
        send("event", b'{"chart":"' + b"e" * 1000 + b'"}')  # over the budget left
        # a character split across two writes
        os.write(1, "é".encode()[:1]); time.sleep(0.2); os.write(1, "é".encode()[1:])
        os.write(1, b"z" * 5000)  # past the stdout cap
    send("report", b'{"error":null,"cpu_ms":1}')
    send("outputs", b'{"variables":{"n":{"type":"int","repr":"' + b"9" * 400 + b'"}}}')
if mode == "session":
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.dup2(5, 1); os.dup2(6, 2); os.close(5); os.close(6)
    pending = b""
    while True:
        while b"\n" not in pending:
            chunk = os.read(4, 65536)
            if not chunk:
                os._exit(0)
            pending += chunk
        line, _, pending = pending.partition(b"\n")
        n = int(line)
        while len(pending) < n:
            chunk = os.read(4, 65536)
            if not chunk:
                os._exit(0)
            pending += chunk
        body, pending = pending[:n], pending[n:]
        os.write(1, b"cell\n")
        send("event", b'{"chart":{"type":"matplotlib","format":"png","data":"y"}}')
        send("report", b'{"error":null}')
        send("outputs", b'{}')
data = b""
while True:
    chunk = os.read(4, 65536)
    if not chunk:
        break
    data += chunk
os.dup2(5, 1); os.dup2(6, 2); os.close(5); os.close(6)
serve(data)
for fd in (1, 2, 3):
    os.close(fd)
time.sleep(30)
`

// timedFrame is a frame and when it was read.
type timedFrame struct {
	frame
	at time.Duration
}

// superviseLive runs the supervisor and reads its frames as they come.
func superviseLive(t *testing.T, bin, mode, stdin string) []timedFrame {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = []string{"FAKE_MODE=" + mode, "ASAN_OPTIONS=detect_leaks=0", "UBSAN_OPTIONS=print_stacktrace=1"}
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan []timedFrame, 1)
	go func() {
		var frames []timedFrame
		fr := newFrameReader(pipe, 16<<20)
		for {
			f, err := fr.next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Errorf("frame %d: %v", len(frames), err)
				}
				done <- frames
				return
			}
			frames = append(frames, timedFrame{f, time.Since(start)})
		}
	}()
	var frames []timedFrame
	select {
	case frames = <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("supervisor did not end; stderr: %s", stderr.String())
	}
	_ = cmd.Wait()
	if s := stderr.String(); strings.Contains(s, "Sanitizer") || strings.Contains(s, "runtime error") {
		t.Fatalf("sanitizer report:\n%s", s)
	}
	return frames
}

func frameKinds(frames []timedFrame) []string {
	var out []string
	for _, f := range frames {
		out = append(out, f.kind)
	}
	return out
}

func TestSupervisorStream(t *testing.T) {
	t.Parallel()
	bin := buildSupervisor(t, streamChild)
	const body = `{"code":"x"}`
	const stdoutCap, outputsCap = 1000, 1000
	header := requestHeader(5*time.Second, stdoutCap, 1000, outputsCap, len(body))

	t.Run("streamed", func(t *testing.T) {
		t.Parallel()
		frames := superviseLive(t, bin, "events", withStreamFlag(header, true)+body)
		var out, errText []byte
		var events []string
		final := map[string][]byte{}
		var firstOut, secondOut time.Duration
		for i, f := range frames {
			switch f.kind {
			case frameStdoutChunk:
				out = append(out, f.payload...)
				if firstOut == 0 {
					firstOut = f.at
				} else if secondOut == 0 {
					secondOut = f.at
				}
			case frameStderrChunk:
				errText = append(errText, f.payload...)
			case frameEvent:
				events = append(events, string(f.payload))
				// The output printed before the event came first.
				if !bytes.Contains(out, []byte("第一")) || !bytes.Contains(errText, []byte("warn")) {
					t.Errorf("event %d before the output printed before it: %v", i, frameKinds(frames))
				}
			default:
				if _, dup := final[f.kind]; dup {
					t.Errorf("two %s frames", f.kind)
				}
				final[f.kind] = f.payload
				if f.kind == frameStdout || f.kind == frameStderr {
					for _, g := range frames[i:] {
						if g.kind == frameStdoutChunk || g.kind == frameStderrChunk {
							t.Errorf("a chunk after the final %s frame: %v", f.kind, frameKinds(frames))
						}
					}
				}
			}
		}
		if string(out) != string(final[frameStdout]) || len(out) != stdoutCap {
			t.Errorf("streamed stdout (%d bytes) is not the final stdout (%d bytes, cap %d)", len(out), len(final[frameStdout]), stdoutCap)
		}
		if string(errText) != string(final[frameStderr]) || string(errText) != "warn\n" {
			t.Errorf("streamed stderr %q, final %q", errText, final[frameStderr])
		}
		// One event fits the budget (outputs_cap): the second is dropped.
		if len(events) != 1 || !strings.Contains(events[0], `"data":"x"`) {
			t.Errorf("events %q, want the first chart only", events)
		}
		// The first line went out at once, not with the rest 0.5 s later.
		if firstOut == 0 || secondOut-firstOut < 300*time.Millisecond {
			t.Errorf("first chunk at %v, next at %v: not streamed as printed", firstOut, secondOut)
		}
		// The events left the buffer: the outputs are whole, no overflow.
		if _, ok := final[frameOutputs]; !ok {
			t.Errorf("no outputs frame: %v", frameKinds(frames))
		}
		ex, _ := decodeExit(t, final[frameExit])
		if ex.OutputsOverflow || ex.StdoutBytes <= stdoutCap {
			t.Errorf("exit %+v", ex)
		}
	})

	t.Run("plain", func(t *testing.T) {
		t.Parallel()
		frames := superviseLive(t, bin, "events", header+body)
		want := []string{frameReady, frameStdout, frameStderr, frameReport, frameOutputs, frameExit}
		if got := frameKinds(frames); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("frames %v, want %v (no streaming without the flag)", got, want)
		}
		ex, _ := decodeExit(t, frames[len(frames)-1].payload)
		if ex.OutputsOverflow {
			t.Errorf("dropped events overflowed the outputs: %+v", ex)
		}
	})

	t.Run("bad flags", func(t *testing.T) {
		t.Parallel()
		frames := superviseLive(t, bin, "events", strings.TrimSuffix(header, "\n")+" 2\n"+body)
		if got := frameKinds(frames); len(got) != 2 || got[1] != frameError {
			t.Errorf("frames %v, want ready, error", got)
		}
	})

	t.Run("session", func(t *testing.T) {
		t.Parallel()
		cell := func(stream bool) string {
			return withStreamFlag(cellHeader(5*time.Second, 100, 100, 1000, 2), stream) + "{}"
		}
		frames := superviseLive(t, bin, "session", cell(true)+cell(false)+cell(true))
		got := strings.Join(frameKinds(frames), " ")
		streamed := "ostream event stdout stderr report outputs exit"
		plain := "stdout stderr report outputs exit"
		if want := "ready " + streamed + " " + plain + " " + streamed; got != want {
			t.Errorf("frames\n%s\nwant\n%s", got, want)
		}
	})
}
