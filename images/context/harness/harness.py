"""pyexec harness: runs one piece of untrusted Python inside a single-use container.

Process layout (the container is discarded after one execution):

  supervisor (this file's main, PID 1 of the container, trusted)
    - forks the runner child at once, and writes a "ready" frame on the
      container's stdout when the child says it is ready
    - reads one request line (JSON) from stdin and passes it to the child
    - captures the child's stdout/stderr through pipes with size caps,
      enforces the deadline, and writes the result frames
  runner child (untrusted once user code starts)
    - before the request: optionally preloads analytics libraries
      (PYEXEC_PRELOAD: "none", or names joined by commas, e.g.
      "numpy,matplotlib"), warms its code paths, reports ready
    - runs the user's code as __main__, collects rich outputs, reports back
      over a private pipe, never touches the container's stdout

Only the supervisor writes to the container's stdout. The child has its fd 1
and 2 pointed at capture pipes and all other descriptors closed, and the
supervisor is made non-dumpable, so the child can neither write frames nor
read the supervisor's descriptors through /proc. Printing something that looks
like a frame only ends up inside "stdout".

Frames on the container's stdout: b"PYEXEC1 <kind> <length>\\n" + payload + b"\\n".
Kinds: "ready" (JSON), "result" (JSON built here), "outputs" (the child's rich
outputs, passed through untouched and parsed by the service into a fixed
shape, so the child cannot set any field outside it).
"""

import json
import os
import select
import signal
import sys
import time

FRAME_MAGIC = b"PYEXEC1"
CODE_FILENAME = "<code>"

# Caps on what the supervisor accepts from stdin and from the child.
MAX_REQUEST_BYTES = 8 << 20
MAX_REPORT_BYTES = 1 << 20
DEFAULT_MAX_OUTPUTS_BYTES = 64 << 20
DEFAULT_MAX_STREAM_BYTES = 1 << 20
# How long to keep draining pipes after the child has exited (grandchildren may
# still hold them open).
DRAIN_GRACE_SECONDS = 0.2
# How long a child that has reported waits to be killed before it exits.
CHILD_LINGER_SECONDS = 10

HARNESS_DIR = os.path.dirname(os.path.abspath(__file__))


def write_frame(kind, payload):
    """Writes one frame on the container's stdout (fd 1). Supervisor only."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    header = b"%s %s %d\n" % (FRAME_MAGIC, kind.encode("ascii"), len(payload))
    data = header + payload + b"\n"
    view = memoryview(data)
    while view:
        n = os.write(1, view)
        view = view[n:]


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def set_non_dumpable():
    """Keeps same-uid processes (the child) out of /proc/1/{mem,fd,environ}."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_DUMPABLE = 4
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except Exception as exc:  # pragma: no cover - reported, not fatal
        print("harness: prctl: %r" % (exc,), file=sys.stderr)


def prepare_matplotlib_config():
    """matplotlib wants a writable config dir; seed it with the font cache
    built into the image so no font scan happens at run time."""
    target = "/tmp/.matplotlib"
    os.environ["MPLCONFIGDIR"] = target
    src = os.environ.get("PYEXEC_MPL_CACHE", "/opt/pyexec/mplcache")
    try:
        os.makedirs(target, exist_ok=True)
        for name in os.listdir(src):
            with open(os.path.join(src, name), "rb") as f_in:
                data = f_in.read()
            with open(os.path.join(target, name), "wb") as f_out:
                f_out.write(data)
    except OSError:
        pass


# What each preloadable library imports, in order. The service asks only for
# what the code imports (runner/flavor.go); anything else is ignored.
PRELOADS = {
    "numpy": ("numpy",),
    "pandas": ("pandas",),
    "matplotlib": ("matplotlib", "matplotlib.pyplot"),
    "scipy": ("scipy",),
    "plotly": ("plotly.graph_objects",),
    "seaborn": ("seaborn",),
}


def parse_preload(value):
    """The libraries named by PYEXEC_PRELOAD, in a safe import order."""
    names = set((value or "").split(","))
    return [lib for lib in PRELOADS if lib in names]


