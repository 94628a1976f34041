package runner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyexec/pyexec/policy"
)

// The constants below are shared by the service (Go), the sandbox's
// supervisor (C) and its harness (Python). Each has its one home in Go; these
// tests read supervisor.c, the harness and the Dockerfile from the image's
// build context and fail, naming the file, the constant and both values,
// when one of them drifts from the Go value. They need no engine.

// contextEnv names another copy of the build context to read instead of
// images/context: TestSharedDetectsDrift runs the checks on altered copies.
const contextEnv = "PYEXEC_TEST_SHARED_CONTEXT"

// contextDir is the image's build context (embedded by package images).
func contextDir() string {
	if dir := os.Getenv(contextEnv); dir != "" {
		return dir
	}
	return "../images/context"
}

// source is one file of the build context, read once per test.
type source struct {
	path string // as shown in messages, e.g. "supervisor/supervisor.c"
	text string
}

func readSource(t *testing.T, rel string) source {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(contextDir(), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatalf("read the build context: %v", err)
	}
	return source{path: "images/context/" + rel, text: string(data)}
}

// cDefine is the integer value of "#define name <expr>" in a C source,
// with simple expressions (shifts, products, sums, other defines) evaluated.
func (s source) cDefine(t *testing.T, name string) int64 {
	t.Helper()
	return s.eval(t, name, s.definition(t, name, `(?m)^[ \t]*#[ \t]*define[ \t]+%s[ \t]+(.+?)[ \t]*(?:/\*.*)?$`))
}

// cString is the string value of `#define name "..."` in a C source.
func (s source) cString(t *testing.T, name string) string {
	t.Helper()
	return unquote(t, s, name, s.definition(t, name, `(?m)^[ \t]*#[ \t]*define[ \t]+%s[ \t]+("[^"\\]*")`))
}

// cEnum is the value of "name = <int>" inside a C enum.
func (s source) cEnum(t *testing.T, name string) int64 {
	t.Helper()
	return s.eval(t, name, s.definition(t, name, `(?s)enum[ \t]*\{[^}]*?\b%s[ \t]*=[ \t]*([^,}]+)`))
}

// pyConst is the integer value of a module-level "NAME = <expr>" in Python.
func (s source) pyConst(t *testing.T, name string) int64 {
	t.Helper()
	return s.eval(t, name, s.definition(t, name, `(?m)^%s[ \t]*=[ \t]*([^#\n]+?)[ \t]*(?:#.*)?$`))
}

// pyString is the value of a module-level `NAME = "..."` (or b"...") in
// Python.
func (s source) pyString(t *testing.T, name string) string {
	t.Helper()
	return unquote(t, s, name, s.definition(t, name, `(?m)^%s[ \t]*=[ \t]*[bB]?("[^"\\]*")`))
}

