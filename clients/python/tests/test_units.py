"""Unit tests of the parts that need no service: the SSE parser on canned
bytes, error mapping, Retry-After parsing, file encoding, and the client's
streaming and retry against a tiny local HTTP server (standard library).
The real-service tests are in test_client.py."""

import base64
import http.server
import json
import os
import pathlib
import tempfile
import threading
import time
import unittest

import _path  # noqa: F401

from pyexec_client import (BadRequest, Client, ConnectionFailed, NotFound, PyexecError,
                           RateLimited, ServerError, Unauthorized)
from pyexec_client.client import _files_body
from pyexec_client.errors import error_from_response, parse_retry_after
from pyexec_client.sse import iter_sse


def lines_of(data):
    """A readline over canned bytes."""
    import io
    return io.BytesIO(data).readline


class SSEParserTest(unittest.TestCase):
    def test_events_comments_and_multiline(self):
        data = (": keepalive\n\n"
                "event: stdout\ndata: {\"text\": \"你好\\n\"}\n\n"
                "id: 7\r\nevent: stderr\r\ndata:{\"text\":\"x\"}\r\n\r\n"
                "data: line1\ndata: line2\n\n"
                "event: empty\n\n"
                "event: result\ndata: {}\n\n").encode("utf-8")
        evs = list(iter_sse(lines_of(data)))
        self.assertEqual([e.event for e in evs], ["stdout", "stderr", "message", "result"])
        self.assertEqual(json.loads(evs[0].data), {"text": "你好\n"})
        self.assertEqual(evs[1].id, "7")
        self.assertEqual(evs[1].data, '{"text":"x"}')
        self.assertEqual(evs[2].data, "line1\nline2")
        self.assertEqual(evs[2].id, "7", "id persists to later events")

    def test_unterminated_event_dropped_and_bom(self):
        data = "\ufeffevent: a\ndata: 1\n\nevent: b\ndata: 2\n".encode("utf-8")
        evs = list(iter_sse(lines_of(data)))
        self.assertEqual([(e.event, e.data) for e in evs], [("a", "1")])


class ErrorMappingTest(unittest.TestCase):
    def body(self, code, msg="m"):
        return json.dumps({"error": {"code": code, "message": msg}, "request_id": "rid-1"}).encode()

    def test_classes(self):
        cases = {400: BadRequest, 413: BadRequest, 422: BadRequest, 401: Unauthorized,
                 404: NotFound, 410: NotFound, 429: RateLimited, 500: ServerError,
                 503: ServerError, 409: PyexecError}
        for status, cls in cases.items():
            e = error_from_response(status, self.body("c%d" % status), {})
            self.assertIs(type(e), cls, status)
            self.assertEqual((e.status, e.code, e.message, e.request_id), (status, "c%d" % status, "m", "rid-1"))
            self.assertIn("c%d" % status, str(e))

    def test_retry_after_and_plain_body(self):
        e = error_from_response(503, b"<html>bad gateway</html>", {"Retry-After": "2", "X-Request-ID": "h"})
        self.assertIsInstance(e, ServerError)
        self.assertEqual(e.retry_after, 2.0)
        self.assertEqual(e.request_id, "h")
        self.assertIn("bad gateway", e.message)
        self.assertIsNone(e.code)

    def test_parse_retry_after(self):
        self.assertEqual(parse_retry_after("1"), 1.0)
        self.assertEqual(parse_retry_after(" 2.5 "), 2.5)
        self.assertIsNone(parse_retry_after(None))
        self.assertIsNone(parse_retry_after("soon"))
        self.assertEqual(parse_retry_after("-3"), 0.0)
        now = 1700000000.0
        date = "Tue, 14 Nov 2023 22:13:40 GMT"  # now + 20 s
        self.assertAlmostEqual(parse_retry_after(date, now=now), 20.0, places=3)


class FilesTest(unittest.TestCase):
    def test_kinds(self):
        with tempfile.TemporaryDirectory() as d:
            p = pathlib.Path(d) / "f.bin"
            p.write_bytes(b"\x00\xff")
            body = _files_body({"a.txt": "你好", "b.bin": b"\x01", "c.bin": p})
        got = {f["name"]: base64.b64decode(f["content"]) for f in body}
        self.assertEqual(got, {"a.txt": "你好".encode(), "b.bin": b"\x01", "c.bin": b"\x00\xff"})
        with self.assertRaises(TypeError):
            _files_body({"x": 3})


