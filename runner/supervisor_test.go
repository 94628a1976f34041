package runner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyexec/pyexec/policy"
)

// These tests build the sandbox supervisor (images/context/supervisor) on the
// host with AddressSanitizer and UndefinedBehaviorSanitizer, run it against a
// scripted stand-in for the Python child, and read what it writes with the
// runner's own frame reader and verdict. The real child runs in the
// real-engine tests; here the child misbehaves on purpose.

const supervisorSource = "../images/context/supervisor/supervisor.c"

// fakeChild plays the child's side of the protocol (child.py) as FAKE_MODE says.
const fakeChild = `import os, signal, sys, time
mode = os.environ["FAKE_MODE"]
def send(kind, payload):
    os.write(3, b"%s %d\n" % (kind.encode(), len(payload)) + payload)
def spin(seconds):
    t = time.process_time()
    while time.process_time() - t < seconds:
        pass
if mode.startswith("burn"):
    spin(0.3)  # "preloading": not the request's CPU
if mode == "noready":
    os._exit(3)
if mode == "badready":
    os.write(3, b"no header here" * 10)
    os._exit(0)
send("ready", b'{"preload":"none","preload_ms":1.5,"memory_bytes":1024}')
if mode == "session":
    # A session's child: "<length>\n" + body per cell; the body's "do" says
    # what this cell does. SIGINT is ignored between cells, as child.py does.
    import json
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.dup2(5, 1); os.dup2(6, 2); os.close(5); os.close(6)
    pending = b""
    def read_line():
        global pending
        while b"\n" not in pending:
            chunk = os.read(4, 65536)
            if not chunk:
                os._exit(0)
            pending += chunk
        line, _, pending = pending.partition(b"\n")
        return line
    def read_exact(n):
        global pending
        while len(pending) < n:
            chunk = os.read(4, 65536)
            if not chunk:
                os._exit(0)
            pending += chunk
        data, pending = pending[:n], pending[n:]
        return data
    cell = 0
    while True:
        body = json.loads(read_exact(int(read_line())))
        cell += 1
        do = body["do"]
        if do == "print":
            os.write(1, b"cell %d\n" % cell)
            os.write(2, b"e%d" % cell)
            spin(0.02)
        elif do == "ignore":  # a C-level loop: SIGINT does nothing
            os.write(1, b"spinning")
            time.sleep(30)
        elif do == "interrupt":  # Python code that the interrupt stops
            def raise_interrupt(signum, frame):
                raise KeyboardInterrupt
            signal.signal(signal.SIGINT, raise_interrupt)
            try:
                time.sleep(30)
            except KeyboardInterrupt:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                send("report", b'{"error":{"type":"KeyboardInterrupt","message":""}}')
                send("outputs", b'{}')
                continue
        elif do == "exit":
            os.write(1, b"bye")
            os._exit(3)
        elif do == "killchecker":  # what user code can do to its sibling
            import glob
            for stat in glob.glob("/proc/[0-9]*/stat"):
                try:
                    ppid = int(open(stat).read().rsplit(")", 1)[1].split()[1])
                    pid = int(stat.split("/")[2])
                    if ppid == os.getppid() and pid != os.getpid() and b"--checker" in open("/proc/%d/cmdline" % pid, "rb").read():
                        os.kill(pid, signal.SIGKILL)
                        os.write(1, b"killed")
                except (OSError, ValueError, IndexError):
                    pass
        elif do == "big":  # outputs over the cap, an unknown message, a second report
            send("report", b'{"error":null}')
            send("chatter", b"c" * 300000)
            send("report", b'{"error":{"type":"Forged"}}')
            send("outputs", b"[" * (2 << 20))
            continue
        elif do == "hugereport":
            send("report", b'{"error":null,"pad":"' + b"p" * (2 << 20) + b'"}')
            send("outputs", b'{"variables":{}}')
            continue
        send("report", b'{"error":null,"cpu_ms":1}')
        send("outputs", b'{"variables":{"cell":{"type":"int","repr":"%d"}}}' % cell)
data = b""
while True:
    chunk = os.read(4, 65536)
    if not chunk:
        break
    data += chunk
os.dup2(5, 1); os.dup2(6, 2); os.close(5); os.close(6)
if mode == "ok":
    os.write(1, data + b"\xff")
    os.write(2, b"err")
    send("report", b'{"error":null,"cpu_ms":3}')
    send("outputs", b'{"variables":{"x":{"type":"int","repr":"1"}}}')
elif mode == "error":
    send("report", b'{"error":{"type":"ValueError","message":"bad","traceback":"tb","line":2,"column":null}}')
    send("outputs", b'{}')
elif mode == "garbage":
    os.write(3, b"report 99999999999\n{" + b"\xff" * 100000)
elif mode == "malformed":
    os.write(3, b"x" * 100)
elif mode == "big":
    os.write(1, b"a" * (3 << 20))
    send("report", b'{"error":null}')
    send("outputs", b"[" * (2 << 20))
elif mode == "twice":
    send("weird", b"zz")
    send("report", b'{"error":null}')
    send("report", b'{"error":{"type":"Forged"}}')
    send("outputs", b"{}")
elif mode == "sleep":
    os.write(1, b"partial")
    time.sleep(30)
elif mode == "closeall":
    os.close(1); os.close(2); os.close(3)
    time.sleep(0.2)
    os._exit(5)
elif mode == "burn":
    spin(0.05)
    send("report", b'{"error":null,"cpu_ms":99999}')
    send("outputs", b"{}")
elif mode == "burnexit":
    spin(0.05)
    os._exit(0)
elif mode == "segv":
    os.kill(os.getpid(), signal.SIGSEGV)
for fd in (1, 2, 3):
    os.close(fd)
time.sleep(30)
`

