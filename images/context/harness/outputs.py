"""Rich outputs: what a notebook would show after the user's code ran.

Contract with runner_child.py:
  prepare(preloaded)            in the child, before "ready"
  before(namespace, options)    in the child, before the user's code
  collect(namespace, value, options, names=None) -> dict   after it; must be
                                JSON-safe; names (a set) limits the top-level
                                names looked at (a session's cell: those it
                                bound or rebound)
  empty() -> dict               the shape with nothing in it

The dict has exactly: charts (list), dataframes (list), variables (dict),
result (the last expression's display, or None), plus the optional flags
charts_truncated, dataframes_truncated, variables_truncated (true when a cap
dropped something) and collect_error (str: up to 10 "where: Error: message"
items joined by "; " -- one item failed, the others are still there).

How outputs are caught
----------------------
* matplotlib: each figure is rendered once: pyplot.show() renders every
  open pyplot figure in creation order and closes them, Figure.show()
  renders that figure, at the end every figure still open is rendered, then
  a Figure/Axes that is the last expression; each skips a figure already
  rendered. Only display(fig) renders a figure again (notebook semantics, so
  a loop that updates and displays a figure shows every state).
* plotly: BaseFigure.show() (graph_objects and express figures),
  plotly.io.show(fig or dict) and display(fig) capture the figure each time;
  a figure that is the last expression is captured unless that very object
  was already captured. Figures merely bound to names are not.
* Chart order: as produced during the run (show()/display() calls), then at
  the end the figures still open (creation order, recorded by an
  rcParams["figure.hooks"] entry; figure number order if the user reset the
  rcParams), then the last expression's figure.
* display(*objs) is a builtin in the child: DataFrame/Series -> dataframes,
  figures -> charts, anything else prints its (capped) repr to stdout.
* The hooks are installed without importing anything heavy: modules already
  imported (preloaded, PYEXEC_PRELOAD) are patched in before(); the others are
  patched when the user's code imports them, by a sys.meta_path finder that
  only reacts to the five module names in _PATCHES and wraps that module's
  exec_module. matplotlib.font_manager gets the CJK font as every font's last
  fallback (see "fonts").

Shapes
------
chart, matplotlib: {"type": "matplotlib", "format": "png" | "svg",
    "data": base64 of the file bytes (PNG, or the SVG text as UTF-8 bytes:
    both formats are base64 so "data" is always bytes),
    "width": px, "height": px}. For PNG width/height are read from the PNG
    header (figsize x dpi unless the user set savefig.bbox="tight"); for SVG
    they are figsize x dpi rounded (the SVG itself is in pt, 72 per inch).
chart, plotly: {"type": "plotly", "format": "json",
    "data": {"data": [...], "layout": {...}}} (plotly's own to_json, parsed).
dataframe: {"name", "kind": "dataframe" | "series", "shape": [rows, cols],
    "columns": [labels] (tuples of a MultiIndex become lists),
    "dtypes": {key: str(dtype)}: key = the label if it is a string, else
              the compact JSON of its "columns" entry (0 -> "0",
              ("A", "x") -> '["A","x"]'),
    "index": {"type": "RangeIndex"|"DatetimeIndex"|"MultiIndex"|..., "name",
              "names": [...], "dtype", "values": [...] (one list per row for
              a MultiIndex), plus "freq" for a DatetimeIndex with one},
    "data": [[cell, ...], ...] (rows of the first max_rows rows),
    "total_rows", "truncated" (rows were cut), "columns_truncated" (only the
    first max_columns columns are in columns/dtypes/data/html),
    "html": df.head(max_rows).to_html() (escaped; object cells cut to 200
    chars; past max_html_cells, or if pandas fails, a plain escaped table
    built from "data"). The service never passes it on: it replaces it with
    a table it builds from columns/index/data (runner/sanitize.go), so code
    that patches pandas cannot put markup in front of a client}.
  A Series is a one-column frame (Series.to_frame(): an unnamed Series gets
  the column label 0), kind "series". The last expression is named "_",
  display()ed frames take the top-level name bound to them, else
  "display_N" (N counts display()ed frames), DataFrames (not Series) bound
  to top-level names at the end take that name. Each object appears once
  (by id; rendered when first seen), in the order: displayed, last
  expression, names (definition order). Only head(max_rows) is ever
  converted, so a 1,000,000-row frame costs the same as a 100-row one.
variable: {"type": type(v).__name__, "repr": capped repr, "shape": [...] for
    numpy arrays and pandas DataFrame/Series/Index (plus "dtype" for arrays,
    Series and Index), "len" for other sized objects whose len() works}.
    Top-level names of the namespace, in definition order, except names
    starting with "_", modules, functions/methods/builtins, classes, typing
    and __future__ objects, and the injected display().
result: {"type": type(value).__name__, "repr": capped repr} or None (no final
    bare expression, or its value is None). Not printed to stdout.

Reprs never run a full repr of a big builtin container: reprlib.Repr with
limits (variables: 10 items a level, 3 levels, 200 elements in all; result:
100 items, 6 levels, 5000 elements), without sorting sets/dicts, capped at
max_repr / max_result_repr characters; numpy arrays and pandas objects use
their own summarising repr under bounded print options; plotly figures get
"<plotly Figure: N trace(s) (scatter, ...)>"; a repr that raises or does not
return a str gives "<unrepresentable TypeName>".

JSON-safe cell values: None/NaN/NaT/pd.NA -> null; +-inf -> the strings "inf"
and "-inf" (so they stay distinguishable from missing values); numpy scalars
-> Python numbers/bools; Timestamp/datetime/date/time -> ISO 8601 strings;
Timedelta/timedelta, Decimal, Period, complex -> str(); ints outside
[-2**63, 2**64-1] -> str; bytes -> repr; containers -> capped repr; anything else -> str(),
cut to max_cell_chars; a value whose str/repr raises -> "<unrepresentable T>".
Strings that cannot be encoded as UTF-8 (lone surrogates) are escaped.

Options (request "options", all optional): chart_format "png"|"svg";
max_charts 20; max_chart_bytes 5 MiB (size of one chart's data as it appears
in the JSON); max_chart_total_bytes 24 MiB (all charts together, leaving
room for tables and variables under the supervisor's 32 MiB cap); max_dataframes 20; max_rows 100;
max_columns 50; max_cell_chars 1000; max_variables 100; max_repr 200 (a
variable's repr); max_result_repr 10000 (the last expression's repr);
max_html_cells 10000 (cells rendered with pandas' to_html over all frames,
~7 us a cell; later frames get an equivalent table built from "data");
max_chart_pixels 25,000,000 (a PNG figure larger than that, figsize x dpi,
is not rendered: charts_truncated and a collect_error).
"""

