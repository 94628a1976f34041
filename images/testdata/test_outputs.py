"""Unit tests of the harness's outputs.py, run inside the analytics image
(numpy, pandas, matplotlib and plotly are there) against the harness the image
holds (/opt/pyexec). This file is not in the image's build context, so editing
it changes no image tag: images/outputs_py_test.go (TestContextOutputsPy)
sends it to a container of the real image on stdin, as

  python3 -I -B - -v < images/testdata/test_outputs.py

Tests that need a fresh interpreter (lazy import hooks) run a subprocess.
"""

import ast
import base64
import json
import os
import subprocess
import sys
import time
import unittest

# The harness under test: the image's, unless PYEXEC_HARNESS names another.
HERE = os.environ.get("PYEXEC_HARNESS", "/opt/pyexec")
sys.path.insert(0, HERE)

import outputs  # noqa: E402


def run(code, options=None, namespace=None):
    """Runs code like runner_child does and returns collect()'s dict after a
    strict JSON round trip."""
    options = options or {}
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:  # one execution per process in real life
        plt.close("all")
    ns = namespace if namespace is not None else {"__name__": "__main__", "__builtins__": __builtins__}
    outputs.before(ns, options)
    tree = ast.parse(code)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(body=tree.body.pop().value)
    exec(compile(tree, "<code>", "exec"), ns)
    value = eval(compile(last, "<code>", "eval"), ns) if last is not None else outputs.NO_VALUE
    out = outputs.collect(ns, value, options)
    text = json.dumps(out, ensure_ascii=False, allow_nan=False).encode("utf-8")
    return json.loads(text)


def png_size(chart):
    raw = base64.b64decode(chart["data"])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", raw[:8]
    return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")


class Base(unittest.TestCase):
    def setUp(self):
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            plt.close("all")

    def keys_ok(self, out):
        required = {"charts", "dataframes", "variables", "result"}
        optional = {"charts_truncated", "dataframes_truncated", "variables_truncated", "collect_error"}
        self.assertTrue(required <= set(out) <= required | optional, set(out))


class TestEmpty(Base):
    def test_empty(self):
        self.assertEqual(outputs.empty(), {"charts": [], "dataframes": [], "variables": {}, "result": None})

    def test_print_only(self):
        out = run("print(1)")
        self.keys_ok(out)
        self.assertEqual(out, outputs.empty())

    def test_none_result(self):
        self.assertIsNone(run("None")["result"])
        self.assertIsNone(run("x = 1\nprint(x)")["result"])

    def test_result_str(self):
        out = run("'hi'")
        self.assertEqual(out["result"], {"type": "str", "repr": "'hi'"})


