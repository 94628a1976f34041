"""The language policy checker: finds what submitted code may not do, without
running it.

check(code, rules) parses the code with Python's ast module and walks the tree
(iteratively, so deep nesting cannot exhaust the C stack here). Nothing is
compiled to bytecode or executed. `rules` is the dict the service sends as
request["policy"] (Go: policy.Rules, the one place that states the rules; this
file has no lists of its own); with rules None only the source and syntax
checks run.

Besides the policy, the walk reports the compile-stage syntax errors that
ast.parse lets through ('return' outside function, 'break' outside loop,
duplicate arguments, ...) with CPython's messages, so that validation agrees
with execution. Strings that are code in disguise are checked too: string
annotations (typing.get_type_hints evaluates them) as expressions, pandas
query/eval expressions for attribute chains, format fields for attributes.
The path arguments of the libraries' file readers and writers
(rules["path_functions"]) are judged when their text is known statically (a
literal, or the literal parts of an f-string, a concatenation or a template):
they must stay in the working directory (see _path_problem); computed paths
are left to the container.

Errors are dicts {"line", "column", "rule", "message"}: line and column are
1-based (column counts characters), None when unknown; rule is one of the
RULE_* ids, which are shared with the Go package. The result is sorted by
position and free of duplicates.

This is a second layer that gives early, clear errors. The container is the
security boundary; see policy/doc.go for what is forbidden and why.
"""

import ast
import re

RULE_EMPTY = "empty"
RULE_ENCODING = "encoding"
RULE_NULL_BYTE = "null-byte"
RULE_SYNTAX = "syntax"
RULE_FORBIDDEN_MODULE = "forbidden-module"
RULE_FORBIDDEN_IMPORT = "forbidden-import"
RULE_FORBIDDEN_NAME = "forbidden-name"
RULE_FORBIDDEN_ATTRIBUTE = "forbidden-attribute"
RULE_FORBIDDEN_ARGUMENT = "forbidden-argument"
RULE_PATH_OUTSIDE_WORKDIR = "path-outside-workdir"
RULE_COMPLEXITY = "complexity"
RULE_INTERNAL = "internal"

CODE_FILENAME = "<code>"
# Callers report at most this many errors (the first ones by position).
MAX_REPORTED = 100

_DUNDER_IN_TEXT = re.compile(r"__\w+__")
_FORMAT_FIELD = re.compile(r"\{([^{}]*)\}")
_FORMAT_ATTR = re.compile(r"\.\s*([A-Za-z_]\w*)")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# A URL pandas, numpy or matplotlib would try to fetch (any scheme://, and
# file: without slashes, which urllib opens too).
_URL = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*://|file:)", re.IGNORECASE)
_FORMAT_TEMPLATE_FIELD = re.compile(r"\{[^{}]*\}")
_PERCENT_FIELD = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?[A-Za-z%]")
# Stands for text computed at run time in a path being judged.
_UNKNOWN = "\x00"

_FUNCTION_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_LOOPS = (ast.For, ast.AsyncFor, ast.While)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_COMPREHENSION_KINDS = {
    ast.ListComp: "list comprehension",
    ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension",
    ast.GeneratorExp: "generator expression",
}
_MATCH_NAMES = tuple(
    getattr(ast, n) for n in ("MatchAs", "MatchStar", "MatchMapping") if hasattr(ast, n)
)
_SYNTAX_TYPES = frozenset(
    (ast.Return, ast.Yield, ast.YieldFrom, ast.Await, ast.AsyncFor, ast.AsyncWith)
    + (ast.Break, ast.Continue, ast.Nonlocal, ast.arguments)
)
_POLICY_TYPES = frozenset(
    (ast.Name, ast.Attribute, ast.Call, ast.Constant, ast.Import, ast.ImportFrom)
    + (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.arg, ast.ExceptHandler)
    + (ast.Global, ast.Nonlocal, ast.keyword, ast.AnnAssign)
    + _MATCH_NAMES
)


def check(code, rules):
    """Returns the sorted list of errors for `code` (a str) under `rules` (a
    dict, a Rules from prepare(), or None for syntax only). Never raises,
    never executes the code."""
    try:
        return _Check(code, rules).run()
    except (RecursionError, MemoryError):
        return [_complexity()]
    except Exception as exc:  # a bug here must not let code through
        message = "the policy checker failed: %s" % type(exc).__name__
        return [_error(None, None, RULE_INTERNAL, message)]