// pyTuple is the values of a module-level "A, B, C = 1, 2, 3" in Python, by
// name.
func (s source) pyTuple(t *testing.T, first string) map[string]int64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^(` + regexp.QuoteMeta(first) + `(?:[ \t]*,[ \t]*\w+)+)[ \t]*=[ \t]*([^#\n]+)`).FindStringSubmatch(s.text)
	if m == nil {
		t.Fatalf("%s: no tuple assignment starting with %s", s.path, first)
	}
	names, values := strings.Split(m[1], ","), strings.Split(m[2], ",")
	if len(names) != len(values) {
		t.Fatalf("%s: %s: %d names, %d values", s.path, m[1], len(names), len(values))
	}
	out := map[string]int64{}
	for i, n := range names {
		out[strings.TrimSpace(n)] = s.eval(t, strings.TrimSpace(n), strings.TrimSpace(values[i]))
	}
	return out
}

// definition is the first group of pattern (a format with %s for the name)
// matched in the source; the test fails when the definition is missing.
func (s source) definition(t *testing.T, name, pattern string) string {
	t.Helper()
	m := regexp.MustCompile(fmt.Sprintf(pattern, regexp.QuoteMeta(name))).FindStringSubmatch(s.text)
	if m == nil {
		t.Fatalf("%s: no definition of %s (renamed? the Go side reads it by name)", s.path, name)
	}
	return strings.TrimSpace(m[1])
}

func unquote(t *testing.T, s source, name, lit string) string {
	t.Helper()
	v, err := strconv.Unquote(lit)
	if err != nil {
		t.Fatalf("%s: %s = %s: %v", s.path, name, lit, err)
	}
	return v
}

// eval evaluates a constant integer expression of C or Python: integer
// literals (C suffixes u/l, Python underscores), names defined in the same
// source, unary minus, *, /, +, -, << and >> with C's precedence (which is
// Python's for these), and parentheses.
func (s source) eval(t *testing.T, name, expr string) int64 {
	t.Helper()
	p := exprParser{src: s, toks: tokenize(expr)}
	v, err := p.shift()
	if err == nil && p.pos != len(p.toks) {
		err = fmt.Errorf("unexpected %q", p.toks[p.pos])
	}
	if err != nil {
		t.Fatalf("%s: %s = %s: %v", s.path, name, expr, err)
	}
	return v
}

var (
	tokenRE = regexp.MustCompile(`\s*(0[xX][0-9a-fA-F_]+|[0-9][0-9_]*|[A-Za-z_]\w*|<<|>>|[-+*/()]|\S)`)
	identRE = regexp.MustCompile(`^[A-Za-z_]\w*$`)
)

func tokenize(expr string) []string {
	var toks []string
	for _, m := range tokenRE.FindAllStringSubmatch(expr, -1) {
		toks = append(toks, m[1])
	}
	return toks
}

// exprParser evaluates one expression by recursive descent; depth counts
// the definitions it is inside of.
type exprParser struct {
	src   source
	toks  []string
	pos   int
	depth int
}

func (p *exprParser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *exprParser) binary(next func() (int64, error), ops map[string]func(a, b int64) int64) (int64, error) {
	v, err := next()
	for err == nil {
		op, ok := ops[p.peek()]
		if !ok {
			return v, nil
		}
		p.pos++
		var w int64
		if w, err = next(); err == nil {
			v = op(v, w)
		}
	}
	return 0, err
}

func (p *exprParser) shift() (int64, error) {
	return p.binary(p.sum, map[string]func(a, b int64) int64{
		"<<": func(a, b int64) int64 { return a << b },
		">>": func(a, b int64) int64 { return a >> b },
	})
}

func (p *exprParser) sum() (int64, error) {
	return p.binary(p.product, map[string]func(a, b int64) int64{
		"+": func(a, b int64) int64 { return a + b },
		"-": func(a, b int64) int64 { return a - b },
	})
}

func (p *exprParser) product() (int64, error) {
	return p.binary(p.unary, map[string]func(a, b int64) int64{
		"*": func(a, b int64) int64 { return a * b },
		"/": func(a, b int64) int64 { return a / b },
	})
}

func (p *exprParser) unary() (int64, error) {
	tok := p.peek()
	p.pos++
	switch {
	case tok == "":
		return 0, fmt.Errorf("expression ends early")
	case tok == "-":
		v, err := p.unary()
		return -v, err
	case tok == "(":
		v, err := p.shift()
		if err == nil && p.peek() != ")" {
			err = fmt.Errorf("missing )")
		}
		p.pos++
		return v, err
	case tok[0] >= '0' && tok[0] <= '9':
		digits := strings.ReplaceAll(tok, "_", "")
		if p.peek() != "" && strings.Trim(p.peek(), "uUlL") == "" {
			p.pos++ // a C suffix (8u): tokenized as a name
		}
		return strconv.ParseInt(digits, 0, 64)
	case identRE.MatchString(tok):
		if strings.Trim(tok, "uUlL") == "" {
			return 0, fmt.Errorf("stray suffix %q", tok)
		}
		if p.depth > 10 {
			return 0, fmt.Errorf("%s: definitions nest too deeply", tok)
		}
		// Another constant of the same source: a C define or a Python name.
		re := regexp.MustCompile(`(?m)^(?:[ \t]*#[ \t]*define[ \t]+` + tok + `[ \t]+|` + tok + `[ \t]*=[ \t]*)([^#\n/]+)`)
		m := re.FindStringSubmatch(p.src.text)
		if m == nil {
			return 0, fmt.Errorf("%s is not defined in %s", tok, p.src.path)
		}
		sub := exprParser{src: p.src, toks: tokenize(strings.TrimSpace(m[1])), depth: p.depth + 1}
		v, err := sub.shift()
		if err == nil && sub.pos != len(sub.toks) {
			err = fmt.Errorf("%s: unexpected %q", tok, sub.toks[sub.pos])
		}
		return v, err
	}
	return 0, fmt.Errorf("unexpected %q", tok)
}

// sameInt fails the test when the value in a C or Python file differs from
// the Go constant that is its home.
func sameInt(t *testing.T, s source, name string, got int64, goName string, want int64) {
	t.Helper()
	if got != want {
		t.Errorf("%s: %s = %d, but Go's %s = %d: they must be equal (change them together)", s.path, name, got, goName, want)
	}
}

func sameString(t *testing.T, s source, name, got, goName, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s: %s = %q, but Go's %s = %q: they must be equal (change them together)", s.path, name, got, goName, want)
	}
}

// matches lists the first group of every match of re in the source.
func (s source) matches(re string) []string {
	var out []string
	for _, m := range regexp.MustCompile(re).FindAllStringSubmatch(s.text, -1) {
		out = append(out, m[1])
	}
	return out
}

func sortedSet(items []string) []string {
	out := slices.Clone(items)
	slices.Sort(out)
	return slices.Compact(out)
}

// TestSharedEvalExpressions checks the expression evaluator the other tests
// rely on.
func TestSharedEvalExpressions(t *testing.T) {
	s := source{path: "test", text: "#define A (8u << 20)\n#define B (A * 2 + 1)\nC = 1 << 20\nD = C - 1_000\n"}
	tests := map[string]int64{
		"(64u << 20)": 64 << 20, "(3600u * 1000)": 3_600_000, "10000": 10000, "1 << 20": 1 << 20,
		"32 << 20": 32 << 20, "25_000_000": 25_000_000, "-(2 + 3) * 4": -20, "0x10": 16,
		"1 + 2 << 3": 24, "A": 8 << 20, "B": 16<<20 + 1, "C": 1 << 20, "D": 1<<20 - 1000,
	}
	for expr, want := range tests {
		if got := s.eval(t, "x", expr); got != want {
			t.Errorf("eval(%q) = %d, want %d", expr, got, want)
		}
	}
}

