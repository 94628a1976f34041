"""JSON for the harness without importing the json package.

Importing json pulls in re, enum and functools: about 15 ms of CPU in every
sandbox, a third of what the harness adds to a bare interpreter. This module
drives the same C accelerator (_json) that json itself uses, with json's
semantics for the arguments the harness passes, and falls back to json when
the accelerator is missing or the arguments are not covered.
"""

try:
    import _json

    _make_encoder = _json.make_encoder
    _make_scanner = _json.make_scanner
    _encode_str = _json.encode_basestring
    _encode_ascii = _json.encode_basestring_ascii
except (ImportError, AttributeError):  # pragma: no cover - not CPython
    _make_encoder = None


def _no_default(obj):
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


def dumps(obj, ensure_ascii=True, allow_nan=True, separators=(", ", ": "), default=None):
    """json.dumps(obj, ensure_ascii=..., allow_nan=..., separators=...,
    default=...), compact or not, never indented or sorted."""
    if _make_encoder is None:
        import json

        return json.dumps(
            obj, ensure_ascii=ensure_ascii, allow_nan=allow_nan, separators=separators, default=default
        )
    item_sep, key_sep = separators
    encode = _make_encoder(
        {},  # markers: circular references raise ValueError, as in json
        default or _no_default,
        _encode_ascii if ensure_ascii else _encode_str,
        None,  # indent
        key_sep,
        item_sep,
        False,  # sort_keys
        False,  # skipkeys
        allow_nan,
    )
    return "".join(encode(obj, 0))


class _Context:
    """The decoder settings _json.make_scanner reads (json.JSONDecoder's)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name):
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


_WHITESPACE = " \t\n\r"
_scan = _make_scanner(_Context) if _make_encoder is not None else None


def loads(data):
    """json.loads(data) for str or UTF-8 bytes."""
    if isinstance(data, (bytes, bytearray)):
        data = data.decode("utf-8")
    if _make_encoder is None:
        import json

        return json.loads(data)
    start = len(data) - len(data.lstrip(_WHITESPACE))
    try:
        obj, end = _scan(data, start)
    except StopIteration as exc:
        raise ValueError("invalid JSON at %d" % exc.value) from None
    if data[end:].strip(_WHITESPACE):
        raise ValueError("extra data after JSON at %d" % end)
    return obj