class ModelsTest(unittest.TestCase):
    def test_output_file_save_stays_in_dir(self):
        from pyexec_client import OutputFile
        with tempfile.TemporaryDirectory() as d:
            f = OutputFile({"name": "sub/../../逃逸.txt", "size": 2, "content": base64.b64encode(b"hi").decode()})
            path = f.save(d)
            self.assertEqual(os.path.dirname(path), d)
            self.assertEqual(pathlib.Path(path).read_bytes(), b"hi")
            with self.assertRaises(ValueError):
                OutputFile({"name": "..", "content": ""}).save(d)

    def test_chart_kinds(self):
        from pyexec_client import Chart
        fig = {"data": [{"type": "bar", "x": ["甲"]}], "layout": {}}
        c = Chart({"type": "plotly", "format": "json", "data": fig})
        self.assertEqual(json.loads(c.to_bytes().decode("utf-8")), fig)
        refused = Chart({"type": "matplotlib", "format": "svg", "data": None, "error": "script"})
        with self.assertRaises(ValueError) as cm:
            refused.to_bytes()
        self.assertIn("script", str(cm.exception))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    calls = []

    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        _Handler.calls.append((self.path, self.headers))
        if self.path == "/execute" and self.headers.get("Accept") == "text/event-stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                self._chunk("event: stdout\ndata: %s\n\n" % json.dumps({"text": "%d\n" % i}))
                time.sleep(0.3)
            self._chunk(": keepalive\n\n")
            body = {"status": "success", "output": {"stdout": "0\n1\n2\n"}, "request_id": "r"}
            self._chunk("event: result\ndata: %s\n\n" % json.dumps(body))
            self._chunk("")
            return
        if self.path == "/sessions":
            # Refuse twice, then create.
            if sum(1 for p, _ in _Handler.calls if p == "/sessions") <= 2:
                self._json(429, {"error": {"code": "too_many_sessions", "message": "full"}},
                           {"Retry-After": "0.2"})
                return
            self._json(201, {"id": "s1", "timeout": 30})
            return
        self._json(401, {"error": {"code": "unauthorized", "message": "no key"}, "request_id": "x"})

    def _chunk(self, s):
        b = s.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))
        self.wfile.flush()

    def _json(self, status, body, headers=None):
        b = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(b)


class LocalServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        cls.thread = threading.Thread(target=cls.server.serve_forever, daemon=True)
        cls.thread.start()
        cls.url = "http://127.0.0.1:%d" % cls.server.server_address[1]

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()

    def setUp(self):
        _Handler.calls.clear()

    def test_stream_reads_incrementally(self):
        start = time.monotonic()
        times = []
        events = []
        with Client(self.url).stream("print(1)") as st:
            for ev in st:
                times.append(time.monotonic() - start)
                events.append(ev)
        self.assertEqual([e.event for e in events], ["stdout"] * 3 + ["result"])
        self.assertEqual("".join(e.text for e in events[:3]), "0\n1\n2\n")
        self.assertEqual(st.result.stdout, "0\n1\n2\n")
        # The first chunk came before the server slept 0.9 s in all.
        self.assertLess(times[0], times[-1] - 0.5, times)

    def test_retry_honours_retry_after(self):
        with self.assertRaises(RateLimited) as cm:
            Client(self.url).session()
        self.assertEqual(cm.exception.retry_after, 0.2)
        _Handler.calls.clear()
        start = time.monotonic()
        s = Client(self.url, retries=3).session()
        self.assertEqual(s.id, "s1")
        self.assertGreaterEqual(time.monotonic() - start, 0.35)
        self.assertEqual(sum(1 for p, _ in _Handler.calls if p == "/sessions"), 3)
        s.closed = True  # no DELETE route here

    def test_headers_and_401(self):
        c = Client(self.url, api_key="k-secret", request_id="rid-42")
        with self.assertRaises(Unauthorized) as cm:
            c.validate("x")
        self.assertEqual(cm.exception.code, "unauthorized")
        self.assertNotIn("k-secret", repr(c))
        _, headers = _Handler.calls[-1]
        self.assertEqual(headers.get("Authorization"), "Bearer k-secret")
        self.assertEqual(headers.get("X-Request-ID"), "rid-42")

    def test_connection_refused(self):
        with self.assertRaises(ConnectionFailed) as cm:
            Client("http://127.0.0.1:1", timeout=5).execute("x")
        self.assertIsNone(cm.exception.status)


if __name__ == "__main__":
    unittest.main()