// TestSharedOutputCaps: the caps the runner accepts are the supervisor's.
func TestSharedOutputCaps(t *testing.T) {
	c := readSource(t, "supervisor/supervisor.c")
	sameInt(t, c, "MAX_STREAM_CAP", c.cDefine(t, "MAX_STREAM_CAP"), "MaxStreamBytesLimit", MaxStreamBytesLimit)
	sameInt(t, c, "MAX_OUTPUTS_CAP", c.cDefine(t, "MAX_OUTPUTS_CAP"), "MaxOutputsBytesLimit", MaxOutputsBytesLimit)
	sameInt(t, c, "MAX_REPORT_BYTES", c.cDefine(t, "MAX_REPORT_BYTES"), "maxReportBytes", maxReportBytes)
	sameInt(t, c, "MAX_TIMEOUT_MS", c.cDefine(t, "MAX_TIMEOUT_MS"), "MaxTimeoutLimit", MaxTimeoutLimit.Milliseconds())
	if DefaultMaxStreamBytes > MaxStreamBytesLimit || DefaultMaxOutputsBytes > MaxOutputsBytesLimit {
		t.Errorf("the default caps %d/%d exceed the supervisor's %d/%d",
			DefaultMaxStreamBytes, DefaultMaxOutputsBytes, MaxStreamBytesLimit, MaxOutputsBytesLimit)
	}
	// outputs.py keeps all charts together under a default that must leave
	// room for the tables and variables within the runner's default cap, or
	// a run with charts at their cap and one table loses all its outputs.
	py := readSource(t, "harness/outputs.py")
	total := py.eval(t, "_DEFAULTS[max_chart_total_bytes]",
		py.definition(t, "max_chart_total_bytes", `"%s"[ \t]*:[ \t]*\(([^,]+),`))
	if total > DefaultMaxOutputsBytes*3/4 {
		t.Errorf("%s: the default max_chart_total_bytes = %d exceeds 3/4 of Go's DefaultMaxOutputsBytes = %d",
			py.path, total, DefaultMaxOutputsBytes)
	}
}

// TestSharedRequestSizes: the largest request the service sends fits what
// the supervisor and the validator accept.
func TestSharedRequestSizes(t *testing.T) {
	rules, err := json.Marshal(policy.Default())
	if err != nil {
		t.Fatal(err)
	}
	// NUL bytes are the worst case of JSON escaping (\u0000, six bytes).
	worst := strings.Repeat("\x00", policy.MaxCodeBytes)
	c := readSource(t, "supervisor/supervisor.c")
	body, err := json.Marshal(wireRequest{Code: worst, Timeout: 3600, Policy: rules})
	if err != nil {
		t.Fatal(err)
	}
	if limit := c.cDefine(t, "MAX_REQUEST_BYTES"); int64(len(body)) > limit {
		t.Errorf("%s: MAX_REQUEST_BYTES = %d, but a request with policy.MaxCodeBytes (%d) of code and the default policy is %d bytes",
			c.path, limit, policy.MaxCodeBytes, len(body))
	}
	// A session's cell with the most input files, their names at the
	// longest and worst to escape ('<' is \u003c), and MaxInputBytesLimit of
	// content in base64 (each file's padding counted).
	const files = 1000 // cmd/pyexec's maxInputFilesLimit
	cell := wireCell{Op: "run", Code: worst, Timeout: 3600, Files: make([]wireFile, files)}
	for i := range cell.Files {
		cell.Files[i] = wireFile{Name: strings.Repeat("<", MaxFileNameBytes-4) + fmt.Sprintf("%04d", i), Content: []byte{}}
	}
	body, err = json.Marshal(cell)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(body)) + 4*((MaxInputBytesLimit+2)/3) + 4*files
	if limit := c.cDefine(t, "MAX_REQUEST_BYTES"); size > limit {
		t.Errorf("%s: MAX_REQUEST_BYTES = %d, but a cell with %d input files of MaxInputBytesLimit (%d) bytes in all is %d bytes",
			c.path, limit, files, MaxInputBytesLimit, size)
	}
	v := readSource(t, "harness/validate.py")
	line, err := json.Marshal(map[string]any{"id": "18446744073709551615", "code": worst, "policy": json.RawMessage(rules)})
	if err != nil {
		t.Fatal(err)
	}
	if limit := v.pyConst(t, "MAX_REQUEST_BYTES"); int64(len(line)+1) > limit {
		t.Errorf("%s: MAX_REQUEST_BYTES = %d, but a validation line with policy.MaxCodeBytes (%d) of code is %d bytes",
			v.path, limit, policy.MaxCodeBytes, len(line)+1)
	}
	// A session's check request (checkRequest) fits the supervisor's cap,
	// which is validate.py's.
	check, err := checkRequest("18446744073709551615", worst)
	if err != nil {
		t.Fatal(err)
	}
	if limit := c.cDefine(t, "MAX_CHECK_BYTES"); int64(len(check)) > limit || limit != v.pyConst(t, "MAX_REQUEST_BYTES") {
		t.Errorf("%s: MAX_CHECK_BYTES = %d, but a check request is up to %d bytes and validate.py takes %d",
			c.path, limit, len(check), v.pyConst(t, "MAX_REQUEST_BYTES"))
	}
}

