package runner

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyexec/pyexec/policy"
)

// This file is the one author of outcomes: every Result the runner returns
// is built here, and every message the service writes about how code ended
// comes from the verdicts table. It turns what the supervisor sent about one
// execution into a Result (compose, decideStatus), and builds the Results of
// the other ends: refused before running (rejectedResult, whether the
// validator or the sandbox's own check found the violations), killed at the
// deadline from outside (timedOut), killed for memory as the engine saw it
// (outOfMemory), ended without a result (noResult). The exit frame is
// trusted (the supervisor builds it from numbers); stdout, stderr, the
// report and the outputs are the user's process's and are only decoded into
// fixed types, with bounds. The child reports policy violations as data
// (rule, message, line, column); their wording as an error is made here.

// verdict is one way code can end other than its own success or exception.
type verdict int

const (
	verdictTimeout     verdict = iota // past the time limit
	verdictOutOfMemory                // killed for memory
	verdictCrash                      // killed by a signal
	verdictExit                       // exited non-zero without a report
	verdictSyntax                     // refused: does not parse
	verdictPolicy                     // refused: breaks the language policy
	verdictNoResult                   // the sandbox ended without a result
	// Sessions: a timeout the interrupt stopped (the session lives on), one
	// it did not stop, running out of memory, any other end of the session.
	verdictSessionInterrupted
	verdictSessionTimeout
	verdictSessionOutOfMemory
	verdictSessionEnded
	// A session's policy checker stopped answering (session.go).
	verdictCheckerGone
	// A session's cell whose request was cancelled (its client left) and
	// whose code did not stop when interrupted.
	verdictCancelKilled
)

// verdicts is the table of outcomes: status, error type and message
// template of each.
var verdicts = [...]struct{ status, errType, format string }{
	verdictTimeout:     {StatusTimeout, "TimeoutError", "execution exceeded the time limit of %gs"},
	verdictOutOfMemory: {StatusOutOfMemory, "MemoryError", "execution ran out of memory and was killed"},
	verdictCrash:       {StatusError, "ProcessCrash", "process was killed by signal %s"},
	verdictExit:        {StatusError, "ProcessExit", "process exited with code %d"},
	verdictSyntax:      {StatusError, "SyntaxError", "%s%s"},
	verdictPolicy:      {StatusError, "PolicyViolation", "%s%s"},
	verdictNoResult:    {StatusError, "SandboxError", "the sandbox ended without a result (exit code %d)"},

	verdictSessionInterrupted: {StatusTimeout, "TimeoutError", "execution exceeded the time limit of %gs; the code was interrupted and the session lives on"},
	verdictSessionTimeout:     {StatusTimeout, "TimeoutError", "execution exceeded the time limit of %gs and did not stop when interrupted; the session was ended"},
	verdictSessionOutOfMemory: {StatusOutOfMemory, "MemoryError", "execution ran out of memory and was killed; the session was ended"},
	verdictSessionEnded:       {"", "", "%s; the session was ended"},
	verdictCheckerGone:        {StatusError, "SandboxError", "the session's policy checker stopped answering, so no more code can be checked"},
	verdictCancelKilled:       {StatusError, "KeyboardInterrupt", "the request was cancelled and the code did not stop when interrupted"},
}

// moreViolations follows the first violation's message when there are more.
const moreViolations = " (and %d more)"

// errorOf is the status and error of verdict v, its template filled with
// args.
func errorOf(v verdict, args ...any) (string, *ExecError) {
	d := verdicts[v]
	return d.status, &ExecError{Type: d.errType, Message: fmt.Sprintf(d.format, args...)}
}

// newResult is the Result of an execution before anything is known: no
// output, the sandbox's flavor, the memory limit.
func newResult(preload string, warm bool, memoryLimit int64) Result {
	res := Result{Flavor: FlavorOf(preload), Warm: warm, Outputs: emptyOutputs(), Violations: []policy.Violation{}}
	res.Resources.MemoryLimitBytes = memoryLimit
	return res
}