import binascii  # base64 without importing base64 (struct etc.)
import builtins
import io
import itertools
import math
import reprlib
import sys
import types

import jsonlite  # not json: its import costs every sandbox ~15 ms of CPU

NO_VALUE = object()

_HOOK_SPEC = "outputs:_on_new_figure"  # matplotlib rcParams["figure.hooks"]

_DEFAULTS = {
    "max_charts": (20, 0, 1000),
    "max_chart_bytes": (5 << 20, 0, 1 << 30),
    "max_chart_total_bytes": (24 << 20, 0, 1 << 30),
    "max_dataframes": (20, 0, 1000),
    "max_rows": (100, 0, 100000),
    "max_columns": (50, 0, 10000),
    "max_cell_chars": (1000, 16, 1 << 20),
    "max_variables": (100, 0, 100000),
    "max_repr": (200, 16, 1 << 20),
    "max_result_repr": (10000, 16, 1 << 22),
    "max_html_cells": (10000, 0, 1 << 30),
    "max_chart_pixels": (25_000_000, 0, 1 << 40),
}
_HTML_CELL_CHARS = 200
_MAX_ERRORS = 10

_state = None  # the _State of this execution (one per child process)


# ---------------------------------------------------------------- contract


def prepare(preloaded):
    """In the child, before "ready". Patches the libraries already imported,
    and for the libraries preloaded (a list of names) imports the submodules
    that rendering pulls in lazily, so no execution pays for them."""
    global _state
    _patch_loaded()
    try:  # a dry run, so a child does not pay for first-time work
        before({}, {})
        collect({"x": 1}, 1, {})
    except BaseException:
        pass
    _state = None
    # Not plotly.io._renderers: ~100 ms, and the patched BaseFigure.show
    # never needs it.
    for lib, name in (
        ("pandas", "pandas.io.formats.html"),
        ("matplotlib", "matplotlib.backends.backend_agg"),
        ("matplotlib", "PIL.PngImagePlugin"),
        ("plotly", "plotly.io._json"),
    ):
        if lib not in preloaded:
            continue
        try:
            __import__(name)
        except Exception:
            pass


def before(namespace, options, on_chart=None):
    """Before the user's code runs. on_chart (streaming), when given, is
    called with each chart as it is rendered (show() or display(), or at the
    end of the run), after it was kept for the outputs."""
    global _state
    _state = _State(options, namespace)
    _state.on_chart = on_chart
    builtins.display = display
    if _patch_loaded() and not any(type(f) is _ImportHook for f in sys.meta_path):
        sys.meta_path.insert(0, _ImportHook())


def _patch_loaded():
    """Patches the hooked modules already imported (each patch is a no-op
    the second time); True if some are not imported yet."""
    pending = False
    for name, patch in _PATCHES.items():
        mod = sys.modules.get(name)
        if mod is not None:
            _safe_patch(patch, mod)
        else:
            pending = True
    return pending


def empty():
    return {"charts": [], "dataframes": [], "variables": {}, "result": None}


def collect(namespace, value, options, names=None):
    global _state
    st = _state
    if st is None:
        st = _state = _State(options, namespace)
    st.collecting = True
    out = empty()
    try:
        _collect_into(st, out, namespace, value, names)
    except BaseException as exc:  # never raise: keep what was gathered
        st.error("collect", exc)
    out["charts"] = st.charts
    out["dataframes"] = st.frames
    if st.charts_truncated:
        out["charts_truncated"] = True
    if st.frames_truncated:
        out["dataframes_truncated"] = True
    if st.errors:
        out["collect_error"] = _text("; ".join(st.errors), 4000)
    return out


def display(*objs, **kwargs):
    """Shows objects like a notebook's display(): DataFrames/Series as
    tables, matplotlib/plotly figures as charts, anything else as its repr
    printed on stdout."""
    st = _state
    if st is None:
        st = _State({}, None)
    for obj in objs:
        try:
            _display_one(st, obj)
        except BaseException as exc:
            st.error("display", exc)


# ---------------------------------------------------------------- state


def _opt_int(options, key):
    default, lo, hi = _DEFAULTS[key]
    val = options.get(key) if isinstance(options, dict) else None
    if type(val) is float and val.is_integer():
        val = int(val)
    if type(val) is not int:
        return default
    return max(lo, min(hi, val))


