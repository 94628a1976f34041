"""Tests of pyexec_client against a REAL pyexec service on the real engine.

The service's address is PYEXEC_URL (clients/python/client_test.go starts
the binary and sets it; without it every test here is skipped). Optional:
  PYEXEC_API_KEY          the key to send (when the service has keys);
  PYEXEC_TEST_BAD_KEY     set to 1 when the service has keys: test 401;
  PYEXEC_TEST_QUOTA_KEY   a key with per_minute 1: test a quota 429.
The 429 test needs the service started with MAX_SESSIONS=1 (read from
/health), as client_test.go does.
"""

import os
import pathlib
import struct
import tempfile
import threading
import time
import unittest

import _path  # noqa: F401

from pyexec_client import (BadRequest, Client, NotFound, RateLimited, Result, Stream,
                           Unauthorized)

URL = os.environ.get("PYEXEC_URL", "")
KEY = os.environ.get("PYEXEC_API_KEY") or None

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data):
    """(width, height) from a PNG's IHDR chunk; fails on anything else."""
    if data[:8] != PNG_SIGNATURE:
        raise AssertionError("not a PNG: %r" % data[:8])
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:
        raise AssertionError("first chunk is %r (%d bytes), not IHDR" % (kind, length))
    return struct.unpack(">II", data[16:24])


def have_pandas():
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