class TestMatplotlib(Base):
    def test_sine_wave(self):
        out = run(
            "import numpy as np\nimport matplotlib.pyplot as plt\n"
            "x = np.linspace(0, 10, 100)\nplt.figure(figsize=(10, 6))\n"
            "plt.plot(x, np.sin(x))\nplt.title('Sine Wave')\nplt.show()"
        )
        self.assertEqual(len(out["charts"]), 1)
        c = out["charts"][0]
        self.assertEqual((c["type"], c["format"], c["width"], c["height"]), ("matplotlib", "png", 1000, 600))
        self.assertEqual(png_size(c), (1000, 600))

    def test_order_once_and_close(self):
        out = run(
            "import matplotlib.pyplot as plt\n"
            "a = plt.figure(7, figsize=(1, 1)); plt.plot([1])\n"
            "b = plt.figure(3, figsize=(2, 1)); plt.plot([1])\n"
            "plt.show()\nplt.show()\n"
            "c = plt.figure(figsize=(3, 1))\nn_open = len(plt.get_fignums())\n"
            "c"
        )
        self.assertEqual([(c["width"], c["height"]) for c in out["charts"]], [(100, 100), (200, 100), (300, 100)])
        self.assertEqual(out["variables"]["n_open"]["repr"], "1")

    def test_fig_show_then_plt_show_once(self):
        out = run(
            "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(2, 2))\n"
            "fig.show()\nplt.show()\nfig"
        )
        self.assertEqual(len(out["charts"]), 1)

    def test_display_renders_again(self):
        out = run(
            "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(2, 2))\n"
            "for i in range(3):\n    ax.plot([i, 0])\n    display(fig)\n"
        )
        self.assertEqual(len(out["charts"]), 3)

    def test_non_pyplot_figure_last_expression(self):
        out = run("from matplotlib.figure import Figure\nf = Figure(figsize=(3, 2))\nf.add_subplot().plot([1])\nf.axes[0]")
        self.assertEqual(len(out["charts"]), 1)
        self.assertEqual(png_size(out["charts"][0]), (300, 200))

    def test_svg(self):
        out = run("import matplotlib.pyplot as plt\nplt.figure(figsize=(3, 2))\nplt.plot([1, 2])", {"chart_format": "svg"})
        c = out["charts"][0]
        self.assertEqual((c["format"], c["width"], c["height"]), ("svg", 300, 200))
        self.assertIn(b"<svg", base64.b64decode(c["data"]))

    def test_caps(self):
        code = "import matplotlib.pyplot as plt\nfor i in range(5):\n    plt.figure(figsize=(1, 1))\n"
        out = run(code, {"max_charts": 2})
        self.assertEqual(len(out["charts"]), 2)
        self.assertTrue(out["charts_truncated"])
        out = run(code, {"max_chart_bytes": 10})
        self.assertEqual(out["charts"], [])
        self.assertTrue(out["charts_truncated"])
        out = run("import matplotlib.pyplot as plt\nplt.figure(figsize=(100, 100))\nplt.figure(figsize=(1, 1))")
        self.assertEqual(len(out["charts"]), 1)
        self.assertTrue(out["charts_truncated"])
        self.assertIn("max_chart_pixels", out["collect_error"])

    def test_pandas_plot_and_seaborn(self):
        out = run(
            "import pandas as pd, seaborn as sns, matplotlib.pyplot as plt\n"
            "df = pd.DataFrame({'a': [1, 3, 2]})\ndf.plot()\nplt.show()\n"
            "sns.histplot(df['a'])"
        )
        self.assertEqual(len(out["charts"]), 2)


class TestPlotly(Base):
    def test_show_and_last_expression(self):
        out = run(
            "import plotly.express as px, plotly.graph_objects as go\n"
            "fig = px.scatter(x=[1, 2], y=[3, float('nan')])\nfig.show()\n"
            "g = go.Figure(go.Bar(x=['a'], y=[1]))\nunused = go.Figure()\n"
            "fig"  # already shown: not twice
        )
        self.assertEqual(len(out["charts"]), 1)
        c = out["charts"][0]
        self.assertEqual((c["type"], c["format"]), ("plotly", "json"))
        self.assertEqual(set(c["data"]), {"data", "layout"})
        self.assertEqual(c["data"]["data"][0]["y"], [3, None])
        out = run("import plotly.graph_objects as go\ng = go.Figure(go.Bar(x=['a'], y=[1]))\ng")
        self.assertEqual(out["charts"][0]["data"]["data"][0]["type"], "bar")
        self.assertTrue(out["result"]["repr"].startswith("<plotly Figure"))

    def test_pio_show_dict(self):
        out = run("import plotly.io as pio\npio.show({'data': [{'type': 'scatter', 'y': [1]}], 'layout': {}})")
        self.assertEqual(len(out["charts"]), 1)


