package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxCodeBytes is the default limit on the size of submitted code (the
// original service's 50 KB).
const MaxCodeBytes = 50 * 1024

// Rule identifiers, shared with checker.py and sent to clients in
// Violation.Rule. They are part of the API: never rename one.
const (
	// RuleEmpty: the code is empty or only whitespace.
	RuleEmpty = "empty"
	// RuleSize: the code is larger than the limit.
	RuleSize = "size"
	// RuleEncoding: the code is not valid UTF-8 (or holds a lone surrogate).
	RuleEncoding = "encoding"
	// RuleNullByte: the code contains a NUL byte, which Python rejects.
	RuleNullByte = "null-byte"
	// RuleSyntax: Python cannot parse the code; the message is CPython's.
	RuleSyntax = "syntax"
	// RuleForbiddenModule: an import of a module that is forbidden, private
	// or not in the allowed list.
	RuleForbiddenModule = "forbidden-module"
	// RuleForbiddenImport: an import form that is not allowed (relative
	// imports, wildcard imports, renaming getattr-like functions).
	RuleForbiddenImport = "forbidden-import"
	// RuleForbiddenName: use of a forbidden builtin name or a dunder name.
	RuleForbiddenName = "forbidden-name"
	// RuleForbiddenAttribute: access to a forbidden attribute, directly, via
	// getattr-like functions or inside a string (format fields, dunders).
	RuleForbiddenAttribute = "forbidden-attribute"
	// RuleForbiddenArgument: a forbidden keyword argument (allow_pickle=).
	RuleForbiddenArgument = "forbidden-argument"
	// RulePathOutsideWorkdir: a file reader or writer of the allowed
	// libraries (Rules.PathFunctions) is given a path whose text is known
	// statically and that is absolute, starts with "~", has a ".."
	// component, or is a URL. Code reads and writes files relative to its
	// working directory only.
	RulePathOutsideWorkdir = "path-outside-workdir"
	// RuleComplexity: the code is nested too deeply to check.
	RuleComplexity = "complexity"
	// RuleInternal: the checker itself failed; the code is not accepted.
	RuleInternal = "internal"
)

// Mode says whether the language policy applies.
type Mode string

// Modes accepted by ParseMode.
const (
	// ModeStrict sends Default() rules with every execution and validation.
	ModeStrict Mode = "strict"
	// ModeOff sends no rules (request["policy"] is null): only the container
	// restricts the code, and /validate reports syntax errors only.
	ModeOff Mode = "off"
)

// ParseMode parses a policy mode ("strict" or "off", case-insensitive,
// surrounding space ignored).
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case ModeStrict, ModeOff:
		return m, nil
	}
	return "", fmt.Errorf("policy mode %q: want %q or %q", s, ModeStrict, ModeOff)
}

