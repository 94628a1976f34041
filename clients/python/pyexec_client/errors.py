"""Typed errors for the answers pyexec refuses (every non-2xx status).

Every error the service answers has the JSON body
``{"error": {"code": "...", "message": "..."}, "request_id": "..."}``;
:func:`error_from_response` turns it into the matching subclass of
:class:`PyexecError`. Code that fails inside the sandbox is *not* an error
here: it is a :class:`~pyexec_client.Result` with ``status == "error"``.
"""

import email.utils
import json
import time

__all__ = [
    "PyexecError",
    "BadRequest",
    "Unauthorized",
    "NotFound",
    "RateLimited",
    "ServerError",
    "ConnectionFailed",
    "error_from_response",
    "parse_retry_after",
]


class PyexecError(Exception):
    """A request pyexec refused, or that could not be completed.

    Attributes:
        status: the HTTP status (None when no answer came, e.g. connection refused).
        code: the service's stable snake_case error code (e.g. ``too_many_sessions``).
        message: the service's human-readable message.
        request_id: the ``X-Request-ID`` of the request, to find it in the service's log.
        retry_after: seconds to wait before retrying (from ``Retry-After``), or None.
        violations: the policy violations of an ``invalid_code`` answer (list of dicts).
        body: the decoded JSON body (dict) when there was one.
    """

    def __init__(self, message, status=None, code=None, request_id=None,
                 retry_after=None, violations=None, body=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after
        self.violations = violations or []
        self.body = body

    def __str__(self):
        parts = []
        if self.status is not None:
            parts.append(str(self.status))
        if self.code:
            parts.append(self.code)
        head = " ".join(parts)
        text = "%s: %s" % (head, self.message) if head else str(self.message)
        if self.request_id:
            text += " (request %s)" % self.request_id
        return text


class BadRequest(PyexecError):
    """400, 413 or 422: the request itself is wrong (bad JSON, invalid code, bad file name...)."""


class Unauthorized(PyexecError):
    """401: a missing, unknown or wrong API key (or admin token)."""


class NotFound(PyexecError):
    """404 or 410: no such session, file or template."""


class RateLimited(PyexecError):
    """429: too busy, too many sessions, or a key over its quota; see ``retry_after``."""


class ServerError(PyexecError):
    """5xx: the service or its container engine failed; 503 carries ``retry_after``."""


class ConnectionFailed(PyexecError):
    """No HTTP answer: the service could not be reached, or the connection broke."""


def parse_retry_after(value, now=None):
    """Seconds to wait from a ``Retry-After`` header value (delta-seconds or an
    HTTP date), as a float >= 0; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        secs = when.timestamp() - (time.time() if now is None else now)
    if secs != secs or secs in (float("inf"), float("-inf")):  # NaN, inf
        return None
    return max(0.0, secs)


def _class_for(status):
    if status in (400, 413, 422):
        return BadRequest
    if status == 401:
        return Unauthorized
    if status in (404, 410):
        return NotFound
    if status == 429:
        return RateLimited
    if status is not None and status >= 500:
        return ServerError
    return PyexecError


def error_from_response(status, body, headers=None):
    """The typed error for a non-2xx answer.

    Args:
        status: the HTTP status code.
        body: the response body (bytes or str), normally the service's JSON error.
        headers: the response headers (anything with ``.get``), for
            ``Retry-After`` and ``X-Request-ID``.
    """
    headers = headers or {}
    data = None
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    code = None
    message = None
    violations = None
    request_id = headers.get("X-Request-ID")
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            code = err.get("code")
            message = err.get("message")
            violations = err.get("violations")
        request_id = data.get("request_id") or request_id
    if not message:
        snippet = (body or "").strip()[:200]
        message = snippet or "HTTP %d" % status
    cls = _class_for(status)
    return cls(message, status=status, code=code, request_id=request_id,
               retry_after=parse_retry_after(headers.get("Retry-After")),
               violations=violations, body=data)
