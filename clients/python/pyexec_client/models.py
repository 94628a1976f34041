"""The objects an execution answers: Result, Chart, DataFrame, OutputFile,
ExecError, Validation, and the stream's Event.

Each keeps the JSON it came from in ``.raw``, so nothing the service sends is
lost when a field is not modelled here.
"""

import base64
import json
import os

from .errors import PyexecError, error_from_response

__all__ = ["Result", "Chart", "DataFrame", "OutputFile", "ExecError", "Validation", "Event"]


class ExecError:
    """How the user's code failed: exception type, message, traceback, line."""

    def __init__(self, raw):
        self.raw = raw
        self.type = raw.get("type", "")
        self.message = raw.get("message", "")
        self.traceback = raw.get("traceback", "")
        self.line = raw.get("line")
        self.column = raw.get("column")

    def __repr__(self):
        return "ExecError(%s: %s)" % (self.type, self.message)


class Chart:
    """One chart: a matplotlib image (``format`` png or svg, base64 data) or a
    plotly figure (``format`` json, the figure object as data)."""

    def __init__(self, raw):
        self.raw = raw
        self.type = raw.get("type", "")
        self.format = raw.get("format", "")
        self.data = raw.get("data")
        self.width = raw.get("width")
        self.height = raw.get("height")
        self.title = raw.get("title")
        # error: why the service refused the chart (data is then None).
        self.error = raw.get("error")

    @property
    def mime(self):
        """The MIME type of :meth:`to_bytes`."""
        return {"png": "image/png", "svg": "image/svg+xml", "json": "application/json"}.get(
            self.format, "application/octet-stream")

    def to_bytes(self):
        """The chart file: PNG or SVG bytes, or a plotly figure as UTF-8 JSON.

        Raises ValueError when the service refused the chart (see ``error``).
        """
        if self.data is None:
            raise ValueError("chart has no data: %s" % (self.error or "refused by the service"))
        if self.format == "json" or not isinstance(self.data, str):
            return json.dumps(self.data, ensure_ascii=False).encode("utf-8")
        return base64.b64decode(self.data, validate=True)

    def save(self, path):
        """Write :meth:`to_bytes` to path (a file name, or a directory where
        ``chart.<format>`` is written); returns the path written."""
        path = os.fspath(path)
        if os.path.isdir(path):
            ext = self.format if self.format.isalnum() else "bin"
            path = os.path.join(path, "chart." + ext)
        data = self.to_bytes()
        with open(path, "wb") as f:
            f.write(data)
        return path

    def __repr__(self):
        return "Chart(%s %s %sx%s)" % (self.type, self.format, self.width, self.height)


def _label(v):
    # A MultiIndex level tuple arrives as a JSON list.
    return tuple(v) if isinstance(v, list) else v