// Rules is the language policy, serialised as request["policy"] for the
// harness's checker.py. The JSON field names are the contract with
// checker.py; a missing field there means an empty list.
type Rules struct {
	// AllowedModules are the top-level modules code may import; their
	// submodules are allowed too (matplotlib.pyplot, scipy.stats) unless
	// listed in ForbiddenModules.
	AllowedModules []string `json:"allowed_modules"`
	// ForbiddenModules are modules, or dotted submodules, that may never be
	// imported; they win over AllowedModules and get a clearer message.
	ForbiddenModules []string `json:"forbidden_modules"`
	// ForbiddenNames may not appear as names at all: not read, not assigned,
	// not as parameters, functions or import aliases.
	ForbiddenNames []string `json:"forbidden_names"`
	// AllowedDunders are the only __dunder__ names allowed as attributes,
	// names or inside strings. Defining dunder methods in a class body is
	// always allowed (that is a definition, not an access).
	AllowedDunders []string `json:"allowed_dunders"`
	// ForbiddenAttributes are non-dunder attribute names that may not be
	// accessed on any object nor imported with from-import: frame, code and
	// generator internals, attributes through which the libraries expose
	// forbidden modules (warnings.sys, random._os), io's file openers and
	// the pickle and raw-file readers and writers.
	ForbiddenAttributes []string `json:"forbidden_attributes"`
	// AttributeFunctions maps getattr-like functions to the index of their
	// attribute-name argument (-1: every positional argument is a name,
	// possibly dotted). They may only be called directly, with string
	// literals there, and those literals must pass the attribute rules.
	AttributeFunctions map[string]int `json:"attribute_functions"`
	// ExpressionMethods are methods whose first argument (or expr=) is a
	// pandas expression (df.query, df.eval, pd.eval). pandas evaluates
	// attribute chains and calls on @variables in them, so the expression
	// must be a string literal or an f-string, and every attribute written in
	// it must pass the attribute rules.
	ExpressionMethods []string `json:"expression_methods"`
	// ForbiddenKeywords are keyword arguments that may not be passed to any
	// call (nor appear as a string literal, which catches **{"k": v}).
	ForbiddenKeywords []string `json:"forbidden_keywords"`
	// PathFunctions maps the file readers and writers of the allowed
	// libraries (pd.read_csv, DataFrame.to_csv, np.savetxt, plt.savefig,
	// fig.write_html, ...) to the positions of the arguments that may be a
	// path. When the text of such an argument, or of a keyword argument
	// named in PathKeywords, is known statically (a string literal, an
	// f-string or a concatenation with literal parts, a %- or .format()
	// template), it must be a relative path inside the working directory: no
	// leading "/" or "~", no ".." component, no URL. Computed paths are not
	// judged (see the package doc: the container holds that line).
	PathFunctions map[string][]int `json:"path_functions"`
	// PathKeywords are the keyword arguments that name a path in a call of a
	// PathFunctions entry (filepath_or_buffer=, path_or_buf=, fname=, ...).
	PathKeywords []string `json:"path_keywords"`
	// SingleArgumentCalls are attributes that may only be called directly,
	// with exactly one positional argument and nothing else: np.load(path).
	// Any other use (a second argument, *args, **kwargs, a keyword, a
	// reference without a call, getattr, a from-import) is a violation:
	// np.load takes allow_pickle as its third positional parameter.
	SingleArgumentCalls []string `json:"single_argument_calls"`
	// AllowPrivate lets code import private modules (a path part starting
	// with "_", such as pandas._libs) and read private attributes of
	// imported modules (np._core, random._os). Off by default: user code
	// does not need library internals, and they hold most escape gadgets.
	AllowPrivate bool `json:"allow_private"`
}

// allowedModules: to allow another library, add its top-level module name
// here (and install it in images/context/Dockerfile).
var allowedModules = []string{
	// Analytics libraries installed in the image.
	"numpy",
	"pandas",
	"matplotlib",
	"mpl_toolkits", // matplotlib's 3-D axes (mpl_toolkits.mplot3d)
	"plotly",
	"seaborn",
	"scipy",
	"dateutil", // installed with pandas; date parsing
	"pytz",     // installed with pandas; time zones
	// The pure, in-memory part of the standard library.
	"__future__",
	"abc",
	"array",
	"base64",
	"binascii",
	"bisect",
	"calendar",
	"cmath",
	"collections",
	"colorsys",
	"contextlib",
	"copy",
	"csv",
	"dataclasses",
	"datetime",
	"decimal",
	"difflib",
	"enum",
	"fractions",
	"functools",
	"graphlib",
	"hashlib",
	"heapq",
	"hmac",
	"html",
	"io", // StringIO/BytesIO for pandas; io.open and io.FileIO stay forbidden
	"itertools",
	"json",
	"keyword",
	"math",
	"numbers",
	"operator",
	"pprint",
	"random",
	"re",
	"reprlib",
	"secrets",
	"statistics",
	"string",
	"struct",
	"textwrap",
	"time",
	"typing",
	"unicodedata",
	"uuid",
	"warnings",
	"zlib",
	"zoneinfo",
}

