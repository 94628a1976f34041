"""pyexec runner child: the one Python process of a sandbox container.

Started by the supervisor (supervisor/supervisor.c, PID 1) as
`python3 -I -B /opt/pyexec/child.py`, with these descriptors:

  0, 1, 2  /dev/null (1 and 2 become the capture pipes once the libraries
           are loaded, so nothing they print reaches the user's output)
  3        the result pipe: "<kind> <length>\\n" + payload messages
  4        the request pipe: single-shot, one request (JSON) then end of
           file; a session, "<length>\\n" + request (JSON) for each cell,
           until end of file (the supervisor's header says which; a JSON
           request starts with "{", a session's with a digit)
  5, 6     the stdout and stderr capture pipes

Before the request it loads the libraries named by PYEXEC_PRELOAD ("none", or
names joined by commas, e.g. "numpy,matplotlib"), warms its code paths,
creates its working directory (workdir.py) and sends "ready". Then it runs
the user's code as __main__ (runner_child.py) and sends "report" and
"outputs", once, or in a session once per cell. Everything after the user's
code starts is untrusted: the supervisor only bounds it and the service
checks it.
"""

import os
import sys
import time

HARNESS_DIR = "/opt/pyexec"
sys.path.insert(0, HARNESS_DIR)

import jsonlite  # noqa: E402  (from HARNESS_DIR)

RES_FD, REQ_FD, OUT_FD, ERR_FD = 3, 4, 5, 6
# How long the child waits to be killed once it has reported (the supervisor
# answers in milliseconds; the wait only keeps the exit off its way). Code
# that hides its own report ends this much later, as a plain exit.
LINGER_SECONDS = 2
# How the ready message names the preload of a bare sandbox (Go: preloadName).
PRELOAD_NONE = "none"
# The libraries whose versions the ready message reports (Go: PreloadFull).
VERSIONED_LIBRARIES = ("numpy", "pandas", "matplotlib", "plotly")




def prepare_matplotlib_config():
    """matplotlib wants a writable config dir; seed it with the font cache
    built into the image so no font scan happens at run time."""
    target = "/tmp/.matplotlib"
    os.environ["MPLCONFIGDIR"] = target
    src = os.path.join(HARNESS_DIR, "mplcache")
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
    """Imports the libraries so user code that needs them starts warm. A
    library that fails to import is left for the code to import, and fail,
    itself. (main puts back how warnings are shown.)"""
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
    for name in VERSIONED_LIBRARIES:
        mod = sys.modules.get(name)
        if mod is not None:
            versions[name] = getattr(mod, "__version__", "")
    return versions


def memory_usage():
    """Current memory use of the whole container in bytes, or None."""
    for path in ("/sys/fs/cgroup/memory/memory.usage_in_bytes", "/sys/fs/cgroup/memory.current"):
        try:
            with open(path) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            continue
    return None


def read_request(first):
    """The single-shot request: first (what was read already) and the rest
    up to the end of file, parsed. The raw bytes are dropped as soon as they
    are text, and the text once parsed, so a request with large files is
    held at most twice."""
    data = first
    chunk = os.read(REQ_FD, 1 << 16)
    if chunk:
        data = bytearray(first)
        while chunk:
            data += chunk
            chunk = os.read(REQ_FD, 1 << 20)
    os.close(REQ_FD)
    text = data.decode("utf-8")
    del data, first
    return jsonlite.loads(text)


# The longest length line of a session's request ("<length>\\n").
MAX_LENGTH_LINE = 24


def session_requests(pending):
    """Yields each cell's request body from the request pipe, as a list
    holding one bytearray (the taker pops it, so it is freed once parsed);
    pending is what was read already. Ends at the end of file."""
    while True:
        while b"\n" not in pending:
            if len(pending) > MAX_LENGTH_LINE:
                return
            chunk = os.read(REQ_FD, 1 << 16)
            if not chunk:
                return
            pending += chunk
        nl = pending.index(b"\n")
        length = int(pending[:nl])
        body = bytearray(length)
        have = min(length, len(pending) - nl - 1)
        body[:have] = pending[nl + 1 : nl + 1 + have]
        pending = pending[nl + 1 + have :]
        view = memoryview(body)
        while have < length:
            n = os.readv(REQ_FD, [view[have:]])
            if n == 0:
                return
            have += n
        del view
        box = [body]
        del body
        yield box
        del box


def main():
    t0 = time.monotonic()
    import warnings

    # Python's own, before any library is loaded (see below).
    formatwarning = warnings.formatwarning
    prepare_matplotlib_config()
    libs = parse_preload(os.environ.get("PYEXEC_PRELOAD"))
    import runner_child

    preload(libs)
    runner_child.prepare(preloaded=libs)
    # What is loaded now lives as long as the process: keep it out of the
    # collector, so a full collection while the code runs does not walk the
    # libraries again.
    import gc

    gc.freeze()
    preload_ms = round((time.monotonic() - t0) * 1000, 3)
    os.dup2(OUT_FD, 1)
    os.dup2(ERR_FD, 2)
    os.close(OUT_FD)
    os.close(ERR_FD)
    runner_child.setup()
    runner_child.warm()
    # plotly.tools, loaded by the preload or by the output hooks' warm-up,
    # replaces warnings.formatwarning for the whole process: put Python's
    # own back, so a warm sandbox shows the code's warnings exactly as a
    # cold one does. (showwarning stays: runner_child.route_warnings
    # installs its own, which puts warnings at the user's line.)
    warnings.formatwarning = formatwarning
    ready = {
        "preload": ",".join(libs) or PRELOAD_NONE,
        "preload_ms": preload_ms,
        "versions": library_versions(),
        "memory_bytes": memory_usage(),
    }
    payload = jsonlite.dumps(ready, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    runner_child.send_message(RES_FD, "ready", payload.encode("utf-8"))
    first = os.read(REQ_FD, 1 << 16)
    if first[:1].isdigit():
        serve_session(runner_child, bytearray(first))
        return
    request = read_request(first)
    del first
    runner_child.run(request, RES_FD)
    # Done: close the pipes, which is what the supervisor answers on, and
    # wait for its SIGKILL. Exiting here would make the kernel tear this
    # process down (ms in a VM) on the CPU the supervisor needs to answer.
    for fd in (1, 2, RES_FD):
        try:
            os.close(fd)
        except OSError:
            pass
    time.sleep(LINGER_SECONDS)


def serve_session(runner_child, pending):
    """Serves a session's cells until the supervisor closes the request
    pipe. SIGINT (the supervisor's interrupt at a cell's deadline) is a
    KeyboardInterrupt only while the user's code runs."""
    runner_child._ignore_sigint()
    session = runner_child.Session()
    for box in session_requests(pending):
        session.handle(box, RES_FD)


if __name__ == "__main__":
    code = 0
    try:
        main()
    except BaseException:  # the runner reports user errors itself
        code = 70
    finally:
        os._exit(code)
