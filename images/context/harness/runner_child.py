"""The runner child: executes the user's code as __main__ and reports back.

Runs in the sandbox's one Python process (child.py), started by the
supervisor (supervisor.c). Its stdout and stderr are the supervisor's capture
pipes; `res_w` is the private pipe for the report. Everything after `exec` is
untrusted: the supervisor bounds whatever arrives on `res_w` and the service
(runner/verdict.go) checks it.

Single-shot (run): one request, the code runs once in a fresh __main__, and
the pipes are closed after the report. A session (Session.handle) serves one
request per cell with the pipes open, by its "op":
  run   {"op": "run", "code", "timeout", "policy", "options", "files"}: the
        files are written, then the code runs in the session's one __main__
        (variables and imports persist); the outputs show the variables
        (re)bound and the files under outputs/ created or changed by this
        cell; pyplot figures are collected and closed at its end. SIGINT is
        a KeyboardInterrupt while the user's code runs and ignored otherwise.
  put   {"op": "put", "files": [...]}: writes the files.
  get   {"op": "get", "name", "options"}: the outputs' "files" hold that one
        file (workdir.get_file); errors FileNotFoundError, FileTooLargeError.
  list  {"op": "list"}: the outputs' "files" list every regular file of the
        working directory with its size, without content.
Every cell ends with a "report" ({"error", "cpu_ms"}) and an "outputs"
message (outputs.empty() plus the file fields of workdir.py). With the option
"stream" (true), a run also sends an "event" message ({"chart": chart}) for
each chart as it is rendered, before the report.
"""

import _ast  # not ast, json, signal: they import enum, re and functools,
import _signal  # ~20 ms of CPU that every sandbox would pay before any code
import io
import linecache
import os
import sys

import jsonlite
import outputs
import workdir

CODE_FILENAME = "<code>"
NO_VALUE = outputs.NO_VALUE


def prepare(preloaded):
    """Called once before the child reports ready (preloaded: the libraries
    it imported): hooks that must be in place before user code
    imports anything."""
    outputs.prepare(preloaded)


# How many outputs messages were sent: a session's cell that was cut short
# (a late KeyboardInterrupt) still answers once.
outputs_sent = 0


def send_message(res_w, kind, payload):
    """Writes one message on the result pipe: b"<kind> <length>\\n" + payload."""
    global outputs_sent
    if kind == "outputs":
        outputs_sent += 1
    data = b"%s %d\n" % (kind.encode("ascii"), len(payload)) + payload
    view = memoryview(data)
    while view:
        n = os.write(res_w, view)
        view = view[n:]


# Linux's ioctl that tells how many bytes a pipe holds (termios.FIONREAD).
_FIONREAD = 0x541B
# How long, at most, an event waits to be read by the supervisor.
EVENT_READ_WAIT = 0.2


def send_event(res_w, event):
    """Streaming: sends one event (a dict: {"chart": chart}) now, after what
    the code printed before it, and waits until the supervisor has read it
    (at most EVENT_READ_WAIT), so that what the code prints next comes after
    it (supervisor.c, stream_catch_up)."""
    _flush_streams()
    payload = jsonlite.dumps(event, ensure_ascii=False, allow_nan=False).encode("utf-8")
    send_message(res_w, "event", payload)
    import fcntl
    import time

    held = bytearray(4)
    deadline = time.monotonic() + EVENT_READ_WAIT
    while time.monotonic() < deadline:
        try:
            fcntl.ioctl(res_w, _FIONREAD, held, True)
        except OSError:
            return
        if not any(held):
            return
        time.sleep(0.0005)


def _set_streams():
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    sys.stderr = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    sys.__stdout__, sys.__stderr__, sys.__stdin__ = sys.stdout, sys.stderr, sys.stdin


def _cpu_ms():
    t = os.times()  # not resource.getrusage: importing resource costs ~7 ms
    return (t.user + t.system + t.children_user + t.children_system) * 1000


# The process's CPU time when the request arrived (set by run()): the report's
# cpu_ms counts only what ran after it, not the preloading before.
_cpu_at_request = 0.0


def _request_cpu_ms():
    return max(0.0, _cpu_ms() - _cpu_at_request)


# ---------------------------------------------------------------- warnings
# A warning whose location is a harness file (matplotlib and pandas point
# past their own frames, which lands on the harness when it renders a figure
# or a table) is shown at the user's innermost line on the stack, or dropped
# when none is (outputs collected after the code finished). Warnings raised
# elsewhere keep Python's own location.