// buildSupervisor builds the supervisor with the sanitizers, child as its
// child's script (run with /usr/bin/python3) and the real validate.py as
// its checker.
func buildSupervisor(t *testing.T, child string) (bin string) {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		if os.Getenv("PYEXEC_REQUIRE_DOCKER") == "1" {
			t.Fatal("gcc is needed to test the supervisor")
		}
		t.Skip("no gcc")
	}
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		if os.Getenv("PYEXEC_REQUIRE_DOCKER") == "1" {
			t.Fatal("/usr/bin/python3 is needed to test the supervisor")
		}
		t.Skip("no /usr/bin/python3")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "child.py")
	if err := os.WriteFile(script, []byte(child), 0o644); err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "supervisor")
	checker, err := filepath.Abs("../images/context/harness/validate.py")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(gcc, "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
		"-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
		`-DCHILD_PYTHON="`+python+`"`, `-DCHILD_SCRIPT="`+script+`"`, `-DCHECKER_SCRIPT="`+checker+`"`,
		"-o", bin, supervisorSource).CombinedOutput()
	if err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return bin
}

// superviseFake runs the supervisor with args and stdin and returns its
// frames.
func superviseFake(t *testing.T, bin, mode, stdin string, args ...string) []frame {
	t.Helper()
	return superviseFakeFrom(t, bin, mode, strings.NewReader(stdin), args...)
}

// superviseFakeFrom is superviseFake with stdin read from r.
func superviseFakeFrom(t *testing.T, bin, mode string, stdin io.Reader, args ...string) []frame {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"FAKE_MODE=" + mode, "ASAN_OPTIONS=detect_leaks=0", "UBSAN_OPTIONS=print_stacktrace=1"}
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil && !strings.Contains(err.Error(), "exit status 2") {
			t.Fatalf("supervisor: %v\nstderr: %s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("supervisor did not end; stderr: %s", stderr.String())
	}
	if s := stderr.String(); strings.Contains(s, "Sanitizer") || strings.Contains(s, "runtime error") {
		t.Fatalf("sanitizer report:\n%s", s)
	}
	var frames []frame
	fr := newFrameReader(&stdout, 16<<20)
	for {
		f, err := fr.next()
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			t.Fatalf("frame %d: %v", len(frames), err)
		}
		frames = append(frames, f)
	}
}

func runRequest(timeoutMS, stdoutCap, outputsCap int, body string) string {
	return requestHeader(time.Duration(timeoutMS)*time.Millisecond, stdoutCap, 1000, outputsCap, len(body)) + body
}

