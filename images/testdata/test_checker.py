"""Tests of the language policy's file rule (checker.py, path-outside-workdir
and single-argument np.load), run inside the analytics image against the
harness the image holds (/opt/pyexec), with the service's default rules in
PYEXEC_TEST_RULES (policy.Default() as JSON). images/checker_py_test.go
(TestContextCheckerPy) sends this file to a container of the real image on
stdin:

  PYEXEC_TEST_RULES='{...}' python3 -I -B - -v < images/testdata/test_checker.py

The static tests need only the standard library. The working-directory tests
then run the code the checker accepts, with pandas, numpy and matplotlib, in a
fresh directory that stands for the sandbox's working directory, and show
that the readers and writers the policy lets through really work there.
"""

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import unittest

HERE = os.environ.get("PYEXEC_HARNESS", "/opt/pyexec")
sys.path.insert(0, HERE)

import checker  # noqa: E402

RULES = json.loads(os.environ["PYEXEC_TEST_RULES"])
PATH_RULE = "path-outside-workdir"

HAVE_LIBS = all(importlib.util.find_spec(m) for m in ("numpy", "pandas", "matplotlib"))


def rules_of(code):
    return sorted({e["rule"] for e in checker.check(code, RULES)})


class StaticRuleTest(unittest.TestCase):
    def test_rules_have_the_file_fields(self):
        for field in ("path_functions", "path_keywords", "single_argument_calls"):
            self.assertTrue(RULES.get(field), field)
        self.assertNotIn("load", RULES["forbidden_attributes"])
        self.assertIn("open", RULES["forbidden_names"])

    def test_working_directory_paths_pass(self):
        for code in [
            'import pandas as pd\ndf = pd.read_csv("sales.csv")',
            'df.to_csv("outputs/by_region.csv")',
            'import numpy as np\nnp.savetxt("outputs/a.txt", [1, 2])',
            'import matplotlib.pyplot as plt\nplt.savefig("outputs/chart.png")',
            'import pandas as pd\nname = "x.csv"\npd.read_csv(name)',
            'import pandas as pd\npd.read_csv("./sales.csv")',
            'import pandas as pd\npd.read_csv("data..csv")',  # '..' inside a name
            'import pandas as pd\nn = "a"\npd.read_csv(f"outputs/{n}.csv")',
            'import pandas as pd\nn = "/etc"\npd.read_csv(n + "/passwd")',  # computed: not judged
            'import pandas as pd\npd.read_json(\'[{"u": "http://x/../y"}]\')',  # data, not a path
            'df.to_csv(sep="/")',  # not a path argument
            'import numpy as np\nnp.load("outputs/a.npy")',
            'import io\nimport pandas as pd\npd.read_csv(io.StringIO("a\\n1"))',
        ]:
            with self.subTest(code=code):
                self.assertEqual(checker.check(code, RULES), [])

    def test_paths_out_of_the_working_directory_are_refused(self):
        # (code, line, column of the argument, words of the message)
        for code, line, col, words in [
            ('import pandas as pd\npd.read_csv("/etc/passwd")', 2, 13, "absolute path"),
            ('import pandas as pd\npd.read_csv("../x.csv")', 2, 13, "'..'"),
            ('df.to_csv("/tmp/../etc/x")', 1, 11, "absolute path"),
            ('df.to_csv("outputs/../../x")', 1, 11, "'..'"),
            ('import pandas as pd\npd.read_csv("https://example.com/x.csv")', 2, 13, "URL"),
            ('import pandas as pd\npd.read_csv("ftp://h/x.csv")', 2, 13, "URL"),
            ('import pandas as pd\npd.read_csv("file:///etc/passwd")', 2, 13, "URL"),
            ('import pandas as pd\npd.read_parquet("s3://bucket/k")', 2, 17, "URL"),
            ('import numpy as np\nnp.loadtxt("~/.bashrc")', 2, 12, "'~'"),
            ('import pandas as pd\npd.read_csv(filepath_or_buffer="/x")', 2, 32, "absolute path"),
            ('import plotly.io as pio\npio.write_html(None, "/x.html")', 2, 22, "absolute path"),
            ('n = 1\ndf.to_csv(f"/tmp/{n}.csv")', 2, 11, "absolute path"),
            ('n = "a"\ndf.to_csv(n + "/../../x")', 2, 11, "'..'"),
            ('n = "a"\ndf.to_csv("/etc/%s" % n)', 2, 11, "absolute path"),
            ('n = "a"\ndf.to_csv("http://{}/x".format(n))', 2, 11, "URL"),
            ('import numpy as np\nnp.load("/etc/passwd")', 2, 9, "absolute path"),
            ('x = "é"; df.to_csv("/é")', 1, 20, "absolute path"),  # columns count characters
        ]:
            with self.subTest(code=code):
                errors = checker.check(code, RULES)
                self.assertEqual([e["rule"] for e in errors], [PATH_RULE], errors)
                e = errors[0]
                self.assertEqual((e["line"], e["column"]), (line, col), e)
                self.assertIn(words, e["message"])

    def test_raw_file_access_stays_forbidden(self):
        for code, rule in [
            ('open("sales.csv")', "forbidden-name"),
            ('o = open', "forbidden-name"),
            ('import io\nio.open("sales.csv")', "forbidden-attribute"),
            ('from io import FileIO', "forbidden-attribute"),
            ('import os', "forbidden-module"),
            ('import pathlib', "forbidden-module"),
            ('import shutil', "forbidden-module"),
            ('import builtins', "forbidden-module"),
            ('b = __builtins__', "forbidden-name"),
        ]:
            with self.subTest(code=code):
                self.assertEqual(rules_of(code), [rule])

    def test_np_load_takes_one_argument_only(self):
        for code in [
            'import numpy as np\nnp.load("a.npy", None, True)',
            'import numpy as np\nnp.load("a.npy", mmap_mode="r")',
            'import numpy as np\nnp.load(*["a.npy"])',
            'import numpy as np\nnp.load("a.npy", **{})',
            'import numpy as np\nnp.load()',
            'import numpy as np\nf = np.load',
            'from numpy import load',
            'import numpy as np\ngetattr(np, "load")("a.npy")',
        ]:
            with self.subTest(code=code):
                self.assertEqual(rules_of(code), ["forbidden-attribute"])
        self.assertEqual(
            rules_of('import numpy as np\nnp.load("a.npy", allow_pickle=True)'),
            ["forbidden-argument", "forbidden-attribute"],
        )

    def test_no_rules_no_path_check(self):
        self.assertEqual(checker.check('open("/etc/passwd")\ndf.to_csv("/x")', None), [])