class TestFrames(Base):
    def test_datetime_index_nan_inf(self):
        out = run(
            "import pandas as pd, numpy as np\n"
            "df = pd.DataFrame({'v': [1.5, np.nan, np.inf, -np.inf], 't': pd.to_datetime(['2024-01-01', None, '2024-01-03', '2024-01-04'])},"
            " index=pd.date_range('2024-01-01', periods=4, freq='D', name='day'))\n"
            "df"
        )
        self.assertEqual(len(out["dataframes"]), 1)  # "_" and "df" are one object
        f = out["dataframes"][0]
        self.assertEqual(f["name"], "_")
        self.assertEqual(f["shape"], [4, 2])
        self.assertEqual(f["columns"], ["v", "t"])
        self.assertEqual(f["dtypes"], {"v": "float64", "t": "datetime64[ns]"})
        self.assertEqual(f["index"]["type"], "DatetimeIndex")
        self.assertEqual(f["index"]["name"], "day")
        self.assertEqual(f["index"]["values"][0], "2024-01-01T00:00:00")
        self.assertEqual([r[0] for r in f["data"]], [1.5, None, "inf", "-inf"])
        self.assertEqual(f["data"][1][1], None)
        self.assertFalse(f["truncated"])
        self.assertIn("<table", f["html"])
        self.assertEqual(out["result"]["type"], "DataFrame")
        self.assertEqual(out["variables"]["df"]["shape"], [4, 2])

    def test_million_rows_fast(self):
        ns = {"__name__": "__main__"}
        exec("import numpy as np, pandas as pd\ndf = pd.DataFrame(np.random.rand(1_000_000, 3), columns=list('abc'))", ns)
        outputs.before(ns, {})
        t = time.perf_counter()
        out = outputs.collect(ns, ns["df"], {})
        elapsed = time.perf_counter() - t
        json.dumps(out, allow_nan=False)
        f = out["dataframes"][0]
        self.assertEqual((f["total_rows"], len(f["data"]), f["truncated"]), (1_000_000, 100, True))
        self.assertLess(elapsed, 0.5)  # ~10 ms in practice; lenient for loaded machines

    def test_series_multiindex_display(self):
        out = run(
            "import pandas as pd\n"
            "mi = pd.DataFrame({'v': range(4)}, index=pd.MultiIndex.from_product([['a', 'b'], [1, 2]], names=['k', 'n']))\n"
            "display(mi)\ndisplay(pd.Series([1, 2]))\ndisplay('x')\n"
            "s = pd.Series([1.0, None], name='s')\ns",
        )
        names = [(f["name"], f["kind"]) for f in out["dataframes"]]
        self.assertEqual(names, [("mi", "dataframe"), ("display_2", "series"), ("_", "series")])
        mi = out["dataframes"][0]
        self.assertEqual(mi["index"]["names"], ["k", "n"])
        self.assertEqual(mi["index"]["values"][0], ["a", 1])
        self.assertEqual(out["dataframes"][2]["columns"], ["s"])
        self.assertEqual(out["dataframes"][2]["data"], [[1.0], [None]])

    def test_caps(self):
        code = "import pandas as pd\n" + "\n".join("d%d = pd.DataFrame({'a': range(10)})" % i for i in range(5))
        out = run(code, {"max_dataframes": 2, "max_rows": 3})
        self.assertEqual(len(out["dataframes"]), 2)
        self.assertTrue(out["dataframes_truncated"])
        self.assertEqual(len(out["dataframes"][0]["data"]), 3)
        self.assertEqual(out["dataframes"][0]["html"].count("<tr>"), 3)
        wide = run("import pandas as pd, numpy as np\nw = pd.DataFrame(np.zeros((2, 80)))", {})
        f = wide["dataframes"][0]
        self.assertEqual((f["shape"], len(f["columns"]), f["columns_truncated"]), ([2, 80], 50, True))

    def test_odd_cells(self):
        out = run(
            "import pandas as pd, numpy as np, decimal, datetime\n"
            "class Bad:\n    def __str__(self): raise ValueError\n    __repr__ = __str__\n"
            "df = pd.DataFrame({'o': [decimal.Decimal('1.1'), b'\\x00', Bad(), 'x' * 5000, '\\ud800', {1: [2]}],"
            " 'i': pd.array([1, None, 3, 4, 5, 6], dtype='Int64'),"
            " 'td': pd.to_timedelta([1, None, 3, 4, 5, 6], unit='s'),"
            " 'd': [datetime.date(2020, 1, 2)] * 6})\n"
        )
        f = out["dataframes"][0]
        col = [r[0] for r in f["data"]]
        self.assertEqual(col[0], "1.1")
        self.assertEqual(col[1], "b'\\x00'")
        self.assertEqual(col[2], "<unrepresentable Bad>")
        self.assertLessEqual(len(col[3]), 1000)
        self.assertEqual(col[4], "\\ud800")
        self.assertEqual([r[1] for r in f["data"]][:2], [1, None])
        self.assertEqual(f["data"][0][2], "0 days 00:00:01")
        self.assertEqual(f["data"][0][3], "2020-01-02")
        self.assertIn("<table", f["html"])
        self.assertIn("<unrepresentable Bad>".replace("<", "&lt;").replace(">", "&gt;"), f["html"])

    def test_html_budget_fallback(self):
        code = "import pandas as pd\na = pd.DataFrame({'x': [1.5, None]})\nb = pd.DataFrame({'x': [2.5, None]})"
        out = run(code, {"max_html_cells": 2})
        self.assertIn('class="dataframe"', out["dataframes"][1]["html"])
        self.assertIn("<td>NaN</td>", out["dataframes"][1]["html"])