@unittest.skipUnless(URL, "PYEXEC_URL is not set (client_test.go sets it)")
class ServiceTest(unittest.TestCase):
    def setUp(self):
        self.client = Client(URL, api_key=KEY, timeout=120)

    def settings(self):
        return self.client.health().get("settings") or {}

    def test_execute_hello(self):
        c = Client(URL, api_key=KEY, request_id="pyclient-hello-1")
        r = c.execute("name = '世界'\nprint(f'你好，{name}！')\nlen(name)")
        self.assertIsInstance(r, Result)
        self.assertEqual(r.status, "success", r.raw)
        self.assertTrue(r.ok)
        self.assertEqual(r.stdout, "你好，世界！\n")
        self.assertEqual(r.stderr, "")
        self.assertIsNone(r.error)
        self.assertEqual(r.value, {"type": "int", "repr": "2"})
        self.assertEqual(r.variables["name"]["repr"], "'世界'")
        self.assertEqual(r.request_id, "pyclient-hello-1", "X-Request-ID passes through")
        self.assertGreater(r.resources["memory_limit_bytes"], 0)
        self.assertIsInstance(r.execution_time, int)

    def test_execute_input_files(self):
        # Files as str (text), bytes and pathlib.Path; read with pandas, which
        # the default (strict) policy allows.
        with tempfile.TemporaryDirectory() as d:
            p = pathlib.Path(d) / "本地.csv"
            p.write_bytes("x\n5\n".encode("utf-8"))
            r = self.client.execute(
                "import pandas as pd\n"
                "a = pd.read_csv('说明.csv')\n"
                "b = pd.read_csv('raw.csv')\n"
                "c = pd.read_csv('本地.csv')\n"
                "print(a['名称'][0], a['值'][0], b['a'].sum(), c['x'][0])\n",
                files={"说明.csv": "名称,值\n甲,1\n", "raw.csv": b"a\n1\n2\n", "本地.csv": p})
        self.assertEqual(r.status, "success", r.raw)
        self.assertEqual(r.stdout, "甲 1 3 5\n")

    def test_chart_png(self):
        code = ("import matplotlib.pyplot as plt\n"
                "plt.figure(figsize=(5, 3), dpi=100)\n"
                "plt.plot([1, 2, 3], [3, 1, 2])\n"
                "plt.title('销售趋势')\n"
                "plt.show()\n")
        r = self.client.execute(code)
        self.assertEqual(r.status, "success", r.raw)
        self.assertEqual(len(r.charts), 1)
        ch = r.charts[0]
        self.assertEqual((ch.type, ch.format, ch.mime), ("matplotlib", "png", "image/png"))
        data = ch.to_bytes()
        self.assertEqual(png_size(data), (500, 300))
        self.assertEqual(png_size(data), (ch.width, ch.height))
        with tempfile.TemporaryDirectory() as d:
            path = ch.save(os.path.join(d, "图.png"))
            self.assertEqual(pathlib.Path(path).read_bytes(), data)
            self.assertEqual(pathlib.Path(ch.save(d)).name, "chart.png")

    def test_chart_svg(self):
        r = self.client.execute("import matplotlib.pyplot as plt\nplt.bar(['甲', '乙'], [1, 2])\nplt.show()",
                                chart_format="svg")
        self.assertEqual(r.status, "success", r.raw)
        ch = r.charts[0]
        self.assertEqual((ch.format, ch.mime), ("svg", "image/svg+xml"))
        svg = ch.to_bytes()
        self.assertIn(b"<svg", svg)
        self.assertNotIn(b"<script", svg)

    def test_dataframe(self):
        code = ("import pandas as pd\n"
                "df = pd.DataFrame({'城市': ['北京', '上海', '广州'], '销售额': [1.5, 2.25, None]})\n"
                "df\n")
        r = self.client.execute(code)
        self.assertEqual(r.status, "success", r.raw)
        frames = {d.name: d for d in r.dataframes}
        self.assertIn("_", frames, r.raw["output"]["dataframes"])
        d = frames["_"]
        self.assertEqual(d.shape, [3, 2])
        self.assertEqual(d.columns, ["城市", "销售额"])
        self.assertEqual(d.records(), [{"城市": "北京", "销售额": 1.5}, {"城市": "上海", "销售额": 2.25},
                                       {"城市": "广州", "销售额": None}])
        self.assertIn("<table", d.html)
        if have_pandas():
            import pandas as pd
            pdf = d.to_pandas()
            self.assertIsInstance(pdf, pd.DataFrame)
            self.assertEqual(list(pdf.columns), ["城市", "销售额"])
            self.assertEqual(pdf.shape, (3, 2))
            self.assertEqual(pdf["城市"].tolist(), ["北京", "上海", "广州"])
            self.assertEqual(pdf["销售额"].iloc[1], 2.25)
            self.assertTrue(pd.isna(pdf["销售额"].iloc[2]))
        else:
            with self.assertRaises(ImportError) as cm:
                d.to_pandas()
            self.assertIn("pip install pandas", str(cm.exception))

    def test_error_result(self):
        r = self.client.execute("x = 1\n1/0\n")
        self.assertEqual(r.status, "error")
        self.assertFalse(r.ok)
        self.assertEqual(r.error.type, "ZeroDivisionError")
        self.assertIn("division by zero", r.error.message)
        self.assertIn("Traceback", r.error.traceback)
        self.assertIn("1/0", r.error.traceback)
        self.assertEqual(r.error.line, 2)

    def test_validate_templates(self):
        self.assertTrue(self.client.validate("print('好')").valid)
        v = self.client.validate("def f(:\n")
        self.assertFalse(v.valid)
        self.assertTrue(v.errors)
        ts = self.client.templates()
        self.assertTrue(ts)
        t = self.client.template(ts[0]["id"])
        self.assertEqual(t["code"], ts[0]["code"])
        with self.assertRaises(NotFound) as cm:
            self.client.template("no-such-template")
        self.assertEqual(cm.exception.status, 404)

    def test_bad_request(self):
        with self.assertRaises(BadRequest) as cm:
            self.client.execute("print(1)", timeout=-1)
        e = cm.exception
        self.assertEqual((e.status, e.code), (422, "invalid_timeout"))
        self.assertTrue(e.request_id)
        self.assertIsNone(e.retry_after)

    def test_session_files(self):
        csv = "地区,金额\n华北,80\n华南,95.25\n".encode("utf-8")
        with self.client.session(timeout=30) as s:
            self.assertTrue(s.id)
            stored = s.upload("销售.csv", csv)
            self.assertEqual(stored, {"name": "销售.csv", "size": len(csv)})
            r = s.run("import pandas as pd\n"
                      "df = pd.read_csv('销售.csv')\n"
                      "df['金额'] = df['金额'] * 2\n"
                      "df.to_csv('outputs/result.csv', index=False)\n"
                      "print(df['金额'].sum())\n")
            self.assertEqual(r.status, "success", r.raw)
            self.assertEqual(r.stdout, "350.5\n")
            self.assertEqual(r.session["id"], s.id)
            written = r.file("result.csv").content
            self.assertEqual(written.decode("utf-8"), "地区,金额\n华北,160.0\n华南,190.5\n")
            self.assertEqual(s.download("outputs/result.csv"), written)
            self.assertEqual(s.download("销售.csv"), csv)
            # State persists across cells.
            r2 = s.run("len(df)", files={"另一个.txt": "好"})
            self.assertEqual(r2.value["repr"], "2")
            info = s.info()
            self.assertEqual(info["executions"], 2)
            names = {f["name"] for f in info["files"]}
            self.assertTrue({"销售.csv", "outputs/result.csv", "另一个.txt"} <= names, names)
            with self.assertRaises(NotFound) as cm:
                s.download("没有.csv")
            self.assertEqual(cm.exception.code, "file_not_found")
        self.assertTrue(s.closed)
        with self.assertRaises(NotFound) as cm:
            s.info()
        self.assertEqual(cm.exception.code, "session_not_found")
        s.close()  # idempotent

    def test_too_many_sessions_429(self):
        limit = self.settings().get("max_sessions")
        if limit != 1:
            self.skipTest("needs the service started with MAX_SESSIONS=1 (has %r)" % limit)
        with self.client.session() as first:
            with self.assertRaises(RateLimited) as cm:
                self.client.session()
            e = cm.exception
            self.assertEqual((e.status, e.code), (429, "too_many_sessions"))
            self.assertIsNotNone(e.retry_after)
            self.assertGreater(e.retry_after, 0)
            # With retries, the client waits retry_after and gets the slot
            # once the first session is gone.
            closer = threading.Timer(1.5, first.close)
            closer.start()
            try:
                start = time.monotonic()
                retrying = Client(URL, api_key=KEY, retries=10, max_retry_wait=5)
                with retrying.session() as second:
                    waited = time.monotonic() - start
                    self.assertTrue(second.id)
                    self.assertNotEqual(second.id, first.id)
                self.assertGreaterEqual(waited, 1.0)
            finally:
                closer.cancel()
                closer.join()

    def stream_times(self, stream):
        start = time.monotonic()
        out = []
        for ev in stream:
            out.append((time.monotonic() - start, ev))
        return out

    def test_stream_incremental(self):
        code = ("import time\n"
                "for i in range(5):\n"
                "    print('第', i, flush=True)\n"
                "    time.sleep(0.5)\n")
        start = time.monotonic()
        st = self.client.stream(code)
        self.assertIsInstance(st, Stream)
        self.assertTrue(st.content_type.startswith("text/event-stream"), st.content_type)
        got = []
        with st:
            for ev in st:
                got.append((time.monotonic() - start, ev))
        names = [ev.event for _, ev in got]
        self.assertEqual(names[-1], "result", names)
        self.assertIn("stdout", names)
        first = next(t for t, ev in got if ev.event == "stdout")
        last = got[-1][0]
        # The code prints at 0 s and ends after 2.5 s: the first chunk must
        # come well before the result, not with it.
        self.assertGreater(last - first, 1.5, [(round(t, 3), ev.event) for t, ev in got])
        stdout_times = [t for t, ev in got if ev.event == "stdout"]
        self.assertGreater(stdout_times[-1] - stdout_times[0], 1.0, "stdout spread over the run")
        text = "".join(ev.text for _, ev in got if ev.event == "stdout")
        want = "".join("第 %d\n" % i for i in range(5))
        self.assertEqual(text, want)
        self.assertEqual(st.result.status, "success")
        self.assertEqual(st.result.stdout, want)
        self.assertIsNone(st.error)

    def test_stream_chart_and_error(self):
        code = ("import matplotlib.pyplot as plt\n"
                "print('画图')\n"
                "plt.figure(figsize=(4, 2), dpi=100)\n"
                "plt.plot([1, 2])\n"
                "plt.show()\n"
                "1/0\n")
        with self.client.stream(code) as st:
            events = list(st)
        charts = [ev.chart for ev in events if ev.event == "chart"]
        self.assertEqual(len(charts), 1, [ev.event for ev in events])
        self.assertEqual(png_size(charts[0].to_bytes()), (400, 200))
        self.assertEqual(events[-1].event, "result")
        r = events[-1].result
        self.assertEqual(r.status, "error")
        self.assertEqual(r.error.type, "ZeroDivisionError")
        self.assertEqual(r.stdout, "画图\n")
        self.assertEqual(len(r.charts), 1)

    def test_session_stream(self):
        with self.client.session() as s:
            s.run("x = 41")
            res = s.stream("print(x + 1)").collect()
            self.assertEqual(res.stdout, "42\n")
            self.assertEqual(res.session["executions"], 2)

    def test_stream_refusal_is_plain_error(self):
        with self.assertRaises(BadRequest) as cm:
            self.client.stream("print(1)", timeout=0)
        self.assertEqual(cm.exception.code, "invalid_timeout")

    def test_stream_close_early(self):
        st = self.client.stream("import time\nfor i in range(60):\n    print(i, flush=True)\n    time.sleep(0.5)\n")
        first = next(iter(st))
        self.assertEqual(first.event, "stdout")
        st.close()
        # The service ends the execution when the client goes away.
        deadline = time.monotonic() + 20
        while True:
            running = self.client.health()["runner"]["running"]
            if running == 0:
                break
            self.assertLess(time.monotonic(), deadline, "execution still running after disconnect")
            time.sleep(0.2)

    @unittest.skipUnless(os.environ.get("PYEXEC_TEST_BAD_KEY") == "1", "the service has no API keys")
    def test_unauthorized(self):
        for c in (Client(URL), Client(URL, api_key="wrong-key-not-in-file")):
            with self.assertRaises(Unauthorized) as cm:
                c.execute("print('不应运行')")
            self.assertEqual(cm.exception.status, 401)
            self.assertTrue(cm.exception.code)
        with self.assertRaises(Unauthorized):
            Client(URL, api_key="wrong-key-not-in-file").session()

    @unittest.skipUnless(os.environ.get("PYEXEC_TEST_QUOTA_KEY"), "no quota key configured")
    def test_quota_429(self):
        c = Client(URL, api_key=os.environ["PYEXEC_TEST_QUOTA_KEY"])
        limited = None
        for _ in range(3):
            try:
                c.execute("print('配额')")
            except RateLimited as e:
                limited = e
                break
        self.assertIsNotNone(limited, "a key with per_minute 1 was never limited")
        self.assertEqual(limited.status, 429)
        self.assertIsNotNone(limited.retry_after)
        self.assertGreater(limited.retry_after, 0)


if __name__ == "__main__":
    unittest.main()