// forbiddenModules are named explicitly so that importing them gets a clear
// "forbidden" message rather than "not in the allowed list", and so that
// submodules of allowed libraries can be excluded.
var forbiddenModules = []string{
	// Processes, system and interpreter access.
	"os", "posix", "nt", "sys", "subprocess", "_posixsubprocess", "pty", "tty",
	"termios", "fcntl", "resource", "signal", "mmap", "select", "selectors",
	"platform", "sysconfig", "site", "pwd", "grp",
	"builtins", "__builtin__", "__main__", "gc", "inspect", "types", "traceback",
	"code", "codeop", "pdb", "bdb", "trace", "faulthandler", "atexit", "weakref",
	"ctypes", "_ctypes", "cffi", "marshal",
	"importlib", "imp", "pkgutil", "zipimport", "runpy", "pydoc",
	"multiprocessing", "threading", "_thread", "concurrent", "asyncio",
	// Files.
	"shutil", "pathlib", "glob", "fnmatch", "tempfile", "fileinput", "filecmp",
	"zipfile", "tarfile", "gzip", "bz2", "lzma", "shelve", "dbm", "sqlite3",
	"linecache", "tokenize",
	// Serialisation that runs code.
	"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib",
	// Network.
	"socket", "_socket", "ssl", "urllib", "urllib3", "http", "httpx", "requests",
	"aiohttp", "ftplib", "smtplib", "poplib", "imaplib", "telnetlib",
	"socketserver", "xmlrpc", "webbrowser",
	// Submodules of allowed libraries that build native code, load shared
	// libraries or start processes.
	"numpy.ctypeslib", "numpy.f2py", "numpy.distutils",
	"matplotlib.testing", "pandas.io.clipboard", "pandas.io.clipboards",
}

var forbiddenNames = []string{
	"open", "file", // file access (file: the seed's list; Python 2's open)
	"eval", "exec", "compile", "__import__", // dynamic code and imports
	"globals", "locals", "vars", // namespaces, and through them builtins
	"breakpoint", "help", // pdb and pydoc: interactive, import by name
	"input", "exit", "quit", // interactive leftovers; stdin is empty anyway
}

var allowedDunders = []string{
	"__init__",      // super().__init__(...), Base.__init__(self)
	"__post_init__", // dataclasses
	"__name__",      // if __name__ == "__main__", func.__name__
	"__main__",      // the string compared with __name__
	"__qualname__",
	"__module__",
	"__doc__",
	"__version__", // np.__version__
	"__repr__",    // super().__repr__()
	"__str__",
	"__len__",
	"__slots__",
	"__all__",
}

var forbiddenAttributes = []string{
	// Frames, code objects, generators, coroutines, tracebacks: the way from
	// any object back to module globals and builtins.
	"gi_frame", "gi_code", "gi_yieldfrom",
	"cr_frame", "cr_code", "cr_await", "cr_origin",
	"ag_frame", "ag_code", "ag_await",
	"f_globals", "f_locals", "f_builtins", "f_back", "f_code", "f_trace",
	"tb_frame", "tb_next",
	"co_code", "co_consts", "co_names",
	"func_globals", "func_code",
	// Attributes through which the allowed libraries expose forbidden modules
	// (found by scanning the image's libraries: warnings.sys, random._os,
	// numpy.lib._datasource._open, ...).
	"os", "_os", "sys", "_sys", "subprocess", "builtins", "bltns",
	"importlib", "_importlib", "import_module", "import_optional_dependency",
	"ctypes", "ctypeslib", "f2py", "distutils", "pickle", "pkl", "shutil",
	"pathlib", "inspect", "gc", "pkgutil", "tempfile", "mmap", "_types",
	"platform", "sysconfig", "_sysconfig", "_thread", "threading",
	"traceback", "weakref", "atexit",
	// Building functions from hand-made code objects (types is forbidden as a
	// module; the attribute "types" is not, pd.api.types needs it).
	"CodeType", "FunctionType", "LambdaType",
	// Direct file access (io is allowed for StringIO/BytesIO).
	"open", "_open", "open_code", "FileIO",
	// Deserialising code: unpickling user-made bytes runs anything. (np.load
	// takes allow_pickle positionally too, np.load(buf, None, True): "load"
	// is in singleArgumentCalls.)
	"read_pickle", "to_pickle", "pickle_compat", "read_array", "NpzFile",
	// Evaluating strings as code (string annotations are checked as code,
	// so typing.get_type_hints stays allowed).
	"ForwardRef", "evaluate_forward_ref",
	// Starting processes, raw files and memory.
	"read_clipboard", "to_clipboard",
	"fromfile", "tofile", "memmap", "open_memmap",
}