class TestVariables(Base):
    def test_kinds(self):
        out = run(
            "import math, numpy as np, pandas as pd\nfrom typing import List\n"
            "def f(): pass\nclass C: pass\n_private = 1\n"
            "i = 1\ns = 'abc'\nl = [1, 2]\nd = {'a': 1}\na = np.zeros((2, 3))\nz = np.array(3)\n"
            "ser = pd.Series([1, 2])\nnp_scalar = np.float32(1.5)\n"
        )
        v = out["variables"]
        self.assertEqual(sorted(v), ["a", "d", "i", "l", "np_scalar", "s", "ser", "z"])
        self.assertEqual(v["i"], {"type": "int", "repr": "1"})
        self.assertEqual(v["s"], {"type": "str", "repr": "'abc'", "len": 3})
        self.assertEqual(v["l"]["len"], 2)
        self.assertEqual((v["a"]["shape"], v["a"]["dtype"]), ([2, 3], "float64"))
        self.assertEqual(v["z"]["shape"], [])
        self.assertEqual(v["ser"]["shape"], [2])
        self.assertEqual(out["dataframes"], [])  # Series bound to names are not tables

    def test_hostile_objects(self):
        out = run(
            "class BadRepr:\n    def __repr__(self): raise ValueError('no')\n"
            "class BadLen:\n    def __len__(self): raise RuntimeError\n"
            "class Weird:\n    def __eq__(self, o): raise TypeError\n    def __hash__(self): raise TypeError\n"
            "    def __getattr__(self, n): raise RuntimeError(n)\n    def __bool__(self): raise TypeError\n"
            "class Liar:\n    @property\n    def __class__(self):\n        import pandas; return pandas.DataFrame\n"
            "class S(str): pass\nclass I(int):\n    def __repr__(self): return 'I!'\nclass D(dict): pass\n"
            "class NonStr:\n    def __repr__(self): return 42\n"
            "b, bl, w, li = BadRepr(), BadLen(), Weird(), Liar()\ns, i, d, ns = S('x' * 10), I(3), D(a=1), NonStr()\n"
            "rec = [1]; rec.append(rec)\nbig = list(range(10_000_000))\nbigd = dict.fromkeys(range(1_000_000))\n"
            "nested = [[[[[[1]]]]]]\nby = b'\\xff' * 10_000\nhuge = 10 ** 5000\nsur = '\\udc80'\nst = {3, 1}\n"
            "globals()[5] = 'int key'\n"
            "rec"
        )
        v = out["variables"]
        self.assertEqual(v["b"]["repr"], "<unrepresentable BadRepr>")
        self.assertEqual(v["ns"]["repr"], "<unrepresentable NonStr>")
        self.assertNotIn("len", v["bl"])
        self.assertEqual(v["li"]["type"], "Liar")
        self.assertEqual(v["i"]["repr"], "I!")
        self.assertEqual(v["big"]["len"], 10_000_000)
        self.assertLessEqual(len(v["big"]["repr"]), 200)
        self.assertLessEqual(len(v["by"]["repr"]), 200)
        self.assertTrue(v["huge"]["repr"].startswith("<int with"))
        self.assertEqual(v["sur"]["repr"], "'\\udc80'")
        self.assertIn("[...]", out["result"]["repr"])
        self.assertEqual(out["dataframes"], [])
        self.assertNotIn("collect_error", out)

    def test_variable_cap(self):
        out = run("\n".join("v%d = %d" % (i, i) for i in range(10)), {"max_variables": 3})
        self.assertEqual(list(out["variables"]), ["v0", "v1", "v2"])
        self.assertTrue(out["variables_truncated"])

    def test_display_not_a_variable(self):
        out = run("x = display\ndisplay(1)")
        self.assertEqual(out["variables"], {})

    def test_never_raises(self):
        out = outputs.collect({"x": 1}, outputs.NO_VALUE, "not a dict")
        self.keys_ok(out)
        out = outputs.collect(None, object(), {})
        self.keys_ok(out)
        json.dumps(out, allow_nan=False)