def preload(libs):
    """Imports the libraries so user code that needs them starts warm (in
    the child, before any user code). A library that fails to import is
    left for the code to import, and fail, itself."""
    for lib in libs:
        try:
            if lib == "matplotlib":
                import matplotlib

                matplotlib.use(os.environ.get("MPLBACKEND", "agg"))
            for module in PRELOADS[lib]:
                __import__(module)
            if lib == "plotly" and "pandas" in libs:
                import plotly.express  # noqa: F401  (it needs pandas)
        except Exception:
            pass
    if "matplotlib" in libs:
        # Render once so font caches and the Agg renderer are warm (the first
        # render in a fresh process costs ~100 ms more).
        try:
            import io

            import matplotlib.pyplot

            fig = matplotlib.pyplot.figure(figsize=(2, 2))
            fig.gca().plot([0, 1], [0, 1])
            fig.gca().set_title("warm")
            fig.savefig(io.BytesIO(), format="png")
            matplotlib.pyplot.close(fig)
        except Exception:
            pass


def library_versions():
    versions = {"python": sys.version.split()[0]}
    for name in ("numpy", "pandas", "matplotlib", "plotly"):
        mod = sys.modules.get(name)
        if mod is not None:
            versions[name] = getattr(mod, "__version__", "")
    return versions


# ---------------------------------------------------------------- cgroup stats


def _read_first(paths):
    for path in paths:
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            continue
    return None


def _kv(text, key):
    if not text:
        return None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            try:
                return int(parts[1])
            except ValueError:
                return None
    return None


def oom_kills():
    """Count of OOM kills in this container's memory cgroup (v1 or v2)."""
    v1 = _read_first(["/sys/fs/cgroup/memory/memory.oom_control"])
    if v1 is not None:
        return _kv(v1, "oom_kill") or 0
    v2 = _read_first(["/sys/fs/cgroup/memory.events"])
    return _kv(v2, "oom_kill") or 0


def memory_usage():
    """Current memory use of the whole container in bytes, or None."""
    text = _read_first(
        ["/sys/fs/cgroup/memory/memory.usage_in_bytes", "/sys/fs/cgroup/memory.current"]
    )
    try:
        return int(text.strip()) if text else None
    except ValueError:
        return None


def peak_memory():
    """Peak memory use of the whole container in bytes, or None."""
    text = _read_first(
        ["/sys/fs/cgroup/memory/memory.max_usage_in_bytes", "/sys/fs/cgroup/memory.peak"]
    )
    try:
        return int(text.strip()) if text else None
    except ValueError:
        return None


# ---------------------------------------------------------------- the child


def child_main(req_r, res_w, out_w, err_w, libs):
    """Runs in the forked child: loads the libraries, sets up, tells the
    supervisor it is ready, waits for the request the supervisor passes on
    req_r, runs it. Never returns.

    The child, not the supervisor, imports the libraries: in its own memory
    they cost what a fresh process pays, where importing them before the
    fork made the child copy, page by page, all it touched of them (about
    160 ms of CPU per chart in a VM). Its fd 1 and 2 are /dev/null until
    the imports are done, so nothing they print reaches the user's output."""
    code = 0
    try:
        t0 = time.monotonic()
        import runner_child

        preload(libs)
        runner_child.prepare(preloaded=libs)
        # What is loaded now lives as long as the process: keep it out of
        # the collector, so a full collection while the code runs does not
        # walk the libraries again.
        import gc

        gc.freeze()
        preload_ms = round((time.monotonic() - t0) * 1000, 3)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.close(out_w)
        os.close(err_w)
        runner_child.setup()
        runner_child.warm()
        ready = dumps({"preload_ms": preload_ms, "versions": library_versions()}).encode("utf-8")
        os.write(res_w, b"ready %d\n" % len(ready) + ready)
        chunks = []
        while True:
            data = os.read(req_r, 1 << 16)
            if not data:
                break
            chunks.append(data)
        os.close(req_r)
        request = json.loads(b"".join(chunks))
        runner_child.run(request, res_w)
        # Done: close the pipes, which is what the supervisor answers on, and
        # wait for its SIGKILL. Exiting here would make the kernel tear this
        # process down (ms in a VM) on the CPU the supervisor was preempted
        # from, delaying the answer by as much.
        for fd in (1, 2, res_w):
            try:
                os.close(fd)
            except OSError:
                pass
        time.sleep(CHILD_LINGER_SECONDS)
    except BaseException:  # the runner reports user errors itself
        code = 70
    finally:
        os._exit(code)


