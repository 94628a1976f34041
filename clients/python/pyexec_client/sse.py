"""A Server-Sent Events parser (the WHATWG event-stream format) that reads
a response line by line, yielding each event as soon as its blank line
arrives: nothing waits for the end of the body."""

__all__ = ["iter_sse", "RawEvent"]


class RawEvent:
    """One dispatched event: its name (``message`` when none was given), its
    data (data lines joined by newlines) and its last ``id``."""

    __slots__ = ("event", "data", "id")

    def __init__(self, event, data, id):
        self.event = event
        self.data = data
        self.id = id

    def __repr__(self):
        return "RawEvent(%r, %r)" % (self.event, self.data[:60])


def iter_sse(readline):
    """Yield RawEvents from readline, a callable returning the next line as
    bytes (with its line ending) and b"" at the end of the stream, such as
    ``response.readline``.

    Comment lines (``: keepalive``) are skipped; an event is dispatched on
    its blank line; an event without data lines is not dispatched, and an
    unterminated event at the end of the stream is dropped (per the spec).
    """
    event = ""
    data = []
    last_id = None
    first = True
    while True:
        raw = readline()
        if not raw:
            return
        line = raw.decode("utf-8", "replace")
        if first:
            first = False
            if line.startswith("\ufeff"):
                line = line[1:]
        if line.endswith("\r\n"):
            line = line[:-2]
        elif line.endswith("\n") or line.endswith("\r"):
            line = line[:-1]
        if line == "":
            if data:
                yield RawEvent(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            if "\x00" not in value:
                last_id = value
        # "retry" and unknown fields are ignored.