class TestLazyHooks(unittest.TestCase):
    """A fresh interpreter: matplotlib/plotly are imported after before()."""

    def test_hooks_in_fresh_process(self):
        code = r"""
import sys, json
sys.path.insert(0, %r)
import outputs
ns = {"__name__": "__main__"}
outputs.before(ns, {})
assert "matplotlib" not in sys.modules
exec('''
import matplotlib.pyplot as plt
from matplotlib.pyplot import show
plt.figure(figsize=(2, 1)); show()
import plotly.express as px
px.line(x=[1, 2], y=[1, 2]).show()
''', ns)
out = outputs.collect(ns, outputs.NO_VALUE, {})
print(json.dumps([c["type"] for c in out["charts"]]))
""" % HERE
        env = dict(os.environ, MPLBACKEND="agg")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(json.loads(res.stdout.strip().splitlines()[-1]), ["matplotlib", "plotly"])



class TestCollectNames(Base):
    def test_names_limit_variables(self):
        ns = {"__name__": "__main__", "__builtins__": __builtins__, "a": 1, "b": [1, 2]}
        outputs.before(ns, {})
        out = outputs.collect(ns, outputs.NO_VALUE, {}, {"b"})
        self.assertEqual(list(out["variables"]), ["b"])
        self.assertEqual(out["variables"]["b"]["len"], 2)


class _InTempDir(unittest.TestCase):
    """Each test runs in a fresh working directory with an empty outputs/,
    and fails instead of hanging (a FIFO opened by mistake would block)."""

    def setUp(self):
        import signal
        import tempfile

        import workdir

        self.workdir = workdir
        self.old = os.getcwd()
        self.dir = tempfile.mkdtemp(prefix="wd", dir="/tmp")
        self.outside = tempfile.mkdtemp(prefix="outside", dir="/tmp")
        os.chdir(self.dir)
        workdir.ensure_outputs()
        signal.signal(signal.SIGALRM, self._hung)
        signal.alarm(10)

    def _hung(self, signum, frame):
        raise AssertionError("the call hung")

    def tearDown(self):
        import shutil
        import signal

        signal.alarm(0)
        os.chdir(self.old)
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.outside, ignore_errors=True)

    def write(self, rel, data):
        path = os.path.join("outputs", rel)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    def names(self, files):
        return [f["name"] for f in files]