@unittest.skipUnless(HAVE_LIBS, "needs numpy, pandas and matplotlib (the image has them)")
class LibrarySignatureTest(unittest.TestCase):
    """path_functions and path_keywords match the libraries in the image."""

    # Functions of the same name that write no file: they return text, and
    # the judged position holds a figure, never a path string.
    HOMONYMS = {("plotly.io", "to_html"), ("plotly.io", "to_json")}

    def owners(self):
        import matplotlib.backends.backend_pdf
        import matplotlib.figure
        import matplotlib.image
        import matplotlib.pyplot as plt
        import numpy as np
        import pandas as pd
        import pandas.io.common
        import plotly.graph_objects as go
        import plotly.io as pio
        import scipy.io
        import scipy.io.arff

        modules = [pd, pandas.io.common, np, plt, matplotlib.image, matplotlib.backends.backend_pdf]
        modules += [pio, scipy.io, scipy.io.arff]
        classes = [pd.DataFrame, pd.Series, matplotlib.figure.Figure]  # Styler needs jinja2
        classes += [go.Figure]
        return modules, classes

    def test_every_function_exists_and_takes_a_path_there(self):
        import inspect

        modules, classes = self.owners()
        keywords = set(RULES["path_keywords"])
        for name, positions in sorted(RULES["path_functions"].items()):
            found = []
            for owner in modules + classes:
                fn = getattr(owner, name, None)
                if fn is None or not callable(fn):
                    continue
                try:
                    sig = inspect.signature(fn)
                except (TypeError, ValueError):
                    continue
                params = list(sig.parameters.values())
                if owner in classes and not isinstance(inspect.getattr_static(owner, name), staticmethod):
                    params = params[1:]  # self
                if (owner.__name__, name) in self.HOMONYMS:
                    continue
                found.append(owner.__name__)
                kinds = {p.kind for p in params}
                if kinds <= {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}:
                    continue  # (*args, **kwargs): plotly's Figure.write_html
                positional = [
                    p.name
                    for p in params
                    if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                ]
                named = {positional[i] for i in positions if i < len(positional)}
                with self.subTest(function=name, owner=owner.__name__):
                    self.assertTrue(
                        named & keywords,
                        "%s.%s%s: positions %s name %s, none of them a path keyword"
                        % (owner.__name__, name, sig, positions, sorted(named)),
                    )
            with self.subTest(function=name):
                self.assertTrue(found, "no library in the image has %s()" % name)


