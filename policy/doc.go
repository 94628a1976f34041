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
//   - Files: the rule. "No file access (open, file)" means no file access
//     outside the working directory (the code's current directory, on the
//     sandbox's tmpfs, where input files are placed and outputs/ is
//     collected). Code reaches files only through the readers and writers
//     of the allowed libraries: pd.read_csv, read_table, read_json,
//     read_excel, read_parquet, ..., DataFrame.to_csv, to_json, to_excel,
//     ..., np.loadtxt, savetxt, genfromtxt, load, save, savez,
//     plt.savefig, fig.savefig, fig.write_html, scipy.io.loadmat, ...
//     (Rules.PathFunctions). Raw file access stays forbidden in every form:
//     the name open (also through builtins, which cannot be imported, and
//     __builtins__, a forbidden dunder), io.open, io.FileIO, io.open_code,
//     and the modules os, pathlib, shutil, glob, tempfile, fileinput,
//     zipfile, tarfile, ... io itself stays allowed for io.StringIO and
//     io.BytesIO (pd.read_csv(io.StringIO(text)), df.to_csv(io.BytesIO())).
//   - A path argument of those readers and writers whose text the checker
//     can know (a string or bytes literal; an f-string, a + concatenation, a
//     "..." % x or "...".format(x) template, judged on their literal parts)
//     must be relative to the working directory: it may not start with "/"
//     or "~", may not have a ".." component, and may not be a URL (any
//     scheme://, file:); each is a path-outside-workdir violation at the
//     argument, with a message that says which. "sales.csv",
//     "outputs/by_region.csv", "./a.txt" and f"outputs/{name}.csv" pass;
//     "/etc/passwd", "../x.csv", "/tmp/../etc/x", "~/x" and
//     "https://example.com/x.csv" do not. A literal that is data, not a
//     path (it starts with "{", "[" or "<": pd.read_json('[{"a": 1}]'), the
//     HTML of read_html) is not judged.
//   - A path computed at run time (pd.read_csv(name), a variable, a
//     function's result, the unknown part of an f-string) cannot be judged
//     statically and is let through: that is the limit of this layer, not
//     an oversight. The container holds that line on its own, as it does
//     with POLICY=off: the root filesystem is read-only and holds only the
//     image (no host files, no secrets, no service environment), the only
//     writable places are the /tmp tmpfs and /dev/shm, both small and
//     noexec, and there is no network, so a computed URL fails too.
//   - Forbidden outright are the readers that unpickle, since unpickling
//     user-made bytes runs anything (read_pickle, to_pickle, np.lib.format's
//     read_array, and any allow_pickle= argument), the ones that start
//     processes (read_clipboard, to_clipboard), the ones that only make
//     sense with raw files or memory (fromfile, tofile, memmap). np.load is
//     allowed only as a direct call with one positional argument,
//     np.load("a.npy") (Rules.SingleArgumentCalls): its third positional
//     parameter is allow_pickle and its second mmap_mode, so any other
//     argument, *args, **kwargs, keyword, reference without a call, getattr
//     or from-import of "load" is a violation; with allow_pickle left False,
//     np.load refuses object arrays. json.load(io.StringIO(s)) passes the
//     same way. Attribute rules go by name, so a DataFrame column called
//     open or load must be written df["open"].
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