class DataFrame:
    """A pandas DataFrame or Series as the service renders it: its first rows
    (``data``, a list of rows), ``columns``, ``index``, ``dtypes`` and ``html``.

    ``to_pandas()`` rebuilds a ``pandas.DataFrame`` (or ``Series``) of the rows
    shown when pandas is installed.
    """

    def __init__(self, raw):
        self.raw = raw
        self.name = raw.get("name", "")
        self.kind = raw.get("kind", "dataframe")
        self.shape = raw.get("shape") or []
        self.columns = raw.get("columns") or []
        self.dtypes = raw.get("dtypes") or {}
        self.index = raw.get("index") or {}
        self.data = raw.get("data") or []
        self.total_rows = raw.get("total_rows", len(self.data))
        self.truncated = bool(raw.get("truncated"))
        self.columns_truncated = bool(raw.get("columns_truncated"))
        self.html = raw.get("html", "")

    def records(self):
        """The rows shown as a list of dicts keyed by column label."""
        cols = [_label(c) for c in self.columns]
        return [dict(zip(cols, row)) for row in self.data]

    def to_pandas(self):
        """The rows shown as a ``pandas.DataFrame`` (a ``Series`` for a Series).

        Only the rows the service sent are there (``truncated`` says whether
        that is all of them). Raises ImportError when pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError(
                "DataFrame.to_pandas() needs pandas, which is not installed: "
                "pip install pandas (or use .data / .records() / .html)") from e
        cols = [_label(c) for c in self.columns]
        if cols and all(isinstance(c, tuple) for c in cols):
            columns = pd.MultiIndex.from_tuples(cols)
        else:
            columns = pd.Index(cols, dtype=object) if cols else None
        index = self._pandas_index(pd)
        df = pd.DataFrame(self.data, columns=columns, index=index)
        for label, key in zip(df.columns, self.columns):
            dtype = self.dtypes.get(key if isinstance(key, str) else json.dumps(key, separators=(",", ":"), ensure_ascii=False))
            if not dtype or dtype == "object":
                continue
            try:
                if dtype.startswith("datetime64"):
                    df[label] = pd.to_datetime(df[label])
                else:
                    df[label] = df[label].astype(dtype)
            except (TypeError, ValueError):
                pass  # keep what JSON gave (e.g. NaN in an int column)
        if self.kind == "series":
            s = df.iloc[:, 0] if len(df.columns) else pd.Series([], dtype=object)
            s.name = None if (not cols or cols[0] == 0) else cols[0]
            return s
        return df

    def _pandas_index(self, pd):
        values = self.index.get("values")
        if values is None:
            return None
        kind = self.index.get("type", "")
        if kind == "MultiIndex":
            return pd.MultiIndex.from_tuples([tuple(v) for v in values], names=self.index.get("names"))
        name = _label(self.index.get("name"))
        if kind == "DatetimeIndex":
            return pd.DatetimeIndex(pd.to_datetime(values), name=name)
        return pd.Index(values, name=name)

    def __repr__(self):
        return "DataFrame(%r, shape=%r)" % (self.name, self.shape)


class OutputFile:
    """A file the code wrote under ``outputs/`` (name relative to it)."""

    def __init__(self, raw):
        self.raw = raw
        self.name = raw.get("name", "")
        self.size = raw.get("size", 0)
        self.mime = raw.get("mime", "")
        content = raw.get("content")
        self.content = base64.b64decode(content) if content else b""

    def text(self, encoding="utf-8"):
        """The content decoded as text."""
        return self.content.decode(encoding)

    def save(self, path):
        """Write the content to path (a file name, or a directory where the
        file's own base name is used); returns the path written."""
        path = os.fspath(path)
        if os.path.isdir(path):
            base = os.path.basename(self.name.replace("\\", "/"))
            if base in ("", ".", ".."):
                raise ValueError("output file name %r has no usable base name; give a file path" % self.name)
            path = os.path.join(path, base)
        with open(path, "wb") as f:
            f.write(self.content)
        return path

    def __repr__(self):
        return "OutputFile(%r, %d bytes)" % (self.name, self.size)


class Result:
    """The answer of an execution (POST /execute or a session cell).

    ``status`` is ``success``, ``error`` (the code raised: see ``error``) or
    ``timeout``. Attributes mirror the JSON: ``stdout``, ``stderr``,
    ``charts`` (list of :class:`Chart`), ``dataframes`` (list of
    :class:`DataFrame`), ``variables`` (dict of name -> summary dict),
    ``value`` (the final expression's ``{"type", "repr"}`` or None),
    ``files`` (list of :class:`OutputFile`), ``error`` (:class:`ExecError` or
    None), ``resources`` (dict), ``execution_time`` (ms), ``request_id``,
    ``session`` (dict, for a session cell) and ``raw`` (the whole JSON body).
    """

    def __init__(self, raw):
        self.raw = raw
        out = raw.get("output") or {}
        self.status = raw.get("status", "")
        self.execution_time = raw.get("execution_time")
        self.stdout = out.get("stdout", "")
        self.stderr = out.get("stderr", "")
        self.stdout_truncated = bool(out.get("stdout_truncated"))
        self.stderr_truncated = bool(out.get("stderr_truncated"))
        self.charts = [Chart(c) for c in out.get("charts") or []]
        self.dataframes = [DataFrame(d) for d in out.get("dataframes") or []]
        self.variables = out.get("variables") or {}
        self.value = out.get("result")
        self.files = [OutputFile(f) for f in out.get("files") or []]
        err = raw.get("error")
        self.error = ExecError(err) if isinstance(err, dict) else None
        self.violations = raw.get("violations") or []
        self.resources = raw.get("resources") or {}
        self.request_id = raw.get("request_id")
        self.session = raw.get("session")

    @property
    def ok(self):
        """True when the code ran to the end without raising."""
        return self.status == "success"

    def file(self, name):
        """The output file called name (relative to outputs/), or KeyError."""
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(name)

    def __repr__(self):
        return "Result(status=%r, stdout=%r)" % (self.status, self.stdout[:60])


class Validation:
    """The answer of POST /validate: ``valid`` and the ``errors`` (dicts)."""

    def __init__(self, raw):
        self.raw = raw
        self.valid = bool(raw.get("valid"))
        self.errors = raw.get("errors") or []
        self.request_id = raw.get("request_id")

    def __bool__(self):
        return self.valid

    def __repr__(self):
        return "Validation(valid=%r, errors=%d)" % (self.valid, len(self.errors))


class Event:
    """One Server-Sent Event of a streamed execution.

    ``event`` is ``stdout``, ``stderr``, ``chart``, ``result`` or ``error``
    (or a name a newer service adds); ``data`` is its decoded JSON. The
    shortcuts are ``text`` (stdout/stderr chunk), ``chart`` (:class:`Chart`),
    ``result`` (:class:`Result`, on the last event) and ``exception`` (the
    :class:`PyexecError` of an ``error`` event).
    """

    def __init__(self, event, data, id=None):
        self.event = event
        self.data = data
        self.id = id
        d = data if isinstance(data, dict) else {}
        self.text = d.get("text") if event in ("stdout", "stderr") else None
        self.chart = Chart(d) if event == "chart" else None
        self.result = Result(d) if event == "result" else None
        self.exception = None
        if event == "error":
            status = d.get("status") or 500
            self.exception = error_from_response(status, json.dumps(d), {})
            if not isinstance(self.exception, PyexecError):  # pragma: no cover
                self.exception = PyexecError(str(d), status=status)

    def __repr__(self):
        if self.text is not None:
            return "Event(%s, %r)" % (self.event, self.text)
        return "Event(%s)" % self.event
