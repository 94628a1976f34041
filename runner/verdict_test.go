package runner

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/policy"
)

func TestDecideStatus(t *testing.T) {
	valueErr := &childReport{err: &ExecError{Type: "ValueError", Message: "bad"}}
	memErr := &childReport{err: &ExecError{Type: "MemoryError"}}
	ok := &childReport{}
	for _, tc := range []struct {
		name     string
		ex       wireExit
		rep      *childReport
		status   string
		errType  string
		contains string
	}{
		{"timeout wins", wireExit{State: exitSignaled, Signal: 9, TimedOut: true, OOMKilled: true}, ok,
			StatusTimeout, "TimeoutError", "time limit of 2s"},
		{"oom counter", wireExit{State: exitReported, OOMKilled: true}, ok, StatusOutOfMemory, "MemoryError", "out of memory"},
		{"sigkill without report", wireExit{State: exitSignaled, Signal: 9}, nil, StatusOutOfMemory, "MemoryError", ""},
		{"report success", wireExit{State: exitReported}, ok, StatusSuccess, "", ""},
		{"report error", wireExit{State: exitExited}, valueErr, StatusError, "ValueError", "bad"},
		{"report MemoryError", wireExit{State: exitReported}, memErr, StatusOutOfMemory, "MemoryError", ""},
		{"crash", wireExit{State: exitSignaled, Signal: 11}, nil, StatusError, "ProcessCrash", "SIGSEGV"},
		{"unknown signal", wireExit{State: exitSignaled, Signal: 99}, nil, StatusError, "ProcessCrash", "99"},
		{"exit code", wireExit{State: exitExited, ExitCode: 3}, nil, StatusError, "ProcessExit", "code 3"},
		{"clean exit", wireExit{State: exitExited}, nil, StatusSuccess, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, err := decideStatus(tc.ex, tc.rep, 2*time.Second)
			if status != tc.status {
				t.Fatalf("status %q, want %q", status, tc.status)
			}
			if tc.errType == "" {
				if err != nil {
					t.Fatalf("error %+v, want none", err)
				}
				return
			}
			if err == nil || err.Type != tc.errType || !strings.Contains(err.Message, tc.contains) {
				t.Fatalf("error %+v, want type %q with %q", err, tc.errType, tc.contains)
			}
		})
	}
}

func TestParseReportBoundsAndTypes(t *testing.T) {
	if parseReport(nil, false) != nil {
		t.Error("absent report parsed")
	}
	for _, bad := range []string{``, `[1]`, `"x"`, `null`, `{"error":`} {
		if parseReport([]byte(bad), true) != nil {
			t.Errorf("report %q accepted", bad)
		}
	}

	long := strings.Repeat("é", maxErrorMessageChars+10)
	rep := parseReport([]byte(`{"error":{"type":5,"message":"`+long+`","traceback":"tb","line":3.0,"column":true},`+
		`"cpu_ms":true,"violations":[{"rule":"module","message":"no","line":2,"column":1},7,{"rule":["x"]}]}`), true)
	if rep == nil || rep.err == nil {
		t.Fatalf("report = %+v", rep)
	}
	e := rep.err
	if e.Type != "" || e.Traceback != "tb" || e.Line != nil || e.Column != nil {
		t.Errorf("ill-typed fields kept: %+v", e)
	}
	if n := len([]rune(e.Message)); n != maxErrorMessageChars || !strings.HasPrefix(long, e.Message) {
		t.Errorf("message cut to %d characters, want %d", n, maxErrorMessageChars)
	}
	if rep.cpuMS != nil {
		t.Errorf("cpu_ms true accepted as %v", *rep.cpuMS)
	}
	if len(rep.violations) != 2 || rep.violations[0].Rule != "module" || rep.violations[0].Line != 2 ||
		rep.violations[1].Rule != "" {
		t.Errorf("violations = %+v", rep.violations)
	}

	many := `{"error":null,"cpu_ms":12.5,"violations":[` + strings.TrimSuffix(strings.Repeat(`{"rule":"r"},`, 500), ",") + `]}`
	rep = parseReport([]byte(many), true)
	if rep == nil || rep.err != nil || len(rep.violations) != maxViolations || rep.cpuMS == nil || *rep.cpuMS != 12.5 {
		t.Errorf("report = %+v", rep)
	}
}