class _State:
    def __init__(self, options, namespace):
        if not isinstance(options, dict):
            options = {}
        self.namespace = namespace
        for key in _DEFAULTS:
            setattr(self, key, _opt_int(options, key))
        fmt = options.get("chart_format")
        self.chart_format = "svg" if isinstance(fmt, str) and fmt.lower() == "svg" else "png"
        self.charts = []
        self.charts_truncated = False
        self.chart_bytes = 0
        self.on_chart = None
        self.chart_objs = {}  # id -> figure rendered (keeps it alive: ids stay unique)
        self.frames = []
        self.frames_truncated = False
        self.frame_objs = {}  # id -> object rendered
        self.html_cells = 0  # cells rendered by pandas' to_html so far
        self.displays = 0
        self.errors = []
        self.collecting = False
        self.var_repr = _SafeRepr(self.max_repr, items=10, level=3, budget=200)
        self.result_repr = _SafeRepr(self.max_result_repr, items=100, level=6, budget=5000)

    def error(self, where, exc):
        if len(self.errors) < _MAX_ERRORS:
            try:
                msg = "%s: %s: %s" % (where, type(exc).__name__, _str_or(exc, 300))
            except BaseException:
                msg = "%s: error" % (where,)
            self.errors.append(msg)

    def add_chart(self, chart, size):
        if size > self.max_chart_bytes or self.chart_bytes + size > self.max_chart_total_bytes:
            self.charts_truncated = True
            return False
        self.charts.append(chart)
        self.chart_bytes += size
        if self.on_chart is not None:
            try:
                self.on_chart(chart)
            except Exception as exc:
                self.error("stream chart", exc)
        return True

    def chart_room(self):
        if len(self.charts) >= self.max_charts:
            self.charts_truncated = True
            return False
        return True

    def add_frame(self, obj, name):
        if id(obj) in self.frame_objs:
            return
        if len(self.frames) >= self.max_dataframes:
            self.frames_truncated = True
            return
        self.frame_objs[id(obj)] = obj
        entry = _checked(_render_frame(self, obj, name))
        if entry is not None:
            self.frames.append(entry)


# ---------------------------------------------------------------- collect


def _collect_into(st, out, namespace, value, names=None):
    pd = sys.modules.get("pandas")
    # 1. The last bare expression.
    if value is not NO_VALUE and value is not None:
        try:
            out["result"] = {"type": _type_name(value), "repr": st.result_repr.repr(value)}
        except BaseException as exc:
            st.error("result", exc)
            out["result"] = {"type": _type_name(value), "repr": _unrepresentable(value)}
        try:
            if pd is not None and issubclass(type(value), (pd.DataFrame, pd.Series)):
                st.add_frame(value, "_")
        except BaseException as exc:
            st.error("result", exc)
    # 2. matplotlib figures still open, in creation order.
    try:
        for fig in _open_figures():
            if id(fig) not in st.chart_objs:
                _emit_mpl(st, fig)
    except BaseException as exc:
        st.error("figures", exc)
    # 3. The last expression's figure, unless it is already there.
    if value is not NO_VALUE and value is not None:
        try:
            if _is_plotly_figure(value):
                if id(value) not in st.chart_objs:
                    _emit_plotly(st, value)
            else:
                fig = _mpl_figure_of(value)
                if fig is not None and id(fig) not in st.chart_objs:
                    _emit_mpl(st, fig)
        except BaseException as exc:
            st.error("result", exc)
    # 4. Top-level names.
    if not isinstance(namespace, dict):
        return
    variables = out["variables"]
    try:
        items = list(namespace.items())
        if names is not None:
            items = [(k, v) for k, v in items if k in names]
    except BaseException as exc:
        st.error("variables", exc)
        return
    df_type = pd.DataFrame if pd is not None else None
    for name, val in items:
        try:
            if type(name) is not str or name.startswith("_") or _hidden(val):
                continue
            if df_type is not None and issubclass(type(val), df_type):
                st.add_frame(val, name)
            if len(variables) >= st.max_variables:
                out["variables_truncated"] = True
                continue
            entry = _checked(_describe(st, val))
            if entry is not None:
                variables[_text(name, 200)] = entry
        except BaseException as exc:
            st.error("variable %s" % _text(name if type(name) is str else "?", 100), exc)


_HIDDEN_TYPES = (
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.BuiltinMethodType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
    type,
)


def _hidden(val):
    t = type(val)
    if issubclass(t, _HIDDEN_TYPES) or val is display:
        return True
    mod = getattr(t, "__module__", None)  # typing aliases, __future__ features
    return mod in ("typing", "__future__", "functools") and t.__name__ != "partial"


def _describe(st, val):
    entry = {"type": _type_name(val), "repr": st.var_repr.repr(val)}
    shape, dtype = _shape_of(val)
    if shape is not None:
        entry["shape"] = shape
        if dtype is not None:
            entry["dtype"] = dtype
        return entry
    try:
        if hasattr(type(val), "__len__"):
            n = len(val)
            if type(n) is int:
                entry["len"] = n
    except BaseException:
        pass
    return entry


def _shape_of(val):
    """(shape list, dtype str) for numpy arrays and pandas objects, else (None, None)."""
    t = type(val)
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    try:
        if np is not None and issubclass(t, np.ndarray):
            return [int(n) for n in val.shape], _str_or(val.dtype, 100)
        if pd is not None:
            if issubclass(t, pd.DataFrame):
                return [int(n) for n in val.shape], None
            if issubclass(t, (pd.Series, pd.Index)):
                return [int(n) for n in val.shape], _str_or(val.dtype, 100)
    except BaseException:
        pass
    return None, None


# ---------------------------------------------------------------- display


def _display_one(st, obj):
    pd = sys.modules.get("pandas")
    if pd is not None and issubclass(type(obj), (pd.DataFrame, pd.Series)):
        st.displays += 1
        st.add_frame(obj, _name_in(st.namespace, obj) or "display_%d" % st.displays)
        return
    if _is_plotly_figure(obj):
        _emit_plotly(st, obj)
        return
    fig = _mpl_figure_of(obj)
    if fig is not None:
        _emit_mpl(st, fig, again=True)
        return
    text = st.result_repr.repr(obj)
    out = sys.stdout
    if out is not None:
        out.write(text + "\n")