// timedOut makes res the Result of code killed from outside at the
// deadline: the supervisor did not report its own timeout.
func timedOut(res *Result, timeout, elapsed time.Duration) {
	res.ExecutionTime = elapsed
	res.Status, res.Error = errorOf(verdictTimeout, timeout.Seconds())
}

// outOfMemory makes res the Result of a sandbox the engine saw killed for
// memory before the supervisor could report.
func outOfMemory(res *Result) {
	res.Status, res.Error = errorOf(verdictOutOfMemory)
	res.Resources.OOMKilled = true
}

// noResult makes res the Result of a sandbox that ended, by itself, with
// the engine up and the container there, without a result.
func noResult(res *Result, exitCode int) {
	res.Status, res.Error = errorOf(verdictNoResult, exitCode)
}

// rejectedResult is the Result of code refused before it ran, with the
// violations the validator found (flavor FlavorValidator) or the sandbox's
// check reported (the sandbox's flavor): the same words either way.
func rejectedResult(vs []policy.Violation, flavor string, memoryLimit int64) Result {
	res := Result{Flavor: flavor, Outputs: emptyOutputs()}
	res.Resources.MemoryLimitBytes = memoryLimit
	reject(&res, vs)
	return res
}

// reject makes res the Result of code refused for vs (not empty): a syntax
// error when the first violation is one, else a policy violation. The error
// is the first violation's message and position; its traceback lists every
// violation, one per line; Violations lists them (not for a syntax error,
// whose traceback says it all).
func reject(res *Result, vs []policy.Violation) {
	first := vs[0]
	more := ""
	if n := len(vs) - 1; n > 0 {
		more = fmt.Sprintf(moreViolations, n)
	}
	v := verdictPolicy
	if first.Rule == policy.RuleSyntax {
		v = verdictSyntax
	}
	res.Status, res.Error = errorOf(v, first.Message, more)
	lines := make([]string, len(vs))
	for i := range vs {
		lines[i] = vs[i].Error()
	}
	res.Error.Traceback = strings.Join(lines, "\n")
	res.Error.Line, res.Error.Column = positive(first.Line), positive(first.Column)
	res.Violations = vs
	if v == verdictSyntax {
		res.Violations = nil
	}
	res.Rejected = true
	res.ExecutionTime = 0
	res.Stdout, res.Stderr = "", ""
	res.Outputs = emptyOutputs()
}

// positive is &n when n > 0 (a known position), else nil.
func positive(n int) *int {
	if n <= 0 {
		return nil
	}
	return &n
}

// Bounds on the fields of the child's report (images/context/harness/
// runner_child.py caps them the same way before sending).
const (
	maxErrorTypeChars      = 200
	maxErrorMessageChars   = 10000
	maxErrorTracebackChars = 64000
	maxViolations          = 100
	maxViolationRuleChars  = 64
	maxViolationMsgChars   = 1000
)

// Exit states of the child, as the supervisor reports them.
const (
	exitExited   = "exited"   // it exited; ExitCode says how
	exitSignaled = "signaled" // a signal ended it; Signal says which
	exitReported = "reported" // it reported and was killed without a wait
)

// wireExit is the supervisor's exit frame.
type wireExit struct {
	State    string `json:"state"`
	ExitCode int    `json:"exit_code"`
	Signal   int    `json:"signal"`
	TimedOut bool   `json:"timed_out"`
	// Interrupted: a session's cell that the service interrupted (its
	// request was cancelled), not its deadline.
	Interrupted     bool  `json:"interrupted"`
	ExecutionUS     int64 `json:"execution_us"`
	CPUUS           int64 `json:"cpu_us"` // -1: the child was not reaped
	PeakMemoryBytes int64 `json:"peak_memory_bytes"`
	OOMKilled       bool  `json:"oom_killed"`
	StdoutBytes     int64 `json:"stdout_bytes"`
	StderrBytes     int64 `json:"stderr_bytes"`
	// MemoryBytes is the container's memory use after a session's cell.
	MemoryBytes     int64 `json:"memory_bytes"`
	OutputsOverflow bool  `json:"outputs_overflow"`
	ReportMalformed bool  `json:"report_malformed"`
}