func TestCompose(t *testing.T) {
	var ef execFrames
	for _, f := range []frame{
		{kind: frameStdout, payload: []byte("ab\xff")},
		{kind: frameStderr, payload: []byte("warn")},
		{kind: frameReport, payload: []byte(`{"error":null,"cpu_ms":7}`)},
		{kind: frameOutputs, payload: []byte(`{"charts":null,"variables":{"x":{"type":"int","repr":"1"}}}`)},
	} {
		if !ef.add(f) {
			t.Fatalf("frame %q refused", f.kind)
		}
	}
	if ef.add(frame{kind: frameStdout}) || ef.add(frame{kind: "result"}) || ef.add(frame{kind: frameReady}) {
		t.Error("a second stdout frame or an unknown kind was accepted")
	}
	ex := wireExit{State: exitReported, CPUUS: -1, ExecutionUS: 1500, PeakMemoryBytes: 1 << 20,
		StdoutBytes: 10, StderrBytes: 4}
	var res Result
	compose(ex, ef, time.Second, &res)
	if res.Status != StatusSuccess || res.Error != nil {
		t.Fatalf("status %q error %+v", res.Status, res.Error)
	}
	if res.Stdout != "ab\uFFFD" || !res.StdoutTruncated || res.StdoutBytes != 10 || res.Stderr != "warn" || res.StderrTruncated {
		t.Errorf("streams: %q %v %d / %q %v", res.Stdout, res.StdoutTruncated, res.StdoutBytes, res.Stderr, res.StderrTruncated)
	}
	if res.ExecutionTime != 1500*time.Microsecond || res.Resources.CPUTime != 7*time.Millisecond ||
		res.Resources.PeakMemoryBytes != 1<<20 {
		t.Errorf("times and memory: %v %v %d", res.ExecutionTime, res.Resources.CPUTime, res.Resources.PeakMemoryBytes)
	}
	if res.Outputs.Charts == nil || res.Outputs.Variables["x"].Repr != "1" || res.Violations == nil {
		t.Errorf("outputs %+v violations %v", res.Outputs, res.Violations)
	}

	// The supervisor's own CPU figure wins over the child's; overflowed
	// outputs are dropped with a reason.
	ex.CPUUS, ex.OutputsOverflow = 3000, true
	res = Result{}
	compose(ex, ef, time.Second, &res)
	if res.Resources.CPUTime != 3*time.Millisecond || len(res.Outputs.Variables) != 0 ||
		!strings.Contains(res.Outputs.CollectError, "size limit") {
		t.Errorf("cpu %v outputs %+v", res.Resources.CPUTime, res.Outputs)
	}
}

func TestRequestHeader(t *testing.T) {
	for _, tc := range []struct {
		timeout time.Duration
		want    string
	}{
		{30 * time.Second, "run 30000 10 20 30 40\n"},
		{100 * time.Microsecond, "run 1 10 20 30 40\n"}, // never 0: the supervisor refuses it
		{1500 * time.Microsecond, "run 2 10 20 30 40\n"},
	} {
		if got := requestHeader(tc.timeout, 10, 20, 30, 40); got != tc.want {
			t.Errorf("requestHeader(%v) = %q, want %q", tc.timeout, got, tc.want)
		}
	}
}