// TestSharedFrames: the framing and the frame kinds the supervisor, the
// validator and the child use are those the runner reads.
func TestSharedFrames(t *testing.T) {
	c := readSource(t, "supervisor/supervisor.c")
	v := readSource(t, "harness/validate.py")
	sameString(t, c, "FRAME_MAGIC", c.cString(t, "FRAME_MAGIC"), "frameMagic", frameMagic)
	sameString(t, v, "FRAME_MAGIC", v.pyString(t, "FRAME_MAGIC"), "frameMagic", frameMagic)

	goKinds := []string{frameReady, frameStdout, frameStderr, frameReport, frameOutputs, frameExit, frameError,
		frameStdoutChunk, frameStderrChunk, frameEvent, frameValidation}
	written := sortedSet(c.matches(`\b(?:write_frame|batch_add)\(\s*(?:&?\w+,\s*)?"([^"]*)"`))
	if want := sortedSet(goKinds); !slices.Equal(written, want) {
		t.Errorf("%s writes frames of kinds %v, but Go's frame kinds (frames.go) are %v", c.path, written, want)
	}
	// The kinds the header comment documents, between "kinds:" and the
	// end of the list.
	if doc := regexp.MustCompile(`(?s)kinds:\n(.*?)\n \* The child`).FindStringSubmatch(c.text); doc == nil {
		t.Errorf("%s: the header comment no longer lists the frame kinds", c.path)
	} else {
		var listed []string
		for _, m := range regexp.MustCompile(`(?m)^ \*\s+(\w+)\s`).FindAllStringSubmatch(doc[1], -1) {
			listed = append(listed, m[1])
		}
		if slices.Sort(listed); !slices.Equal(listed, written) {
			t.Errorf("%s: the header comment lists kinds %v, but the code writes %v", c.path, listed, written)
		}
	}
	vKinds := sortedSet(v.matches(`\bwrite_frame\(\s*"([^"]*)"`))
	// An error frame instead of ready: a malformed --policy (prepare
	// refuses anything but ready).
	// "pass" and "refuse": a session's checker (--checker), whose answers
	// the supervisor reads and passes on as validation frames.
	if want := sortedSet([]string{frameReady, frameValidation, frameError, "pass", "refuse"}); !slices.Equal(vKinds, want) {
		t.Errorf("%s writes frames of kinds %v, but Go's validator (validator.go) and the supervisor read %v", v.path, vKinds, want)
	}
	for _, kind := range []string{"ready", "pass", "refuse"} {
		if !strings.Contains(c.text, `strcmp(kind, "`+kind+`")`) {
			t.Errorf("%s does not read the checker's %q frames", c.path, kind)
		}
	}

	// The child's messages on its result pipe: the supervisor takes
	// "ready", "report", "outputs" and "event" (matching each kind's
	// length), and passes them on as frames of the same kind.
	accepted := map[string]bool{}
	for _, m := range regexp.MustCompile(`memcmp\(start, "(\w+)", (\d+)\)`).FindAllStringSubmatch(c.text, -1) {
		if n, _ := strconv.Atoi(m[2]); n != len(m[1]) {
			t.Errorf("%s: memcmp of %q compares %s bytes, want %d", c.path, m[1], m[2], len(m[1]))
		}
		accepted[m[1]] = true
		if !slices.Contains(goKinds, m[1]) {
			t.Errorf("%s: the child's message %q is no frame kind of Go's (frames.go)", c.path, m[1])
		}
	}
	if len(accepted) != 4 {
		t.Errorf("%s: the supervisor takes child messages %v, want ready, report, outputs and event", c.path, accepted)
	}
	for _, file := range []string{"harness/child.py", "harness/runner_child.py"} {
		py := readSource(t, file)
		for _, kind := range py.matches(`\bsend_message\([^,()]+,\s*"([^"]*)"`) {
			if !accepted[kind] {
				t.Errorf("%s sends a %q message, which %s does not take", py.path, kind, c.path)
			}
		}
	}

	// The child's descriptors.
	child := readSource(t, "harness/child.py")
	fds := child.pyTuple(t, "RES_FD")
	for _, name := range []string{"RES", "REQ", "OUT", "ERR"} {
		sameInt(t, child, name+"_FD", fds[name+"_FD"], "(supervisor.c) CHILD_"+name+"_FD", c.cEnum(t, "CHILD_"+name+"_FD"))
	}
}

// TestSharedStream: the streaming flag, its flush interval and the child's
// option are the runner's (stream.go).
func TestSharedStream(t *testing.T) {
	c := readSource(t, "supervisor/supervisor.c")
	sameInt(t, c, "FLAG_STREAM", c.cDefine(t, "FLAG_STREAM"), "flagStream", flagStream)
	sameInt(t, c, "STREAM_FLUSH_MS", c.cDefine(t, "STREAM_FLUSH_MS"), "streamFlushInterval", streamFlushInterval.Milliseconds())
	sameInt(t, c, "FLAG_CHECK", c.cDefine(t, "FLAG_CHECK"), "flagCheck", flagCheck)
	sameInt(t, c, "CHECK_TIMEOUT_MS", c.cDefine(t, "CHECK_TIMEOUT_MS"), "cellCheckTimeout", cellCheckTimeout.Milliseconds())
	if h := withCheckFlag(cellHeader(time.Second, 1, 2, 3, 4), true, 9); h != fmt.Sprintf("cell 1000 1 2 3 4 %d 9\n", flagStream|flagCheck) {
		t.Errorf("Go's checked header = %q", h)
	}
	for _, h := range []string{
		withStreamFlag(requestHeader(time.Second, 1, 2, 3, 4), true),
		withStreamFlag(cellHeader(time.Second, 1, 2, 3, 4), true),
	} {
		if !strings.HasSuffix(h, " 1000 1 2 3 4 "+strconv.Itoa(flagStream)+"\n") {
			t.Errorf("Go's streamed header = %q, not the supervisor's", h)
		}
	}
	if h := withStreamFlag(requestHeader(time.Second, 1, 2, 3, 4), false); h != "run 1000 1 2 3 4\n" {
		t.Errorf("Go's plain header = %q, want the old form", h)
	}
	py := readSource(t, "harness/runner_child.py")
	if !strings.Contains(py.text, `options.get("`+optStream+`") is True`) {
		t.Errorf("%s does not read the option %q of Go's optStream", py.path, optStream)
	}
}