HARNESS_PREFIX = os.path.dirname(os.path.abspath(__file__)) + os.sep
_show_warning = None  # warnings.showwarning as it was before route_warnings


def _user_location():
    """(filename, lineno) of the innermost frame of the user's code, or None."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == CODE_FILENAME:
            return CODE_FILENAME, frame.f_lineno
        frame = frame.f_back
    return None


def _showwarning(message, category, filename, lineno, file=None, line=None):
    if isinstance(filename, str) and filename.startswith(HARNESS_PREFIX):
        where = _user_location()
        if where is None:
            return
        filename, lineno = where
        line = None  # read from the user's code (linecache)
    _show_warning(message, category, filename, lineno, file, line)


def route_warnings():
    """Installs _showwarning as warnings.showwarning (once)."""
    global _show_warning
    import warnings  # imported by every library anyway; cheap

    if warnings.showwarning is not _showwarning:
        _show_warning = warnings.showwarning
        warnings.showwarning = _showwarning


def _flush_streams():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


# A traceback keeps at most this many of the user's frames at each end (deep
# recursion makes millions; formatting them all takes longer than the run).
TRACEBACK_EDGE_FRAMES = 25


def user_frames_traceback(exc):
    """The traceback limited to frames of the user's code, and the user's line."""
    import traceback  # only errors need it: not imported ahead in every sandbox

    head, tail, skipped = [], [], 0
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == CODE_FILENAME:
            if len(head) < TRACEBACK_EDGE_FRAMES:
                head.append(tb)
            else:
                tail.append(tb)
                if len(tail) > TRACEBACK_EDGE_FRAMES:
                    tail.pop(0)
                    skipped += 1
        tb = tb.tb_next
    def frames_of(tbs):
        return list(traceback.StackSummary.extract(((t.tb_frame, t.tb_lineno) for t in tbs)))

    first, last = frames_of(head), frames_of(tail)
    frames = first + last
    line = frames[-1].lineno if frames else None
    text = ""
    if frames:
        listed = traceback.format_list(first)
        if skipped:
            listed.append("  ... %d more frames of <code> ...\n" % skipped)
        listed += traceback.format_list(last)
        text = "Traceback (most recent call last):\n" + "".join(listed)
    text += "".join(traceback.format_exception_only(type(exc), exc))
    return text, line


def describe_error(exc):
    try:
        return _describe_error(exc)
    except BaseException:  # user code may have broken traceback or str()
        return {"type": "Exception", "message": "<the error could not be described>",
                "traceback": "", "line": None, "column": None}


def _describe_error(exc):
    import traceback

    if isinstance(exc, SyntaxError):
        return {
            "type": type(exc).__name__,
            "message": exc.msg or str(exc),
            "traceback": "".join(traceback.format_exception_only(type(exc), exc)),
            "line": exc.lineno,
            "column": exc.offset,
        }
    text, line = user_frames_traceback(exc)
    try:
        message = str(exc)
    except BaseException:
        message = "<unprintable %s>" % type(exc).__name__
    return {
        "type": type(exc).__name__,
        "message": message,
        "traceback": text,
        "line": line,
        "column": None,
    }


# The supervisor drops a report over 1 MiB (MAX_REPORT_BYTES) and the service
# then goes by the exit status alone: cut the fields to the sizes it keeps
# (runner/verdict.go), so that a huge exception message cannot turn an error
# into a success.
_ERROR_CAPS = (("type", 200), ("message", 10000), ("traceback", 64000))


def _cap_error(error):
    if isinstance(error, dict):
        for key, cap in _ERROR_CAPS:
            val = error.get(key)
            if isinstance(val, str):
                # Lone surrogates cannot be encoded: escape them.
                error[key] = val[:cap].encode("utf-8", "backslashreplace").decode("utf-8")
    return error


def compile_code(code):
    """Compiles the code; a final bare expression is compiled apart so its
    value can be shown, as in a notebook cell."""
    tree = compile(code, CODE_FILENAME, "exec", _ast.PyCF_ONLY_AST, dont_inherit=True)  # ast.parse
    last = None
    if tree.body and isinstance(tree.body[-1], _ast.Expr):
        last = _ast.Expression(body=tree.body.pop().value)
    body = compile(tree, CODE_FILENAME, "exec", dont_inherit=True)
    tail = compile(last, CODE_FILENAME, "eval", dont_inherit=True) if last is not None else None
    return body, tail


def run_user_code(code, namespace, interruptible=False):
    """Returns (error or None, value of the last expression or NO_VALUE).
    interruptible (a session): SIGINT raises KeyboardInterrupt only while
    the code runs, and is ignored again once it returns."""
    linecache.cache[CODE_FILENAME] = (len(code), None, code.splitlines(True), CODE_FILENAME)
    try:
        body, tail = compile_code(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        if isinstance(exc, SyntaxError):
            return describe_error(exc), NO_VALUE
        err = describe_error(exc)
        err["type"] = "SyntaxError"
        err["message"] = "code could not be compiled: %s" % (exc,)
        return err, NO_VALUE
    try:
        if not interruptible:
            exec(body, namespace)
            return None, (eval(tail, namespace) if tail is not None else NO_VALUE)
        try:
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)
            exec(body, namespace)
            value = eval(tail, namespace) if tail is not None else NO_VALUE
        finally:
            _ignore_sigint()
        return None, value
    except SystemExit as exc:
        if exc.code is None or exc.code == 0:
            return None, NO_VALUE
        err = describe_error(exc)
        err["message"] = "SystemExit: %s" % (exc.code,)
        return err, NO_VALUE
    except BaseException as exc:
        return describe_error(exc), NO_VALUE


# ---------------------------------------------------------------- policy
# The language policy (Go: pyexec/policy, checked by checker.py) runs before
# any of the user's code; a violation is reported like an error and nothing
# else happens.


def policy_violations(request):
    """The checker's errors for the request's code; [] without a policy (the
    service sends none when its validator has checked the code already)."""
    policy = request.get("policy")
    if not isinstance(policy, dict):
        return []
    import checker

    return checker.check(request["code"], policy)


def report_policy_violations(res_w, violations):
    """Reports the violations as data only (rule, message, line, column):
    the service words the verdict (runner/verdict.go), the same whether its
    validator or this check found them."""
    import checker

    report = {
        "error": None,
        "violations": [
            {k: v.get(k) for k in ("rule", "message", "line", "column")}
            for v in violations[: checker.MAX_REPORTED]
        ],
    }
    send_message(res_w, "report", jsonlite.dumps(report, ensure_ascii=False).encode("utf-8", "replace"))
    send_message(res_w, "outputs", jsonlite.dumps(outputs.empty()).encode("utf-8"))


# ---------------------------------------------------------------- run


def setup():
    """Prepares the process before any request arrives (the supervisor starts
    it ahead of time so none of this is on the request path)."""
    _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")  # under memory pressure the user's process goes first
    except OSError:
        pass
    _set_streams()
    route_warnings()
    workdir.prepare()


def warm():
    """Walks the code paths of a run once before the request arrives, so
    their first-use costs (lazy imports, caches, page faults) are paid ahead
    of the request. Nothing is printed or sent."""
    try:
        req = jsonlite.loads(jsonlite.dumps({"code": "x = [1]\nx", "timeout": 1.0, "options": {}, "policy": None}))
        policy_violations(req)
        ns = {"__name__": "__warm__", "__builtins__": __builtins__}
        body, tail = compile_code(req["code"])
        exec(body, ns)
        collected = outputs.collect(ns, eval(tail, ns), {})
        collected.update(workdir.Tracker().scan({}))
        jsonlite.dumps({"error": None, "cpu_ms": _request_cpu_ms()}).encode("utf-8")
        jsonlite.dumps(collected, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except BaseException:
        pass


def _send_report(res_w, error):
    report = jsonlite.dumps(
        {"error": _cap_error(error), "cpu_ms": _request_cpu_ms()}, ensure_ascii=False, default=repr
    ).encode("utf-8")
    send_message(res_w, "report", report)


def _send_outputs(res_w, collected):
    try:
        payload = jsonlite.dumps(collected, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        empty = outputs.empty()
        empty["collect_error"] = "outputs were not valid JSON: %s" % (exc,)
        payload = jsonlite.dumps(empty).encode("utf-8")
    send_message(res_w, "outputs", payload)


def _no_files():
    return {"files": [], "files_truncated": False, "files_skipped": []}


def _fresh_main():
    namespace = {"__name__": "__main__", "__builtins__": __builtins__, "__doc__": None}
    module = type(sys)("__main__")
    module.__dict__.update(namespace)
    sys.modules["__main__"] = module
    sys.argv = ["<code>"]
    return module.__dict__


def _ignore_sigint():
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)


def execute(request, res_w, namespace, tracker, session=False):
    """Checks the policy, writes the request's files, runs the code in
    namespace and sends the report and the outputs (with the files under
    outputs/ that tracker has not seen)."""
    global _cpu_at_request
    _cpu_at_request = _cpu_ms()
    violations = policy_violations(request)
    if violations:
        report_policy_violations(res_w, violations)
        return
    options = request.get("options") or {}
    error = workdir.write_files(request.get("files"))
    if error is not None:
        _send_report(res_w, error)
        collected = outputs.empty()
        collected.update(_no_files())
        _send_outputs(res_w, collected)
        return
    if session:
        workdir.ensure_outputs()
        before = {k: id(v) for k, v in list(namespace.items())}
    on_chart = None
    if isinstance(options, dict) and options.get("stream") is True:
        on_chart = lambda chart: send_event(res_w, {"chart": chart})  # noqa: E731
    outputs.before(namespace, options, on_chart)
    error, value = run_user_code(request["code"], namespace, interruptible=session)
    _flush_streams()
    names = None
    if session:
        names = {k for k, v in list(namespace.items()) if before.get(k, before) != id(v)}
    try:
        collected = outputs.collect(namespace, value, options, names)
    except BaseException as exc:  # outputs must never hide the run's result
        collected = outputs.empty()
        collected["collect_error"] = "%s: %s" % (type(exc).__name__, exc)
    del value
    if session:
        _close_figures()
    try:
        collected.update(tracker.scan(options))
    except BaseException as exc:
        collected.update(_no_files())
        collected["collect_error"] = (collected.get("collect_error", "") + "; files: %s: %s" % (type(exc).__name__, exc)).lstrip("; ")
    _flush_streams()
    _send_report(res_w, error)
    _send_outputs(res_w, collected)


def _close_figures():
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        try:
            plt.close("all")
        except BaseException:
            pass


def run(request, res_w):
    """Runs the request's code in this (set-up) child and reports on res_w."""
    execute(request, res_w, _fresh_main(), workdir.Tracker())
    # Close every pipe now: the supervisor answers without waiting for this
    # process's exit.
    for fd in (1, 2, res_w):
        try:
            os.close(fd)
        except OSError:
            pass