def _name_in(namespace, obj):
    if not isinstance(namespace, dict):
        return None
    for name, val in list(namespace.items()):
        if val is obj and type(name) is str and not name.startswith("_"):
            return _text(name, 200)
    return None


# ---------------------------------------------------------------- matplotlib

_fig_seq = itertools.count()


def _on_new_figure(fig):
    """rcParams["figure.hooks"]: records creation order of pyplot figures."""
    try:
        fig._pyexec_seq = next(_fig_seq)
    except BaseException:
        pass


def _open_figures():
    """Open pyplot figures in creation order."""
    if "matplotlib.pyplot" not in sys.modules:
        return []
    helpers = sys.modules.get("matplotlib._pylab_helpers")
    if helpers is None:
        return []
    figs = []
    for manager in list(helpers.Gcf.get_all_fig_managers()):
        fig = getattr(getattr(manager, "canvas", None), "figure", None)
        if fig is not None:
            figs.append(fig)
    seqs = [getattr(f, "_pyexec_seq", None) for f in figs]
    if all(type(s) is int for s in seqs):
        order = seqs
    else:
        order = [getattr(f, "number", 0) for f in figs]
    try:
        return [f for _, _, f in sorted(zip(order, range(len(figs)), figs))]
    except TypeError:
        return figs


def _mpl_figure_of(obj):
    """The top-level matplotlib Figure of a Figure/SubFigure/Axes, else None."""
    if "matplotlib.figure" not in sys.modules:
        return None
    mfig = sys.modules["matplotlib.figure"]
    t = type(obj)
    fig = None
    if issubclass(t, mfig.Figure):
        fig = obj
    elif issubclass(t, mfig.SubFigure):
        fig = obj.get_figure(root=True) if _has_root_kw() else obj.figure
    else:
        axes_mod = sys.modules.get("matplotlib.axes")
        if axes_mod is not None and issubclass(t, axes_mod.Axes):
            fig = obj.get_figure(root=True) if _has_root_kw() else obj.figure
    if fig is not None and not issubclass(type(fig), mfig.Figure):
        fig = getattr(fig, "figure", None)
    return fig if fig is not None and issubclass(type(fig), mfig.Figure) else None


def _has_root_kw():
    mpl = sys.modules.get("matplotlib")
    try:
        return tuple(int(p) for p in mpl.__version__.split(".")[:2]) >= (3, 10)
    except Exception:
        return False


def _emit_mpl(st, fig, again=False):
    """Renders one matplotlib figure into st.charts, unless it was already
    rendered (again=True: display(fig) renders it each time)."""
    if id(fig) in st.chart_objs and not again:
        return
    st.chart_objs[id(fig)] = fig
    if not st.chart_room():
        return
    try:
        fmt = st.chart_format
        if fmt == "png":  # a 20000x20000 px canvas alone is 1.6 GB
            w_in, h_in = fig.get_size_inches()
            pixels = w_in * fig.dpi * h_in * fig.dpi
            if not pixels <= st.max_chart_pixels:
                st.charts_truncated = True
                st.error("matplotlib figure", ValueError("%.0fx%.0f px is over max_chart_pixels" % (w_in * fig.dpi, h_in * fig.dpi)))
                return
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt)
        raw = buf.getvalue()
        if fmt == "png" and raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR":
            width = int.from_bytes(raw[16:20], "big")
            height = int.from_bytes(raw[20:24], "big")
        else:
            w_in, h_in = fig.get_size_inches()
            width, height = int(round(w_in * fig.dpi)), int(round(h_in * fig.dpi))
        data = binascii.b2a_base64(raw, newline=False).decode("ascii")
        del raw, buf
        chart = {"type": "matplotlib", "format": fmt, "data": data, "width": width, "height": height}
        st.add_chart(chart, len(data))
    except BaseException as exc:
        st.error("matplotlib figure", exc)
        if not st.collecting:
            _warn("pyexec: could not render a matplotlib figure: %s: %s" % (type(exc).__name__, _str_or(exc, 300)))


def _pyplot_show(*args, **kwargs):
    """Replaces matplotlib.pyplot.show: renders every open figure (creation
    order) not rendered yet, then closes them all."""
    st = _state
    plt = sys.modules.get("matplotlib.pyplot")
    if st is None or plt is None:
        return None
    try:
        figs = _open_figures()
    except BaseException as exc:
        st.error("plt.show", exc)
        return None
    for fig in figs:
        _emit_mpl(st, fig)
    for fig in figs:
        try:
            plt.close(fig)
        except BaseException:
            pass
    return None


def _figure_show(self, *args, **kwargs):
    """Replaces matplotlib.figure.Figure.show: renders this figure unless it
    was already (like a GUI window that is already shown)."""
    st = _state
    if st is not None:
        _emit_mpl(st, self)


def _patch_pyplot(plt):
    import functools

    if getattr(plt.show, "_pyexec", False):
        return
    wrapper = functools.wraps(plt.show)(_pyplot_show)
    wrapper._pyexec = True
    plt.show = wrapper
    try:  # creation order; without it (rc reset by the user) figure numbers
        rc = sys.modules["matplotlib"].rcParams
        hooks = list(rc["figure.hooks"])
        if _HOOK_SPEC not in hooks:
            rc["figure.hooks"] = hooks + [_HOOK_SPEC]
    except Exception:
        pass


def _patch_mpl_figure(mfig):
    if getattr(mfig.Figure.show, "_pyexec", False):
        return
    _figure_show._pyexec = True
    _figure_show.__doc__ = mfig.Figure.show.__doc__
    mfig.Figure.show = _figure_show


# ---------------------------------------------------------------- fonts
# The image carries a CJK font (Chinese, Japanese kana, Korean Hangul). It is
# added as the last fallback of every font matplotlib looks up, so text in any
# of those scripts renders as glyphs whatever family the code, a style or
# seaborn's set_theme() chose, and the rc defaults stay matplotlib's own.

