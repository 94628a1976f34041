"""The HTTP client: Client (one-shot executions, validation, templates),
Session (a stateful interpreter with files) and Stream (a streamed
execution's events). Standard library only (urllib / http.client)."""

import base64
import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request

from . import __version__
from .errors import ConnectionFailed, PyexecError, RateLimited, ServerError, error_from_response
from .models import Event, Result, Validation
from .sse import iter_sse

__all__ = ["Client", "Session", "Stream", "DEFAULT_TIMEOUT"]

#: Seconds a request may wait on the socket (connect, or silence between two
#: reads) before it fails, unless the call's code timeout needs more.
DEFAULT_TIMEOUT = 120.0

# What the HTTP timeout adds to a code timeout: queueing and container start.
_TIMEOUT_MARGIN = 30.0


def _file_bytes(value):
    """The bytes of an input file given as bytes, str (its UTF-8 text), a
    path (pathlib.Path or any os.PathLike) or a binary file object."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, os.PathLike):
        with open(value, "rb") as f:
            return f.read()
    if hasattr(value, "read"):
        data = value.read()
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)
    raise TypeError("a file is bytes, str (its text), a pathlib.Path or a file object, not %s"
                    % type(value).__name__)


def _files_body(files):
    """The ``files`` of a request body from {name: bytes|str|Path} (or pairs)."""
    if not files:
        return None
    items = files.items() if hasattr(files, "items") else files
    return [{"name": name, "content": base64.b64encode(_file_bytes(data)).decode("ascii")}
            for name, data in items]


def _execute_body(code, timeout, files, chart_format):
    body = {"code": code}
    if timeout is not None:
        body["timeout"] = timeout
    if chart_format is not None:
        body["chart_format"] = chart_format
    fb = _files_body(files)
    if fb:
        body["files"] = fb
    return body


class Client:
    """A client of one pyexec service.

    Args:
        base_url: the service's address, e.g. ``http://localhost:8000``.
        api_key: sent as ``Authorization: Bearer <key>`` when given.
        timeout: socket timeout in seconds for each request (connect, and
            the longest silence while waiting for an answer); an execution
            waits at least its code timeout plus 30 s.
        retries: how many times to retry a request answered 429 or 503,
            waiting ``retry_after`` seconds (1 s when absent, at most
            ``max_retry_wait``) between tries. 0 (the default) never retries.
        max_retry_wait: the longest single wait between retries, in seconds.
        request_id: an ``X-Request-ID`` sent with every request (the
            service echoes it and logs it); each call can also pass its own.
        headers: extra headers sent with every request.
    """

    def __init__(self, base_url, api_key=None, timeout=DEFAULT_TIMEOUT, retries=0,
                 max_retry_wait=30.0, request_id=None, headers=None):
        if not base_url:
            raise ValueError("base_url is required, e.g. http://localhost:8000")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self.request_id = request_id
        self.headers = dict(headers or {})
        self._opener = urllib.request.build_opener()

    def __repr__(self):
        return "Client(%r)" % self.base_url  # never the key

    # --- HTTP -----------------------------------------------------------

    def _request_headers(self, request_id, extra):
        h = {"User-Agent": "pyexec-client-python/" + __version__}
        h.update(self.headers)
        if self.api_key:
            h["Authorization"] = "Bearer " + self.api_key
        rid = request_id or self.request_id
        if rid:
            h["X-Request-ID"] = rid
        if extra:
            h.update(extra)
        return h

    def _retryable(self, err):
        return isinstance(err, RateLimited) or (isinstance(err, ServerError) and err.status == 503)

    def _open(self, method, path, body=None, headers=None, timeout=None, request_id=None):
        """Send a request and return the open 2xx response; a non-2xx answer
        raises its typed PyexecError (after the retries, if any)."""
        url = self.base_url + path
        hdrs = self._request_headers(request_id, headers)
        attempt = 0
        while True:
            req = urllib.request.Request(url, data=body, headers=hdrs, method=method)
            try:
                return self._opener.open(req, timeout=timeout or self.timeout)
            except urllib.error.HTTPError as e:
                try:
                    payload = e.read()
                except (OSError, http.client.HTTPException):
                    payload = b""
                finally:
                    e.close()
                err = error_from_response(e.code, payload, e.headers)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                reason = getattr(e, "reason", e)
                raise ConnectionFailed("cannot reach %s: %s" % (self.base_url, reason),
                                       code="connection_failed") from e
            if attempt >= self.retries or not self._retryable(err):
                raise err
            attempt += 1
            wait = 1.0 if err.retry_after is None else err.retry_after
            time.sleep(min(wait, self.max_retry_wait))

    def _call(self, method, path, payload=None, timeout=None, request_id=None):
        """A JSON request; returns the decoded JSON answer (None for 204)."""
        body = None
        headers = {"Accept": "application/json"}
        if payload is not None:
            body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        resp = self._open(method, path, body, headers, timeout, request_id)
        with resp:
            try:
                data = resp.read()
            except (OSError, http.client.HTTPException) as e:
                raise ConnectionFailed("reading the answer of %s %s: %s" % (method, path, e),
                                       code="connection_failed") from e
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError as e:
            raise PyexecError("the answer of %s %s is not JSON" % (method, path),
                              status=resp.status, code="invalid_response") from e

    def _exec_timeout(self, timeout):
        return max(self.timeout, (timeout or 0) + _TIMEOUT_MARGIN)

    def _stream(self, path, body, timeout, request_id):
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
        # The service sends a keepalive comment every 15 s of silence, so the
        # plain socket timeout bounds a stalled stream, not a long run.
        resp = self._open("POST", path, data, headers, self._exec_timeout(timeout), request_id)
        return Stream(resp)

    # --- API ------------------------------------------------------------

    def execute(self, code, timeout=None, files=None, chart_format=None, request_id=None):
        """Run code in a fresh sandbox (POST /execute) and return its Result.

        Args:
            code: the Python source.
            timeout: the code's time limit in seconds (the service's default when None).
            files: input files placed in the working directory,
                {name: bytes | str (text) | pathlib.Path}.
            chart_format: ``"png"`` (default) or ``"svg"`` for matplotlib charts.
            request_id: this request's X-Request-ID.

        Code that raises or times out is a Result with status ``error`` or
        ``timeout``; a refused request raises a PyexecError subclass.
        """
        body = _execute_body(code, timeout, files, chart_format)
        return Result(self._call("POST", "/execute", body, self._exec_timeout(timeout), request_id))

    def stream(self, code, timeout=None, files=None, chart_format=None, request_id=None):
        """Run code like :meth:`execute`, streaming its output: returns a
        :class:`Stream`, an iterator of :class:`~pyexec_client.Event` ending
        with a ``result`` (or ``error``) event."""
        body = _execute_body(code, timeout, files, chart_format)
        return self._stream("/execute", body, timeout, request_id)

    def validate(self, code, request_id=None):
        """Check code without running it (POST /validate)."""
        return Validation(self._call("POST", "/validate", {"code": code}, request_id=request_id))

    def templates(self, request_id=None):
        """The example programs (GET /templates), a list of dicts with id,
        title, description, category, code (and files for some)."""
        return self._call("GET", "/templates", request_id=request_id)["templates"]

    def template(self, template_id, request_id=None):
        """One template by id (GET /templates/{id}); NotFound when unknown."""
        return self._call("GET", "/templates/" + urllib.parse.quote(template_id, safe=""),
                          request_id=request_id)

    def health(self, request_id=None):
        """The service's health (GET /health) as a dict."""
        return self._call("GET", "/health", request_id=request_id)

    def session(self, timeout=None, request_id=None):
        """Create a session (POST /sessions): one interpreter whose state and
        files persist across cells. Use it as a context manager so that it
        is deleted at the end::

            with client.session() as s:
                s.run("x = 1")
                print(s.run("x + 1").value)

        Args:
            timeout: the default time limit of its cells, in seconds.
        """
        payload = {"timeout": timeout} if timeout is not None else {}
        created = self._call("POST", "/sessions", payload, request_id=request_id)
        return Session(self, created)


