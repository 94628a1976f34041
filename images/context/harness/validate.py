"""pyexec validator: answers POST /validate without ever running code.

    python3 -I -B /opt/pyexec/validate.py [--checker] [--policy <rules as JSON>]

A long-lived process. It writes one "ready" frame, then reads request lines
from stdin until EOF and answers each with exactly one frame on stdout, in
order, in the supervisor's framing: b"PYEXEC1 <kind> <length>\\n" + JSON + b"\\n".

  ready frame       {"ready": true, "python": "3.13.5", "max_request_bytes": N}
  request (a line)  {"id": <any JSON scalar>, "code": str, "policy": {...} | null}
  validation frame  {"id": <the request's id>, "valid": bool, "errors": [...]}

A request without a "policy" key is checked under the process's own rules:
those of --policy (parsed and type-checked once, at start, instead of with
every request), or none (syntax only) without it. Its answer then names the
rules it was checked under: "policy_sha256", the SHA-256 (hex) of the
--policy argument's UTF-8 bytes, so that the service can tell that a
validator applied its policy (a validator that ignored --policy would not
say so). A malformed --policy is refused at start: an "error" frame instead
of "ready", and exit status 2.

--checker: the policy checker of a session's supervisor (supervisor.c), a
process that shares its container with the session's user code. It makes
itself non-dumpable before its ready frame (so that the user's process,
which runs as the same uid, cannot reach its memory or descriptors through
/proc), and answers each request with a "pass" frame (valid) or a "refuse"
frame instead of "validation", so that the supervisor can act on the
verdict without parsing JSON. It never runs code either.

errors are checker.py's dicts {"line", "column", "rule", "message"}, sorted by
position, at most checker.MAX_REPORTED of them; valid is true only when there
are none. With "policy" null only the source checks (empty, NUL bytes, lone
surrogates) and syntax errors are reported; with a policy (policy.Rules in Go)
the language policy as well.

The code is only parsed (ast.parse, i.e. compile(..., flags=PyCF_ONLY_AST))
and walked; it is never compiled to bytecode nor executed. Hostile input
(huge nesting, garbage, NUL bytes, malformed JSON, over-long lines) gets an
answer, never a crash: anything unexpected is answered valid=false with rule
"internal" (or "size" for an over-long line). A blank line is ignored.
"""

import hashlib
import json
import math
import os
import signal
import sys

HARNESS_DIR = os.path.dirname(os.path.abspath(__file__))

# Code is at most 50 KiB (policy.MaxCodeBytes); JSON escaping can grow it six
# times (\u0000), plus the policy.
MAX_REQUEST_BYTES = 1 << 20
MAX_ID_CHARS = 200
# The supervisor's framing (FRAME_MAGIC in supervisor.c, frameMagic in Go).
FRAME_MAGIC = b"PYEXEC1"


def dumps(obj):
    # ASCII-only: a lone surrogate in an id or message cannot break encoding.
    return json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def answer(req_id, errors, policy_sha256=None):
    """The answer to a request, as a dict (dumps makes the frame's text)."""
    out = {"id": req_id, "valid": not errors, "errors": errors}
    if policy_sha256 is not None:
        out["policy_sha256"] = policy_sha256
    return out


class Defaults:
    """The rules of requests without a "policy" key (--policy), and the
    mode (--checker)."""

    def __init__(self, rules=None, sha256=None, checker_mode=False):
        self.rules = rules  # checker.prepare()'s result, or None
        self.sha256 = sha256  # of the --policy text, or None
        self.checker_mode = checker_mode


def parse_args(argv, checker):
    """The Defaults of the command line ([--checker] [--policy JSON]);
    ValueError when it is malformed."""
    checker_mode = bool(argv) and argv[0] == "--checker"
    if checker_mode:
        argv = argv[1:]
    if not argv:
        return Defaults(checker_mode=checker_mode)
    if len(argv) != 2 or argv[0] != "--policy":
        raise ValueError("usage: validate.py [--checker] [--policy JSON]")
    text = argv[1]
    try:
        rules = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("--policy is not valid JSON") from None
    if not isinstance(rules, dict):
        raise ValueError("--policy must be a JSON object")
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return Defaults(checker.prepare(rules), digest, checker_mode)


