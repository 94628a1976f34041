package runner_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/policy"
	"github.com/pyexec/pyexec/runner"
)

// strict sets the default language policy (POLICY=strict).
func strict(o *runner.Options) {
	rules := policy.Default()
	o.Policy = &rules
}

// newSession creates a session and fails the test on error.
func (e *env) newSession(t *testing.T) string {
	t.Helper()
	info, err := e.r.CreateSession(t.Context(), runner.SessionOptions{Timeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	if len(info.ID) != 43 || info.ExpiresAt.Sub(info.CreatedAt) != e.r.Options().SessionMaxLifetime {
		t.Fatalf("session %+v", info)
	}
	return info.ID
}

// cell runs code in session id and fails the test on a service error.
func (e *env) cell(t *testing.T, id, code string, files ...runner.File) runner.Result {
	t.Helper()
	res, err := e.r.RunInSession(t.Context(), id, runner.Request{Code: code, Timeout: 60 * time.Second, Files: files})
	if err != nil {
		t.Fatalf("RunInSession(%.60q): %v", code, err)
	}
	if res.Session == nil || res.Session.ID != id {
		t.Fatalf("RunInSession(%.60q): session %+v", code, res.Session)
	}
	return res
}

// ok fails the test unless res succeeded.
func ok(t *testing.T, res runner.Result) runner.Result {
	t.Helper()
	if res.Status != runner.StatusSuccess {
		t.Fatalf("status %s, error %+v, stderr %.500s", res.Status, res.Error, res.Stderr)
	}
	return res
}

// noContainers waits until no session container of the test is left
// (removals run in the background; the validator's stays).
func (e *env) noContainers(t *testing.T, when string) {
	t.Helper()
	e.r.Wait()
	dockertest.WaitFor(t, "no session container left "+when, 10*time.Second, func() bool {
		for _, c := range dockertest.Containers(t, e.cli, e.owner) {
			if c.Labels[runner.LabelRole] == "session" {
				return false
			}
		}
		return true
	})
}

// salesCSV is a CSV of n rows with Chinese region names.
func salesCSV(n int) []byte {
	regions := []string{"华东", "华北", "华南", "西部"}
	var b bytes.Buffer
	b.WriteString("date,region,amount\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "2024-%02d-%02d,%s,%d.%02d\n", 1+i%12, 1+i%28, regions[i%len(regions)], 10+i%90, i%100)
	}
	return b.Bytes()
}

// TestSessionAnalystLoop is the loop under POLICY=strict: state
// persists between cells, an uploaded CSV is read with pandas, a later cell
// groups, plots and writes outputs/by_region.csv, and the file downloads
// with the same bytes; Chinese file names work; DELETE removes the
// container and later calls get 404.
func TestSessionAnalystLoop(t *testing.T) {
	e := newEnv(t, strict)
	id := e.newSession(t)

	ok(t, e.cell(t, id, "x = 41"))
	res := ok(t, e.cell(t, id, "x + 1"))
	if res.Outputs.Result == nil || res.Outputs.Result.Repr != "42" || res.Session.Executions != 2 {
		t.Fatalf("x + 1: result %+v, session %+v", res.Outputs.Result, res.Session)
	}

	ok(t, e.cell(t, id, "import pandas as pd\nimport matplotlib.pyplot as plt"))
	res = ok(t, e.cell(t, id, "pd.__name__"))
	if res.Outputs.Result == nil || res.Outputs.Result.Repr != "'pandas'" {
		t.Fatalf("pd in a later cell: %+v", res.Outputs.Result)
	}

	sales := salesCSV(10000)
	res = ok(t, e.cell(t, id, "df = pd.read_csv(\"sales.csv\")\nlen(df), df['region'].nunique()",
		runner.File{Name: "sales.csv", Data: sales}))
	if res.Outputs.Result == nil || res.Outputs.Result.Repr != "(10000, 4)" {
		t.Fatalf("read_csv: %+v", res.Outputs.Result)
	}

	res = ok(t, e.cell(t, id, `by_region = df.groupby("region")["amount"].sum().sort_values()
by_region.to_csv("outputs/by_region.csv")
by_region.plot.barh(title="按地区销售额")
plt.show()
`))
	if len(res.Outputs.Charts) != 1 {
		t.Errorf("charts: %d", len(res.Outputs.Charts))
	}
	if len(res.Outputs.Files) != 1 || res.Outputs.Files[0].Name != "by_region.csv" ||
		!strings.HasPrefix(res.Outputs.Files[0].Mime, "text/csv") || res.Outputs.Files[0].Size != int64(len(res.Outputs.Files[0].Content)) {
		t.Fatalf("files: %+v", res.Outputs.Files)
	}
	content := res.Outputs.Files[0].Content
	if !bytes.HasPrefix(content, []byte("region,amount\n")) || !bytes.Contains(content, []byte("华东,")) {
		t.Errorf("by_region.csv: %q", content)
	}
	got, err := e.r.SessionFile(t.Context(), id, "by_region.csv")
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("SessionFile: %q, %v; want the cell's %q", got, err, content)
	}
	if got, err := e.r.SessionFile(t.Context(), id, "outputs/by_region.csv"); err != nil || !bytes.Equal(got, content) {
		t.Errorf("SessionFile(outputs/...): %v", err)
	}
	if got, err := e.r.SessionFile(t.Context(), id, "sales.csv"); err != nil || !bytes.Equal(got, sales) {
		t.Errorf("SessionFile(sales.csv): %d bytes, %v", len(got), err)
	}
	if _, err := e.r.SessionFile(t.Context(), id, "nothing.csv"); !errors.Is(err, runner.ErrFileNotFound) {
		t.Errorf("missing file: %v", err)
	}

	// A cell that writes nothing new lists no file.
	if res := ok(t, e.cell(t, id, "1")); len(res.Outputs.Files) != 0 {
		t.Errorf("unchanged outputs listed again: %+v", res.Outputs.Files)
	}

	// Chinese names: PUT, read, written back, downloaded.
	if err := e.r.PutSessionFile(t.Context(), id, "销售.csv", []byte("地区,金额\n华东,1\n")); err != nil {
		t.Fatal(err)
	}
	res = ok(t, e.cell(t, id, "pd.read_csv(\"销售.csv\").to_csv(\"outputs/汇总.csv\", index=False)"))
	if len(res.Outputs.Files) != 1 || res.Outputs.Files[0].Name != "汇总.csv" || string(res.Outputs.Files[0].Content) != "地区,金额\n华东,1\n" {
		t.Errorf("Chinese names: %+v", res.Outputs.Files)
	}
	if got, err := e.r.SessionFile(t.Context(), id, "汇总.csv"); err != nil || string(got) != "地区,金额\n华东,1\n" {
		t.Errorf("SessionFile(汇总.csv): %q %v", got, err)
	}

	info, err := e.r.Session(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int64{}
	for _, f := range info.Files {
		names[f.Name] = f.Size
	}
	if names["sales.csv"] != int64(len(sales)) || names["outputs/by_region.csv"] != int64(len(content)) || info.Executions < 7 ||
		info.MemoryBytes <= 0 || info.State != runner.SessionStateIdle {
		t.Errorf("Session: %+v", info)
	}

	if err := e.r.DeleteSession(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	e.noContainers(t, "after DELETE")
	_, err = e.r.RunInSession(t.Context(), id, runner.Request{Code: "x", Timeout: time.Second})
	var gone *runner.SessionGoneError
	if !errors.As(err, &gone) || gone.Reason != runner.EndDeleted || !errors.Is(err, runner.ErrSessionNotFound) {
		t.Errorf("after DELETE: %v", err)
	}
	if _, err := e.r.SessionFile(t.Context(), id, "sales.csv"); !errors.Is(err, runner.ErrSessionNotFound) {
		t.Errorf("file after DELETE: %v", err)
	}
}

// TestSessionsIsolated: two sessions at once see neither each other's
// variables, nor files, nor processes (POLICY=off: the container alone
// holds the line).
func TestSessionsIsolated(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.newSession(t), e.newSession(t)
	ok(t, e.cell(t, a, "import subprocess\nsecret = 'only in a'\nopen('a.txt', 'w').write('a')\np = subprocess.Popen(['sleep', '987'])"))
	res := ok(t, e.cell(t, b, `import os
seen = []
for pid in os.listdir('/proc'):
    if pid.isdigit():
        try:
            seen.append(open(f'/proc/{pid}/cmdline', 'rb').read())
        except OSError:
            pass
('secret' in globals(), os.path.exists('a.txt'), any(b'987' in c for c in seen), len(seen) > 0)`))
	if res.Outputs.Result == nil || res.Outputs.Result.Repr != "(False, False, False, True)" {
		t.Errorf("b sees a: %+v", res.Outputs.Result)
	}
	res = ok(t, e.cell(t, a, "secret, p.poll() is None"))
	if res.Outputs.Result == nil || res.Outputs.Result.Repr != "('only in a', True)" {
		t.Errorf("a lost its state: %+v", res.Outputs.Result)
	}
}

// TestSessionIdleReaped: a session idle past its idle timeout is ended by
// the janitor; the next call gets 404 saying so, and the container is gone.
func TestSessionIdleReaped(t *testing.T) {
	e := newEnv(t, func(o *runner.Options) { o.SessionIdleTimeout = time.Second })
	e.r.Start(t.Context())
	id := e.newSession(t)
	ok(t, e.cell(t, id, "x = 1"))
	dockertest.WaitFor(t, "the idle session to be ended", 10*time.Second, func() bool {
		_, err := e.r.Session(t.Context(), id)
		return errors.Is(err, runner.ErrSessionNotFound)
	})
	_, err := e.r.RunInSession(t.Context(), id, runner.Request{Code: "x", Timeout: time.Second})
	var gone *runner.SessionGoneError
	if !errors.As(err, &gone) || gone.Reason != runner.EndIdle {
		t.Errorf("after the idle timeout: %v", err)
	}
	e.noContainers(t, "after the idle timeout")
}

// interruptWant is what a session's interrupted cells answer (see
// checkInterrupts): the status of both, their error type ("" unchecked), the
// end reason of the one that does not stop, and how long after its start
// the interrupt comes.
type interruptWant struct {
	status, errType, reason string
	after                   time.Duration
}

// checkInterrupts runs, through run, in session id (where x = 41), a Python
// loop that the interrupt stops: the session lives on with its state; then
// one C call that it does not stop: the session ends cleanly with
// want.reason, the answer says so, and nothing is left. Each answers within
// want.after + 2 s (3 s for the kill).
func (e *env) checkInterrupts(t *testing.T, id string, run func(code string) (runner.Result, time.Duration), want interruptWant) {
	t.Helper()
	errOK := func(res runner.Result) bool {
		return want.errType == "" || (res.Error != nil && res.Error.Type == want.errType)
	}
	res, took := run("n = 0\nwhile True:\n    n += 1\n")
	if res.Status != want.status || !errOK(res) || res.Session.Ended || took > want.after+dockertest.Scale(2*time.Second) {
		t.Fatalf("Python loop: %s after %v, session %+v, error %+v", res.Status, took, res.Session, res.Error)
	}
	res = ok(t, e.cell(t, id, "x + 1, n > 0"))
	if res.Outputs.Result == nil || res.Outputs.Result.Repr != "(42, True)" {
		t.Errorf("after the interrupt: %+v", res.Outputs.Result)
	}

	res, took = run("sum(range(10**13))") // one C call: no bytecode, no interrupt
	if res.Status != want.status || !errOK(res) || !res.Session.Ended || res.Session.EndReason != want.reason ||
		took > want.after+dockertest.Scale(3*time.Second) || res.Error == nil || !strings.Contains(res.Error.Message, "session") {
		t.Fatalf("C loop: %s after %v, session %+v, error %+v", res.Status, took, res.Session, res.Error)
	}
	_, err := e.r.RunInSession(t.Context(), id, runner.Request{Code: "x", Timeout: time.Second})
	var gone *runner.SessionGoneError
	if !errors.As(err, &gone) || gone.Reason != want.reason {
		t.Errorf("after the C loop: %v", err)
	}
	e.noContainers(t, "after the session ended")
}

// TestSessionTimeout: a runaway Python loop is interrupted at the limit and
// the session lives on; a loop in C that ignores the interrupt ends the
// session cleanly, and the answer says so. Both within the limit + 2 s.
func TestSessionTimeout(t *testing.T) {
	e := newEnv(t, strict)
	id := e.newSession(t)
	ok(t, e.cell(t, id, "x = 41"))
	const limit = 2 * time.Second
	e.checkInterrupts(t, id, func(code string) (runner.Result, time.Duration) {
		start := time.Now()
		res, err := e.r.RunInSession(t.Context(), id, runner.Request{Code: code, Timeout: limit})
		if err != nil {
			t.Fatalf("%q: %v", code, err)
		}
		return res, time.Since(start)
	}, interruptWant{status: runner.StatusTimeout, reason: runner.EndTimeout, after: limit})
}

// TestSessionCellCancelled: a cell whose request is cancelled (its client
// left) is interrupted at once, as at its deadline, instead of running on
// to it: Python code stops and the session lives on with its state; code
// that does not stop (one C call) ends the session, reason "interrupted".
func TestSessionCellCancelled(t *testing.T) {
	e := newEnv(t, strict)
	id := e.newSession(t)
	ok(t, e.cell(t, id, "x = 41"))
	const cancelAfter = 500 * time.Millisecond
	e.checkInterrupts(t, id, func(code string) (runner.Result, time.Duration) {
		ctx, cancel := context.WithCancel(t.Context())
		timer := time.AfterFunc(cancelAfter, cancel)
		defer timer.Stop()
		start := time.Now()
		res, err := e.r.RunInSession(ctx, id, runner.Request{Code: code, Timeout: 60 * time.Second})
		if err != nil {
			t.Fatalf("%q: %v", code, err)
		}
		return res, time.Since(start)
	}, interruptWant{status: runner.StatusError, errType: "KeyboardInterrupt", reason: runner.EndInterrupted, after: cancelAfter})
}

// TestSessionCheckerRefuses: under POLICY=strict a session's own checker
// refuses a cell that breaks the policy; the cell never runs (the session's
// state and count are unchanged) and the session lives on.
func TestSessionCheckerRefuses(t *testing.T) {
	e := newEnv(t, strict)
	id := e.newSession(t)
	ok(t, e.cell(t, id, "x = 41"))
	res := e.cell(t, id, "x = 0\nimport os\nos.listdir('/')")
	if !res.Rejected || res.Error == nil || res.Error.Type != "PolicyViolation" || len(res.Violations) == 0 ||
		res.Flavor != runner.FlavorValidator || res.Session.Ended || res.Session.Executions != 1 {
		t.Fatalf("refused cell: rejected %v, error %+v, violations %+v, flavor %q, session %+v",
			res.Rejected, res.Error, res.Violations, res.Flavor, res.Session)
	}
	res = ok(t, e.cell(t, id, "x + 1"))
	if res.Outputs.Result == nil || res.Outputs.Result.Repr != "42" || res.Session.Executions != 2 {
		t.Errorf("after the refusal: result %+v, session %+v", res.Outputs.Result, res.Session)
	}
	if res := e.cell(t, id, "def f(:\n  pass"); !res.Rejected || res.Error == nil || res.Error.Type != "SyntaxError" {
		t.Errorf("syntax error: rejected %v, error %+v", res.Rejected, res.Error)
	}
	if err := e.r.DeleteSession(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	e.noContainers(t, "after DELETE")
}

// TestSessionCheckerOutOfReach: a session's code that gets past the policy
// (here a policy that allows os) can neither read the checker's memory,
// environment nor descriptors (it is not dumpable), and killing it ends the
// session with a clear answer: no later cell runs unchecked.
func TestSessionCheckerOutOfReach(t *testing.T) {
	e := newEnv(t, func(o *runner.Options) {
		o.Policy = &policy.Rules{AllowedModules: []string{"os", "signal", "glob"}}
	})
	id := e.newSession(t)
	res := ok(t, e.cell(t, id, `import glob, os, signal
pids = []
for c in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        if b"--checker" in open(c, "rb").read():
            pids.append(int(c.split("/")[2]))
    except OSError:
        pass
seen = {}
for p in pids:
    for what in ("environ", "mem", "maps", "fd/0", "fd/1"):
        try:
            open("/proc/%d/%s" % (p, what), "rb").read(1)
            seen[what] = "read"
        except OSError as e:
            seen[what] = "EACCES" if e.errno == 13 else e.strerror
print(len(pids), sorted(seen.items()))
`))
	want := "1 [('environ', 'EACCES'), ('fd/0', 'EACCES'), ('fd/1', 'EACCES'), ('maps', 'EACCES'), ('mem', 'EACCES')]\n"
	if res.Stdout != want {
		t.Fatalf("reaching the checker: %q, want %q", res.Stdout, want)
	}
	ok(t, e.cell(t, id, "os.kill(pids[0], signal.SIGKILL)"))
	res = e.cell(t, id, "1")
	if res.Status != runner.StatusError || res.Error == nil || !strings.Contains(res.Error.Message, "policy checker") ||
		!res.Session.Ended || res.Outputs.Result != nil {
		t.Fatalf("after killing the checker: status %s, error %+v, session %+v", res.Status, res.Error, res.Session)
	}
	if _, err := e.r.RunInSession(t.Context(), id, runner.Request{Code: "1", Timeout: time.Second}); !errors.Is(err, runner.ErrSessionNotFound) {
		t.Errorf("a cell after the session ended: %v", err)
	}
	e.noContainers(t, "after the checker was killed")
}

// TestSessionOutOfMemory: the kernel's OOM kill ends the session, and the
// answer says so.
func TestSessionOutOfMemory(t *testing.T) {
	e := newEnv(t, func(o *runner.Options) { o.SessionMemoryBytes = 128 << 20 })
	id := e.newSession(t)
	res := e.cell(t, id, "blocks = []\nwhile True:\n    blocks.append(bytearray(16 << 20))\n")
	if res.Status != runner.StatusOutOfMemory || !res.Session.Ended || res.Session.EndReason != runner.EndOutOfMemory ||
		res.Resources.MemoryLimitBytes != 128<<20 {
		t.Fatalf("status %s, session %+v, resources %+v", res.Status, res.Session, res.Resources)
	}
	if _, err := e.r.Session(t.Context(), id); !errors.Is(err, runner.ErrSessionNotFound) {
		t.Errorf("after OOM: %v", err)
	}
}

// TestSessionHostileOutputs: a symlink and a FIFO in outputs/ are neither
// followed nor opened, and nothing hangs; single-shot and session alike.
func TestSessionHostileOutputs(t *testing.T) {
	e := newEnv(t, nil)
	code := `import os
os.symlink('/etc/passwd', 'outputs/link')
os.mkfifo('outputs/fifo')
os.makedirs('outputs/d1/d2/d3/d4/d5')
open('outputs/d1/d2/d3/d4/d5/deep.txt', 'w').write('deep')
open('outputs/ok.txt', 'w').write('ok')
`
	check := func(what string, res runner.Result, took time.Duration) {
		t.Helper()
		ok(t, res)
		if took > dockertest.Scale(15*time.Second) {
			t.Errorf("%s took %v", what, took)
		}
		if len(res.Outputs.Files) != 1 || res.Outputs.Files[0].Name != "ok.txt" || string(res.Outputs.Files[0].Content) != "ok" {
			t.Errorf("%s: files %+v", what, res.Outputs.Files)
		}
		reasons := map[string]string{}
		for _, s := range res.Outputs.FilesSkipped {
			reasons[s.Name] = s.Reason
		}
		if reasons["link"] != "symlink" || reasons["fifo"] != "fifo" {
			t.Errorf("%s: skipped %+v", what, res.Outputs.FilesSkipped)
		}
	}
	start := time.Now()
	res, err := e.r.Run(t.Context(), runner.Request{Code: code, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	check("single-shot", res, time.Since(start))

	id := e.newSession(t)
	start = time.Now()
	check("session", e.cell(t, id, code), time.Since(start))
	if _, err := e.r.SessionFile(t.Context(), id, "link"); !errors.Is(err, runner.ErrFileRefused) && !errors.Is(err, runner.ErrFileNotFound) {
		t.Errorf("download of a symlink: %v", err)
	}
	start = time.Now()
	if _, err := e.r.SessionFile(t.Context(), id, "fifo"); err == nil || time.Since(start) > dockertest.Scale(10*time.Second) {
		t.Errorf("download of a FIFO: %v after %v", err, time.Since(start))
	}
	if _, err := e.r.Session(t.Context(), id); err != nil {
		t.Errorf("Session after hostile outputs: %v", err)
	}
}

// TestExecuteWithFiles: single-shot executions read their input files under
// POLICY=strict, and write outputs.
func TestExecuteWithFiles(t *testing.T) {
	e := newEnv(t, strict)
	res, err := e.r.Run(t.Context(), runner.Request{
		Code: `import pandas as pd
import numpy as np
df = pd.read_csv("sales.csv")
np.savetxt("outputs/amounts.txt", df["amount"].to_numpy()[:3])
df.groupby("region")["amount"].sum().to_csv("outputs/summary.csv")
len(df)`,
		Timeout: 60 * time.Second,
		Files:   []runner.File{{Name: "sales.csv", Data: salesCSV(100)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ok(t, res)
	if res.Outputs.Result == nil || res.Outputs.Result.Repr != "100" || len(res.Outputs.Files) != 2 {
		t.Errorf("result %+v, files %+v", res.Outputs.Result, res.Outputs.Files)
	}
}

// TestSessionInputFilesRefused: names the handlers refuse are refused by
// the runner too, before any container exists.
func TestSessionInputFilesRefused(t *testing.T) {
	e := newEnv(t, nil)
	for _, name := range []string{"../x", "/etc/passwd", "a/b", "a\x00b", "", ".."} {
		_, err := e.r.Run(t.Context(), runner.Request{Code: "1", Timeout: time.Second, Files: []runner.File{{Name: name}}})
		if !errors.Is(err, runner.ErrInvalidFile) {
			t.Errorf("Run with %q: %v", name, err)
		}
		if _, err := e.r.RunInSession(t.Context(), "x", runner.Request{Code: "1", Timeout: time.Second, Files: []runner.File{{Name: name}}}); !errors.Is(err, runner.ErrInvalidFile) {
			t.Errorf("RunInSession with %q: %v", name, err)
		}
	}
	if n := e.r.Stats().ContainersCreated; n != 0 {
		t.Errorf("%d containers created", n)
	}
}

// TestSessionLimits: MaxSessions, the queue of one session (409 past it),
// and Close ending every session.
func TestSessionLimits(t *testing.T) {
	e := newEnv(t, func(o *runner.Options) { o.MaxSessions = 1 })
	id := e.newSession(t)
	if _, err := e.r.CreateSession(t.Context(), runner.SessionOptions{}); !errors.Is(err, runner.ErrTooManySessions) {
		t.Errorf("second session: %v", err)
	}

	// One cell runs, 4 wait, the rest are refused at once.
	var wg sync.WaitGroup
	var mu sync.Mutex
	busy, done := 0, 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.r.RunInSession(t.Context(), id, runner.Request{Code: "import time\ntime.sleep(1)", Timeout: 30 * time.Second})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, runner.ErrSessionBusy):
				busy++
			case err == nil:
				done++
			default:
				t.Errorf("cell: %v", err)
			}
		}()
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	if busy != 3 || done != 5 {
		t.Errorf("%d ran, %d refused busy; want 5 and 3", done, busy)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if left := dockertest.Containers(t, e.cli, e.owner); len(left) != 0 {
		t.Errorf("%d containers left after Close", len(left))
	}
	if _, err := e.r.Session(t.Context(), id); !errors.Is(err, runner.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

// TestReapRemovesSessions: the sessions of a previous instance (same owner)
// are removed at start like its other containers.
func TestReapRemovesSessions(t *testing.T) {
	e := newEnv(t, nil)
	old, err := runner.New(e.cli, e.r.Options())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.CreateSession(t.Context(), runner.SessionOptions{Timeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	n, err := e.r.Reap(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("Reap = %d, %v; want the old session removed", n, err)
	}
	e.noContainers(t, "after Reap")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := old.Close(ctx); err != nil {
		t.Error(err)
	}
}
