// Package policy states, in one place, the rules that submitted Python code
// must follow before it runs.
//
// Two layers share these rules:
//
//   - CheckSource runs in Go on every request before anything is started:
//     empty code, code over the size limit, invalid UTF-8 and NUL bytes.
//   - Rules is the language policy. It is serialised into the request sent to
//     the in-container harness as request["policy"] (or null when the mode is
//     off), where images/context/harness/checker.py walks the code's syntax
//     tree with Python's ast module (nothing is executed) and reports every
//     violation with its line and column. The same checker answers POST
//     /validate through images/context/harness/validate.py.
//
// The lists live here and nowhere else: checker.py has no defaults of its own,
// so adding an allowed library is a one-line change to allowedModules below
// (plus installing it in images/context/Dockerfile).
//
// The language policy is a second layer that gives clear, early errors; it is
// not the security boundary. The boundary is the single-use container
// (network none, read-only root, all capabilities dropped, seccomp, non-root).
// A static check of a dynamic language can be bypassed by enough
// indirection, so the rules aim at the obvious and the known escape routes
// (imports of system modules, eval/exec/open, dunder and frame attributes,
// pickle) while letting ordinary data-science code through.
//
// Decisions worth knowing:
//
//   - getattr, setattr and delattr are allowed only when called directly
//     with a string-literal attribute name that itself passes the attribute
//     rules (getattr(obj, "mean") is fine; getattr(obj, name) and
//     getattr(obj, "__class__") are not); the same holds for the name
//     arguments of operator.attrgetter and operator.methodcaller. hasattr is
//     not restricted: it only ever returns a bool.
//   - Readers and writers that accept in-memory buffers stay allowed
//     (pd.read_csv(io.StringIO(s)), df.to_csv(), np.save, np.loadtxt,
//     plt.savefig): a path and a buffer look the same statically, and the
//     container has nothing to read (read-only image, no secrets) and only a
//     small tmpfs to write. Forbidden are the ones that unpickle, since
//     unpickling user-made bytes runs anything (read_pickle, to_pickle,
//     np.load and any allow_pickle= argument; np.load goes as a whole
//     because allow_pickle can also be passed positionally, which takes
//     json.load with it: json.loads stays), the ones that start processes
//     (read_clipboard, to_clipboard), the ones that only make sense with raw
//     files or memory (fromfile, tofile, memmap), and io's file openers
//     (io.open, io.FileIO, io.open_code). Attribute rules go by name, so a
//     DataFrame column called open or load must be written df["open"].
//   - df.query, df.eval and pd.eval evaluate attribute chains and calls on
//     @variables, so their expression must be a string literal or an
//     f-string, and the attributes written in it must pass the attribute
//     rules. Values interpolated into an f-string are not seen: that is a
//     known gap of a static check.
//   - A forbidden name (open, eval, input, file, ...) is rejected in every
//     position, also as a variable or parameter name: allowing `open = ...`
//     would need scope analysis to stay sound (`open = open` at module level
//     still reads the builtin).
//   - String annotations are checked as code (typing.get_type_hints, and
//     functools.singledispatch through it, evaluate them); typing.ForwardRef
//     is forbidden.
//   - Private parts of imported modules (np._core, random._os) and private
//     modules (pandas._libs) are forbidden unless AllowPrivate is set: they
//     hold most of the gadgets that lead back to os and sys.
//   - memoryview stays allowed: without ctypes it gives no raw pointers.
//
// Nothing here touches Docker or HTTP; everything is safe for concurrent use.
package policy