class TestOutputFiles(_InTempDir):
    def test_regular_and_nested_files(self):
        self.write("r.txt", b"hello")
        self.write("a/b/c/f.csv", b"x,y\n1,2\n")
        out = self.workdir.Tracker().scan({})
        self.assertEqual(self.names(out["files"]), ["a/b/c/f.csv", "r.txt"])
        self.assertEqual(out["files"][1], {"name": "r.txt", "size": 5, "content": base64.b64encode(b"hello").decode()})
        self.assertFalse(out["files_truncated"])
        self.assertEqual(out["files_skipped"], [])
        json.dumps(out, allow_nan=False)

    def test_symlinks_fifo_socket_are_skipped(self):
        import socket

        os.symlink("/etc/passwd", "outputs/passwd")
        os.symlink("/etc", "outputs/etc")
        os.symlink(self.outside, "outputs/out")
        with open(os.path.join(self.outside, "secret"), "w") as f:
            f.write("s")
        os.mkfifo("outputs/fifo")
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.bind("outputs/sock")
            self.write("ok.txt", b"1")
            out = self.workdir.Tracker().scan({})
        finally:
            sock.close()
        self.assertEqual(self.names(out["files"]), ["ok.txt"])
        self.assertEqual(
            {e["name"]: e["reason"] for e in out["files_skipped"]},
            {"passwd": "symlink", "etc": "symlink", "out": "symlink", "fifo": "fifo", "sock": "socket"},
        )

    def test_outputs_itself_a_symlink(self):
        os.rmdir("outputs")
        os.symlink(self.outside, "outputs")
        with open(os.path.join(self.outside, "secret"), "w") as f:
            f.write("s")
        out = self.workdir.Tracker().scan({})
        self.assertEqual(out["files"], [])
        self.assertEqual(out["files_skipped"], [{"name": "outputs", "reason": "symlink"}])

    def test_too_deep(self):
        self.write("a/b/c/d/e.txt", b"deep")
        self.write("a/b/c/ok.txt", b"ok")
        out = self.workdir.Tracker().scan({})
        self.assertEqual(self.names(out["files"]), ["a/b/c/ok.txt"])
        self.assertEqual(out["files_skipped"], [{"name": "a/b/c/d", "reason": "directory too deep"}])

    def test_caps(self):
        for i in range(5):
            self.write("f%d" % i, b"x" * 10)
        self.write("big", b"y" * 11)
        tr = self.workdir.Tracker
        out = tr().scan({"max_file_bytes": 10})
        self.assertEqual(self.names(out["files"]), ["f0", "f1", "f2", "f3", "f4"])
        self.assertTrue(out["files_truncated"])
        out = tr().scan({"max_files": 2})
        self.assertEqual(len(out["files"]), 2)
        self.assertTrue(out["files_truncated"])
        out = tr().scan({"max_files_total_bytes": 25})
        self.assertEqual(sum(f["size"] for f in out["files"]), 21)  # big (11) + f0 (10); f1 would pass 25
        self.assertTrue(out["files_truncated"])
        out = tr().scan({})
        self.assertEqual(len(out["files"]), 6)
        self.assertFalse(out["files_truncated"])

    def test_many_entries_bounded(self):
        os.mkdir("outputs/many")
        for i in range(self.workdir.MAX_ENTRIES + 10):
            os.close(os.open("outputs/many/%05d" % i, os.O_CREAT | os.O_WRONLY, 0o600))
        t = time.monotonic()
        out = self.workdir.Tracker().scan({})
        self.assertLess(time.monotonic() - t, 5)
        self.assertTrue(out["files_truncated"])
        self.assertEqual(len(out["files"]), 20)

    def test_change_tracking(self):
        self.write("same.txt", b"same")
        self.write("edit.txt", b"v1")
        self.write("touch.txt", b"t")
        os.mkfifo("outputs/fifo")
        tr = self.workdir.Tracker()
        first = tr.scan({})
        self.assertEqual(self.names(first["files"]), ["edit.txt", "same.txt", "touch.txt"])
        self.assertEqual(len(first["files_skipped"]), 1)
        again = tr.scan({})
        self.assertEqual(again["files"], [])
        self.assertEqual(again["files_skipped"], [])  # the FIFO was reported already
        self.write("edit.txt", b"v22")
        os.utime("outputs/touch.txt", ns=(1, 1))  # same size and inode, new mtime
        self.write("new/n.txt", b"n")
        third = tr.scan({})
        self.assertEqual(self.names(third["files"]), ["edit.txt", "new/n.txt", "touch.txt"])
        self.assertEqual(base64.b64decode(third["files"][0]["content"]), b"v22")
        os.remove("outputs/edit.txt")
        self.write("edit.txt", b"v22")  # recreated: a new inode
        self.assertEqual(self.names(tr.scan({})["files"]), ["edit.txt"])

    def test_refresh_after_put(self):
        tr = self.workdir.Tracker()
        tr.scan({})
        self.write("put.csv", b"p")
        tr.refresh()
        self.assertEqual(tr.scan({})["files"], [])