// verdictOf checks the frame sequence (ready, the execution's frames, exit
// last) and composes the result as the runner does.
func verdictOf(t *testing.T, frames []frame, timeout time.Duration) Result {
	t.Helper()
	if len(frames) < 2 || frames[0].kind != frameReady || frames[len(frames)-1].kind != frameExit {
		t.Fatalf("frames %v, want ready ... exit", kinds(frames))
	}
	var ef execFrames
	for _, f := range frames[1 : len(frames)-1] {
		if !ef.add(f) {
			t.Fatalf("unexpected frame %q among %v", f.kind, kinds(frames))
		}
	}
	ex, _ := decodeExit(t, frames[len(frames)-1].payload)
	res := Result{Outputs: emptyOutputs()}
	compose(ex, ef, timeout, &res)
	return res
}

// decodeExit decodes an exit frame, failing on any field the runner does
// not read: the verdict's (wireExit) and the session's memory_bytes.
func decodeExit(t *testing.T, payload []byte) (wireExit, int64) {
	t.Helper()
	var ex struct {
		wireExit
		MemoryBytes int64 `json:"memory_bytes"`
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ex); err != nil {
		t.Fatalf("exit frame %s: %v", payload, err)
	}
	if !bytes.Contains(payload, []byte(`"memory_bytes":`)) {
		t.Errorf("exit frame %s: no memory_bytes", payload)
	}
	return ex.wireExit, ex.MemoryBytes
}

func kinds(frames []frame) []string {
	var out []string
	for _, f := range frames {
		out = append(out, f.kind)
	}
	return out
}

func TestSupervisorWithFakeChild(t *testing.T) {
	t.Parallel()
	bin := buildSupervisor(t, fakeChild)
	const body = `{"code":"print(1)"}`
	for _, tc := range []struct {
		mode      string
		timeoutMS int
		check     func(t *testing.T, res Result)
	}{
		{"ok", 5000, func(t *testing.T, res Result) {
			if res.Status != StatusSuccess || res.Stdout != body+"\uFFFD" || res.Stderr != "err" ||
				res.Outputs.Variables["x"].Repr != "1" || res.ExecutionTime <= 0 || res.ExecutionTime > 5*time.Second {
				t.Errorf("result %+v", res)
			}
		}},
		{"error", 5000, func(t *testing.T, res Result) {
			if res.Status != StatusError || res.Error == nil || res.Error.Type != "ValueError" ||
				res.Error.Line == nil || *res.Error.Line != 2 || res.Error.Column != nil {
				t.Errorf("status %q error %+v", res.Status, res.Error)
			}
		}},
		// A hidden report leaves the exit status to decide: the child lingers
		// past the deadline here, so it is a timeout.
		{"garbage", 1500, func(t *testing.T, res Result) {
			if res.Status != StatusTimeout {
				t.Errorf("status %q error %+v", res.Status, res.Error)
			}
		}},
		{"malformed", 1500, func(t *testing.T, res Result) {
			if res.Status != StatusTimeout {
				t.Errorf("status %q error %+v", res.Status, res.Error)
			}
		}},
		{"big", 5000, func(t *testing.T, res Result) {
			if len(res.Stdout) != 1000 || !res.StdoutTruncated || res.StdoutBytes != 3<<20 ||
				!strings.Contains(res.Outputs.CollectError, "size limit") || res.Status != StatusSuccess {
				t.Errorf("stdout %d bytes (truncated %v, total %d), outputs %+v, status %q",
					len(res.Stdout), res.StdoutTruncated, res.StdoutBytes, res.Outputs, res.Status)
			}
		}},
		{"twice", 5000, func(t *testing.T, res Result) {
			if res.Status != StatusSuccess || res.Error != nil {
				t.Errorf("the first report should count: status %q error %+v", res.Status, res.Error)
			}
		}},
		{"sleep", 800, func(t *testing.T, res Result) {
			if res.Status != StatusTimeout || res.Stdout != "partial" || res.ExecutionTime < 800*time.Millisecond {
				t.Errorf("status %q stdout %q after %v", res.Status, res.Stdout, res.ExecutionTime)
			}
		}},
		{"closeall", 5000, func(t *testing.T, res Result) {
			if res.Status != StatusError || res.Error == nil || res.Error.Type != "ProcessExit" ||
				!strings.Contains(res.Error.Message, "code 5") {
				t.Errorf("status %q error %+v", res.Status, res.Error)
			}
		}},
		// The CPU time counts what ran after the request arrived, measured
		// by the supervisor: not the 300 ms before ready, nor the report's
		// claim; whether the child lingers (its clock) or exits (rusage).
		{"burn", 5000, func(t *testing.T, res Result) {
			if res.Status != StatusSuccess || res.Resources.CPUTime < 40*time.Millisecond || res.Resources.CPUTime > 250*time.Millisecond {
				t.Errorf("status %q cpu %v, want about 50ms", res.Status, res.Resources.CPUTime)
			}
		}},
		{"burnexit", 5000, func(t *testing.T, res Result) {
			if res.Resources.CPUTime < 40*time.Millisecond || res.Resources.CPUTime > 250*time.Millisecond {
				t.Errorf("status %q cpu %v, want about 50ms", res.Status, res.Resources.CPUTime)
			}
		}},
		{"segv", 5000, func(t *testing.T, res Result) {
			if res.Status != StatusError || res.Error == nil || res.Error.Message != "process was killed by signal SIGSEGV" {
				t.Errorf("status %q error %+v", res.Status, res.Error)
			}
		}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			timeout := time.Duration(tc.timeoutMS) * time.Millisecond
			frames := superviseFake(t, bin, tc.mode, runRequest(tc.timeoutMS, 1000, 1<<20, body))
			tc.check(t, verdictOf(t, frames, timeout))
		})
	}
}