// TestSharedExitFrame: the supervisor's exit frame has exactly the fields of
// wireExit.
func TestSharedExitFrame(t *testing.T) {
	c := readSource(t, "supervisor/supervisor.c")
	fn := regexp.MustCompile(`(?s)static void write_exit\(.*?\n\}`).FindString(c.text)
	got := sortedSet(regexp.MustCompile(`\\"(\w+)\\":`).FindAllString(fn, -1))
	for i, k := range got {
		got[i] = strings.Trim(k, `\":`)
	}
	// memory_bytes is read by the session (session.go: roundTrip).
	want := sortedSet(append(jsonFields(reflect.TypeFor[wireExit]()), "memory_bytes"))
	if !slices.Equal(got, want) {
		t.Errorf("%s: write_exit sends fields %v, but Go's wireExit (verdict.go) and memory_bytes are %v", c.path, got, want)
	}
	for _, state := range []string{exitExited, exitSignaled, exitReported, sessionExitAlive} {
		if !strings.Contains(fn, `"`+state+`"`) {
			t.Errorf("%s: write_exit never reports state %q (Go: verdict.go)", c.path, state)
		}
	}
	if !strings.Contains(c.text, `{\"state\":\"`+sessionExitRefused+`\",\"memory_bytes\":`) {
		t.Errorf("%s: no exit frame with state %q (Go: session.go)", c.path, sessionExitRefused)
	}
}

// TestSharedSession: the session's timing and the sandbox's file caps and
// name rules are the runner's.
func TestSharedSession(t *testing.T) {
	c := readSource(t, "supervisor/supervisor.c")
	sameInt(t, c, "INTERRUPT_GRACE_MS", c.cDefine(t, "INTERRUPT_GRACE_MS"), "interruptGrace", interruptGrace.Milliseconds())
	for _, why := range []string{"the policy checker did not answer", "the policy checker answered out of turn"} {
		if !strings.Contains(c.text, `"`+why+`"`) || !strings.Contains(why, checkerLost) {
			t.Errorf("%s: the lost checker's message %q is not there or lacks Go's checkerLost %q", c.path, why, checkerLost)
		}
	}
	if !strings.Contains(c.text, `strncmp(line, "cell ", 5)`) {
		t.Errorf("%s does not take the %q header of Go's cellHeader", c.path, "cell")
	}
	if h := cellHeader(time.Second, 1, 2, 3, 4); !strings.HasPrefix(h, "cell 1000 1 2 3 4\n") {
		t.Errorf("Go's cellHeader = %q, not the supervisor's cell header", h)
	}
	w := readSource(t, "harness/workdir.py")
	defaults := func(key string) int64 {
		return w.eval(t, "_DEFAULTS["+key+"]", w.definition(t, key, `"%s"[ \t]*:[ \t]*\(([^,]+),`))
	}
	sameInt(t, w, "_DEFAULTS[max_files]", defaults(optMaxFiles), "DefaultMaxOutputFiles", DefaultMaxOutputFiles)
	sameInt(t, w, "_DEFAULTS[max_file_bytes]", defaults(optMaxFileBytes), "DefaultMaxOutputFileBytes", DefaultMaxOutputFileBytes)
	sameInt(t, w, "_DEFAULTS[max_files_total_bytes]", defaults(optMaxFilesTotalBytes), "DefaultMaxOutputFilesBytes", DefaultMaxOutputFilesBytes)
	sameInt(t, w, "MAX_NAME_BYTES", w.pyConst(t, "MAX_NAME_BYTES"), "MaxFileNameBytes", MaxFileNameBytes)
	sameInt(t, w, "MAX_PATH_BYTES", w.pyConst(t, "MAX_PATH_BYTES"), "maxFilePathBytes", maxFilePathBytes)
	sameInt(t, w, "MAX_PATH_DEPTH", w.pyConst(t, "MAX_PATH_DEPTH"), "maxFileDepth", maxFileDepth)
	sameInt(t, w, "MAX_SKIPPED", w.pyConst(t, "MAX_SKIPPED"), "maxSkippedFiles", maxSkippedFiles)
	sameInt(t, w, "MAX_LISTED", w.pyConst(t, "MAX_LISTED"), "maxListedFiles", maxListedFiles)
	// The caps of all the files of one execution, in base64, fit the
	// outputs next to the charts.
	py := readSource(t, "harness/outputs.py")
	charts := py.eval(t, "_DEFAULTS[max_chart_total_bytes]",
		py.definition(t, "max_chart_total_bytes", `"%s"[ \t]*:[ \t]*\(([^,]+),`))
	if files := 4 * ((defaults(optMaxFilesTotalBytes) + 2) / 3); charts+files > DefaultMaxOutputsBytes*7/8 {
		t.Errorf("%s and %s: charts (%d) and files in base64 (%d) exceed 7/8 of Go's DefaultMaxOutputsBytes = %d",
			py.path, w.path, charts, files, DefaultMaxOutputsBytes)
	}
}

// TestSharedReady: the child's ready message has the fields of readyInfo.
func TestSharedReady(t *testing.T) {
	py := readSource(t, "harness/child.py")
	block := py.definition(t, "ready", `(?s)\n[ \t]+%s = \{(.*?)\n[ \t]+\}`)
	got := sortedSet(regexp.MustCompile(`"(\w+)":`).FindAllString(block, -1))
	for i, k := range got {
		got[i] = strings.Trim(k, `":`)
	}
	if want := sortedSet(jsonFields(reflect.TypeFor[readyInfo]())); !slices.Equal(got, want) {
		t.Errorf("%s: the ready message has fields %v, but Go's readyInfo (sandbox.go) has %v", py.path, got, want)
	}
}