var attributeFunctions = map[string]int{
	"getattr":      1,
	"setattr":      1,
	"delattr":      1,
	"attrgetter":   -1,
	"methodcaller": 0,
}

var expressionMethods = []string{"query", "eval"}

// pathFunctions: the file readers and writers of the image's libraries, by
// function or method name, with the positions of their path argument. A name
// is checked wherever it is called (pd.read_csv, read_csv after a
// from-import, df.to_csv). Only statically known text is judged, so a
// function of the user's own with one of these names is refused only when
// given a literal absolute path, "..", or a URL there.
var pathFunctions = map[string][]int{
	// pandas readers.
	"read_csv": {0}, "read_table": {0}, "read_fwf": {0}, "read_json": {0},
	"read_excel": {0}, "ExcelFile": {0}, "read_parquet": {0}, "read_feather": {0},
	"read_orc": {0}, "read_html": {0}, "read_xml": {0}, "read_hdf": {0},
	"HDFStore": {0}, "read_stata": {0}, "read_sas": {0}, "read_spss": {0},
	"get_handle": {0},
	// pandas writers (DataFrame, Series, Styler).
	"to_csv": {0}, "to_json": {0}, "to_excel": {0}, "ExcelWriter": {0},
	"to_parquet": {0}, "to_feather": {0}, "to_orc": {0}, "to_html": {0},
	"to_xml": {0}, "to_hdf": {0}, "to_stata": {0}, "to_markdown": {0},
	"to_latex": {0}, "to_string": {0},
	// numpy.
	"loadtxt": {0}, "savetxt": {0}, "genfromtxt": {0}, "fromregex": {0},
	"load": {0}, "save": {0}, "savez": {0}, "savez_compressed": {0},
	// matplotlib.
	"savefig": {0}, "imsave": {0}, "imread": {0}, "PdfPages": {0},
	// plotly: fig.write_html(file) and plotly.io.write_html(fig, file).
	"write_html": {0, 1}, "write_image": {0, 1}, "write_json": {0, 1},
	// scipy.io.
	"loadmat": {0}, "savemat": {0}, "mmread": {0}, "mmwrite": {0},
	"loadarff": {0}, "readsav": {0}, "netcdf_file": {0}, "FortranFile": {0},
	"hb_read": {0}, "hb_write": {0},
}

var pathKeywords = []string{
	"filepath_or_buffer", "path_or_buf", "path_or_buffer", "path", "io",
	"excel_writer", "buf", "fname", "file", "filename", "file_name", "f",
	"source", "target", "path_or_open_file",
}

var singleArgumentCalls = []string{"load"}

var forbiddenKeywords = []string{
	"allow_pickle", // np.load(..., allow_pickle=True) unpickles, i.e. runs code
}

// Default returns the rules of ModeStrict. Every call returns fresh slices
// and maps, so callers may modify the result.
func Default() Rules {
	return Rules{
		AllowedModules:      slices.Clone(allowedModules),
		ForbiddenModules:    slices.Clone(forbiddenModules),
		ForbiddenNames:      slices.Clone(forbiddenNames),
		AllowedDunders:      slices.Clone(allowedDunders),
		ForbiddenAttributes: slices.Clone(forbiddenAttributes),
		AttributeFunctions:  maps.Clone(attributeFunctions),
		ExpressionMethods:   slices.Clone(expressionMethods),
		ForbiddenKeywords:   slices.Clone(forbiddenKeywords),
		PathFunctions:       clonePathFunctions(pathFunctions),
		PathKeywords:        slices.Clone(pathKeywords),
		SingleArgumentCalls: slices.Clone(singleArgumentCalls),
	}
}