// A request the supervisor cannot serve, or a child that never gets ready,
// ends in one error frame and nothing else.
func TestSupervisorRefuses(t *testing.T) {
	t.Parallel()
	bin := buildSupervisor(t, fakeChild)
	for _, tc := range []struct {
		name, mode, stdin, message string
	}{
		{"child dies", "noready", "", "failed to start"},
		{"child garbage", "badready", "", "failed to start"},
		{"no request", "ok", "", "request missing"},
		{"zero timeout", "ok", "run 0 1 1 1 2\n{}", "bad request header"},
		{"short header", "ok", "run 10 1 1 1\n{}", "bad request header"},
		{"huge body", "ok", "run 10 1 1 1 99999999999\n{}", "bad request header"},
		{"long header", "ok", strings.Repeat("x", 300), "request header too long"},
		{"truncated body", "ok", "run 1000 10 10 10 100\n{}", "request truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			frames := superviseFake(t, bin, tc.mode, tc.stdin)
			last := frames[len(frames)-1]
			if last.kind != frameError || !strings.Contains(string(last.payload), tc.message) {
				t.Fatalf("frames %v, last %q %s; want an error frame saying %q", kinds(frames), last.kind, last.payload, tc.message)
			}
			for _, f := range frames[:len(frames)-1] {
				if f.kind != frameReady {
					t.Errorf("frame %q before the error", f.kind)
				}
			}
		})
	}
}

// sessionCell is one cell's request for the fake session child: a "cell"
// header (the runner's cellHeader) and a body whose "do" the fake obeys.
func sessionCell(timeoutMS int, do string) string {
	body := `{"do":"` + do + `"}`
	return cellHeader(time.Duration(timeoutMS)*time.Millisecond, 1000, 1000, 1<<20, len(body)) + body
}

// staged is a stdin that hands out its parts one Read at a time, each after
// its pause: what the service writes over time on a session's stream.
type staged []stagedPart

type stagedPart struct {
	pause time.Duration
	data  string
}

func (s *staged) Read(p []byte) (int, error) {
	if len(*s) == 0 {
		return 0, io.EOF
	}
	part := &(*s)[0]
	if part.pause > 0 {
		time.Sleep(part.pause)
		part.pause = 0
	}
	n := copy(p, part.data)
	if part.data = part.data[n:]; part.data == "" {
		*s = (*s)[1:]
	}
	return n, nil
}

// cellResult is what the supervisor wrote for one cell.
type cellResult struct {
	frames execFrames
	exit   wireExit
	memory int64 // the exit frame's memory_bytes
}