// TestSharedErrorCaps: the child cuts its report's error to the sizes the
// runner keeps, and a report so cut fits the supervisor's report cap.
func TestSharedErrorCaps(t *testing.T) {
	py := readSource(t, "harness/runner_child.py")
	caps := py.definition(t, "_ERROR_CAPS", `(?m)^%s[ \t]*=[ \t]*(\(.*\))[ \t]*$`)
	got := map[string]int64{}
	for _, m := range regexp.MustCompile(`\(\s*"(\w+)"\s*,\s*([^()]+?)\s*\)`).FindAllStringSubmatch(caps, -1) {
		got[m[1]] = py.eval(t, "_ERROR_CAPS["+m[1]+"]", m[2])
	}
	want := map[string]struct {
		name string
		v    int64
	}{
		"type":      {"maxErrorTypeChars", maxErrorTypeChars},
		"message":   {"maxErrorMessageChars", maxErrorMessageChars},
		"traceback": {"maxErrorTracebackChars", maxErrorTracebackChars},
	}
	var sum int64
	for field, w := range want {
		v, ok := got[field]
		if !ok {
			t.Errorf("%s: _ERROR_CAPS has no cap for %q (Go: %s = %d)", py.path, field, w.name, w.v)
			continue
		}
		sameInt(t, py, "_ERROR_CAPS["+field+"]", v, w.name, w.v)
		sum += v
	}
	errFields := jsonFields(reflect.TypeFor[ExecError]())
	for field := range got {
		if !slices.Contains(errFields, field) {
			t.Errorf("%s: _ERROR_CAPS caps %q, which is no field of Go's ExecError %v", py.path, field, errFields)
		}
	}
	// A capped character takes at most 7 bytes in the report (a lone
	// surrogate becomes \udc80 and its backslash is escaped); the report
	// must fit MAX_REPORT_BYTES, or a long message turns an error into a
	// report-less exit.
	c := readSource(t, "supervisor/supervisor.c")
	if limit := c.cDefine(t, "MAX_REPORT_BYTES"); 7*sum+4096 > limit {
		t.Errorf("%s: MAX_REPORT_BYTES = %d is too small for an error report at the caps (%d characters, up to %d bytes)",
			c.path, limit, sum, 7*sum+4096)
	}
	ch := readSource(t, "harness/checker.py")
	sameInt(t, ch, "MAX_REPORTED", ch.pyConst(t, "MAX_REPORTED"), "maxViolations", maxViolations)
	if a, b := ch.pyString(t, "CODE_FILENAME"), py.pyString(t, "CODE_FILENAME"); a != b {
		t.Errorf("%s: CODE_FILENAME = %q, but %s: CODE_FILENAME = %q", ch.path, a, py.path, b)
	}
}

// TestSharedPreloads: the child preloads the libraries Go names, in Go's
// order, under the names Go sends.
func TestSharedPreloads(t *testing.T) {
	py := readSource(t, "harness/child.py")
	block := py.definition(t, "PRELOADS", `(?s)\n%s[ \t]*=[ \t]*\{(.*?)\n\}`)
	var got []string
	for _, m := range regexp.MustCompile(`(?m)^[ \t]*"(\w+)"[ \t]*:`).FindAllStringSubmatch(block, -1) {
		got = append(got, m[1])
	}
	if !slices.Equal(got, preloadOrder) {
		t.Errorf("%s: PRELOADS lists %v, but Go's preloadOrder (flavor.go) is %v (same libraries, same order)", py.path, got, preloadOrder)
	}
	for _, lib := range splitPreload(PreloadFull) {
		if !slices.Contains(got, lib) {
			t.Errorf("Go's PreloadFull names %q, which %s cannot preload", lib, py.path)
		}
	}
	// The versions a probe reports are those of PreloadFull's libraries.
	versions := py.definition(t, "VERSIONED_LIBRARIES", `(?m)^%s[ \t]*=[ \t]*\(([^)]*)\)`)
	var named []string
	for _, m := range regexp.MustCompile(`"(\w+)"`).FindAllStringSubmatch(versions, -1) {
		named = append(named, m[1])
	}
	if !slices.Equal(named, splitPreload(PreloadFull)) {
		t.Errorf("%s: VERSIONED_LIBRARIES = %v, but Go's PreloadFull (flavor.go) loads %v", py.path, named, splitPreload(PreloadFull))
	}
	// The environment variable and the name of no preload.
	r := &Runner{opts: Options{Image: "image", Owner: "owner"}}
	env := r.sandboxSpec("exec", PreloadNone, nil).config.Env
	if len(env) != 1 {
		t.Fatalf("sandbox environment %v: want one variable", env)
	}
	name, value, _ := strings.Cut(env[0], "=")
	if !strings.Contains(py.text, `os.environ.get("`+name+`")`) {
		t.Errorf("%s does not read %s, the variable Go's sandboxSpec (hostconfig.go) sets", py.path, name)
	}
	sameString(t, py, "PRELOAD_NONE", py.pyString(t, "PRELOAD_NONE"), "preloadName(PreloadNone)", value)
	if !strings.Contains(py.text, `or PRELOAD_NONE`) {
		t.Errorf("%s: the ready message does not name a bare sandbox's preload PRELOAD_NONE", py.path)
	}
}