_CJK_FAMILY = "WenQuanYi Micro Hei"  # Debian's fonts-wqy-microhei
_cjk_path = None  # its file, once looked up; "" when it is not installed


def _cjk_font(manager):
    global _cjk_path
    if _cjk_path is None:
        _cjk_path = ""
        try:
            fm = sys.modules["matplotlib.font_manager"]
            _cjk_path = manager.findfont(fm.FontProperties(family=_CJK_FAMILY), fallback_to_default=False)
        except Exception:
            pass
    return _cjk_path


def _patch_font_manager(fm):
    cls = fm.FontManager
    find = cls._find_fonts_by_props  # matplotlib >= 3.6: font fallback lists
    if getattr(find, "_pyexec", False):
        return

    def _find_fonts_by_props(self, prop, fontext="ttf", *args, **kwargs):
        paths = find(self, prop, fontext, *args, **kwargs)
        if fontext == "ttf":
            cjk = _cjk_font(self)
            if cjk and cjk not in paths:
                paths = list(paths) + [cjk]
        return paths

    _find_fonts_by_props._pyexec = True
    _find_fonts_by_props.__wrapped__ = find
    _find_fonts_by_props.__doc__ = find.__doc__
    cls._find_fonts_by_props = _find_fonts_by_props


# ---------------------------------------------------------------- plotly


def _is_plotly_figure(obj):
    base = sys.modules.get("plotly.basedatatypes")
    return base is not None and issubclass(type(obj), base.BaseFigure)


def _emit_plotly(st, fig):
    st.chart_objs[id(fig)] = fig
    if not st.chart_room():
        return
    try:
        if _is_plotly_figure(fig):
            text = fig.to_json(validate=False)
        else:  # a figure dict passed to plotly.io.show
            from plotly.io import to_json

            text = to_json(fig, validate=True)
        size = len(text)
        if size > st.max_chart_bytes:
            st.charts_truncated = True
            return
        import json  # plotly imported it already

        data = json.loads(text, parse_constant=lambda _c: None)
        del text
        if not isinstance(data, dict):
            raise TypeError("figure JSON is not an object")
        data.setdefault("data", [])
        data.setdefault("layout", {})
        chart = _checked({"type": "plotly", "format": "json", "data": data})
        if chart is not None:
            st.add_chart(chart, size)
    except BaseException as exc:
        st.error("plotly figure", exc)


def _plotly_fig_show(self, *args, **kwargs):
    """Replaces plotly BaseFigure.show: captures the figure."""
    st = _state
    if st is not None:
        _emit_plotly(st, self)


def _plotly_io_show(fig, *args, **kwargs):
    """Replaces plotly.io.show: captures the figure (object or dict)."""
    st = _state
    if st is not None:
        _emit_plotly(st, fig)


def _patch_plotly_base(mod):
    if getattr(mod.BaseFigure.show, "_pyexec", False):
        return
    _plotly_fig_show._pyexec = True
    _plotly_fig_show.__doc__ = mod.BaseFigure.show.__doc__
    mod.BaseFigure.show = _plotly_fig_show


def _patch_plotly_renderers(mod):
    if getattr(mod.show, "_pyexec", False):
        return
    _plotly_io_show._pyexec = True
    _plotly_io_show.__doc__ = mod.show.__doc__
    mod.show = _plotly_io_show
    pio = sys.modules.get("plotly.io")
    if pio is not None and "show" in vars(pio):
        pio.show = _plotly_io_show


_PATCHES = {
    "matplotlib.font_manager": _patch_font_manager,
    "matplotlib.figure": _patch_mpl_figure,
    "matplotlib.pyplot": _patch_pyplot,
    "plotly.basedatatypes": _patch_plotly_base,
    "plotly.io._renderers": _patch_plotly_renderers,
}


def _safe_patch(patch, mod):
    try:
        patch(mod)
    except BaseException as exc:
        if _state is not None:
            _state.error("hook %s" % getattr(mod, "__name__", "?"), exc)


class _ImportHook:
    """sys.meta_path finder that patches the modules in _PATCHES right after
    they are executed. Returns None (costs a dict lookup) for anything else."""

    def find_spec(self, name, path=None, target=None):
        patch = _PATCHES.get(name)
        if patch is None:
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module):
            try:
                del loader.exec_module  # back to the class's method
            except AttributeError:
                pass
            original(module)
            if getattr(module, "__name__", None) == name:
                _safe_patch(patch, module)

        try:
            loader.exec_module = exec_module
        except (AttributeError, TypeError):
            pass
        return spec

    def invalidate_caches(self):
        pass


# ---------------------------------------------------------------- DataFrames


def _render_frame(st, obj, name):
    pd = sys.modules["pandas"]
    is_series = issubclass(type(obj), pd.Series)
    total_rows = int(obj.shape[0])
    total_cols = 1 if is_series else int(obj.shape[1])
    cols_cut = total_cols > st.max_columns
    if is_series:
        head = obj.iloc[: st.max_rows].to_frame()
    elif cols_cut:
        head = obj.iloc[: st.max_rows, : st.max_columns]
    else:
        head = obj.iloc[: st.max_rows]
    cap = st.max_cell_chars
    columns = [_json_label(c, cap) for c in head.columns]
    dtypes = {}
    for label, dt in zip(head.columns, head.dtypes):
        dtypes.setdefault(_label_key(label), _str_or(dt, 100))
    index = _render_index(head.index, cap)
    cols = []
    for j in range(head.shape[1]):
        cols.append(_column_values(head.iloc[:, j], cap))
    n = int(head.shape[0])
    rows = [list(r) for r in zip(*cols)] if cols else [[] for _ in range(n)]
    return {
        "name": name,
        "kind": "series" if is_series else "dataframe",
        "shape": [total_rows, total_cols],
        "columns": columns,
        "dtypes": dtypes,
        "index": index,
        "data": rows,
        "total_rows": total_rows,
        "truncated": total_rows > n,
        "columns_truncated": cols_cut,
        "html": _frame_html(st, head, columns, index, rows),
    }