def make_undumpable():
    """prctl(PR_SET_DUMPABLE, 0) for this process; OSError when refused."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_dumpable, pr_get_dumpable = 4, 3
    if libc.prctl(pr_set_dumpable, 0, 0, 0, 0) != 0 or libc.prctl(pr_get_dumpable, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def internal(message, rule="internal"):
    return [{"line": None, "column": None, "rule": rule, "message": message}]


def request_id(req):
    """The id to echo: a string (capped), a number, a bool or null."""
    rid = req.get("id")
    if isinstance(rid, str):
        return rid[:MAX_ID_CHARS]
    if isinstance(rid, float):
        return rid if math.isfinite(rid) else None
    if rid is None or isinstance(rid, (bool, int)):
        return rid
    return None


def handle(line, checker, defaults=None):
    """One request line -> its answer (answer's dict)."""
    req_id = None
    try:
        try:
            req = json.loads(line)
        except RecursionError:
            return answer(None, internal("request JSON is nested too deeply"))
        except ValueError:  # includes bytes that are not UTF-8
            return answer(None, internal("request is not valid JSON"))
        if not isinstance(req, dict):
            return answer(None, internal("request must be a JSON object"))
        req_id = request_id(req)
        code = req.get("code")
        if not isinstance(code, str):
            return answer(req_id, internal("request has no code string"))
        sha256 = None
        if "policy" in req:
            policy = req["policy"]
            if policy is not None and not isinstance(policy, dict):
                return answer(req_id, internal("policy must be an object or null"))
        else:
            defaults = defaults or Defaults()
            policy, sha256 = defaults.rules, defaults.sha256
        errors = checker.check(code, policy)
        return answer(req_id, errors[: checker.MAX_REPORTED], sha256)
    except Exception as exc:  # includes RecursionError/MemoryError in json.loads
        return answer(req_id, internal("validator failed: %s" % type(exc).__name__))


def write_frame(kind, payload):
    """Writes one frame on stdout, in the framing of the sandboxes'
    supervisor (images/context/supervisor/supervisor.c)."""
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    out = b"%s %s %d\n" % (FRAME_MAGIC, kind.encode("ascii"), len(data)) + data + b"\n"
    view = memoryview(out)
    while view:
        view = view[os.write(1, view):]


def skip_rest_of_line(stdin):
    while True:
        chunk = stdin.readline(1 << 20)
        if not chunk or chunk.endswith(b"\n"):
            return


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.path.insert(0, HARNESS_DIR)
    import checker

    try:
        defaults = parse_args(sys.argv[1:], checker)
    except ValueError as exc:
        write_frame("error", dumps({"message": str(exc)}))
        return 2
    if defaults.checker_mode:
        try:
            make_undumpable()
        except OSError as exc:
            write_frame("error", dumps({"message": str(exc)}))
            return 2
    write_frame(
        "ready",
        dumps(
            {
                "ready": True,
                "python": sys.version.split()[0],
                "max_request_bytes": MAX_REQUEST_BYTES,
            }
        ),
    )
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline(MAX_REQUEST_BYTES + 1)
        if not line:
            return 0
        if len(line) > MAX_REQUEST_BYTES and not line.endswith(b"\n"):
            skip_rest_of_line(stdin)
            out = answer(
                None, internal("request is larger than %d bytes" % MAX_REQUEST_BYTES, "size")
            )
        elif not line.strip():
            continue
        else:
            out = handle(line, checker, defaults)
        text = dumps(out)
        if not defaults.checker_mode:
            write_frame("validation", text)
        elif out["valid"]:
            write_frame("pass", text)
        else:
            write_frame("refuse", text)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (KeyboardInterrupt, BrokenPipeError):
        sys.exit(0)