class Session:
    """A session's state: its __main__ and what its cells left in outputs/."""

    def __init__(self):
        self.namespace = None
        self.tracker = workdir.Tracker()

    def handle(self, box, res_w):
        """Serves one cell (its request body, bytes, popped from the list
        box so that it is freed once parsed) and reports on res_w. Whatever
        happens, a report and an outputs message are sent."""
        global _cpu_at_request
        _cpu_at_request = _cpu_ms()
        sent = outputs_sent
        error = None
        try:
            try:
                text = box.pop().decode("utf-8")
                request = jsonlite.loads(text)
            except (ValueError, UnicodeDecodeError) as exc:
                request = None
                error = workdir._error("ValueError", "bad request: %s" % (exc,))
            text = None
            if type(request) is not dict:
                if error is None:
                    error = workdir._error("ValueError", "bad request: not an object")
                self._answer(res_w, error, _no_files())
                return
            op = request.get("op", "run")
            if op == "run":
                if self.namespace is None:
                    self.namespace = _fresh_main()
                execute(request, res_w, self.namespace, self.tracker, session=True)
            elif op == "put":
                error = workdir.write_files(request.get("files"))
                self.tracker.refresh()  # what was put is no cell's output
                self._answer(res_w, error, _no_files())
            elif op == "get":
                found, error = workdir.get_file(request.get("name"), request.get("options") or {})
                files = _no_files()
                if found is not None:
                    files["files"].append(found)
                self._answer(res_w, error, files)
            elif op == "list":
                self._answer(res_w, None, workdir.list_files())
            else:
                self._answer(res_w, workdir._error("ValueError", "unknown op %r" % (str(op)[:100],)), _no_files())
        except BaseException as exc:  # a late KeyboardInterrupt, a broken pipe
            if outputs_sent == sent:
                try:
                    self._answer(res_w, describe_error(exc), _no_files())
                except BaseException:
                    pass
        finally:
            _ignore_sigint()

    def _answer(self, res_w, error, files):
        collected = outputs.empty()
        collected.update(files)
        _send_report(res_w, error)
        _send_outputs(res_w, collected)