// The report of the sandbox's own policy check carries violations as data;
// the verdict's words are the same as for the validator's.
func TestComposeSandboxViolations(t *testing.T) {
	vs := []policy.Violation{
		{Line: 1, Column: 1, Rule: policy.RuleForbiddenModule, Message: "import of module 'os' is forbidden"},
		{Line: 3, Column: 5, Rule: policy.RuleForbiddenName, Message: "name 'eval' is forbidden"},
	}
	for _, report := range []string{
		// As the harness sends it: data only.
		`{"error":null,"violations":[{"rule":"forbidden-module","message":"import of module 'os' is forbidden","line":1,"column":1},` +
			`{"rule":"forbidden-name","message":"name 'eval' is forbidden","line":3,"column":5}]}`,
		// As an older harness sent it, with its own wording: ignored.
		`{"error":{"type":"PolicyViolation","message":"other words","traceback":"x"},"violations":[` +
			`{"rule":"forbidden-module","message":"import of module 'os' is forbidden","line":1,"column":1},` +
			`{"rule":"forbidden-name","message":"name 'eval' is forbidden","line":3,"column":5}]}`,
	} {
		var ef execFrames
		ef.add(frame{kind: frameReport, payload: []byte(report)})
		res := newResult(PreloadNone, false, 1<<20)
		compose(wireExit{State: exitReported, ExecutionUS: 900}, ef, time.Second, &res)
		want := rejectedResult(vs, FlavorNone, 1<<20)
		if !reflect.DeepEqual(res.Error, want.Error) || !reflect.DeepEqual(res.Violations, want.Violations) ||
			res.Status != want.Status || !res.Rejected || res.ExecutionTime != 0 {
			t.Errorf("sandbox verdict %+v %+v, want the validator's %+v %+v", res.Error, res.Violations, want.Error, want.Violations)
		}
	}
	res := rejectedResult(vs, FlavorValidator, 0)
	e := res.Error
	if res.Status != StatusError || e.Type != "PolicyViolation" || e.Message != "import of module 'os' is forbidden (and 1 more)" ||
		e.Traceback != "line 1, column 1: import of module 'os' is forbidden (forbidden-module)\nline 3, column 5: name 'eval' is forbidden (forbidden-name)" ||
		*e.Line != 1 || *e.Column != 1 || len(res.Violations) != 2 {
		t.Errorf("policy verdict %+v line %v violations %v", e, e.Line, res.Violations)
	}
	syn := rejectedResult([]policy.Violation{{Line: 2, Rule: policy.RuleSyntax, Message: "'(' was never closed"}}, FlavorValidator, 0)
	if syn.Error.Type != "SyntaxError" || syn.Error.Message != "'(' was never closed" || *syn.Error.Line != 2 ||
		syn.Error.Column != nil || syn.Violations != nil {
		t.Errorf("syntax verdict %+v violations %v", syn.Error, syn.Violations)
	}
}

// Code the policy refuses gets the same verdict whether the validator
// (Run) or the sandbox's own check (no pre-check) found the violations.
func TestRejectedSameFromValidatorAndSandbox(t *testing.T) {
	t.Parallel()
	cli := dockertest.Require(t)
	rules := policy.Default()
	owner := dockertest.Owner(t)
	r, err := New(cli, Options{Image: dockertest.Image(t, cli), Owner: owner, Policy: &rules})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Error(err)
		}
		dockertest.AssertNoContainers(t, cli, owner)
	})
	for _, code := range []string{
		"import os\nprint('ran')",
		"import subprocess\nx = eval('1')\nprint('ran')",
		"print('ok')\nx = (1,\n",
	} {
		req := Request{Code: code, Timeout: 10 * time.Second}
		byValidator, err := r.Run(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		bySandbox, err := r.run(t.Context(), req, false)
		if err != nil {
			t.Fatal(err)
		}
		if !byValidator.Rejected || byValidator.Flavor != FlavorValidator || !bySandbox.Rejected || bySandbox.Stdout != "" {
			t.Errorf("%q: rejected %v/%v flavor %q stdout %q", code, byValidator.Rejected, bySandbox.Rejected, byValidator.Flavor, bySandbox.Stdout)
		}
		if byValidator.Status != bySandbox.Status || !reflect.DeepEqual(byValidator.Error, bySandbox.Error) ||
			!reflect.DeepEqual(byValidator.Violations, bySandbox.Violations) {
			t.Errorf("%q:\nvalidator %s %+v %+v\nsandbox   %s %+v %+v", code,
				byValidator.Status, byValidator.Error, byValidator.Violations, bySandbox.Status, bySandbox.Error, bySandbox.Violations)
		}
	}
}