func clonePathFunctions(m map[string][]int) map[string][]int {
	out := make(map[string][]int, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

// Violation is one broken rule, with its position in the code when known.
// It has the same JSON shape as the entries checker.py reports.
type Violation struct {
	// Line is 1-based; 0 when the violation concerns the whole code.
	Line int `json:"line"`
	// Column is 1-based and counts characters; 0 when unknown.
	Column int `json:"column"`
	// Rule is one of the Rule* constants.
	Rule string `json:"rule"`
	// Message is a human-readable explanation.
	Message string `json:"message"`
}

// Error formats the violation as "line L, column C: message (rule)".
func (v *Violation) Error() string {
	switch {
	case v.Line > 0 && v.Column > 0:
		return fmt.Sprintf("line %d, column %d: %s (%s)", v.Line, v.Column, v.Message, v.Rule)
	case v.Line > 0:
		return fmt.Sprintf("line %d: %s (%s)", v.Line, v.Message, v.Rule)
	}
	return fmt.Sprintf("%s (%s)", v.Message, v.Rule)
}

// Violations is the error returned for code that breaks one or more rules;
// handlers map it to 422 and list every entry. It is never empty.
type Violations []Violation

// Error describes the first violation and counts the rest.
func (vs Violations) Error() string {
	if len(vs) == 0 {
		return "no policy violations"
	}
	msg := vs[0].Error()
	if n := len(vs) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more)", n)
	}
	return msg
}

// Err returns vs as an error, or nil when vs is empty.
func Err(vs []Violation) error {
	if len(vs) == 0 {
		return nil
	}
	return Violations(vs)
}

// CheckSource runs the checks that need no Python, before anything starts:
// empty or whitespace-only code, size over maxBytes (MaxCodeBytes when
// maxBytes <= 0), invalid UTF-8 and NUL bytes. It returns nil when the code
// passes; otherwise at most one violation per rule, the first occurrence.
func CheckSource(code string, maxBytes int) []Violation {
	if maxBytes <= 0 {
		maxBytes = MaxCodeBytes
	}
	var vs []Violation
	if strings.TrimSpace(code) == "" {
		return append(vs, Violation{Rule: RuleEmpty, Message: "code is empty"})
	}
	if len(code) > maxBytes {
		vs = append(vs, Violation{
			Rule:    RuleSize,
			Message: fmt.Sprintf("code is %d bytes; the limit is %d bytes", len(code), maxBytes),
		})
	}
	if i := invalidUTF8(code); i >= 0 {
		line, col := position(code, i)
		vs = append(vs, Violation{
			Line: line, Column: col, Rule: RuleEncoding,
			Message: fmt.Sprintf("code is not valid UTF-8 (byte 0x%02x at offset %d)", code[i], i),
		})
	}
	if i := strings.IndexByte(code, 0); i >= 0 {
		line, col := position(code, i)
		vs = append(vs, Violation{
			Line: line, Column: col, Rule: RuleNullByte,
			Message: "code contains a NUL byte",
		})
	}
	return vs
}

// invalidUTF8 returns the offset of the first byte that is not part of a
// valid UTF-8 sequence, or -1.
func invalidUTF8(s string) int {
	if utf8.ValidString(s) {
		return -1
	}
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				return i
			}
		}
	}
	return -1 // unreachable: ValidString said otherwise
}

// position converts a byte offset into a 1-based line and character column,
// counting line breaks as Python does (\n, \r\n and a lone \r).
func position(s string, offset int) (line, col int) {
	line, start := 1, 0
	for i := 0; i < offset; i++ {
		switch s[i] {
		case '\n':
			line, start = line+1, i+1
		case '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				continue
			}
			line, start = line+1, i+1
		}
	}
	return line, utf8.RuneCountInString(s[start:offset]) + 1
}