def format_error(err):
    """One line for a traceback-like listing: "line 3, column 1: msg [rule]"."""
    where = ""
    if err.get("line"):
        where = "line %d" % err["line"]
        if err.get("column"):
            where += ", column %d" % err["column"]
        where += ": "
    return "%s%s [%s]" % (where, err.get("message", ""), err.get("rule", ""))


def _error(line, column, rule, message):
    return {"line": line, "column": column, "rule": rule, "message": message}


def _complexity():
    return _error(
        None, None, RULE_COMPLEXITY, "code is nested too deeply or is too complex to check"
    )


def _is_dunder(name):
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


# Child fields per node type, without the ones that only hold operators and
# contexts (Load, Add, Eq, ...): nothing in them can break a rule.
_SKIP_FIELDS = frozenset(("ctx", "op", "ops"))
_FIELDS = {}


def _children(node):
    """The child nodes of node; comprehension generators are flattened so that
    the first iterable of a comprehension can be told apart."""
    t = type(node)
    fields = _FIELDS.get(t)
    if fields is None:
        fields = _FIELDS[t] = tuple(f for f in t._fields if f not in _SKIP_FIELDS)
    out = []
    for f in fields:
        v = getattr(node, f, None)
        if isinstance(v, list):
            for c in v:
                if isinstance(c, ast.comprehension):
                    out.extend(_children(c))
                elif isinstance(c, ast.AST):
                    out.append(c)
        elif isinstance(v, ast.AST):
            out.append(v)
    return out


def _all_args(args):
    out = list(getattr(args, "posonlyargs", ())) + list(args.args)
    if args.vararg:
        out.append(args.vararg)
    out.extend(args.kwonlyargs)
    if args.kwarg:
        out.append(args.kwarg)
    return out


def _static_text(node, depth=0):
    """The text of a path argument as far as it is known without running the
    code: a list of str pieces, with None for the parts computed at run time,
    or None when nothing of it is known. Handles literals (str and bytes),
    f-strings, + concatenations, "..." % x and "...".format(x)."""
    if depth > 32:  # "a" + "b" + ... nests to the left; bounded
        return None
    t = type(node)
    if t is ast.Constant:
        v = node.value
        if isinstance(v, str):
            return [v]
        if isinstance(v, bytes):
            return [v.decode("latin-1")]
        return None
    if t is ast.JoinedStr:
        return [
            v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else None
            for v in node.values
        ]
    if t is ast.BinOp and isinstance(node.op, ast.Add):
        left = _static_text(node.left, depth + 1)
        right = _static_text(node.right, depth + 1)
        if left is None and right is None:
            return None
        return (left or [None]) + (right or [None])
    if t is ast.BinOp and isinstance(node.op, ast.Mod):
        left = _static_text(node.left, depth + 1)
        if left is None:
            return None
        out = []
        for piece in left:
            if piece is None:
                out.append(None)
                continue
            last = 0
            for m in _PERCENT_FIELD.finditer(piece):
                out.append(piece[last : m.start()])
                out.append("%" if m.group(0) == "%%" else None)
                last = m.end()
            out.append(piece[last:])
        return out
    if (
        t is ast.Call
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and isinstance(node.func.value, ast.Constant)
        and isinstance(node.func.value.value, str)
    ):
        out = []
        for j, seg in enumerate(_FORMAT_TEMPLATE_FIELD.split(node.func.value.value)):
            if j:
                out.append(None)
            out.append(seg)
        return out
    return None