// sessionCells checks the frame sequence of a session (ready, then each
// cell's frames ending in an exit frame, and nothing after the last exit)
// and splits it by cell.
func sessionCells(t *testing.T, frames []frame) []cellResult {
	t.Helper()
	if len(frames) == 0 || frames[0].kind != frameReady {
		t.Fatalf("frames %v, want ready first", kinds(frames))
	}
	var cells []cellResult
	var cur execFrames
	open := false
	for _, f := range frames[1:] {
		if f.kind != frameExit {
			if !cur.add(f) {
				t.Fatalf("unexpected frame %q among %v", f.kind, kinds(frames))
			}
			open = true
			continue
		}
		ex, memory := decodeExit(t, f.payload)
		cells = append(cells, cellResult{frames: cur, exit: ex, memory: memory})
		cur, open = execFrames{}, false
	}
	if open {
		t.Fatalf("frames after the last exit frame: %v", kinds(frames))
	}
	return cells
}

// TestSupervisorSession drives the supervisor's session mode with the fake
// child: cells in a row, interrupts that work and that do not, a child that
// exits, outputs over the cap, and the end of stdin between cells.
func TestSupervisorSession(t *testing.T) {
	t.Parallel()
	bin := buildSupervisor(t, fakeChild)

	t.Run("cells in a row", func(t *testing.T) {
		t.Parallel()
		stdin := sessionCell(5000, "print") + sessionCell(5000, "print") + sessionCell(5000, "print")
		start := time.Now()
		cells := sessionCells(t, superviseFake(t, bin, "session", stdin))
		if len(cells) != 3 {
			t.Fatalf("%d cells answered, want 3", len(cells))
		}
		for i, c := range cells {
			n := strconv.Itoa(i + 1)
			res := Result{Outputs: emptyOutputs()}
			compose(c.exit, c.frames, 5*time.Second, &res)
			if c.exit.State != sessionExitAlive || c.exit.TimedOut || res.Status != StatusSuccess ||
				res.Stdout != "cell "+n+"\n" || res.Stderr != "e"+n || res.Outputs.Variables["cell"].Repr != n {
				t.Errorf("cell %d: exit %+v, status %q, stdout %q, stderr %q, variables %v",
					i+1, c.exit, res.Status, res.Stdout, res.Stderr, res.Outputs.Variables)
			}
			// This cell's CPU only (the fake spins 20 ms a cell).
			if c.exit.CPUUS < 15_000 || c.exit.CPUUS > 500_000 {
				t.Errorf("cell %d: cpu_us %d, want about 20000", i+1, c.exit.CPUUS)
			}
		}
		// The end of stdin after the last cell ends the session at once.
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("the session took %v", d)
		}
	})

	t.Run("interrupt works", func(t *testing.T) {
		t.Parallel()
		stdin := sessionCell(5000, "print") + sessionCell(500, "interrupt") + sessionCell(5000, "print")
		cells := sessionCells(t, superviseFake(t, bin, "session", stdin))
		if len(cells) != 3 {
			t.Fatalf("%d cells answered, want 3", len(cells))
		}
		c := cells[1]
		elapsed := time.Duration(c.exit.ExecutionUS) * time.Microsecond
		if c.exit.State != sessionExitAlive || !c.exit.TimedOut || elapsed < 500*time.Millisecond ||
			elapsed > 500*time.Millisecond+interruptGrace {
			t.Errorf("interrupted cell: exit %+v after %v", c.exit, elapsed)
		}
		res := Result{Outputs: emptyOutputs()}
		compose(c.exit, c.frames, 500*time.Millisecond, &res)
		if res.Status != StatusTimeout {
			t.Errorf("interrupted cell: status %q", res.Status)
		}
		if c := cells[2]; c.exit.State != sessionExitAlive || c.exit.TimedOut || string(c.frames.stdout) != "cell 3\n" {
			t.Errorf("the cell after the interrupt: exit %+v stdout %q", c.exit, c.frames.stdout)
		}
	})

	t.Run("interrupt ignored", func(t *testing.T) {
		t.Parallel()
		// The third cell is never served: the session ended with the second.
		stdin := sessionCell(5000, "print") + sessionCell(500, "ignore") + sessionCell(5000, "print")
		cells := sessionCells(t, superviseFake(t, bin, "session", stdin))
		if len(cells) != 2 {
			t.Fatalf("%d cells answered, want 2", len(cells))
		}
		c := cells[1]
		elapsed := time.Duration(c.exit.ExecutionUS) * time.Microsecond
		if c.exit.State != exitSignaled || c.exit.Signal != 9 || !c.exit.TimedOut ||
			elapsed < 500*time.Millisecond+interruptGrace || elapsed > 500*time.Millisecond+interruptGrace+2*time.Second {
			t.Errorf("killed cell: exit %+v after %v", c.exit, elapsed)
		}
		if string(c.frames.stdout) != "spinning" || c.frames.gotReport {
			t.Errorf("killed cell: stdout %q, report %v", c.frames.stdout, c.frames.gotReport)
		}
		res := Result{Outputs: emptyOutputs()}
		compose(c.exit, c.frames, 500*time.Millisecond, &res)
		if res.Status != StatusTimeout {
			t.Errorf("killed cell: status %q", res.Status)
		}
	})

	// The service's interrupt line while a cell runs (its client left): the
	// cell is interrupted at once, says so, and the session lives on; a late
	// line, after its cell ended, is skipped.
	t.Run("cancelled", func(t *testing.T) {
		t.Parallel()
		stdin := &staged{
			{0, sessionCell(5000, "print") + sessionCell(30000, "interrupt")},
			{300 * time.Millisecond, controlInterrupt},
			{1500 * time.Millisecond, controlInterrupt + sessionCell(5000, "print")},
		}
		cells := sessionCells(t, superviseFakeFrom(t, bin, "session", stdin))
		if len(cells) != 3 {
			t.Fatalf("%d cells answered, want 3", len(cells))
		}
		c := cells[1]
		elapsed := time.Duration(c.exit.ExecutionUS) * time.Microsecond
		if c.exit.State != sessionExitAlive || !c.exit.Interrupted || c.exit.TimedOut || elapsed > 300*time.Millisecond+interruptGrace {
			t.Errorf("cancelled cell: exit %+v after %v", c.exit, elapsed)
		}
		res := Result{Outputs: emptyOutputs()}
		compose(c.exit, c.frames, 30*time.Second, &res)
		if res.Status != StatusError || res.Error == nil || res.Error.Type != "KeyboardInterrupt" {
			t.Errorf("cancelled cell: status %q, error %+v", res.Status, res.Error)
		}
		for _, i := range []int{0, 2} {
			if c := cells[i]; c.exit.State != sessionExitAlive || c.exit.Interrupted || string(c.frames.stdout) != fmt.Sprintf("cell %d\n", i+1) {
				t.Errorf("cell %d: exit %+v stdout %q", i+1, c.exit, c.frames.stdout)
			}
		}
	})

	// The line comes with the cell, before the child runs the user's code
	// (SIGINT is ignored until then): SIGINT is repeated in the grace.
	t.Run("cancelled at once", func(t *testing.T) {
		t.Parallel()
		cells := sessionCells(t, superviseFake(t, bin, "session", sessionCell(30000, "interrupt")+controlInterrupt))
		if len(cells) != 1 {
			t.Fatalf("%d cells answered, want 1", len(cells))
		}
		c := cells[0]
		elapsed := time.Duration(c.exit.ExecutionUS) * time.Microsecond
		if c.exit.State != sessionExitAlive || !c.exit.Interrupted || c.exit.TimedOut || elapsed > interruptGrace {
			t.Errorf("cancelled cell: exit %+v after %v", c.exit, elapsed)
		}
	})

	t.Run("cancelled, not stopping", func(t *testing.T) {
		t.Parallel()
		stdin := &staged{{0, sessionCell(30000, "ignore")}, {300 * time.Millisecond, controlInterrupt}}
		cells := sessionCells(t, superviseFakeFrom(t, bin, "session", stdin))
		if len(cells) != 1 {
			t.Fatalf("%d cells answered, want 1", len(cells))
		}
		c := cells[0]
		elapsed := time.Duration(c.exit.ExecutionUS) * time.Microsecond
		if c.exit.State != exitSignaled || c.exit.Signal != 9 || !c.exit.Interrupted || c.exit.TimedOut ||
			elapsed < interruptGrace || elapsed > 300*time.Millisecond+interruptGrace+2*time.Second {
			t.Errorf("killed cell: exit %+v after %v", c.exit, elapsed)
		}
		res := Result{Outputs: emptyOutputs()}
		compose(c.exit, c.frames, 30*time.Second, &res)
		if res.Status != StatusError || res.Error == nil || res.Error.Type != "KeyboardInterrupt" || res.Resources.OOMKilled {
			t.Errorf("killed cell: status %q, error %+v", res.Status, res.Error)
		}
	})

	t.Run("child exits", func(t *testing.T) {
		t.Parallel()
		stdin := sessionCell(5000, "print") + sessionCell(5000, "exit") + sessionCell(5000, "print")
		cells := sessionCells(t, superviseFake(t, bin, "session", stdin))
		if len(cells) != 2 {
			t.Fatalf("%d cells answered, want 2", len(cells))
		}
		if c := cells[1]; c.exit.State != exitExited || c.exit.ExitCode != 3 || c.exit.TimedOut || string(c.frames.stdout) != "bye" {
			t.Errorf("exited cell: exit %+v stdout %q", c.exit, c.frames.stdout)
		}
	})

	t.Run("oversized messages", func(t *testing.T) {
		t.Parallel()
		stdin := sessionCell(5000, "big") + sessionCell(5000, "hugereport") + sessionCell(5000, "print")
		cells := sessionCells(t, superviseFake(t, bin, "session", stdin))
		if len(cells) != 3 {
			t.Fatalf("%d cells answered, want 3", len(cells))
		}
		// Outputs over their cap are dropped (the pipe stays in step: the
		// next cells are answered), the first report counts.
		if c := cells[0]; c.exit.State != sessionExitAlive || c.exit.TimedOut || !c.exit.OutputsOverflow ||
			c.frames.gotOutputs || string(c.frames.report) != `{"error":null}` {
			t.Errorf("big outputs: exit %+v, outputs %v, report %s", c.exit, c.frames.gotOutputs, c.frames.report)
		}
		if c := cells[1]; c.exit.State != sessionExitAlive || c.exit.TimedOut || c.frames.gotReport || !c.frames.gotOutputs {
			t.Errorf("report over its cap: exit %+v, report %v, outputs %v", c.exit, c.frames.gotReport, c.frames.gotOutputs)
		}
		if c := cells[2]; c.exit.State != sessionExitAlive || string(c.frames.stdout) != "cell 3\n" {
			t.Errorf("the cell after: exit %+v stdout %q", c.exit, c.frames.stdout)
		}
	})

	t.Run("no cell", func(t *testing.T) {
		t.Parallel()
		// stdin ends before the first header: an error, as single-shot.
		frames := superviseFake(t, bin, "session", "")
		if last := frames[len(frames)-1]; last.kind != frameError {
			t.Errorf("frames %v, want ready and an error", kinds(frames))
		}
	})

	for _, tc := range []struct{ name, next, message string }{
		{"oversized header", "cell 1000 10 10 10 999999999999\n{}", "bad request header"},
		{"too large body", fmt.Sprintf("cell 1000 10 10 10 %d\n{}", 96<<20+1), "bad request header"},
		{"run in a session", "run 1000 10 10 10 2\n{}", "bad request header"},
		{"long header", strings.Repeat("7", 300), "request header too long"},
		{"truncated header", "cell 1000 10", "request missing"},
		{"truncated body", "cell 1000 10 10 10 100\n{}", "request truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			frames := superviseFake(t, bin, "session", sessionCell(5000, "print")+tc.next)
			last := frames[len(frames)-1]
			if last.kind != frameError || !strings.Contains(string(last.payload), tc.message) {
				t.Fatalf("frames %v, last %q %s; want an error frame saying %q", kinds(frames), last.kind, last.payload, tc.message)
			}
			if cells := sessionCells(t, frames[:len(frames)-1]); len(cells) != 1 || cells[0].exit.State != sessionExitAlive {
				t.Errorf("the first cell: %+v", cells)
			}
		})
	}
}