def _render_index(idx, cap):
    pd = sys.modules["pandas"]
    out = {"type": _type_name(idx)}
    names = [_json_label(n, 200) for n in idx.names]
    out["name"] = names[0] if len(names) == 1 else None
    out["names"] = names
    if issubclass(type(idx), pd.MultiIndex):
        out["dtype"] = "object"
        out["dtypes"] = [_str_or(d, 100) for d in idx.dtypes]
        levels = [_column_values(idx.get_level_values(i), cap) for i in range(idx.nlevels)]
        out["values"] = [list(r) for r in zip(*levels)]
    else:
        out["dtype"] = _str_or(idx.dtype, 100)
        out["values"] = _column_values(idx, cap)
        if issubclass(type(idx), pd.DatetimeIndex):
            freq = idx.freqstr
            if freq is not None:
                out["freq"] = _text(str(freq), 100)
    return out


def _column_values(col, cap):
    """JSON-safe values of a (short) Series/Index."""
    try:
        kind = col.dtype.kind
    except BaseException:
        kind = "O"
    values = col.tolist()
    if kind in "iub":
        return [_json_value(v, cap) if type(v) is not int and type(v) is not bool else v for v in values]
    if kind == "f":
        return [_float(v) if type(v) is float else _json_value(v, cap) for v in values]
    return [_json_value(v, cap) for v in values]


def _frame_html(st, head, columns, index, rows):
    """pandas' to_html of the head, or, once max_html_cells cells have been
    rendered by pandas (it is slow: ~7 us a cell) or if it fails, the same
    table built here from the JSON values."""
    cells = int(head.shape[0]) * max(1, int(head.shape[1]))
    if st.html_cells + cells > st.max_html_cells:
        return _fallback_html(head, columns, index, rows)
    st.html_cells += cells
    try:
        frame = head
        obj_cols = [j for j, dt in enumerate(head.dtypes) if getattr(dt, "kind", "O") == "O"]
        if obj_cols:
            frame = head.copy()
            for j in obj_cols:
                frame.isetitem(j, frame.iloc[:, j].map(_html_cell))
        html = frame.to_html(escape=True, notebook=False, show_dimensions=False)
        return _text(html, 8 << 20)
    except BaseException:
        return _fallback_html(head, columns, index, rows)


def _html_cell(v):
    if v is None or type(v) in (int, float, bool):
        return v
    return _str_or(v, _HTML_CELL_CHARS)


def _fallback_html(head, columns, index, rows):
    from html import escape

    try:
        kinds = [getattr(dt, "kind", "O") for dt in head.dtypes]
    except BaseException:
        kinds = []
    missing = {"f": "NaN", "c": "NaN", "M": "NaT", "m": "NaT"}

    def cell(v, kind="O"):
        if v is None:
            return missing.get(kind, "None")
        if type(v) is list:
            return escape(", ".join(x if type(x) is str else jsonlite.dumps(x) for x in v))
        return escape(v if type(v) is str else jsonlite.dumps(v))

    multi = index.get("type") == "MultiIndex"
    nlev = len(index.get("names") or [None]) if multi else 1
    parts = ['<table border="1" class="dataframe">\n  <thead>\n    <tr style="text-align: right;">\n']
    parts += ["      <th></th>\n"] * nlev
    parts += ["      <th>%s</th>\n" % cell(c) for c in columns]
    parts.append("    </tr>\n  </thead>\n  <tbody>\n")
    values = index.get("values") or []
    for i, row in enumerate(rows):
        label = values[i] if i < len(values) else None
        labels = label if multi and type(label) is list else [label]
        parts.append("    <tr>\n")
        parts += ["      <th>%s</th>\n" % cell(x) for x in labels]
        parts += [
            "      <td>%s</td>\n" % cell(v, kinds[j] if j < len(kinds) else "O")
            for j, v in enumerate(row)
        ]
        parts.append("    </tr>\n")
    parts.append("  </tbody>\n</table>")
    return "".join(parts)


# ---------------------------------------------------------------- JSON values

_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1


def _float(v):
    if v != v:
        return None
    if v == math.inf:
        return "inf"
    if v == -math.inf:
        return "-inf"
    return v


def _json_value(v, cap=1000):
    """One cell as a JSON-safe value (see the module docstring)."""
    try:
        t = type(v)
        if v is None or t is bool:
            return v
        if t is int:
            return v if _INT_MIN <= v <= _INT_MAX else _int_text(v, cap)
        if t is float:
            return _float(v)
        if t is str:
            return _text(v, cap)
        np = sys.modules.get("numpy")
        if np is not None and issubclass(t, np.generic):
            if issubclass(t, (np.datetime64, np.timedelta64)):
                return None if np.isnat(v) else _text(str(v), cap)
            if issubclass(t, (np.bool_, np.integer, np.floating)):
                return _json_value(v.item(), cap)
            if issubclass(t, (np.str_, np.bytes_)):
                return _json_value(v.item(), cap)
            return _str_or(v, cap)
        pd = sys.modules.get("pandas")
        if pd is not None:
            if v is pd.NaT or v is pd.NA:
                return None
            if issubclass(t, pd.Timedelta):
                return _text(str(v), cap)
        dt = sys.modules.get("datetime")
        if dt is not None:
            if issubclass(t, (dt.datetime, dt.date, dt.time)):
                return _text(v.isoformat(), cap)
            if issubclass(t, dt.timedelta):
                return _text(str(v), cap)
        if issubclass(t, bool):
            return bool(v)
        if issubclass(t, int):
            return _json_value(int.__int__(v), cap)
        if issubclass(t, float):
            return _float(float.__float__(v))
        if issubclass(t, str):
            return _text(str.__getitem__(v, slice(0, cap + 1)), cap)
        if issubclass(t, (bytes, bytearray, memoryview)):
            return _repr_capped(v, cap)
        if issubclass(t, (list, tuple, dict, set, frozenset)):
            return _repr_capped(v, cap)
        if issubclass(t, complex):
            return _text(str(v), cap)
        return _str_or(v, cap)
    except BaseException:
        return _unrepresentable(v)