def _path_problem(pieces):
    """Why a path whose known pieces are `pieces` (see _static_text) may
    lead out of the working directory, or None. Unknown parts are assumed
    harmless: only what is written in the code is judged."""
    if not pieces:
        return None
    text = "".join(_UNKNOWN if p is None else p for p in pieces)
    shown = text.replace(_UNKNOWN, "{...}")
    if len(shown) > 80:
        shown = shown[:77] + "..."
    shown = repr(shown)
    prefix = text.split(_UNKNOWN, 1)[0]
    if prefix.lstrip()[:1] in ("{", "[", "<"):
        return None  # data, not a path: pd.read_json('[{"a": 1}]'), read_html('<table>')
    if _URL.match(prefix):
        return (
            "%s is a URL; the sandbox has no network: send the file with the "
            "request (files) and read it by its name" % shown
        )
    if prefix.startswith("/"):
        return (
            "%s is an absolute path; files are read and written relative to the "
            "working directory, e.g. 'sales.csv' or 'outputs/result.csv'" % shown
        )
    if prefix.startswith("~"):
        return (
            "%s starts with '~' (a home directory); files are read and written "
            "relative to the working directory, e.g. 'sales.csv'" % shown
        )
    if ".." in text.split("/"):
        return (
            "%s has a '..' component; files are read and written inside the "
            "working directory only" % shown
        )
    return None


def prepare(rules):
    """The rules dict, type-checked once, for many calls of check() (a
    long-lived validator: the same rules for every request)."""
    return _Rules(rules) if isinstance(rules, dict) else None


def _strset(value):
    if isinstance(value, (list, tuple)):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


class _Rules:
    """The rules dict, type-checked: anything malformed counts as empty."""

    def __init__(self, d):
        self.allowed_modules = _strset(d.get("allowed_modules"))
        self.forbidden_modules = _strset(d.get("forbidden_modules"))
        self.forbidden_names = _strset(d.get("forbidden_names"))
        self.allowed_dunders = _strset(d.get("allowed_dunders"))
        self.forbidden_attributes = _strset(d.get("forbidden_attributes"))
        self.forbidden_keywords = _strset(d.get("forbidden_keywords"))
        self.expression_methods = _strset(d.get("expression_methods"))
        self.allow_private = d.get("allow_private") is True
        self.path_keywords = _strset(d.get("path_keywords"))
        self.single_argument_calls = _strset(d.get("single_argument_calls"))
        paths = d.get("path_functions")
        self.path_functions = {}
        if isinstance(paths, dict):
            for name, idxs in paths.items():
                if isinstance(name, str) and isinstance(idxs, (list, tuple)):
                    self.path_functions[name] = tuple(
                        i for i in idxs if isinstance(i, int) and not isinstance(i, bool) and i >= 0
                    )
        funcs = d.get("attribute_functions")
        self.attribute_functions = {}
        if isinstance(funcs, dict):
            for name, idx in funcs.items():
                if isinstance(name, str) and isinstance(idx, int) and not isinstance(idx, bool):
                    self.attribute_functions[name] = idx


