package policy

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{in: "strict", want: ModeStrict},
		{in: "off", want: ModeOff},
		{in: " Strict\n", want: ModeStrict},
		{in: "OFF", want: ModeOff},
		{in: "", wantErr: true},
		{in: "on", wantErr: true},
		{in: "lenient", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.in), func(t *testing.T) {
			got, err := ParseMode(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseMode(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseMode(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCheckSource(t *testing.T) {
	tests := []struct {
		name     string
		code     string
		maxBytes int
		want     []Violation
	}{
		{name: "ok", code: "print('hello')\n"},
		{name: "ok non-ASCII", code: "print('héllo, 世界')\n"},
		{name: "exactly the limit", code: strings.Repeat("x", 10), maxBytes: 10},
		{name: "empty", code: "", want: []Violation{{Rule: RuleEmpty, Message: "code is empty"}}},
		{name: "whitespace", code: " \n\t\r\n", want: []Violation{{Rule: RuleEmpty, Message: "code is empty"}}},
		{
			name: "over the limit", code: strings.Repeat("x", 11), maxBytes: 10,
			want: []Violation{{Rule: RuleSize, Message: "code is 11 bytes; the limit is 10 bytes"}},
		},
		{
			name: "default limit", code: strings.Repeat("#", MaxCodeBytes+1),
			want: []Violation{{Rule: RuleSize, Message: fmt.Sprintf("code is %d bytes; the limit is %d bytes", MaxCodeBytes+1, MaxCodeBytes)}},
		},
		{name: "default limit not exceeded", code: strings.Repeat("#", MaxCodeBytes)},
		{
			name: "invalid UTF-8", code: "x = 1\ny = 'é\xff'\n",
			want: []Violation{{Line: 2, Column: 7, Rule: RuleEncoding, Message: "code is not valid UTF-8 (byte 0xff at offset 13)"}},
		},
		{
			name: "truncated sequence", code: "x = '\xe4\xb8'",
			want: []Violation{{Line: 1, Column: 6, Rule: RuleEncoding, Message: "code is not valid UTF-8 (byte 0xe4 at offset 5)"}},
		},
		{
			name: "NUL after CRLF and multibyte", code: "a = 1\r\nb = '世'\x00\n",
			want: []Violation{{Line: 2, Column: 8, Rule: RuleNullByte, Message: "code contains a NUL byte"}},
		},
		{
			name: "NUL after lone CR", code: "a\rb\x00",
			want: []Violation{{Line: 2, Column: 2, Rule: RuleNullByte, Message: "code contains a NUL byte"}},
		},
		{
			name: "several at once", code: "\x00" + strings.Repeat("x", 10) + "\xfe", maxBytes: 5,
			want: []Violation{
				{Rule: RuleSize, Message: "code is 12 bytes; the limit is 5 bytes"},
				{Line: 1, Column: 12, Rule: RuleEncoding, Message: "code is not valid UTF-8 (byte 0xfe at offset 11)"},
				{Line: 1, Column: 1, Rule: RuleNullByte, Message: "code contains a NUL byte"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckSource(tt.code, tt.maxBytes)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("CheckSource() =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestViolationError(t *testing.T) {
	tests := []struct {
		v    Violation
		want string
	}{
		{Violation{Line: 3, Column: 8, Rule: RuleForbiddenModule, Message: "import of module 'os' is forbidden"},
			"line 3, column 8: import of module 'os' is forbidden (forbidden-module)"},
		{Violation{Line: 2, Rule: RuleSyntax, Message: "invalid syntax"}, "line 2: invalid syntax (syntax)"},
		{Violation{Rule: RuleEmpty, Message: "code is empty"}, "code is empty (empty)"},
	}
	for _, tt := range tests {
		if got := tt.v.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestViolations(t *testing.T) {
	if err := Err(nil); err != nil {
		t.Fatalf("Err(nil) = %v, want nil", err)
	}
	vs := []Violation{
		{Line: 1, Column: 1, Rule: RuleForbiddenModule, Message: "import of module 'os' is forbidden"},
		{Line: 2, Column: 1, Rule: RuleForbiddenName, Message: "use of 'open' is not allowed"},
		{Line: 3, Column: 1, Rule: RuleForbiddenName, Message: "use of 'eval' is not allowed"},
	}
	err := fmt.Errorf("execute: %w", Err(vs))
	var got Violations
	if !errors.As(err, &got) {
		t.Fatalf("errors.As(%v, *Violations) = false", err)
	}
	if !reflect.DeepEqual([]Violation(got), vs) {
		t.Errorf("errors.As gave %+v, want %+v", got, vs)
	}
	want := "line 1, column 1: import of module 'os' is forbidden (forbidden-module) (and 2 more)"
	if got.Error() != want {
		t.Errorf("Error() = %q, want %q", got.Error(), want)
	}
	var one error = &vs[1]
	if !strings.Contains(one.Error(), "use of 'open'") {
		t.Errorf("*Violation.Error() = %q", one.Error())
	}
}

// TestRulesJSON pins the field names checker.py reads from request["policy"].
func TestRulesJSON(t *testing.T) {
	data, err := json.Marshal(Default())
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatal(err)
	}
	var got []string
	for k := range fields {
		got = append(got, k)
	}
	sort.Strings(got)
	want := []string{
		"allow_private", "allowed_dunders", "allowed_modules", "attribute_functions",
		"expression_methods", "forbidden_attributes", "forbidden_keywords", "forbidden_modules",
		"forbidden_names", "path_functions", "path_keywords", "single_argument_calls",
	}
	if !slices.Equal(got, want) {
		t.Errorf("JSON fields = %v, want %v", got, want)
	}
	// checker.py reads every field (a field it ignores is a rule that is
	// silently not applied) and nothing else.
	src, err := os.ReadFile(filepath.Join("..", "images", "context", "harness", "checker.py"))
	if err != nil {
		t.Fatal(err)
	}
	var read []string
	for _, m := range regexp.MustCompile(`\bd\.get\("(\w+)"\)`).FindAllStringSubmatch(string(src), -1) {
		if !slices.Contains(read, m[1]) {
			read = append(read, m[1])
		}
	}
	sort.Strings(read)
	if !slices.Equal(read, want) {
		t.Errorf("checker.py reads the rules' fields %v, want %v", read, want)
	}
	var back Rules
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, Default()) {
		t.Error("Rules do not survive a JSON round trip")
	}
}

// TestRuleIDs: the rule ids of checker.py (RULE_* constants) are the Go
// constants, minus the two only Go reports (size is checked before Python
// sees the code; checker.py reports no size).
func TestRuleIDs(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "images", "context", "harness", "checker.py"))
	if err != nil {
		t.Fatal(err)
	}
	var py []string
	for _, m := range regexp.MustCompile(`(?m)^RULE_\w+ = "([\w-]+)"$`).FindAllStringSubmatch(string(src), -1) {
		py = append(py, m[1])
	}
	sort.Strings(py)
	goRules := []string{
		RuleEmpty, RuleEncoding, RuleNullByte, RuleSyntax, RuleForbiddenModule,
		RuleForbiddenImport, RuleForbiddenName, RuleForbiddenAttribute, RuleForbiddenArgument,
		RulePathOutsideWorkdir, RuleComplexity, RuleInternal,
	}
	sort.Strings(goRules)
	if !slices.Equal(py, goRules) {
		t.Errorf("checker.py RULE_* = %v, want Go's %v", py, goRules)
	}
}

var (
	identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	dotted     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
)

func TestDefault(t *testing.T) {
	r := Default()
	lists := map[string]struct {
		items []string
		valid *regexp.Regexp
	}{
		"AllowedModules":      {r.AllowedModules, identifier},
		"ForbiddenModules":    {r.ForbiddenModules, dotted},
		"ForbiddenNames":      {r.ForbiddenNames, identifier},
		"AllowedDunders":      {r.AllowedDunders, regexp.MustCompile(`^__\w+__$`)},
		"ForbiddenAttributes": {r.ForbiddenAttributes, identifier},
		"ForbiddenKeywords":   {r.ForbiddenKeywords, identifier},
		"ExpressionMethods":   {r.ExpressionMethods, identifier},
	}
	for name, l := range lists {
		if len(l.items) == 0 {
			t.Errorf("%s is empty", name)
		}
		seen := map[string]bool{}
		for _, s := range l.items {
			if !l.valid.MatchString(s) {
				t.Errorf("%s: %q is not a valid entry", name, s)
			}
			if seen[s] {
				t.Errorf("%s: %q listed twice", name, s)
			}
			seen[s] = true
		}
	}
	for name := range r.AttributeFunctions {
		if !identifier.MatchString(name) {
			t.Errorf("AttributeFunctions: %q is not an identifier", name)
		}
	}
	for name, positions := range r.PathFunctions {
		if !identifier.MatchString(name) {
			t.Errorf("PathFunctions: %q is not an identifier", name)
		}
		if len(positions) == 0 || positions[0] < 0 || !slices.IsSorted(positions) || len(slices.Compact(slices.Clone(positions))) != len(positions) {
			t.Errorf("PathFunctions[%q] = %v: want distinct positions >= 0, sorted", name, positions)
		}
		if slices.Contains(r.ForbiddenAttributes, name) {
			t.Errorf("PathFunctions names %q, a forbidden attribute", name)
		}
	}
	for _, l := range []struct {
		name  string
		items []string
	}{{"PathKeywords", r.PathKeywords}, {"SingleArgumentCalls", r.SingleArgumentCalls}} {
		if len(l.items) == 0 {
			t.Errorf("%s is empty", l.name)
		}
		for i, s := range l.items {
			if !identifier.MatchString(s) || slices.Index(l.items, s) != i {
				t.Errorf("%s: %q is not an identifier or is listed twice", l.name, s)
			}
		}
	}
	for _, n := range r.SingleArgumentCalls {
		if slices.Contains(r.ForbiddenAttributes, n) {
			t.Errorf("%q is both a forbidden attribute and a single-argument call", n)
		}
	}
	// The readers and writers the issue names are judged.
	for _, n := range []string{"read_csv", "read_excel", "read_json", "read_parquet", "read_table", "to_csv", "to_excel", "to_json", "loadtxt", "savetxt", "genfromtxt", "load", "save", "savefig"} {
		if _, ok := r.PathFunctions[n]; !ok {
			t.Errorf("PathFunctions lacks %q", n)
		}
	}
	for _, m := range r.ForbiddenModules {
		if slices.Contains(r.AllowedModules, m) {
			t.Errorf("%q is both allowed and forbidden", m)
		}
	}
	for _, n := range r.ForbiddenNames {
		if slices.Contains(r.AllowedDunders, n) {
			t.Errorf("%q is both a forbidden name and an allowed dunder", n)
		}
	}
	mustAllow := []string{"numpy", "pandas", "matplotlib", "plotly", "seaborn", "scipy", "math", "io", "json", "datetime"}
	for _, m := range mustAllow {
		if !slices.Contains(r.AllowedModules, m) {
			t.Errorf("AllowedModules lacks %q", m)
		}
	}
	mustForbid := []string{"os", "sys", "subprocess", "socket", "urllib", "http", "requests", "ctypes", "pickle", "shutil", "pathlib", "importlib", "builtins"}
	for _, m := range mustForbid {
		if !slices.Contains(r.ForbiddenModules, m) {
			t.Errorf("ForbiddenModules lacks %q", m)
		}
	}
	for _, n := range []string{"open", "file", "eval", "exec", "compile", "__import__", "globals", "locals", "vars"} {
		if !slices.Contains(r.ForbiddenNames, n) {
			t.Errorf("ForbiddenNames lacks %q", n)
		}
	}

	// Every call returns its own copy.
	r.AllowedModules[0] = "os"
	r.AttributeFunctions["getattr"] = 7
	r.PathFunctions["read_csv"][0] = 7
	again := Default()
	if again.AllowedModules[0] == "os" || again.AttributeFunctions["getattr"] == 7 || again.PathFunctions["read_csv"][0] == 7 {
		t.Error("Default() shares state between calls")
	}
}

// TestRulesWithChecker runs Default() through the real checker
// (images/context/harness/validate.py, the /validate protocol) on the host's
// Python, so that the JSON contract and the rules' effect stay in step. The
// checker needs only the standard library.
func TestRulesWithChecker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Python process")
	}
	v := startValidator(t)
	rules := Default()
	tests := []struct {
		name string
		code string
		want []string // rule ids, sorted; nil: must pass
	}{
		// Ordinary data-science code passes.
		{name: "hello", code: "print('hello')"},
		{name: "analytics", code: `
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import plotly.express as px
import seaborn as sns
from scipy import stats, signal
from io import StringIO
from mpl_toolkits.mplot3d import Axes3D
df = pd.read_csv(StringIO("a,b\n1,2"))
df.columns = ["x", "y"]
df["z"] = df.x * 2
text = df.to_csv()
print(np.__version__, pd.api.types.is_numeric_dtype(df.x))
fig, ax = plt.subplots()
ax.plot(np.sin(np.linspace(0, 10, 100)))
plt.show()
`},
		{name: "classes", code: `
from dataclasses import dataclass, field
class Base:
    __slots__ = ("a",)
    def __init__(self, a: int) -> None:
        self.a = a
    def __repr__(self):
        return f"Base({self.a!r})"
    __hash__ = None
class Child(Base):
    def __init__(self, a):
        super().__init__(a)
        self._b = a
@dataclass
class P:
    xs: list = field(default_factory=list)
    def __post_init__(self):
        self.xs.append(type(self).__name__)
if __name__ == "__main__":
    print(Child(1), P())
`},
		{name: "control flow", code: `
from __future__ import annotations
import functools
from operator import attrgetter, methodcaller
def deco(f):
    @functools.wraps(f)
    def w(*a, **k):
        return f(*a, **k)
    return w
@deco
def g(x, *, y=2):
    try:
        return x / y
    except ZeroDivisionError as e:
        raise ValueError("bad") from e
    finally:
        pass
data = [1, 2, 3]
if (n := len(data)) > 2:
    print({k: v for k, v in enumerate(data)}, [x for x in data if x], (lambda q: q)(1))
match data:
    case [1, *rest]:
        print(rest)
    case _:
        pass
async def co():
    await co()
for i in range(3):
    if i:
        continue
    break
print(getattr(data, "count")(1), attrgetter("real")(3), methodcaller("count", 1)(data))
print("{0} {1:.2f}".format(1, 2.0), hasattr(data, "__len__"))
`},
		// Syntax, also the compile-stage errors ast.parse lets through.
		{name: "syntax error", code: "def f(:\n", want: []string{RuleSyntax}},
		{name: "return outside function", code: "return 1", want: []string{RuleSyntax}},
		{name: "NUL byte", code: "x = 1\x00", want: []string{RuleNullByte}},
		{name: "empty", code: " \n", want: []string{RuleEmpty}},
		// Modules.
		{name: "os", code: "import os", want: []string{RuleForbiddenModule}},
		{name: "from os", code: "from os import system", want: []string{RuleForbiddenModule}},
		{name: "subprocess alias", code: "import subprocess as sp", want: []string{RuleForbiddenModule}},
		{name: "not allowed", code: "import sklearn", want: []string{RuleForbiddenModule}},
		{name: "forbidden submodule", code: "from numpy import ctypeslib", want: []string{RuleForbiddenModule}},
		{name: "private module", code: "import pandas._libs", want: []string{RuleForbiddenModule}},
		{name: "relative", code: "from . import x", want: []string{RuleForbiddenImport}},
		{name: "wildcard", code: "from math import *", want: []string{RuleForbiddenImport}},
		// Names.
		{name: "open", code: "open('/etc/passwd')", want: []string{RuleForbiddenName}},
		{name: "eval", code: "eval('1')", want: []string{RuleForbiddenName}},
		{name: "__import__", code: "__import__('os')", want: []string{RuleForbiddenName}},
		{name: "shadowing", code: "open = open", want: []string{RuleForbiddenName}},
		{name: "builtins", code: "b = __builtins__", want: []string{RuleForbiddenName}},
		{name: "getattr as a value", code: "g = getattr", want: []string{RuleForbiddenName}},
		// Attributes.
		{name: "subclasses", code: "().__class__.__bases__[0].__subclasses__()", want: []string{RuleForbiddenAttribute}},
		{name: "io.open", code: "import io\nio.open('/etc/passwd')", want: []string{RuleForbiddenAttribute}},
		{name: "from io import open", code: "from io import open", want: []string{RuleForbiddenAttribute}},
		{name: "module through attribute", code: "import warnings\nwarnings.sys.modules", want: []string{RuleForbiddenAttribute}},
		{name: "private module attribute", code: "import random\nrandom._inst", want: []string{RuleForbiddenAttribute}},
		{name: "frames", code: "def g():\n    yield 1\ng().gi_frame.f_back.f_globals", want: []string{RuleForbiddenAttribute}},
		{name: "getattr dunder", code: "getattr(1, '__class__')", want: []string{RuleForbiddenAttribute}},
		{name: "getattr computed", code: "name = 'real'\ngetattr(1, name)", want: []string{RuleForbiddenAttribute}},
		{name: "format field", code: "'{0.__class__}'.format(1)", want: []string{RuleForbiddenAttribute}},
		{name: "string key", code: "d = {}\nd['__builtins__']", want: []string{RuleForbiddenAttribute}},
		{name: "read_pickle", code: "import pandas as pd\npd.read_pickle('x')", want: []string{RuleForbiddenAttribute}},
		{name: "query with attributes", code: "import pandas as pd\ndf = pd.DataFrame({'a': [1]})\nt = 0\ndf.query('a > @t and a.abs() < 5')\ndf.query(f'a > {t}')\npd.eval('df.a + 1')"},
		{name: "query reaching a module", code: "import warnings\ndf.query(\"a > @warnings.sys.modules['os'].getpid()\")", want: []string{RuleForbiddenAttribute}},
		{name: "query computed", code: "e = 'a > 1'\ndf.query(e)", want: []string{RuleForbiddenAttribute}},
		{name: "string annotations", code: "from typing import Optional\ndef f(x: 'int', y: 'Optional[str]' = None) -> 'list[int]':\n    return [x]"},
		{name: "code in a string annotation", code: "def f(x: \"open('/etc/passwd').read()\"): pass", want: []string{RuleForbiddenName}},
		{name: "allow_pickle", code: "import numpy as np\nnp.save('x', [1], allow_pickle=True)", want: []string{RuleForbiddenArgument}},
		{name: "np.load", code: "import io\nimport numpy as np\nnp.load(io.BytesIO(b''), None, True)", want: []string{RuleForbiddenAttribute}},
		{name: "several", code: "import os\nopen('x')\n", want: []string{RuleForbiddenModule, RuleForbiddenName}},
		// Files: the working directory through the libraries' readers and
		// writers, nothing else.
		{name: "working directory", code: `
import io
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import plotly.express as px
from pandas import read_csv
df = pd.read_csv("sales.csv")
df2 = read_csv("./sales.csv", sep=";")
t = pd.read_table("data/t.tsv")
j = pd.read_json("records.json")
x = pd.read_excel("book.xlsx", sheet_name=0)
p = pd.read_parquet("t.parquet")
df.to_csv("outputs/by_region.csv", index=False)
df.to_json(path_or_buf="outputs/by_region.json")
df.to_excel("outputs/by_region.xlsx")
a = np.loadtxt("a.txt", delimiter=",")
np.savetxt("outputs/a.txt", a, fmt="%.3f", delimiter="/")
g = np.genfromtxt("a.csv", delimiter=",", names=True)
np.save("outputs/a.npy", a)
b = np.load("outputs/a.npy")
plt.plot(a)
plt.savefig("outputs/chart.png")
fig, ax = plt.subplots()
fig.savefig(fname="outputs/chart2.svg")
px.line(y=[1, 2]).write_html("outputs/chart.html")
name = "region"
df.to_csv(f"outputs/{name}.csv")
df.to_csv("outputs/%s.csv" % name)
df.to_csv("outputs/{}.csv".format(name))
path = "/anything/at/run/time"
pd.read_csv(path)
pd.read_csv(io.StringIO("a,b\n1,2"))
df.to_csv(io.BytesIO())
text = df.to_csv()
js = pd.read_json('[{"a": "x/../y"}]')
`},
		{name: "absolute path", code: "import pandas as pd\npd.read_csv('/etc/passwd')", want: []string{RulePathOutsideWorkdir}},
		{name: "parent directory", code: "import pandas as pd\npd.read_csv('../x.csv')", want: []string{RulePathOutsideWorkdir}},
		{name: "absolute with parent", code: "df.to_csv('/tmp/../etc/x')", want: []string{RulePathOutsideWorkdir}},
		{name: "parent inside", code: "df.to_csv('outputs/../../x.csv')", want: []string{RulePathOutsideWorkdir}},
		{name: "home directory", code: "import numpy as np\nnp.savetxt('~/a.txt', [1])", want: []string{RulePathOutsideWorkdir}},
		{name: "URL", code: "import pandas as pd\npd.read_csv('https://example.com/x.csv')", want: []string{RulePathOutsideWorkdir}},
		{name: "URL schemes", code: "import pandas as pd\npd.read_json('ftp://h/x')\npd.read_csv('file:///etc/passwd')\npd.read_parquet('s3://b/k')\npd.read_csv('HTTP://x')", want: []string{RulePathOutsideWorkdir}},
		{name: "path keyword", code: "import pandas as pd\npd.read_csv(filepath_or_buffer='/etc/passwd')", want: []string{RulePathOutsideWorkdir}},
		{name: "savefig absolute", code: "import matplotlib.pyplot as plt\nplt.savefig('/opt/pyexec/x.png')", want: []string{RulePathOutsideWorkdir}},
		{name: "plotly.io second argument", code: "import plotly.io as pio\npio.write_html(None, '/x.html')", want: []string{RulePathOutsideWorkdir}},
		{name: "f-string prefix", code: "n = 'x'\ndf.to_csv(f'/tmp/{n}.csv')", want: []string{RulePathOutsideWorkdir}},
		{name: "concatenation", code: "n = 'x'\ndf.to_csv(n + '/../../x')", want: []string{RulePathOutsideWorkdir}},
		{name: "percent template", code: "n = 'x'\ndf.to_csv('/etc/%s' % n)", want: []string{RulePathOutsideWorkdir}},
		{name: "format template", code: "n = 'x'\ndf.to_csv('http://{}/x'.format(n))", want: []string{RulePathOutsideWorkdir}},
		{name: "bytes path", code: "import numpy as np\nnp.loadtxt(b'/etc/passwd')", want: []string{RulePathOutsideWorkdir}},
		{name: "np.load absolute", code: "import numpy as np\nnp.load('/etc/passwd')", want: []string{RulePathOutsideWorkdir}},
		{name: "np.load mmap_mode", code: "import numpy as np\nnp.load('a.npy', mmap_mode='r')", want: []string{RuleForbiddenAttribute}},
		{name: "np.load positional pickle", code: "import numpy as np\nnp.load('a.npy', None, True)", want: []string{RuleForbiddenAttribute}},
		{name: "np.load kwargs", code: "import numpy as np\nnp.load('a.npy', **{})", want: []string{RuleForbiddenAttribute}},
		{name: "np.load as a value", code: "import numpy as np\nf = np.load", want: []string{RuleForbiddenAttribute}},
		{name: "from numpy import load", code: "from numpy import load", want: []string{RuleForbiddenAttribute}},
		{name: "getattr load", code: "import numpy as np\ngetattr(np, 'load')('a.npy')", want: []string{RuleForbiddenAttribute}},
		{name: "open in the working directory", code: "open('sales.csv')", want: []string{RuleForbiddenName}},
		{name: "io.open in the working directory", code: "import io\nio.open('sales.csv')", want: []string{RuleForbiddenAttribute}},
		{name: "io.FileIO", code: "from io import FileIO", want: []string{RuleForbiddenAttribute}},
		{name: "pathlib", code: "import pathlib", want: []string{RuleForbiddenModule}},
		{name: "shutil", code: "import shutil", want: []string{RuleForbiddenModule}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := v.validate(t, tt.code, &rules)
			var got []string
			for _, e := range res.Errors {
				if !slices.Contains(got, e.Rule) {
					got = append(got, e.Rule)
				}
			}
			sort.Strings(got)
			if !slices.Equal(got, tt.want) || res.Valid != (len(tt.want) == 0) {
				t.Errorf("valid=%v rules=%v, want rules %v; errors: %+v", res.Valid, got, tt.want, res.Errors)
			}
			for _, e := range res.Errors {
				if e.Message == "" {
					t.Errorf("error without a message: %+v", e)
				}
			}
		})
	}

	t.Run("no policy: syntax only", func(t *testing.T) {
		if res := v.validate(t, "import os\nopen('x')", nil); !res.Valid {
			t.Errorf("without a policy: %+v, want valid", res)
		}
		res := v.validate(t, "x = (", nil)
		if res.Valid || len(res.Errors) != 1 || res.Errors[0].Rule != RuleSyntax || res.Errors[0].Line != 1 {
			t.Errorf("syntax error without a policy: %+v", res)
		}
	})
}

type validation struct {
	ID     any         `json:"id"`
	Valid  bool        `json:"valid"`
	Errors []Violation `json:"errors"`
}

type validator struct {
	in  io.WriteCloser
	out *bufio.Reader
	seq int
}

func python(t *testing.T) string {
	t.Helper()
	// The python3 first on PATH may be a slow wrapper; prefer the system one.
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 on this machine")
	}
	return p
}

func startValidator(t *testing.T) *validator {
	t.Helper()
	script := filepath.Join("..", "images", "context", "harness", "validate.py")
	// Not CommandContext: t.Context() is cancelled before cleanups run, and
	// the cleanup below ends the process by closing its stdin.
	cmd := exec.Command(python(t), "-I", "-B", script)
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close() // EOF ends the validator
		if err := cmd.Wait(); err != nil {
			t.Errorf("validator exited: %v", err)
		}
	})
	v := &validator{in: in, out: bufio.NewReader(out)}
	if kind, _ := v.frame(t); kind != "ready" {
		t.Fatalf("first frame is %q, want ready", kind)
	}
	return v
}

func (v *validator) frame(t *testing.T) (string, []byte) {
	t.Helper()
	header, err := v.out.ReadString('\n')
	if err != nil {
		t.Fatalf("read frame header: %v", err)
	}
	parts := strings.Fields(header)
	if len(parts) != 3 || parts[0] != "PYEXEC1" {
		t.Fatalf("bad frame header %q", header)
	}
	n, err := strconv.Atoi(parts[2])
	if err != nil {
		t.Fatalf("bad frame length in %q", header)
	}
	payload := make([]byte, n+1)
	if _, err := io.ReadFull(v.out, payload); err != nil || payload[n] != '\n' {
		t.Fatalf("read frame payload: %v", err)
	}
	return parts[1], payload[:n]
}

func (v *validator) validate(t *testing.T, code string, rules *Rules) validation {
	t.Helper()
	v.seq++
	line, err := json.Marshal(map[string]any{"id": v.seq, "code": code, "policy": rules})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.in.Write(append(line, '\n')); err != nil {
		t.Fatal(err)
	}
	kind, payload := v.frame(t)
	if kind != "validation" {
		t.Fatalf("frame kind %q, want validation", kind)
	}
	var res validation
	if err := json.Unmarshal(payload, &res); err != nil {
		t.Fatalf("decode %s: %v", payload, err)
	}
	if res.ID != float64(v.seq) {
		t.Fatalf("answer id %v, want %d", res.ID, v.seq)
	}
	return res
}