def _json_label(label, cap):
    if type(label) is tuple:
        return [_json_value(x, cap) for x in label]
    return _json_value(label, cap)


def _label_key(label):
    """The dtypes key of a column: the label if it is a string, else the
    compact JSON text of its entry in "columns" (0 -> "0", ("A", "x") ->
    '["A","x"]', None -> "null")."""
    v = _json_label(label, 1000)
    if type(v) is str:
        return v
    return _text(jsonlite.dumps(v, ensure_ascii=False, separators=(",", ":")), 1000)


def _int_text(v, cap):
    if v.bit_length() > 12000:
        return "<int with %d bits>" % v.bit_length()
    return _text(str(v), cap)


def _repr_capped(v, cap):
    return _SafeRepr(cap, items=20, level=3, budget=200).repr(v)


# ---------------------------------------------------------------- text helpers


def _text(s, cap):
    """s cut to cap chars and made encodable as UTF-8."""
    if type(s) is not str:
        s = str.__str__(s) if isinstance(s, str) else str(s)
    if len(s) > cap:
        s = s[: max(0, cap - 3)] + "..."
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s


def _type_name(obj):
    try:
        name = type(obj).__name__
        if type(name) is str:
            return _text(name, 200)
    except BaseException:
        pass
    return "object"


def _unrepresentable(obj):
    return "<unrepresentable %s>" % _type_name(obj)


def _str_or(obj, cap):
    """str(obj) cut to cap, or <unrepresentable T>."""
    try:
        s = str(obj)
        if type(s) is not str:
            s = str.__str__(s)
        return _text(s, cap)
    except BaseException:
        return _unrepresentable(obj)


def _warn(msg):
    try:
        sys.stderr.write(_text(msg, 1000) + "\n")
    except BaseException:
        pass


def _checked(entry):
    """entry if it serialises as strict UTF-8 JSON, else a sanitised copy, else None."""
    try:
        jsonlite.dumps(entry, ensure_ascii=False, allow_nan=False).encode("utf-8")
        return entry
    except BaseException:
        pass
    try:
        entry = _sanitize(entry, 0)
        jsonlite.dumps(entry, ensure_ascii=False, allow_nan=False).encode("utf-8")
        return entry
    except BaseException as exc:
        if _state is not None:
            _state.error("output", exc)
        return None


def _sanitize(obj, depth):
    t = type(obj)
    if obj is None or t is bool or t is int:
        return obj
    if t is float:
        return _float(obj)
    if t is str:
        return _text(obj, len(obj) + 3)
    if depth > 100:
        return None
    if t is list or t is tuple:
        return [_sanitize(x, depth + 1) for x in obj]
    if t is dict:
        return {_text(k, 1000) if type(k) is str else _str_or(k, 1000): _sanitize(v, depth + 1) for k, v in obj.items()}
    return _json_value(obj)


# ---------------------------------------------------------------- capped repr