@unittest.skipUnless(HAVE_LIBS, "needs numpy, pandas and matplotlib (the image has them)")
class WorkingDirectoryTest(unittest.TestCase):
    """Code the checker accepts reads and writes the working directory."""

    def setUp(self):
        self.old = os.getcwd()
        self.dir = tempfile.mkdtemp(prefix="work-")
        os.chdir(self.dir)
        os.mkdir("outputs")
        rows = ["region,amount"] + ["%s,%d" % ("NSEW"[i % 4], i) for i in range(1000)]
        with open("sales.csv", "w") as f:  # the test's own file access, not user code
            f.write("\n".join(rows) + "\n")

    def tearDown(self):
        os.chdir(self.old)
        shutil.rmtree(self.dir)

    def run_code(self, code):
        self.assertEqual(checker.check(code, RULES), [], "the policy refuses:\n" + code)
        ns = {"__name__": "__main__"}
        exec(compile(code, checker.CODE_FILENAME, "exec"), ns)
        return ns

    def test_pandas(self):
        ns = self.run_code(
            """
import io
import pandas as pd
df = pd.read_csv("sales.csv")
by = df.groupby("region")["amount"].sum()
by.to_csv("outputs/by_region.csv")
df.to_json("outputs/sales.json", orient="records")
df.to_csv("outputs/sales.tsv", sep="\\t", index=False)
back = pd.read_csv("outputs/by_region.csv", index_col=0)["amount"]
js = pd.read_json("outputs/sales.json", orient="records")
tsv = pd.read_table("outputs/sales.tsv")
buf = pd.read_csv(io.StringIO("a,b\\n1,2"))
df.to_html("outputs/sales.html")
"""
        )
        self.assertEqual(len(ns["df"]), 1000)
        self.assertEqual(ns["back"].to_dict(), ns["by"].to_dict())
        self.assertEqual(ns["js"].shape, (1000, 2))
        self.assertEqual(ns["tsv"].shape, (1000, 2))
        self.assertEqual(ns["buf"].iloc[0].tolist(), [1, 2])
        self.assertEqual(
            sorted(os.listdir("outputs")),
            ["by_region.csv", "sales.html", "sales.json", "sales.tsv"],
        )

    def test_numpy(self):
        ns = self.run_code(
            """
import numpy as np
a = np.arange(12, dtype=float).reshape(4, 3)
np.savetxt("outputs/a.txt", a, delimiter=",")
b = np.loadtxt("outputs/a.txt", delimiter=",")
c = np.genfromtxt("outputs/a.txt", delimiter=",")
np.save("outputs/a.npy", a)
d = np.load("outputs/a.npy")
np.savez("outputs/ab.npz", a=a, b=b)
with np.load("outputs/ab.npz") as z:
    e = z["b"]
"""
        )
        for name in "bcde":
            self.assertEqual(ns[name].tolist(), ns["a"].tolist(), name)

    def test_np_load_refuses_pickles(self):
        self.run_code('import numpy as np\nnp.save("outputs/o.npy", np.array([{}], dtype=object))')
        with self.assertRaises(ValueError) as ctx:
            self.run_code('import numpy as np\nnp.load("outputs/o.npy")')
        self.assertIn("allow_pickle", str(ctx.exception))

    def test_matplotlib(self):
        self.run_code(
            """
import matplotlib
matplotlib.use("agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.plot([1, 3, 2])
plt.savefig("outputs/chart.png")
fig.savefig("outputs/chart.svg")
plt.close("all")
"""
        )
        with open("outputs/chart.png", "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        with open("outputs/chart.svg", "rb") as f:
            self.assertIn(b"<svg", f.read(4096))

    def test_excel_round_trip(self):
        # The image ships pandas' Excel engine (python3-openpyxl).
        self.assertIsNotNone(importlib.util.find_spec("openpyxl"), "python3-openpyxl is not installed")
        code = """
import pandas as pd
df = pd.read_csv("sales.csv")
df.to_excel("outputs/sales.xlsx", index=False, sheet_name="销售")
x = pd.read_excel("outputs/sales.xlsx", sheet_name="销售")
"""
        ns = self.run_code(code)
        self.assertEqual(ns["x"].shape, ns["df"].shape)
        self.assertEqual(ns["x"].columns.tolist(), ns["df"].columns.tolist())
        self.assertTrue(ns["x"].equals(ns["df"]))

    def test_computed_paths_are_left_to_the_container(self):
        # A documented gap of a static check: the text of a computed path is
        # not known, so the checker lets it through; the container has only
        # the image's files (read-only) and a tmpfs to offer.
        code = 'import pandas as pd\nbase = "/etc"\nusers = pd.read_csv(base + "/passwd", sep=":", header=None)'
        self.assertIn("root", self.run_code(code)["users"][0].tolist())


class ValidatorDefaultPolicyTest(unittest.TestCase):
    """validate.py --policy: the rules are parsed once, a request without a
    "policy" key is checked under them, and its answer names their hash."""

    def setUp(self):
        import validate

        self.validate = validate
        self.text = json.dumps(RULES)
        self.defaults = validate.parse_args(["--policy", self.text], checker)

    def ask(self, request, defaults):
        return json.loads(self.validate.dumps(self.validate.handle(json.dumps(request).encode(), checker, defaults)))

    def test_default_policy_applies_and_is_named(self):
        import hashlib

        want = hashlib.sha256(self.text.encode()).hexdigest()
        ans = self.ask({"id": "1", "code": "import os"}, self.defaults)
        self.assertEqual((ans["id"], ans["valid"], ans["policy_sha256"]), ("1", False, want))
        self.assertEqual([e["rule"] for e in ans["errors"]], ["forbidden-module"])
        ans = self.ask({"id": 2, "code": 'print("你好")'}, self.defaults)
        self.assertEqual((ans["valid"], ans["errors"], ans["policy_sha256"]), (True, [], want))

    def test_same_verdicts_as_the_rules_sent_with_each_request(self):
        for code in ('import os', 'open("x")', 'import pandas as pd\npd.read_csv("/etc/passwd")',
                     'x = (1,\n', 'print(1)', 'f"{a.__class__}"'):
            by_default = self.ask({"id": "a", "code": code}, self.defaults)
            by_request = self.ask({"id": "a", "code": code, "policy": RULES}, self.defaults)
            self.assertEqual(by_default["errors"], by_request["errors"], code)
            self.assertNotIn("policy_sha256", by_request)  # not the process's rules

    def test_without_policy_only_syntax(self):
        none = self.validate.parse_args([], checker)
        ans = self.ask({"id": "1", "code": "import os"}, none)
        self.assertEqual((ans["valid"], "policy_sha256" in ans), (True, False))
        ans = self.ask({"id": "1", "code": "x = (1,"}, none)
        self.assertEqual([e["rule"] for e in ans["errors"]], ["syntax"])
        # A request's explicit null still means no policy under --policy.
        ans = self.ask({"id": "1", "code": "import os", "policy": None}, self.defaults)
        self.assertTrue(ans["valid"])

    def test_malformed_command_line_is_refused(self):
        for argv in (["--policy"], ["--policy", "{"], ["--policy", "[1]"], ["--rules", "{}"],
                     ["--policy", "{}", "extra"]):
            with self.assertRaises(ValueError, msg=argv):
                self.validate.parse_args(argv, checker)

    def test_prepared_rules_give_the_same_errors(self):
        prepared = checker.prepare(RULES)
        for code in ('import os', 'eval("1")', 'import numpy as np\nnp.load("a.npy", None, True)'):
            self.assertEqual(checker.check(code, prepared), checker.check(code, RULES), code)
        self.assertIsNone(checker.prepare(None))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1] + ["-v"])