// execFrames gathers the frames of one execution until the exit frame.
type execFrames struct {
	stdout, stderr, report, outputs             []byte
	gotStdout, gotStderr, gotReport, gotOutputs bool
}

// add stores one frame; false for a kind that has no place here or comes twice.
func (ef *execFrames) add(f frame) bool {
	var data *[]byte
	var got *bool
	switch f.kind {
	case frameStdout:
		data, got = &ef.stdout, &ef.gotStdout
	case frameStderr:
		data, got = &ef.stderr, &ef.gotStderr
	case frameReport:
		data, got = &ef.report, &ef.gotReport
	case frameOutputs:
		data, got = &ef.outputs, &ef.gotOutputs
	default:
		return false
	}
	if *got {
		return false
	}
	*data, *got = f.payload, true
	return true
}

// childReport is the checked content of the child's report.
type childReport struct {
	err        *ExecError // nil: the code succeeded
	violations []policy.Violation
	cpuMS      *float64
}

// parseReport checks the child's report field by field; nil when it is
// missing or not a JSON object. Fields of the wrong type count as absent.
func parseReport(data []byte, present bool) *childReport {
	if !present {
		return nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil || raw == nil {
		return nil
	}
	rep := &childReport{err: parseExecError(raw["error"]), violations: []policy.Violation{}}
	var items []json.RawMessage
	if json.Unmarshal(raw["violations"], &items) == nil {
		for _, item := range items[:min(len(items), maxViolations)] {
			var v map[string]json.RawMessage
			if json.Unmarshal(item, &v) != nil || v == nil {
				continue
			}
			rep.violations = append(rep.violations, policy.Violation{
				Rule:    jsonString(v["rule"], maxViolationRuleChars),
				Message: jsonString(v["message"], maxViolationMsgChars),
				Line:    derefInt(jsonInt(v["line"])),
				Column:  derefInt(jsonInt(v["column"])),
			})
		}
	}
	var cpu float64
	if json.Unmarshal(raw["cpu_ms"], &cpu) == nil && cpu >= 0 && cpu < 1e9 {
		rep.cpuMS = &cpu
	}
	return rep
}

// parseExecError keeps the well-typed, bounded fields of the report's
// error; nil when it is absent, null or not an object.
func parseExecError(data json.RawMessage) *ExecError {
	var raw map[string]json.RawMessage
	if json.Unmarshal(data, &raw) != nil || raw == nil {
		return nil
	}
	return &ExecError{
		Type:      jsonString(raw["type"], maxErrorTypeChars),
		Message:   jsonString(raw["message"], maxErrorMessageChars),
		Traceback: jsonString(raw["traceback"], maxErrorTracebackChars),
		Line:      jsonInt(raw["line"]),
		Column:    jsonInt(raw["column"]),
	}
}

// jsonString is data as a string cut to max characters; "" when it is not a
// JSON string.
func jsonString(data json.RawMessage, max int) string {
	var s string
	if json.Unmarshal(data, &s) != nil {
		return ""
	}
	return cutChars(s, max)
}

// jsonInt is data as an integer; nil when it is not a JSON integer literal.
func jsonInt(data json.RawMessage) *int {
	var n json.Number
	if json.Unmarshal(data, &n) != nil {
		return nil
	}
	v, err := strconv.Atoi(n.String())
	if err != nil {
		return nil
	}
	return &v
}

func derefInt(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

// cutChars keeps the first max characters of s.
func cutChars(s string, max int) string {
	if len(s) <= max {
		return s
	}
	n := 0
	for i := range s {
		if n == max {
			return s[:i]
		}
		n++
	}
	return s
}

// streamText is what a capture holds, as text: invalid UTF-8 (a cut may
// split a character) is replaced, never rejected.
func streamText(b []byte) string {
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// sessionOutcome words the Result of a session's cell: whether a timeout
// left the session alive (interrupted) or ended it, and that an out of
// memory or any other end of the session ended it. The status stands; the
// session's end is in res.Session.
func sessionOutcome(res *Result, timeout time.Duration) {
	s := res.Session
	switch {
	case s == nil:
	case res.Status == StatusTimeout && !s.Ended:
		res.Status, res.Error = errorOf(verdictSessionInterrupted, timeout.Seconds())
	case res.Status == StatusTimeout:
		res.Status, res.Error = errorOf(verdictSessionTimeout, timeout.Seconds())
	case res.Status == StatusOutOfMemory && s.Ended:
		res.Status, res.Error = errorOf(verdictSessionOutOfMemory)
		res.Resources.OOMKilled = true
	case s.Ended:
		if res.Error == nil {
			res.Status, res.Error = errorOf(verdictNoResult, -1)
		}
		res.Status = StatusError
		res.Error.Message = fmt.Sprintf(verdicts[verdictSessionEnded].format, res.Error.Message)
	}
}

// compose builds the Result of an execution from its frames.
func compose(ex wireExit, ef execFrames, timeout time.Duration, res *Result) {
	rep := parseReport(ef.report, ef.gotReport)
	res.Stdout, res.Stderr = streamText(ef.stdout), streamText(ef.stderr)
	res.StdoutBytes, res.StderrBytes = ex.StdoutBytes, ex.StderrBytes
	res.StdoutTruncated = ex.StdoutBytes > int64(len(ef.stdout))
	res.StderrTruncated = ex.StderrBytes > int64(len(ef.stderr))
	res.ExecutionTime = time.Duration(ex.ExecutionUS) * time.Microsecond
	switch {
	case ex.CPUUS >= 0:
		res.Resources.CPUTime = time.Duration(ex.CPUUS) * time.Microsecond
	case rep != nil && rep.cpuMS != nil:
		res.Resources.CPUTime = time.Duration(*rep.cpuMS * float64(time.Millisecond))
	}
	if ex.PeakMemoryBytes >= 0 {
		res.Resources.PeakMemoryBytes = ex.PeakMemoryBytes
	}
	if rep != nil && len(rep.violations) > 0 && !ex.TimedOut {
		// The sandbox's own policy check refused the code; nothing ran.
		reject(res, rep.violations)
		return
	}
	res.Status, res.Error = decideStatus(ex, rep, timeout)
	res.Resources.OOMKilled = ex.OOMKilled || res.Status == StatusOutOfMemory
	res.Violations = []policy.Violation{}
	switch {
	case ex.OutputsOverflow:
		res.Outputs = emptyOutputs()
		res.Outputs.CollectError = "rich outputs exceeded their size limit and were dropped"
	case ef.gotOutputs:
		decodeOutputs(ef.outputs, &res.Outputs)
	}
}

// decideStatus maps how the child ended to a status and an error: the one
// place for this rule.
func decideStatus(ex wireExit, rep *childReport, timeout time.Duration) (string, *ExecError) {
	if ex.TimedOut {
		return errorOf(verdictTimeout, timeout.Seconds())
	}
	sig := 0
	if ex.State == exitSignaled {
		sig = ex.Signal
	}
	if ex.Interrupted && !ex.OOMKilled && rep == nil {
		return errorOf(verdictCancelKilled)
	}
	if ex.OOMKilled || (sig == int(syscall.SIGKILL) && rep == nil) {
		return errorOf(verdictOutOfMemory)
	}
	if rep != nil {
		switch {
		case rep.err == nil:
			return StatusSuccess, nil
		case rep.err.Type == "MemoryError":
			return StatusOutOfMemory, rep.err
		default:
			return StatusError, rep.err
		}
	}
	if sig != 0 {
		name := unix.SignalName(syscall.Signal(sig))
		if name == "" {
			name = strconv.Itoa(sig)
		}
		return errorOf(verdictCrash, name)
	}
	if ex.State != exitExited || ex.ExitCode == 0 {
		return StatusSuccess, nil
	}
	return errorOf(verdictExit, ex.ExitCode)
}