// TestSharedSandboxUser: the image's user is the one the runner runs as, in
// the working directory the runner sets.
func TestSharedSandboxUser(t *testing.T) {
	df := readSource(t, "Dockerfile")
	uid := df.definition(t, "useradd", `(?m)^RUN %s[^\n]*--uid[ \t]+(\d+)`)
	if !regexp.MustCompile(`(?m)^RUN useradd[^\n]*--user-group`).MatchString(df.text) {
		t.Errorf("%s: useradd without --user-group: the group id is not the user id", df.path)
	}
	sameString(t, df, "useradd --uid (with --user-group)", uid+":"+uid, "sandboxUser", sandboxUser)
	sameString(t, df, "USER", df.definition(t, "USER", `(?m)^%s[ \t]+(\S+)[ \t]*$`), "sandboxUser", sandboxUser)
	r := &Runner{opts: Options{Image: "image", Owner: "owner"}}
	sp := r.sandboxSpec("exec", PreloadNone, nil)
	sameString(t, df, "WORKDIR", df.definition(t, "WORKDIR", `(?m)^%s[ \t]+(\S+)[ \t]*$`), "sandboxSpec's WorkingDir", sp.config.WorkingDir)
	if sp.config.User != sandboxUser {
		t.Errorf("sandboxSpec runs as %q, not sandboxUser %q", sp.config.User, sandboxUser)
	}
}

// TestSharedPaths: the files the runner and the supervisor start are where
// the Dockerfile puts them.
func TestSharedPaths(t *testing.T) {
	df := readSource(t, "Dockerfile")
	c := readSource(t, "supervisor/supervisor.c")
	dest := df.definition(t, "harness/", `(?m)^COPY[ \t]+%s[ \t]+(\S+)`)
	dest = strings.TrimSuffix(dest, "/") + "/"
	sameString(t, c, "CHILD_SCRIPT", c.cString(t, "CHILD_SCRIPT"), "the Dockerfile's harness/ destination + child.py", dest+"child.py")
	sameString(t, c, "CHILD_PYTHON", c.cString(t, "CHILD_PYTHON"), "validatorEntrypoint[0]", validatorEntrypoint[0])
	child := readSource(t, "harness/child.py")
	sameString(t, child, "HARNESS_DIR", child.pyString(t, "HARNESS_DIR")+"/", "the Dockerfile's harness/ destination", dest)
	script := validatorEntrypoint[len(validatorEntrypoint)-1]
	rel, ok := strings.CutPrefix(script, dest)
	if !ok {
		t.Fatalf("validatorEntrypoint runs %s, outside the harness directory %s of the Dockerfile", script, dest)
	}
	if _, err := os.Stat(filepath.Join(contextDir(), "harness", rel)); err != nil {
		t.Errorf("validatorEntrypoint runs %s, which the build context does not hold: %v", script, err)
	}
	entry := df.definition(t, "ENTRYPOINT", `(?m)^%s[ \t]+\["([^"]+)"`)
	if !strings.HasPrefix(entry, dest) {
		t.Errorf("%s: ENTRYPOINT %s is outside the harness directory %s", df.path, entry, dest)
	}
}