class _Check:
    def __init__(self, code, rules):
        self.code = code
        if isinstance(rules, _Rules):
            self.rules = rules
        else:
            self.rules = _Rules(rules) if isinstance(rules, dict) else None
        self.errors = set()
        self._lines = None
        self.called = set()  # ids of Name/Attribute nodes that are a Call's func
        self.single_called = set()  # ids of Attribute nodes called as SingleArgumentCalls allow
        self.import_bound = set()  # names bound by import statements
        self.private_uses = []  # (root name, node, attr) for np._core and friends
        self.syntax = True  # False when checking the inside of a string annotation

    # ------------------------------------------------------------ positions

    def _column(self, lineno, col_offset):
        """ast columns are UTF-8 byte offsets; report 1-based characters."""
        if col_offset is None:
            return None
        if self._lines is None:
            self._lines = () if self.code.isascii() else _LINE_BREAK.split(self.code)
        if not self._lines:  # ASCII: bytes are characters
            return col_offset + 1
        if lineno is None or not 1 <= lineno <= len(self._lines):
            return col_offset + 1
        raw = self._lines[lineno - 1].encode("utf-8", "surrogatepass")
        return len(raw[:col_offset].decode("utf-8", "replace")) + 1

    def add(self, node, rule, message):
        line = getattr(node, "lineno", None)
        col = self._column(line, getattr(node, "col_offset", None))
        self.errors.add((line, col, rule, message))

    def add_at_offset(self, offset, rule, message):
        before = self.code[:offset]
        line = len(_LINE_BREAK.findall(before)) + 1
        start = max(before.rfind("\n"), before.rfind("\r")) + 1
        self.errors.add((line, offset - start + 1, rule, message))

    def result(self):
        out = [_error(*e) for e in self.errors]
        out.sort(key=lambda e: (e["line"] or 0, e["column"] or 0, e["rule"], e["message"]))
        return out

    # ------------------------------------------------------------ entry

    def run(self):
        code = self.code
        if not isinstance(code, str):
            return [_error(None, None, RULE_INTERNAL, "code must be a string")]
        if not code.strip():
            return [_error(None, None, RULE_EMPTY, "code is empty")]
        nul = code.find("\x00")
        if nul >= 0:
            self.add_at_offset(nul, RULE_NULL_BYTE, "code contains a NUL byte")
            return self.result()
        try:
            code.encode("utf-8")
        except UnicodeEncodeError as exc:
            self.add_at_offset(
                exc.start, RULE_ENCODING, "code is not valid UTF-8 (lone surrogate)"
            )
            return self.result()
        try:
            tree = ast.parse(code, filename=CODE_FILENAME, mode="exec")
        except SyntaxError as exc:
            line = exc.lineno if isinstance(exc.lineno, int) else None
            col = exc.offset if isinstance(exc.offset, int) and exc.offset > 0 else None
            return [_error(line, col, RULE_SYNTAX, exc.msg or str(exc))]
        except (RecursionError, MemoryError):
            return [_complexity()]
        except ValueError as exc:  # e.g. NUL bytes on old versions
            return [_error(None, None, RULE_SYNTAX, str(exc))]
        self.walk(tree)
        self.finish()
        return self.result()

    # ------------------------------------------------------------ walk

    def walk(self, tree):
        """Depth-first with an explicit stack. Context per node: in a function
        (def or lambda), in an async def, in a loop body, in a class body, and
        the kind of comprehension it is in (None outside)."""
        policy = self.rules is not None
        stack = [(tree, False, False, False, False, None)]
        pop, push = stack.pop, stack.append
        while stack:
            item = pop()
            node, in_func, in_async, in_loop, in_class, comp = item
            t = type(node)
            if t in _SYNTAX_TYPES and self.syntax:
                self.visit_syntax(node, t, item)
            if policy and t in _POLICY_TYPES:
                self.visit_policy(node, t, in_class)
            if t in _FUNCTION_SCOPES:
                ctx = (True, t is ast.AsyncFunctionDef, False, False, None)
            elif t is ast.ClassDef:
                ctx = (False, False, False, True, None)
            elif t in _LOOPS:
                outer = item[1:]
                for field in ("target", "iter", "test"):
                    child = getattr(node, field, None)
                    if child is not None:
                        push((child,) + outer)
                for child in node.orelse:
                    push((child,) + outer)
                inner = (in_func, in_async, True, in_class, comp)
                for child in node.body:
                    push((child,) + inner)
                continue
            elif t in _COMPREHENSIONS:
                # The first iterable is evaluated in the enclosing scope.
                first = node.generators[0].iter if node.generators else None
                outer = item[1:]
                inner = (in_func, in_async, False, False, _COMPREHENSION_KINDS[t])
                for child in _children(node):
                    push((child,) + (outer if child is first else inner))
                continue
            else:
                ctx = item[1:]
            for child in _children(node):
                push((child,) + ctx)

    def visit_syntax(self, node, t, ctx):
        """The compile-stage errors ast.parse does not raise, with CPython's
        messages, so that validation agrees with execution."""
        _, in_func, in_async, in_loop, _, comp = ctx
        if t is ast.Return:
            if not in_func:
                self.add(node, RULE_SYNTAX, "'return' outside function")
        elif t is ast.Yield or t is ast.YieldFrom:
            if comp is not None:
                self.add(node, RULE_SYNTAX, "'yield' inside %s" % comp)
            elif not in_func:
                self.add(node, RULE_SYNTAX, "'yield' outside function")
        elif t is ast.Await:
            if not in_func:
                self.add(node, RULE_SYNTAX, "'await' outside function")
            elif not in_async:
                self.add(node, RULE_SYNTAX, "'await' outside async function")
        elif t is ast.AsyncFor or t is ast.AsyncWith:
            if not in_async:
                kind = "for" if t is ast.AsyncFor else "with"
                self.add(node, RULE_SYNTAX, "'async %s' outside async function" % kind)
        elif t is ast.Break:
            if not in_loop:
                self.add(node, RULE_SYNTAX, "'break' outside loop")
        elif t is ast.Continue:
            if not in_loop:
                self.add(node, RULE_SYNTAX, "'continue' not properly in loop")
        elif t is ast.Nonlocal:
            if not in_func:
                self.add(node, RULE_SYNTAX, "nonlocal declaration not allowed at module level")
        elif t is ast.arguments:
            seen = set()
            for a in _all_args(node):
                if a.arg in seen:
                    self.add(
                        a, RULE_SYNTAX, "duplicate argument '%s' in function definition" % a.arg
                    )
                seen.add(a.arg)

    # ------------------------------------------------------------ policy

    def visit_policy(self, node, t, in_class):
        if t is ast.Name:
            self.check_name(node, in_class)
        elif t is ast.Attribute:
            self.check_attribute(node)
        elif t is ast.Call:
            self.check_call(node)
        elif t is ast.Constant:
            if isinstance(node.value, str):
                self.check_string(node, node.value)
        elif t is ast.Import:
            for alias in node.names:
                self.check_module(alias, alias.name)
                if alias.asname:
                    self.import_bound.add(alias.asname)
                    self.check_binding(alias, alias.asname)
                else:
                    self.import_bound.add(alias.name.split(".")[0])
        elif t is ast.ImportFrom:
            self.check_import_from(node)
        elif t is ast.FunctionDef or t is ast.AsyncFunctionDef or t is ast.ClassDef:
            self.check_binding(node, node.name, dunder_ok=True)
            if getattr(node, "returns", None) is not None:
                self.check_annotation(node.returns)
        elif t is ast.arg:
            self.check_binding(node, node.arg)
            if node.annotation is not None:
                self.check_annotation(node.annotation)
        elif t is ast.AnnAssign:
            self.check_annotation(node.annotation)
        elif t is ast.ExceptHandler:
            if node.name:
                self.check_binding(node, node.name)
        elif t is ast.Global or t is ast.Nonlocal:
            for name in node.names:
                self.check_binding(node, name)
        elif t is ast.keyword:
            if node.arg is not None and node.arg in self.rules.forbidden_keywords:
                self.add(
                    node,
                    RULE_FORBIDDEN_ARGUMENT,
                    "keyword argument '%s' is not allowed" % node.arg,
                )
        elif _MATCH_NAMES and t in _MATCH_NAMES:
            name = getattr(node, "rest", None) if t.__name__ == "MatchMapping" else node.name
            if name:
                self.check_binding(node, name)

    def finish(self):
        if self.rules is None or self.rules.allow_private:
            return
        for root, node, attr in self.private_uses:
            if root in self.import_bound:
                self.add(
                    node,
                    RULE_FORBIDDEN_ATTRIBUTE,
                    "access to '%s', a private part of module '%s', is not allowed" % (attr, root),
                )

    # names

    def check_name(self, node, in_class):
        r = self.rules
        name = node.id
        if name in r.forbidden_names:
            if isinstance(node.ctx, ast.Load):
                msg = "use of '%s' is not allowed" % name
            else:
                msg = "'%s' is a forbidden name and cannot be used, even as a variable" % name
            self.add(node, RULE_FORBIDDEN_NAME, msg)
        elif _is_dunder(name):
            if name not in r.allowed_dunders and not (in_class and isinstance(node.ctx, ast.Store)):
                self.add(node, RULE_FORBIDDEN_NAME, "use of '%s' is not allowed" % name)
        elif name in r.attribute_functions and id(node) not in self.called:
            self.add(
                node,
                RULE_FORBIDDEN_NAME,
                "'%s' may only be called directly, with a literal attribute name" % name,
            )

    def check_binding(self, node, name, dunder_ok=False):
        r = self.rules
        if name in r.forbidden_names:
            self.add(
                node,
                RULE_FORBIDDEN_NAME,
                "'%s' is a forbidden name and cannot be used, even as a variable" % name,
            )
        elif _is_dunder(name) and not dunder_ok and name not in r.allowed_dunders:
            self.add(node, RULE_FORBIDDEN_NAME, "use of '%s' is not allowed" % name)

    # attributes

    def attribute_problem(self, name):
        """Why attribute `name` may not be accessed, or None."""
        r = self.rules
        if _is_dunder(name):
            if name in r.allowed_dunders:
                return None
            return "access to '%s' is not allowed (dunder attributes are blocked)" % name
        if name in r.forbidden_attributes:
            return (
                "access to attribute '%s' is not allowed "
                "(for a column of that name write obj['%s'])" % (name, name)
            )
        if name in r.single_argument_calls:
            return (
                "'%s' may only be called directly with a single positional argument, "
                "e.g. np.load(\"data.npy\"); other arguments (allow_pickle, mmap_mode) "
                "cannot be passed" % name
            )
        return None

    def check_attribute(self, node):
        r = self.rules
        attr = node.attr
        if id(node) in self.single_called:
            problem = None
        else:
            problem = self.attribute_problem(attr)
        if problem:
            self.add(node, RULE_FORBIDDEN_ATTRIBUTE, problem)
            return
        if attr in r.attribute_functions and id(node) not in self.called:
            self.add(
                node,
                RULE_FORBIDDEN_ATTRIBUTE,
                "'%s' may only be called directly, with a literal attribute name" % attr,
            )
        if attr.startswith("_") and not _is_dunder(attr):
            root = node.value
            for _ in range(64):  # np.a.b._c; bounded, chains can be long
                if not isinstance(root, ast.Attribute):
                    break
                root = root.value
            if isinstance(root, ast.Name):
                self.private_uses.append((root.id, node, attr))

    def check_call(self, node):
        r = self.rules
        func = node.func
        if isinstance(func, ast.Name):
            fname = func.id
        elif isinstance(func, ast.Attribute):
            fname = func.attr
        else:
            return
        if isinstance(func, ast.Attribute) and fname in r.expression_methods:
            self.check_expression(node, fname)
        if fname in r.path_functions:
            self.check_paths(node, fname, r.path_functions[fname])
        if (
            isinstance(func, ast.Attribute)
            and fname in r.single_argument_calls
            and len(node.args) == 1
            and not isinstance(node.args[0], ast.Starred)
            and not node.keywords
        ):
            self.single_called.add(id(func))
        idx = r.attribute_functions.get(fname)
        if idx is None:
            return
        self.called.add(id(func))
        args = node.args
        if idx < 0:
            names = args
            ok = bool(args)
        else:
            names = args[idx : idx + 1]
            ok = len(args) > idx
        ok = ok and not any(isinstance(a, ast.Starred) for a in args[: (idx + 1) if idx >= 0 else None])
        for a in names:
            if not (isinstance(a, ast.Constant) and isinstance(a.value, str)):
                ok = False
                continue
            for part in a.value.split("."):
                problem = self.attribute_problem(part)
                if problem:
                    self.add(a, RULE_FORBIDDEN_ATTRIBUTE, problem)
        if not ok:
            self.add(
                node,
                RULE_FORBIDDEN_ATTRIBUTE,
                "%s() needs a string literal as the attribute name; computed names are not allowed"
                % fname,
            )

    def check_paths(self, node, fname, positions):
        """The path arguments of a file reader or writer: when their text is
        known statically it must stay inside the working directory."""
        args = []
        for i, a in enumerate(node.args):
            if isinstance(a, ast.Starred):
                break  # the positions after *args are unknown
            if i in positions:
                args.append(a)
        args.extend(kw.value for kw in node.keywords if kw.arg in self.rules.path_keywords)
        for a in args:
            problem = _path_problem(_static_text(a))
            if problem:
                self.add(a, RULE_PATH_OUTSIDE_WORKDIR, "%s(): %s" % (fname, problem))

    def check_annotation(self, annotation):
        """Strings in annotations are code too: typing.get_type_hints (and
        functools.singledispatch, which calls it) evaluates them with the
        function's globals. Each one that parses as an expression is checked
        like code; its errors are reported at the string."""
        for sub in ast.walk(annotation):
            if not (isinstance(sub, ast.Constant) and isinstance(sub.value, str)):
                continue
            text = sub.value.strip()
            try:
                tree = ast.parse(text, mode="eval")
            except (SyntaxError, ValueError):
                continue  # get_type_hints cannot evaluate it either
            inner = _Check(text, None)
            inner.rules, inner.syntax = self.rules, False
            inner.walk(tree)
            inner.check_annotation(tree.body)  # List["List['...']"]
            prefix = "in a string annotation: "
            for _, _, rule, message in inner.errors:
                if not message.startswith(prefix):
                    message = prefix + message
                self.add(sub, rule, message)

    def check_expression(self, node, fname):
        """df.query/df.eval/pd.eval: pandas evaluates attribute chains and
        calls on @variables, so the expression must be visible here."""
        expr = node.args[0] if node.args else None
        for kw in node.keywords:
            if kw.arg == "expr":
                expr = kw.value
        if expr is None:
            return
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            parts = [expr]
        elif isinstance(expr, ast.JoinedStr):
            parts = [v for v in expr.values if isinstance(v, ast.Constant)]
        else:
            self.add(
                expr,
                RULE_FORBIDDEN_ATTRIBUTE,
                "%s() needs a string literal or an f-string as its expression" % fname,
            )
            return
        for part in parts:
            if not isinstance(part.value, str):
                continue
            for m in _FORMAT_ATTR.finditer(part.value):
                name = m.group(1)
                problem = None if _is_dunder(name) else self.attribute_problem(name)
                if problem:
                    self.add(part, RULE_FORBIDDEN_ATTRIBUTE, "%s() expression: %s" % (fname, problem))

    def check_string(self, node, s):
        r = self.rules
        if s in r.forbidden_keywords:
            self.add(node, RULE_FORBIDDEN_ARGUMENT, "'%s' is not allowed, even as a string" % s)
        if "__" in s:
            for m in _DUNDER_IN_TEXT.finditer(s):
                name = m.group(0)
                if name not in r.allowed_dunders:
                    self.add(
                        node,
                        RULE_FORBIDDEN_ATTRIBUTE,
                        "'%s' is not allowed, even inside a string" % name,
                    )
        if "{" in s:
            for field in _FORMAT_FIELD.finditer(s):
                for m in _FORMAT_ATTR.finditer(field.group(1)):
                    name = m.group(1)
                    if not _is_dunder(name) and self.attribute_problem(name):
                        self.add(
                            node,
                            RULE_FORBIDDEN_ATTRIBUTE,
                            "format field reads attribute '%s', which is not allowed" % name,
                        )

    # imports

    def module_problem(self, dotted):
        """Why module `dotted` may not be imported, or None."""
        r = self.rules
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in r.forbidden_modules:
                if prefix == dotted:
                    return "import of module '%s' is forbidden" % dotted
                return "import of module '%s' is forbidden (%s is)" % (dotted, prefix)
        if not r.allow_private:
            for part in parts:
                if part.startswith("_") and not _is_dunder(part):
                    return "import of private module '%s' is not allowed" % dotted
        if parts[0] not in r.allowed_modules:
            return "module '%s' is not allowed; allowed modules: %s" % (
                parts[0],
                ", ".join(sorted(r.allowed_modules)),
            )
        return None

    def check_module(self, node, dotted):
        problem = self.module_problem(dotted)
        if problem:
            self.add(node, RULE_FORBIDDEN_MODULE, problem)
            return False
        return True

    def check_import_from(self, node):
        r = self.rules
        if node.level:
            self.add(node, RULE_FORBIDDEN_IMPORT, "relative imports are not allowed")
            return
        module = node.module or ""
        module_ok = self.check_module(node, module)
        for alias in node.names:
            name = alias.name
            if name == "*":
                self.add(
                    alias if hasattr(alias, "lineno") else node,
                    RULE_FORBIDDEN_IMPORT,
                    "wildcard imports are not allowed; import the names you need",
                )
                continue
            where = alias if hasattr(alias, "lineno") else node
            bound = alias.asname or name
            self.import_bound.add(bound)
            if module_ok:
                # The name may be a submodule (from numpy import ctypeslib).
                problem = self.module_problem(module + "." + name)
                if problem is None:
                    problem = self.attribute_problem(name)
                    rule = RULE_FORBIDDEN_ATTRIBUTE
                else:
                    rule = RULE_FORBIDDEN_MODULE
                if problem:
                    self.add(where, rule, problem)
            if name in r.attribute_functions and alias.asname and alias.asname != name:
                self.add(
                    where,
                    RULE_FORBIDDEN_IMPORT,
                    "'%s' may not be imported under another name" % name,
                )
            if alias.asname:
                self.check_binding(where, alias.asname)