class _SafeRepr(reprlib.Repr):
    """reprlib.Repr that never raises, never sorts or walks a whole container,
    handles subclasses of builtins without a full repr of a huge object,
    and stops after `budget` elements overall."""

    def __init__(self, limit, items, level, budget):
        super().__init__(
            maxlevel=level,
            maxtuple=items,
            maxlist=items,
            maxarray=items,
            maxdict=items,
            maxset=items,
            maxfrozenset=items,
            maxdeque=items,
            maxstring=limit,
            maxlong=limit,
            maxother=limit,
        )
        self.limit = limit
        self.budget = budget
        self._left = budget

    def repr(self, x):
        self._left = self.budget
        try:
            s = self.repr1(x, self.maxlevel)
        except BaseException:
            s = _unrepresentable(x)
        return _text(s, self.limit)

    def repr1(self, x, level):
        self._left -= 1
        if self._left < 0:
            return self.fillvalue
        try:
            t = type(x)
            exact = _EXACT.get(t)
            if exact is not None:
                return exact(self, x, level)
            special = _special_repr(self, x, t, level)
            if special is not None:
                return special
            for base, meth, size in _BASES:
                if issubclass(t, base):
                    return self._subclass(x, t, base, meth, size, level)
            return self.repr_instance(x, level)
        except BaseException:
            return _unrepresentable(x)

    def _subclass(self, x, t, base, meth, size, level):
        if t.__repr__ is base.__repr__:
            return meth(self, x, level)
        if size(x) > 1000:  # custom repr of a big object: the base's, capped
            return "%s(%s)" % (t.__name__, meth(self, x, level))
        return self.repr_instance(x, level)

    def repr_instance(self, x, level):
        try:
            s = builtins.repr(x)
            if type(s) is not str:
                s = str.__str__(s)
        except BaseException:
            return _unrepresentable(x)
        if len(s) > self.maxother:
            i = max(0, (self.maxother - 3) // 2)
            j = max(0, self.maxother - 3 - i)
            s = s[:i] + self.fillvalue + s[len(s) - j :]
        return s

    def _iter(self, x, it, n, level, left, right, maxiter, trail=""):
        if level <= 0 and n:
            return left + self.fillvalue + right
        pieces = [self.repr1(e, level - 1) for e in itertools.islice(it, maxiter)]
        if n > maxiter:
            pieces.append(self.fillvalue)
        if n == 1 and trail:
            right = trail + right
        return left + ", ".join(pieces) + right

    def s_list(self, x, level):
        return self._iter(x, list.__iter__(x), list.__len__(x), level, "[", "]", self.maxlist)

    def s_tuple(self, x, level):
        return self._iter(x, tuple.__iter__(x), tuple.__len__(x), level, "(", ")", self.maxtuple, ",")

    def s_set(self, x, level):
        n = set.__len__(x)
        if not n:
            return "set()"
        return self._iter(x, set.__iter__(x), n, level, "{", "}", self.maxset)

    def s_frozenset(self, x, level):
        n = frozenset.__len__(x)
        if not n:
            return "frozenset()"
        return self._iter(x, frozenset.__iter__(x), n, level, "frozenset({", "})", self.maxfrozenset)

    def s_dict(self, x, level):
        n = dict.__len__(x)
        if n == 0:
            return "{}"
        if level <= 0:
            return "{" + self.fillvalue + "}"
        pieces = []
        for k, v in itertools.islice(dict.items(x), self.maxdict):
            pieces.append("%s: %s" % (self.repr1(k, level - 1), self.repr1(v, level - 1)))
        if n > self.maxdict:
            pieces.append(self.fillvalue)
        return "{" + ", ".join(pieces) + "}"

    def s_str(self, x, level):
        n = str.__len__(x)
        m = self.maxstring
        if n <= m:
            return builtins.repr(str.__getitem__(x, slice(None)))
        i = max(0, (m - 3) // 2)
        j = max(0, m - 3 - i)
        head = builtins.repr(str.__getitem__(x, slice(0, i)))
        tail = builtins.repr(str.__getitem__(x, slice(n - j, n)))
        return head[:-1] + self.fillvalue + tail[1:]

    def s_bytes(self, x, level):
        base = bytearray if isinstance(x, bytearray) else bytes
        n = len(memoryview(x))
        m = self.maxstring
        if n <= m:
            s = builtins.repr(base(x))
        else:
            s = builtins.repr(base(memoryview(x)[: max(0, m - 3)])) + self.fillvalue
        return s

    def s_int(self, x, level):
        bits = int.bit_length(x)
        if bits > 12000:
            return "<int with %d bits>" % bits
        s = int.__repr__(x)
        if len(s) > self.maxlong:
            i = max(0, (self.maxlong - 3) // 2)
            j = max(0, self.maxlong - 3 - i)
            s = s[:i] + self.fillvalue + s[len(s) - j :]
        return s

    def s_float(self, x, level):
        return float.__repr__(x)

    def s_plain(self, x, level):
        return builtins.repr(x)


_EXACT = {
    list: _SafeRepr.s_list,
    tuple: _SafeRepr.s_tuple,
    set: _SafeRepr.s_set,
    frozenset: _SafeRepr.s_frozenset,
    dict: _SafeRepr.s_dict,
    str: _SafeRepr.s_str,
    bytes: _SafeRepr.s_bytes,
    bytearray: _SafeRepr.s_bytes,
    int: _SafeRepr.s_int,
    float: _SafeRepr.s_float,
    bool: _SafeRepr.s_plain,
    complex: _SafeRepr.s_plain,
    type(None): _SafeRepr.s_plain,
}

# (base, capped repr of the base part, size) for subclasses of builtins.
_BASES = (
    (str, _SafeRepr.s_str, str.__len__),
    (bytes, _SafeRepr.s_bytes, bytes.__len__),
    (bytearray, _SafeRepr.s_bytes, bytearray.__len__),
    (int, _SafeRepr.s_int, lambda x: int.bit_length(x) // 4),
    (float, _SafeRepr.s_float, lambda x: 0),
    (dict, _SafeRepr.s_dict, dict.__len__),
    (list, _SafeRepr.s_list, list.__len__),
    (tuple, _SafeRepr.s_tuple, tuple.__len__),
    (set, _SafeRepr.s_set, set.__len__),
    (frozenset, _SafeRepr.s_frozenset, frozenset.__len__),
)


def _special_repr(r, x, t, level):
    """Reprs of library types that are huge (plotly figures) or need bounded
    numpy/pandas print options; None for everything else."""
    mod = getattr(t, "__module__", "") or ""
    if type(mod) is not str:
        return None
    if mod.startswith("plotly") and _is_plotly_figure(x):
        try:
            traces = x.data
            kinds = [_str_or(getattr(tr, "type", "?"), 40) for tr in traces[:10]]
            more = ", ..." if len(traces) > 10 else ""
            return "<plotly %s: %d trace(s) (%s%s)>" % (t.__name__, len(traces), ", ".join(kinds), more)
        except BaseException:
            return "<plotly %s>" % t.__name__
    if mod == "numpy":
        np = sys.modules.get("numpy")
        if np is not None and issubclass(t, np.ndarray) and x.size > 1000:
            with np.printoptions(threshold=1000, edgeitems=3):
                return r.repr_instance(x, level)
        return None
    if mod.startswith("pandas"):
        pd = sys.modules.get("pandas")
        if pd is not None and issubclass(t, (pd.DataFrame, pd.Series)):
            small = r.limit <= 1000
            with pd.option_context(
                "display.max_rows", 10 if small else 60,
                "display.min_rows", 6 if small else 10,
                "display.max_columns", 10 if small else 20,
                "display.width", 120 if small else 200,
                "display.max_colwidth", 50,
            ):
                return builtins.repr(x)
    if mod == "collections" and t.__name__ == "deque":
        n = len(x)
        return r._iter(x, iter(x), n, level, "deque([", "])", r.maxdeque)
    return None
