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

// This file turns what the supervisor sent about one execution into a
// Result. The exit frame is trusted (the supervisor builds it from numbers);
// stdout, stderr, the report and the outputs are the user's process's and are
// only decoded into fixed types, with bounds. decideStatus is the one place
// that says how an execution ended.

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
	State           string `json:"state"`
	ExitCode        int    `json:"exit_code"`
	Signal          int    `json:"signal"`
	TimedOut        bool   `json:"timed_out"`
	ExecutionUS     int64  `json:"execution_us"`
	CPUUS           int64  `json:"cpu_us"` // -1: the child was not reaped
	PeakMemoryBytes int64  `json:"peak_memory_bytes"`
	OOMKilled       bool   `json:"oom_killed"`
	StdoutBytes     int64  `json:"stdout_bytes"`
	StderrBytes     int64  `json:"stderr_bytes"`
	OutputsOverflow bool   `json:"outputs_overflow"`
	ReportMalformed bool   `json:"report_malformed"`
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
	res.Status, res.Error = decideStatus(ex, rep, timeout)
	res.Resources.OOMKilled = ex.OOMKilled || res.Status == StatusOutOfMemory
	res.Violations = []policy.Violation{}
	if rep != nil {
		res.Violations = rep.violations
	}
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
		return StatusTimeout, &ExecError{
			Type:    "TimeoutError",
			Message: fmt.Sprintf("execution exceeded the time limit of %gs", timeout.Seconds()),
		}
	}
	sig := 0
	if ex.State == exitSignaled {
		sig = ex.Signal
	}
	if ex.OOMKilled || (sig == int(syscall.SIGKILL) && rep == nil) {
		return StatusOutOfMemory, &ExecError{
			Type:    "MemoryError",
			Message: "execution ran out of memory and was killed",
		}
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
		return StatusError, &ExecError{Type: "ProcessCrash", Message: "process was killed by signal " + name}
	}
	if ex.State != exitExited || ex.ExitCode == 0 {
		return StatusSuccess, nil
	}
	return StatusError, &ExecError{Type: "ProcessExit", Message: fmt.Sprintf("process exited with code %d", ex.ExitCode)}
}