// checkedCell is a cell with a check request for the session's checker
// (roundTrip's form): code is what the checker sees, do what the fake child
// does if the cell reaches it.
func checkedCell(t *testing.T, id, code, do string) string {
	t.Helper()
	line, err := checkRequest(id, code)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"do":"` + do + `"}`
	return withCheckFlag(cellHeader(5*time.Second, 1000, 1000, 1<<20, len(body)), false, len(line)) + string(line) + body
}

// TestSupervisorChecker drives a session's policy checker (supervisor
// --policy, the real validate.py --checker) with the fake child: a passed
// cell runs, a refused one never reaches the child, and a checker that is
// gone or a check that cannot be read ends the session with an error.
func TestSupervisorChecker(t *testing.T) {
	t.Parallel()
	bin := buildSupervisor(t, fakeChild)
	rules, err := json.Marshal(policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	sum := policyDigest(rules)
	withPolicy := []string{"--policy", string(rules)}

	t.Run("pass and refuse", func(t *testing.T) {
		t.Parallel()
		stdin := checkedCell(t, "1", "print('成功')", "print") +
			checkedCell(t, "2", "import os\nopen('/etc/passwd')", "print") +
			checkedCell(t, "3", "x = 1", "print")
		frames := superviseFake(t, bin, "session", stdin, withPolicy...)
		var answers []Validation
		var rest []frame
		for i, f := range frames {
			if f.kind != frameValidation {
				rest = append(rest, f)
				continue
			}
			v, err := parseValidation(f.payload, strconv.Itoa(len(answers)+1), sum)
			if err != nil {
				t.Fatalf("validation frame %d: %v", i, err)
			}
			answers = append(answers, v)
		}
		if len(answers) != 3 || !answers[0].Valid || answers[1].Valid || !answers[2].Valid {
			t.Fatalf("answers %+v, want valid, refused, valid", answers)
		}
		rules := map[string]bool{}
		for _, e := range answers[1].Errors {
			rules[e.Rule] = true
		}
		if len(rules) < 2 {
			t.Errorf("refused cell: errors %+v, want the import and the open", answers[1].Errors)
		}
		cells := sessionCells(t, rest)
		if len(cells) != 3 {
			t.Fatalf("%d cells answered, want 3 (frames %v)", len(cells), kinds(frames))
		}
		if c := cells[1]; c.exit.State != sessionExitRefused || c.frames.gotStdout || c.frames.gotReport {
			t.Errorf("refused cell: exit %+v, frames %+v", c.exit, c.frames)
		}
		// The child counts the cells it saw: the refused one is not among them.
		for i, want := range map[int]string{0: "cell 1\n", 2: "cell 2\n"} {
			if c := cells[i]; c.exit.State != sessionExitAlive || string(c.frames.stdout) != want {
				t.Errorf("cell %d: exit %+v stdout %q, want %q", i+1, c.exit, c.frames.stdout, want)
			}
		}
	})

	for _, tc := range []struct {
		name, stdin, message string
		args                 []string
	}{
		{"checker killed", checkedCell(t, "1", "y = 2", "killchecker") + checkedCell(t, "2", "y = 3", "print"),
			"the policy checker did not answer", withPolicy},
		{"two lines", withCheckFlag(cellHeader(time.Second, 10, 10, 10, 2), false, 4) + "{}\n\n{}",
			"bad check request", withPolicy},
		{"no checker", checkedCell(t, "1", "y = 2", "print"), "no policy checker", nil},
		{"bad policy", checkedCell(t, "1", "y = 2", "print"), "the policy checker failed to start", []string{"--policy", "[]"}},
		{"bad arguments", "", "usage", []string{"--policy"}},
		{"flag without length", "cell 1000 10 10 10 2 2\n{}", "bad request header", withPolicy},
		{"length without flag", "cell 1000 10 10 10 2 0 5\n{}", "bad request header", withPolicy},
		{"check on run", "run 1000 10 10 10 2 2 5\n{}", "bad request header", withPolicy},
		{"check too long", fmt.Sprintf("cell 1000 10 10 10 2 2 %d\n{}", 1<<20+1), "bad request header", withPolicy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			frames := superviseFake(t, bin, "session", tc.stdin, tc.args...)
			last := frames[len(frames)-1]
			if last.kind != frameError || !strings.Contains(string(last.payload), tc.message) {
				t.Fatalf("frames %v, last %q %s; want an error frame saying %q", kinds(frames), last.kind, last.payload, tc.message)
			}
		})
	}
}