class TestInputFiles(_InTempDir):
    def files(self, *pairs):
        return [{"name": n, "content": base64.b64encode(c).decode()} for n, c in pairs]

    def test_writes_files(self):
        req = self.files(("sales.csv", b"a,b\n1,2\n"), ("data.json", b"{}"), ("outputs/pre.txt", b"p"))
        self.assertIsNone(self.workdir.write_files(req))
        with open("sales.csv", "rb") as f:
            self.assertEqual(f.read(), b"a,b\n1,2\n")
        self.assertEqual(os.stat("sales.csv").st_mode & 0o777, 0o600)
        self.assertTrue(os.path.isfile("outputs/pre.txt"))
        self.assertTrue(all(item["content"] is None for item in req))  # dropped once written
        self.assertIsNone(self.workdir.write_files(None))

    def test_hostile_names(self):
        before = set(os.listdir(self.outside)), set(os.listdir("/tmp"))
        for name in ["../x", "/etc/passwd", "a/../b", "", ".", "..", "a\x00b", "a\nb", "a\x7fb", "a\\b",
                     " lead", "trail ", "x" * 256, "a//b", "a/", "é" * 128, "\udcff", "a/b/c/d/e/f", 7, None]:
            err = self.workdir.write_files([{"name": name, "content": "eA=="}])
            self.assertIsNotNone(err, repr(name))
            self.assertEqual(err["type"], "ValueError", (name, err))
        self.assertEqual(os.listdir("."), ["outputs"])
        self.assertEqual(before, (set(os.listdir(self.outside)), set(os.listdir("/tmp"))))
        self.assertIsNone(self.workdir.write_files([{"name": "é" * 127, "content": ""}]))  # 254 bytes

    def test_duplicates_bad_content(self):
        err = self.workdir.write_files(self.files(("a", b"1"), ("a", b"2")))
        self.assertIn("twice", err["message"])
        err = self.workdir.write_files([{"name": "b", "content": "!!notbase64"}])
        self.assertIsNotNone(err)
        err = self.workdir.write_files([{"name": "c"}])
        self.assertIsNotNone(err)
        self.assertIsNotNone(self.workdir.write_files("nope"))

    def test_no_write_through_symlink_or_fifo(self):
        target = os.path.join(self.outside, "target")
        with open(target, "w") as f:
            f.write("keep")
        os.symlink(target, "link")
        os.symlink(self.outside, "dirlink")
        os.mkfifo("fifo")
        for name in ("link", "dirlink/target", "fifo"):
            err = self.workdir.write_files(self.files((name, b"overwritten")))
            self.assertIsNotNone(err, name)
            self.assertEqual(err["type"], "OSError", err)
        with open(target) as f:
            self.assertEqual(f.read(), "keep")

    def test_get_and_list(self):
        self.write("by_region.csv", b"r,1\n")
        with open("sales.csv", "w") as f:
            f.write("s")
        with open("by_region.csv", "w") as f:
            f.write("shadowed")
        os.symlink("/etc/passwd", "outputs/pw")
        os.mkfifo("outputs/fifo")
        got, err = self.workdir.get_file("by_region.csv", {})
        self.assertIsNone(err)
        self.assertEqual((got["name"], base64.b64decode(got["content"])), ("outputs/by_region.csv", b"r,1\n"))
        got, err = self.workdir.get_file("sales.csv", {})
        self.assertEqual(got["name"], "sales.csv")
        got, err = self.workdir.get_file("outputs/by_region.csv", {})
        self.assertEqual(got["size"], 4)
        for name in ("pw", "fifo", "missing", "outputs"):
            got, err = self.workdir.get_file(name, {})
            self.assertIsNone(got)
            self.assertEqual(err["type"], "FileNotFoundError", name)
        got, err = self.workdir.get_file("../etc/passwd", {})
        self.assertEqual(err["type"], "ValueError")
        got, err = self.workdir.get_file("sales.csv", {"max_file_bytes": 0})
        self.assertEqual(err["type"], "FileTooLargeError")
        listed = self.workdir.list_files()
        self.assertEqual(
            [(f["name"], f["size"]) for f in listed["files"]],
            [("by_region.csv", 8), ("outputs/by_region.csv", 4), ("sales.csv", 1)],
        )
        self.assertEqual({e["name"] for e in listed["files_skipped"]}, {"outputs/pw", "outputs/fifo"})


if __name__ == "__main__":
    unittest.main(verbosity=2)