// jsonFields lists the JSON names of a struct's fields.
func jsonFields(typ reflect.Type) []string {
	var out []string
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// TestSharedDetectsDrift alters one value at a time in a copy of the build
// context and runs the check that guards it on the copy: each must fail and
// name the file, the constant and both values.
func TestSharedDetectsDrift(t *testing.T) {
	if os.Getenv(contextEnv) != "" {
		t.Skip("running on an altered copy")
	}
	tests := []struct {
		file, re, repl string // the alteration: the first match of re becomes repl
		test           string
		want           []string // in the failing check's output
	}{
		{"supervisor/supervisor.c", `(#define MAX_STREAM_CAP ).*`, "${1}(32u << 20)", "TestSharedOutputCaps",
			[]string{"images/context/supervisor/supervisor.c: MAX_STREAM_CAP = 33554432, but Go's MaxStreamBytesLimit = 67108864"}},
		{"supervisor/supervisor.c", `(#define MAX_OUTPUTS_CAP ).*`, "${1}(128u << 20)", "TestSharedOutputCaps",
			[]string{"MAX_OUTPUTS_CAP = 134217728, but Go's MaxOutputsBytesLimit = 268435456"}},
		{"supervisor/supervisor.c", `(#define MAX_REPORT_BYTES ).*`, "${1}(64u << 10)", "TestSharedErrorCaps",
			[]string{"MAX_REPORT_BYTES = 65536 is too small"}},
		{"supervisor/supervisor.c", `(#define MAX_REQUEST_BYTES ).*`, "${1}(256u << 10)", "TestSharedRequestSizes",
			[]string{"supervisor.c: MAX_REQUEST_BYTES = 262144"}},
		{"supervisor/supervisor.c", `(#define MAX_REQUEST_BYTES ).*`, "${1}(64u << 20)", "TestSharedRequestSizes",
			[]string{"supervisor.c: MAX_REQUEST_BYTES = 67108864, but a cell with 1000 input files"}},
		{"supervisor/supervisor.c", `(#define INTERRUPT_GRACE_MS ).*`, "${1}2000", "TestSharedSession",
			[]string{"supervisor.c: INTERRUPT_GRACE_MS = 2000, but Go's interruptGrace = 1000"}},
		{"supervisor/supervisor.c", `alive \? "alive"`, `alive ? "living"`, "TestSharedExitFrame",
			[]string{`write_exit never reports state "alive"`}},
		{"supervisor/supervisor.c", `\\"memory_bytes\\":`, `\"mem\":`, "TestSharedExitFrame",
			[]string{"write_exit sends fields", " mem "}},
		{"supervisor/supervisor.c", `(#define FLAG_STREAM )1`, "${1}2", "TestSharedStream",
			[]string{"supervisor.c: FLAG_STREAM = 2, but Go's flagStream = 1"}},
		{"supervisor/supervisor.c", `(#define STREAM_FLUSH_MS )50`, "${1}100", "TestSharedStream",
			[]string{"supervisor.c: STREAM_FLUSH_MS = 100, but Go's streamFlushInterval = 50"}},
		{"harness/runner_child.py", `options.get\("stream"\)`, `options.get("streaming")`, "TestSharedStream",
			[]string{`does not read the option "stream"`}},
		{"supervisor/supervisor.c", `memcmp\(start, "event", 5\)`, `memcmp(start, "evt", 3)`, "TestSharedFrames",
			[]string{`the child's message "evt" is no frame kind`}},
		{"harness/workdir.py", `("max_files": \()\d+`, "${1}30", "TestSharedSession",
			[]string{"workdir.py: _DEFAULTS[max_files] = 30, but Go's DefaultMaxOutputFiles = 20"}},
		{"harness/workdir.py", `(?m)^(MAX_DEPTH = )4`, "${1}5", "TestSharedSession",
			[]string{"workdir.py: MAX_PATH_DEPTH = 6, but Go's maxFileDepth = 5"}},
		{"supervisor/supervisor.c", `batch_add\(bt, "exit"`, `batch_add(bt, "exited"`, "TestSharedFrames",
			[]string{"supervisor.c writes frames of kinds", "exited"}},
		{"supervisor/supervisor.c", `(CHILD_OUT_FD = )5`, "${1}7", "TestSharedFrames",
			[]string{"harness/child.py: OUT_FD = 5, but Go's (supervisor.c) CHILD_OUT_FD = 7"}},
		{"supervisor/supervisor.c", `\\"oom_killed\\":`, `\"oom\":`, "TestSharedExitFrame",
			[]string{"write_exit sends fields", " oom ", "wireExit"}},
		{"supervisor/supervisor.c", `(#define FRAME_MAGIC )"PYEXEC1"`, `${1}"PYEXEC2"`, "TestSharedFrames",
			[]string{`supervisor.c: FRAME_MAGIC = "PYEXEC2", but Go's frameMagic = "PYEXEC1"`}},
		{"harness/validate.py", `(?m)^(FRAME_MAGIC = )b"PYEXEC1"`, `${1}b"PYEXEC2"`, "TestSharedFrames",
			[]string{`validate.py: FRAME_MAGIC = "PYEXEC2"`}},
		{"harness/validate.py", `(?m)^(MAX_REQUEST_BYTES = ).*`, "${1}64 << 10", "TestSharedRequestSizes",
			[]string{"validate.py: MAX_REQUEST_BYTES = 65536"}},
		{"harness/runner_child.py", `\("message", \d+\)`, `("message", 9999)`, "TestSharedErrorCaps",
			[]string{"runner_child.py: _ERROR_CAPS[message] = 9999, but Go's maxErrorMessageChars = 10000"}},
		{"harness/checker.py", `(?m)^(MAX_REPORTED = ).*`, "${1}50", "TestSharedErrorCaps",
			[]string{"checker.py: MAX_REPORTED = 50, but Go's maxViolations = 100"}},
		{"harness/child.py", `"seaborn":`, `"sklearn":`, "TestSharedPreloads",
			[]string{"child.py: PRELOADS lists", "sklearn", "preloadOrder"}},
		{"harness/child.py", `(VERSIONED_LIBRARIES = \("numpy", )"pandas", `, "${1}", "TestSharedPreloads",
			[]string{"child.py: VERSIONED_LIBRARIES = [numpy matplotlib plotly], but Go's PreloadFull"}},
		{"harness/child.py", `(?m)^(PRELOAD_NONE = )"none"`, `${1}"bare"`, "TestSharedPreloads",
			[]string{`child.py: PRELOAD_NONE = "bare", but Go's preloadName(PreloadNone) = "none"`}},
		{"harness/child.py", `"preload_ms":`, `"preload_time":`, "TestSharedReady",
			[]string{"child.py: the ready message has fields", "preload_time"}},
		{"harness/outputs.py", `("max_chart_total_bytes": \()[^,]+`, "${1}64 << 20", "TestSharedOutputCaps",
			[]string{"max_chart_total_bytes = 67108864 exceeds 3/4 of Go's DefaultMaxOutputsBytes"}},
		{"Dockerfile", `--uid 10001`, "--uid 10002", "TestSharedSandboxUser",
			[]string{`Dockerfile: useradd --uid (with --user-group) = "10002:10002", but Go's sandboxUser = "10001:10001"`}},
		{"Dockerfile", `(?m)^USER .*`, "USER 0:0", "TestSharedSandboxUser",
			[]string{`Dockerfile: USER = "0:0"`}},
	}
	for _, tt := range tests {
		t.Run(tt.test+"/"+filepath.Base(tt.file), func(t *testing.T) {
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(contextDir())); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, filepath.FromSlash(tt.file))
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			re := regexp.MustCompile(tt.re)
			loc := re.FindSubmatchIndex(data)
			if loc == nil {
				t.Fatalf("%s: nothing matches %s to alter", tt.file, tt.re)
			}
			altered := append(bytes.Clone(data[:loc[0]]), re.Expand(nil, []byte(tt.repl), data, loc)...)
			altered = append(altered, data[loc[1]:]...)
			if err := os.WriteFile(path, altered, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^"+tt.test+"$", "-test.count=1")
			cmd.Env = append(os.Environ(), contextEnv+"="+dir)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("%s passed with %s altered:\n%s", tt.test, tt.file, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("%s failed without saying %q:\n%s", tt.test, w, out)
				}
			}
		})
	}
}