class Child:
    """The runner child, forked ahead of the request, and its pipes."""

    def __init__(self, libs):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        res_r, res_w = os.pipe()
        req_r, req_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                for fd in (out_r, err_r, res_r, req_w):
                    os.close(fd)
                setup_child_fds(out_w, err_w, res_w, req_r)
            except BaseException:
                os._exit(71)
            child_main(req_r, res_w, out_w, err_w, libs)
        for fd in (out_w, err_w, res_w, req_r):
            os.close(fd)
        self.pid, self.out_r, self.err_r, self.res_r, self.req_w = pid, out_r, err_r, res_r, req_w

    def wait_ready(self):
        """Waits for the child's ready message; returns it, or None when the
        child died first or sent something else."""
        reader = ReportReader(0)
        while b"ready" not in reader.kinds:
            if reader.overflow or reader.malformed:
                return None
            data = os.read(self.res_r, 1 << 16)
            if not data:
                return None
            reader.feed(data)
        try:
            msg = json.loads(reader.messages()["ready"])
        except ValueError:
            return None
        return msg if isinstance(msg, dict) else None

    def send(self, line):
        """Hands the request to the child; EPIPE means it already died."""
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(self.req_w, view):]
        except OSError:
            pass
        os.close(self.req_w)


def setup_child_fds(out_w, err_w, res_w, req_r):
    """The child's descriptors: stdin, stdout and stderr on /dev/null (the
    capture pipes go on 1 and 2 once the libraries are loaded), the four
    pipe ends, and nothing else: not the container's stdout."""
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    keep = {0, 1, 2, out_w, err_w, res_w, req_r}
    for fd in _open_fds():
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _open_fds():
    try:
        return [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return list(range(3, 1024))


# ---------------------------------------------------------------- supervisor


class Capped:
    """Keeps the first `limit` bytes written to it and counts the rest."""

    def __init__(self, limit):
        self.limit = limit
        self.buf = bytearray()
        self.total = 0

    def feed(self, data):
        self.total += len(data)
        room = self.limit - len(self.buf)
        if room > 0:
            self.buf += data[:room]

    @property
    def truncated(self):
        return self.total > len(self.buf)

    def text(self):
        # A cut may split a UTF-8 sequence; replace rather than fail.
        return self.buf.decode("utf-8", errors="replace")


class ReportReader:
    """Parses the child's messages on the result pipe:
    b"<kind> <length>\\n" + payload, for kinds "ready" (before the request),
    "report" and "outputs"."""

    def __init__(self, max_outputs):
        self.buf = bytearray()
        self.max_total = MAX_REPORT_BYTES + max_outputs + 128
        self.overflow = False
        self.total = 0
        # Kinds of the messages received whole so far, and where the next
        # one starts (headers are scanned as data arrives, once each).
        self.kinds = set()
        self.scan_pos = 0
        self.malformed = False

    def feed(self, data):
        self.total += len(data)
        if len(self.buf) + len(data) > self.max_total:
            self.overflow = True
            return
        self.buf += data
        while True:
            nl = self.buf.find(b"\n", self.scan_pos, self.scan_pos + 64)
            if nl < 0:
                if len(self.buf) - self.scan_pos >= 64:  # no header is that long
                    self.malformed = True
                    self.scan_pos = self.max_total
                return
            parts = bytes(self.buf[self.scan_pos : nl]).split(b" ")
            if len(parts) != 2 or not parts[1].isdigit():
                self.malformed = True
                self.scan_pos = self.max_total  # stop scanning
                return
            end = nl + 1 + int(parts[1])
            if end > len(self.buf):
                return
            self.kinds.add(parts[0])
            self.scan_pos = end

    @property
    def complete(self):
        """The child's report and outputs have both arrived."""
        return b"report" in self.kinds and b"outputs" in self.kinds

    def messages(self):
        out = {}
        buf = bytes(self.buf)
        pos = 0
        while pos < len(buf):
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            parts = buf[pos:nl].split(b" ")
            if len(parts) != 2 or not parts[1].isdigit():
                break
            kind, size = parts[0].decode("ascii", "replace"), int(parts[1])
            start, end = nl + 1, nl + 1 + size
            if end > len(buf):
                break
            out.setdefault(kind, buf[start:end])
            pos = end
        return out


def clean_error(err):
    """Keeps only well-typed, bounded fields of the child's error report."""
    if not isinstance(err, dict):
        return None
    out = {}
    for key, cap in (("type", 200), ("message", 10000), ("traceback", 64000)):
        val = err.get(key)
        out[key] = val[:cap] if isinstance(val, str) else ""
    for key in ("line", "column"):
        val = err.get(key)
        out[key] = val if isinstance(val, int) and not isinstance(val, bool) else None
    return out


MAX_VIOLATIONS = 100


def clean_violations(report):
    """The policy violations of the child's report (runner_child.py), bounded
    and type-checked like clean_error; [] when there are none."""
    raw = report.get("violations") if isinstance(report, dict) else None
    if not isinstance(raw, list):
        return []
    out = []
    for item in raw[:MAX_VIOLATIONS]:
        if not isinstance(item, dict):
            continue
        v = {}
        for key, cap in (("rule", 64), ("message", 1000)):
            val = item.get(key)
            v[key] = val[:cap] if isinstance(val, str) else ""
        for key in ("line", "column"):
            val = item.get(key)
            v[key] = val if isinstance(val, int) and not isinstance(val, bool) else None
        out.append(v)
    return out


def supervise(child, request, line):
    limits = request.get("limits") or {}
    timeout = float(request.get("timeout") or 30)
    stdout = Capped(int(limits.get("stdout_bytes") or DEFAULT_MAX_STREAM_BYTES))
    stderr = Capped(int(limits.get("stderr_bytes") or DEFAULT_MAX_STREAM_BYTES))
    reports = ReportReader(int(limits.get("outputs_bytes") or DEFAULT_MAX_OUTPUTS_BYTES))

    pid, out_r, err_r, res_r = child.pid, child.out_r, child.err_r, child.res_r
    oom_before = oom_kills()
    started = time.monotonic()
    child.send(line)
    sinks = {out_r: stdout.feed, err_r: stderr.feed, res_r: reports.feed}
    poller = select.poll()  # not selectors: one import less in every sandbox
    for fd in sinks:
        os.set_blocking(fd, False)
        poller.register(fd, select.POLLIN)

    deadline = started + timeout
    timed_out = False
    wait_status = None
    rusage = None
    exited_at = None
    while sinks:
        now = time.monotonic()
        if wait_status is None:
            wpid, status, ru = os.wait4(pid, os.WNOHANG)
            if wpid == pid:
                wait_status, rusage, exited_at = status, ru, now
        if wait_status is None and now >= deadline:
            timed_out = True
            _kill_child(pid)
            _, wait_status, rusage = os.wait4(pid, 0)
            exited_at = time.monotonic()
        if exited_at is not None and now - exited_at > DRAIN_GRACE_SECONDS:
            break
        wait = 0.05 if wait_status is None else DRAIN_GRACE_SECONDS
        if wait_status is None:
            wait = max(0.0, min(wait, deadline - now))
        for fd, _ in poller.poll(wait * 1000):
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if data:
                sinks[fd](data)
            else:
                poller.unregister(fd)
                os.close(fd)
                del sinks[fd]
            if fd == res_r and exited_at is None and reports.complete:
                # The child has reported and waits to be killed: what still
                # holds the pipes open (an orphan of the user's) gets the
                # same grace as after an exit.
                exited_at = time.monotonic()
    if wait_status is None and reports.complete:
        # The child reported and closed its pipes on its way out: its exit
        # (tearing down a forked address space takes ms in a VM) is not
        # waited for; the process group is killed below.
        wpid, status, ru = os.wait4(pid, os.WNOHANG)
        if wpid == pid:
            wait_status, rusage = status, ru
        else:
            wait_status = 0
    if wait_status is None:
        # All pipes closed (fd juggling by user code); the child still runs.
        remaining = deadline - time.monotonic()
        while remaining > 0:
            wpid, status, ru = os.wait4(pid, os.WNOHANG)
            if wpid == pid:
                wait_status, rusage = status, ru
                break
            # The pipes closed a moment before the exit is reapable: poll fast.
            time.sleep(min(0.0005, remaining))
            remaining = deadline - time.monotonic()
        if wait_status is None:
            timed_out = True
            _kill_child(pid)
            _, wait_status, rusage = os.wait4(pid, 0)
    elapsed = time.monotonic() - started
    # The process group is killed once the answer is out (main): its
    # teardown would otherwise compete with writing the frames.
    for fd in list(sinks):
        os.close(fd)

    msgs = reports.messages()
    report = None
    if "report" in msgs and len(msgs["report"]) <= MAX_REPORT_BYTES:
        try:
            report = json.loads(msgs["report"])
        except ValueError:
            report = None
    if not isinstance(report, dict):
        report = None

    oom = oom_kills() > oom_before
    result = {
        "stdout": stdout.text(),
        "stderr": stderr.text(),
        "stdout_truncated": stdout.truncated,
        "stderr_truncated": stderr.truncated,
        "stdout_bytes": stdout.total,
        "stderr_bytes": stderr.total,
        "execution_time_ms": round(elapsed * 1000, 3),
        "cpu_time_ms": cpu_ms(rusage, report),
        "peak_memory_bytes": peak_memory(),
        "oom_killed": oom,
        "outputs_truncated": reports.overflow,
    }
    result.update(decide_status(timed_out, wait_status, report, oom, timeout))
    result["violations"] = clean_violations(report)
    return result, msgs.get("outputs") if not reports.overflow else None


def cpu_ms(rusage, report):
    """CPU time of the child: from wait4 when it was reaped, else as the
    child measured itself just before reporting (its own figure only)."""
    if rusage is not None:
        return round((rusage.ru_utime + rusage.ru_stime) * 1000, 3)
    if report is not None:
        val = report.get("cpu_ms")
        if isinstance(val, (int, float)) and not isinstance(val, bool) and 0 <= val < 1e9:
            return round(float(val), 3)
    return None


def _kill_child(pid):
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass


def decide_status(timed_out, wait_status, report, oom, timeout):
    """Maps how the child ended to (status, error). The one place for this rule."""
    if timed_out:
        return {
            "status": "timeout",
            "error": {
                "type": "TimeoutError",
                "message": "execution exceeded the time limit of %gs" % timeout,
                "traceback": "",
                "line": None,
                "column": None,
            },
        }
    sig = os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else None
    if oom or (sig == signal.SIGKILL and report is None):
        return {
            "status": "out_of_memory",
            "error": {
                "type": "MemoryError",
                "message": "execution ran out of memory and was killed",
                "traceback": "",
                "line": None,
                "column": None,
            },
        }
    if report is not None:
        err = clean_error(report.get("error"))
        if err is None:
            return {"status": "success", "error": None}
        status = "out_of_memory" if err["type"] == "MemoryError" else "error"
        return {"status": status, "error": err}
    if sig is not None:
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        message = "process was killed by signal %s" % name
        kind = "ProcessCrash"
    else:
        code = os.WEXITSTATUS(wait_status)
        if code == 0:
            return {"status": "success", "error": None}
        message = "process exited with code %d" % code
        kind = "ProcessExit"
    return {
        "status": "error",
        "error": {"type": kind, "message": message, "traceback": "", "line": None, "column": None},
    }


def read_request():
    """Returns the request and its raw line (passed on to the child)."""
    line = sys.stdin.buffer.readline(MAX_REQUEST_BYTES + 1)
    if not line or len(line) > MAX_REQUEST_BYTES:
        raise ValueError("request missing or too large")
    req = json.loads(line)
    if not isinstance(req, dict) or not isinstance(req.get("code"), str):
        raise ValueError("request has no code")
    return req, line


def main():
    set_non_dumpable()
    # The user's process runs with our uid and may signal us. As the
    # namespace's init we only receive signals we handle, and Python handles
    # SIGINT: ignore it, so no KeyboardInterrupt can end the supervisor (and
    # cut a frame short). The child restores it (runner_child.run).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.path.insert(0, HARNESS_DIR)
    prepare_matplotlib_config()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    libs = parse_preload(os.environ.get("PYEXEC_PRELOAD"))
    # Fork the runner child first, while this process is small: the fork,
    # the child's imports and its setup are all paid before the request.
    child = Child(libs)
    ready = child.wait_ready()
    if ready is None:
        write_frame("error", dumps({"message": "the runner process failed to start"}))
        return 2
    write_frame(
        "ready",
        dumps(
            {
                "preload": ",".join(libs) or "none",
                "preload_ms": ready.get("preload_ms"),
                "versions": ready.get("versions"),
                "memory_bytes": memory_usage(),
            }
        ),
    )
    try:
        request, line = read_request()
    except (ValueError, OSError) as exc:
        write_frame("error", dumps({"message": str(exc)}))
        return 2
    result, outputs = supervise(child, request, line)
    write_frame("result", dumps(result))
    if outputs is not None:
        write_frame("outputs", outputs)
    _kill_child(child.pid)  # the process group: leave nothing behind
    return 0


if __name__ == "__main__":
    status = main()
    # Every frame went out with os.write: skip the interpreter's teardown
    # (tens of ms with the libraries loaded), so the container exits, and can
    # be removed cheaply, as soon as it has answered.
    sys.stderr.flush()
    os._exit(status)