class Session:
    """A session created by :meth:`Client.session`.

    Attributes: ``id``, ``timeout`` (default cell time limit), ``expires_at``
    (ISO 8601 string) and ``raw`` (the creation answer).
    """

    def __init__(self, client, created):
        self.client = client
        self.raw = created
        self.id = created["id"]
        self.timeout = created.get("timeout")
        self.expires_at = created.get("expires_at")
        self.closed = False
        self._path = "/sessions/" + urllib.parse.quote(self.id, safe="")

    def __repr__(self):
        return "Session(%r)" % self.id

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _cell_timeout(self, timeout):
        return timeout if timeout is not None else self.timeout

    def run(self, code, files=None, timeout=None, chart_format=None, request_id=None):
        """Run a cell (POST /sessions/{id}/execute) and return its Result;
        ``result.session`` says whether the cell ended the session."""
        body = _execute_body(code, timeout, files, chart_format)
        raw = self.client._call("POST", self._path + "/execute", body,
                                self.client._exec_timeout(self._cell_timeout(timeout)), request_id)
        return Result(raw)

    def stream(self, code, files=None, timeout=None, chart_format=None, request_id=None):
        """Run a cell, streaming its events (see :meth:`Client.stream`)."""
        body = _execute_body(code, timeout, files, chart_format)
        return self.client._stream(self._path + "/execute", body, self._cell_timeout(timeout), request_id)

    def _file_path(self, name):
        return self._path + "/files/" + urllib.parse.quote(name, safe="/")

    def upload(self, name, data_or_path, request_id=None):
        """Store a file in the session's working directory
        (PUT /sessions/{id}/files/{name}). data_or_path is bytes, str (the
        file's text, UTF-8), a pathlib.Path or a binary file object.
        Returns ``{"name", "size"}``."""
        data = _file_bytes(data_or_path)
        resp = self.client._open("PUT", self._file_path(name), data,
                                 {"Content-Type": "application/octet-stream", "Accept": "application/json"},
                                 request_id=request_id)
        with resp:
            return json.loads(resp.read() or b"{}")

    def download(self, name, request_id=None):
        """The bytes of a file of the session (GET /sessions/{id}/files/{name});
        name is a plain name or ``outputs/<name>``."""
        resp = self.client._open("GET", self._file_path(name), headers={"Accept": "*/*"},
                                 request_id=request_id)
        with resp:
            try:
                return resp.read()
            except (OSError, http.client.HTTPException) as e:
                raise ConnectionFailed("downloading %s: %s" % (name, e), code="connection_failed") from e

    def info(self, request_id=None):
        """The session's state (GET /sessions/{id}): executions, memory, files..."""
        return self.client._call("GET", self._path, request_id=request_id)

    def close(self, request_id=None):
        """Delete the session (DELETE /sessions/{id}); a session already gone
        is not an error. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self.client._call("DELETE", self._path, request_id=request_id)
        except PyexecError as e:
            if e.status not in (404, 410):
                raise


class Stream:
    """The events of a streamed execution, in order, read as they arrive.

    Iterate it (once) for :class:`~pyexec_client.Event` objects; the last is
    ``result`` (then ``stream.result`` is the :class:`Result`) or ``error``
    (then ``stream.error`` is its PyexecError). Close it, or leave a ``with``
    block, to stop early: the service then kills the execution.
    """

    def __init__(self, resp):
        self._resp = resp
        self.request_id = resp.headers.get("X-Request-ID")
        self.content_type = resp.headers.get("Content-Type", "")
        self.result = None
        self.error = None
        self._events = self._generate()

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._events)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Stop reading and close the connection."""
        self._events.close()
        self._resp.close()

    def collect(self):
        """Read every remaining event and return the Result; raises the
        PyexecError of an ``error`` event."""
        for _ in self:
            pass
        if self.error is not None:
            raise self.error
        if self.result is None:  # pragma: no cover (the generator raises first)
            raise PyexecError("the stream ended without a result", code="stream_incomplete")
        return self.result

    def _generate(self):
        resp = self._resp
        try:
            if not self.content_type.startswith("text/event-stream"):
                # A service without streaming answered the plain JSON body.
                ev = Event("result", json.loads(resp.read()))
                self.result = ev.result
                yield ev
                return
            try:
                for raw in iter_sse(resp.readline):
                    try:
                        data = json.loads(raw.data)
                    except ValueError:
                        data = raw.data
                    ev = Event(raw.event, data, raw.id)
                    if ev.event == "result":
                        self.result = ev.result
                    elif ev.event == "error":
                        self.error = ev.exception
                    yield ev
                    if ev.event in ("result", "error"):
                        return
            except (OSError, http.client.HTTPException) as e:
                raise ConnectionFailed("the event stream broke: %s" % e, code="connection_failed") from e
            raise PyexecError("the event stream ended before its result event",
                              code="stream_incomplete", request_id=self.request_id)
        finally:
            resp.close()
