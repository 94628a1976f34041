package runner_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"image"
	"image/png"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/runner"
)

// pngSize reads the pixel size from a base64 PNG's IHDR chunk.
func pngSize(t *testing.T, data json.RawMessage) (int, int) {
	t.Helper()
	var b64 string
	if err := json.Unmarshal(data, &b64); err != nil {
		t.Fatalf("chart data is not a base64 string: %v", err)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) < 24 || !bytes.HasPrefix(raw, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("chart is not a PNG (%d bytes, %v)", len(raw), err)
	}
	return int(binary.BigEndian.Uint32(raw[16:20])), int(binary.BigEndian.Uint32(raw[20:24]))
}

func runOK(t *testing.T, e *env, code string) runner.Result {
	t.Helper()
	res := e.run(t, code, 60*time.Second)
	if res.Status != runner.StatusSuccess {
		t.Fatalf("status %q error %+v stderr %q", res.Status, res.Error, res.Stderr)
	}
	if res.Outputs.CollectError != "" {
		t.Fatalf("collect error: %s", res.Outputs.CollectError)
	}
	return res
}

const sineWave = `import matplotlib.pyplot as plt
import numpy as np

x = np.linspace(0, 10, 100)
y = np.sin(x)

plt.figure(figsize=(10, 6))
plt.plot(x, y)
plt.title('Sine Wave')
plt.show()
`

func TestOutputsMatplotlib(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	t.Run("seed sine wave", func(t *testing.T) {
		res := runOK(t, e, sineWave)
		if len(res.Outputs.Charts) != 1 {
			t.Fatalf("%d charts, want 1", len(res.Outputs.Charts))
		}
		c := res.Outputs.Charts[0]
		w, h := pngSize(t, c.Data)
		if c.Type != "matplotlib" || c.Format != "png" || w != 1000 || h != 600 || c.Width != w || c.Height != h {
			t.Errorf("chart %s/%s %dx%d (PNG %dx%d), want a 1000x600 PNG (figsize 10x6 at 100 dpi)", c.Type, c.Format, c.Width, c.Height, w, h)
		}
	})
	t.Run("two figures in order, each once", func(t *testing.T) {
		res := runOK(t, e, "import matplotlib.pyplot as plt\nplt.figure(figsize=(2, 2))\nplt.plot([1, 2])\nplt.figure(figsize=(4, 3))\nplt.plot([2, 1])\nplt.show()\n")
		if len(res.Outputs.Charts) != 2 {
			t.Fatalf("%d charts, want 2", len(res.Outputs.Charts))
		}
		w0, _ := pngSize(t, res.Outputs.Charts[0].Data)
		w1, _ := pngSize(t, res.Outputs.Charts[1].Data)
		if w0 != 200 || w1 != 400 {
			t.Errorf("widths %d, %d: want 200 then 400 (creation order)", w0, w1)
		}
	})
	t.Run("subplots", func(t *testing.T) {
		res := runOK(t, e, "import matplotlib.pyplot as plt\nfig, axes = plt.subplots(2, 2, figsize=(6, 4))\nfor i, ax in enumerate(axes.flat):\n    ax.plot(range(i + 2))\n")
		if len(res.Outputs.Charts) != 1 {
			t.Fatalf("%d charts, want the one open figure", len(res.Outputs.Charts))
		}
	})
	t.Run("seaborn", func(t *testing.T) {
		res := runOK(t, e, "import seaborn as sns\nimport numpy as np\nimport matplotlib.pyplot as plt\nsns.histplot(np.random.default_rng(0).normal(size=200))\nplt.show()\n")
		if len(res.Outputs.Charts) != 1 || res.Outputs.Charts[0].Type != "matplotlib" {
			t.Fatalf("charts %+v", len(res.Outputs.Charts))
		}
	})
	t.Run("pandas plot", func(t *testing.T) {
		res := runOK(t, e, "import pandas as pd\ndf = pd.DataFrame({'a': [1, 3, 2], 'b': [2, 1, 3]})\nax = df.plot()\n")
		if len(res.Outputs.Charts) != 1 {
			t.Fatalf("%d charts, want 1", len(res.Outputs.Charts))
		}
	})
	t.Run("svg", func(t *testing.T) {
		res, err := e.r.Run(t.Context(), runner.Request{
			Code: "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()", Timeout: time.Minute,
			Options: map[string]any{"chart_format": "svg"},
		})
		if err != nil || res.Status != runner.StatusSuccess || len(res.Outputs.Charts) != 1 {
			t.Fatalf("%v %q %d", err, res.Status, len(res.Outputs.Charts))
		}
		var b64 string
		_ = json.Unmarshal(res.Outputs.Charts[0].Data, &b64)
		svg, _ := base64.StdEncoding.DecodeString(b64)
		if res.Outputs.Charts[0].Format != "svg" || !bytes.Contains(svg, []byte("<svg")) {
			t.Errorf("not an SVG chart: %s %.60q", res.Outputs.Charts[0].Format, svg)
		}
	})
}

func TestOutputsPlotly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	res := runOK(t, e, "import plotly.express as px\nimport pandas as pd\ndf = pd.DataFrame({'x': [1, 2, 3], 'y': [3, 1, 2]})\nfig = px.scatter(df, x='x', y='y', title='pts')\nfig.show()\n")
	if len(res.Outputs.Charts) != 1 {
		t.Fatalf("%d charts, want 1", len(res.Outputs.Charts))
	}
	c := res.Outputs.Charts[0]
	var fig struct {
		Data   []map[string]any `json:"data"`
		Layout map[string]any   `json:"layout"`
	}
	if err := json.Unmarshal(c.Data, &fig); err != nil || c.Type != "plotly" || c.Format != "json" {
		t.Fatalf("chart %s/%s: %v", c.Type, c.Format, err)
	}
	if len(fig.Data) != 1 || fig.Data[0]["type"] != "scatter" || fig.Layout == nil {
		t.Errorf("figure data %v", fig.Data)
	}
	if len(c.Data) > 200<<10 || bytes.Contains(c.Data, []byte("plotly.js")) {
		t.Errorf("plotly chart is %d bytes: it must be the figure JSON, not HTML with plotly.js", len(c.Data))
	}
}

func TestOutputsDataFrames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	t.Run("datetime index and NaN", func(t *testing.T) {
		res := runOK(t, e, "import pandas as pd\nimport numpy as np\ndf = pd.DataFrame({'v': [1.5, np.nan, np.inf, 2.0]}, index=pd.date_range('2024-01-01', periods=4, freq='D', name='day'))\ndf\n")
		if len(res.Outputs.DataFrames) != 1 {
			t.Fatalf("%d frames, want 1 (the last expression, shown once)", len(res.Outputs.DataFrames))
		}
		df := res.Outputs.DataFrames[0]
		if df.Name != "_" || df.TotalRows != 4 || df.Truncated || len(df.Shape) != 2 || df.Shape[0] != 4 {
			t.Errorf("frame %+v", df)
		}
		if !strings.Contains(string(df.Data), "null") || !strings.Contains(string(df.Data), `"inf"`) {
			t.Errorf("NaN and inf not JSON-safe: %s", df.Data)
		}
		if !strings.Contains(string(df.Index), "DatetimeIndex") || !strings.Contains(string(df.Index), "2024-01-01T00:00:00") {
			t.Errorf("datetime index lost: %s", df.Index)
		}
		if !strings.Contains(df.HTML, "<table") {
			t.Errorf("no HTML table")
		}
	})
	t.Run("a million rows, capped and fast", func(t *testing.T) {
		res := runOK(t, e, "import pandas as pd\nimport numpy as np\nbig = pd.DataFrame({'a': np.arange(1_000_000), 'b': np.random.default_rng(0).random(1_000_000)})\n")
		if len(res.Outputs.DataFrames) != 1 {
			t.Fatalf("%d frames", len(res.Outputs.DataFrames))
		}
		df := res.Outputs.DataFrames[0]
		var rows [][]any
		_ = json.Unmarshal(df.Data, &rows)
		if df.Name != "big" || df.TotalRows != 1_000_000 || !df.Truncated || len(rows) != 100 {
			t.Errorf("frame %s total %d truncated %v rows %d", df.Name, df.TotalRows, df.Truncated, len(rows))
		}
		if limit := 10 * time.Second; res.ExecutionTime > limit {
			t.Errorf("took %v", res.ExecutionTime)
		}
	})
	t.Run("series", func(t *testing.T) {
		res := runOK(t, e, "import pandas as pd\npd.Series([1, 2, 3], name='n')\n")
		if len(res.Outputs.DataFrames) != 1 || res.Outputs.DataFrames[0].Kind != "series" {
			t.Fatalf("frames %+v", res.Outputs.DataFrames)
		}
	})
}

func TestOutputsVariables(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	code := `import numpy as np
import math

class Bad:
    def __repr__(self):
        raise RuntimeError("no repr for you")

def helper():
    pass

i = 42
f = 2.5
s = "text"
b = b"\x00bytes"
l = [1, 2, 3]
rec = [1]
rec.append(rec)
d = {"k": {1, 2}}
arr = np.zeros((3, 4))
big = list(range(1_000_000))
bad = Bad()
_hidden = 1
i * 2
`
	res := runOK(t, e, code)
	v := res.Outputs.Variables
	for _, name := range []string{"i", "f", "s", "b", "l", "rec", "d", "arr", "big", "bad"} {
		if _, ok := v[name]; !ok {
			t.Errorf("variable %q missing", name)
		}
	}
	for _, name := range []string{"np", "math", "Bad", "helper", "_hidden"} {
		if _, ok := v[name]; ok {
			t.Errorf("%q must not be listed", name)
		}
	}
	if v["i"].Type != "int" || v["i"].Repr != "42" {
		t.Errorf("i = %+v", v["i"])
	}
	if len(v["arr"].Shape) != 2 || v["arr"].Shape[0] != 3 || v["arr"].Shape[1] != 4 {
		t.Errorf("arr shape %v", v["arr"].Shape)
	}
	if v["big"].Len == nil || *v["big"].Len != 1_000_000 || len(v["big"].Repr) > 1000 {
		t.Errorf("big = len %v, repr of %d chars", v["big"].Len, len(v["big"].Repr))
	}
	if !strings.Contains(v["bad"].Repr, "unrepresentable") || v["bad"].Type != "Bad" {
		t.Errorf("bad = %+v", v["bad"])
	}
	if res.Outputs.Result == nil || res.Outputs.Result.Repr != "84" {
		t.Errorf("last expression = %+v, want 84", res.Outputs.Result)
	}
}

// decodePNG decodes a chart's base64 PNG.
func decodePNG(t *testing.T, c runner.Chart) image.Image {
	t.Helper()
	var b64 string
	if err := json.Unmarshal(c.Data, &b64); err != nil {
		t.Fatalf("chart data is not a base64 string: %v (error %q)", err, c.Error)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// differingPixels counts the pixels of the area that differ between a and b.
func differingPixels(a, b image.Image, area image.Rectangle) int {
	n := 0
	r := a.Bounds().Intersect(b.Bounds()).Intersect(area)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			r1, g1, b1, _ := a.At(x, y).RGBA()
			r2, g2, b2, _ := b.At(x, y).RGBA()
			if r1 != r2 || g1 != g2 || b1 != b2 {
				n++
			}
		}
	}
	return n
}

// cjkChart draws Chinese, Japanese (kanji and kana) and Korean text in a
// title, a legend and axis labels, then a pandas .plot() with CJK labels.
const cjkChart = `import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

x = np.linspace(0, 10, 100)
plt.figure(figsize=(8, 5))
plt.plot(x, np.sin(x), label='正弦')
plt.title('销售额趋势 ひらがな 한국어')
plt.xlabel('時間（秒）カタカナ')
plt.ylabel('매출')
plt.legend()
plt.show()
pd.DataFrame({'销售': [1, 3, 2], '이익': [2, 1, 3]}).plot(title='データ')
`

// The image's CJK font is matplotlib's fallback: the chart shows glyphs and
// stderr has no missing-glyph warning. The same chart drawn without the
// fallback (DejaVu Sans alone: boxes) differs in the text and warns, at the
// user's line rather than a harness file.
func TestOutputsCJK(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	glyphs := runOK(t, e, cjkChart)
	// Undo the harness's fallback: matplotlib as it would be without the font.
	boxes := runOK(t, e, "import matplotlib.font_manager as fm\n"+
		"fm.FontManager._find_fonts_by_props = fm.FontManager._find_fonts_by_props.__wrapped__\n"+cjkChart)
	if len(glyphs.Outputs.Charts) != 2 || len(boxes.Outputs.Charts) != 2 {
		t.Fatalf("%d and %d charts, want 2 each", len(glyphs.Outputs.Charts), len(boxes.Outputs.Charts))
	}
	for _, bad := range []string{"Glyph", "missing from font", "does not have a glyph"} {
		if strings.Contains(glyphs.Stderr, bad) {
			t.Errorf("stderr with the CJK font says %q:\n%s", bad, glyphs.Stderr)
		}
	}
	if !strings.Contains(boxes.Stderr, "missing from font(s) DejaVu Sans") {
		t.Errorf("without the fallback there is no glyph warning; stderr:\n%s", boxes.Stderr)
	}
	// The first figure's warnings point at plt.show() (line 12 of cjkChart,
	// 14 here) and the pandas figure's, rendered after the code ended, are
	// dropped.
	if strings.Contains(boxes.Stderr, "/opt/pyexec") || !strings.Contains(boxes.Stderr, "<code>:14: UserWarning") ||
		strings.Contains(boxes.Stderr, "KATAKANA LETTER DE") || strings.Contains(boxes.Stderr, "HANGUL SYLLABLE IG") {
		t.Errorf("glyph warnings are not at the user's line:\n%s", boxes.Stderr)
	}
	a, b := decodePNG(t, glyphs.Outputs.Charts[0]), decodePNG(t, boxes.Outputs.Charts[0])
	if a.Bounds() != b.Bounds() || a.Bounds().Dx() != 800 || a.Bounds().Dy() != 500 {
		t.Fatalf("chart sizes %v and %v, want 800x500", a.Bounds(), b.Bounds())
	}
	// The title is in the top 50 rows and differs; inside the axes (the
	// curve, no text) the two drawings are the same.
	if n := differingPixels(a, b, image.Rect(0, 0, 800, 50)); n < 300 {
		t.Errorf("title region: %d pixels differ between glyphs and boxes, want hundreds", n)
	}
	if n := differingPixels(a, b, image.Rect(150, 150, 650, 400)); n > 0 {
		t.Errorf("plot region: %d pixels differ, want none: the charts are not the same drawing", n)
	}
	if n := differingPixels(decodePNG(t, glyphs.Outputs.Charts[1]), decodePNG(t, boxes.Outputs.Charts[1]), image.Rect(0, 0, 640, 480)); n < 300 {
		t.Errorf("pandas chart: %d pixels differ between glyphs and boxes", n)
	}
}

// assertTableOnly fails unless html has only table markup, with the
// attributes the service writes, and escaped text.
func assertTableOnly(t *testing.T, html string) {
	t.Helper()
	tag := regexp.MustCompile(`<(/?)([a-zA-Z][a-zA-Z0-9]*)([^>]*)>`)
	attrs := regexp.MustCompile(`^(\s+(border="1"|class="dataframe"|style="text-align: right;"|colspan="\d+"|halign="left"))*$`)
	allowed := map[string]bool{"table": true, "thead": true, "tbody": true, "tr": true, "th": true, "td": true}
	for _, m := range tag.FindAllStringSubmatch(html, -1) {
		if !allowed[m[2]] || !attrs.MatchString(m[3]) {
			t.Errorf("markup %q in the table", m[0])
		}
	}
	if text := tag.ReplaceAllString(html, ""); strings.ContainsAny(text, "<>") {
		t.Errorf("unescaped markup in the table text: %q", text)
	}
}

// With the policy off the code can replace pandas' to_html: the html the
// client gets is still the service's own table of the typed cells.
func TestOutputsMarkupPolicyOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil) // Options.Policy nil: POLICY=off
	res := runOK(t, e, `import pandas as pd
pd.DataFrame.to_html = lambda self, *a, **k: '<b>x</b><script>window.pwned=1</script>'
df = pd.DataFrame({'a': ['<img src=x onerror=alert(1)>', 'ok'], '<i>col</i>': [1.5, None]})
df
`)
	if len(res.Outputs.DataFrames) != 1 {
		t.Fatalf("%d frames", len(res.Outputs.DataFrames))
	}
	h := res.Outputs.DataFrames[0].HTML
	assertTableOnly(t, h)
	for _, want := range []string{"&lt;img src=x onerror=alert(1)&gt;", "<th>&lt;i&gt;col&lt;/i&gt;</th>", "<td>1.5</td>", "<td>ok</td>"} {
		if !strings.Contains(h, want) {
			t.Errorf("%q missing from\n%s", want, h)
		}
	}
	if strings.Contains(h, "pwned") || strings.Contains(h, "<b>") {
		t.Errorf("the code's markup reached the answer:\n%s", h)
	}
}

// With the policy off the code can make matplotlib write any SVG: one with a
// script is refused, alone, and a real matplotlib SVG with CJK text beside it
// passes.
func TestOutputsSVGScriptPolicyOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	res, err := e.r.Run(t.Context(), runner.Request{Code: `import matplotlib.figure
import matplotlib.pyplot as plt
real = matplotlib.figure.Figure.savefig
def savefig(self, fname, *args, **kwargs):
    if self.get_label() != 'evil':
        return real(self, fname, *args, **kwargs)
    fname.write(b'<svg xmlns="http://www.w3.org/2000/svg"><script>window.pwned=1</script></svg>')
matplotlib.figure.Figure.savefig = savefig
plt.figure('evil')
plt.plot([1, 2])
plt.figure('fine')
plt.imshow([[1, 2], [3, 4]])
plt.title('销售额趋势')
plt.show()
`, Timeout: time.Minute, Options: map[string]any{"chart_format": "svg"}})
	if err != nil || res.Status != runner.StatusSuccess {
		t.Fatalf("%v %q %+v %s", err, res.Status, res.Error, res.Stderr)
	}
	if len(res.Outputs.Charts) != 2 {
		t.Fatalf("%d charts, want 2", len(res.Outputs.Charts))
	}
	evil, fine := res.Outputs.Charts[0], res.Outputs.Charts[1]
	if evil.Data != nil || !strings.Contains(evil.Error, "<script>") || evil.Format != "svg" {
		t.Errorf("evil chart: data %.60s error %q", evil.Data, evil.Error)
	}
	if fine.Error != "" || fine.Data == nil {
		t.Errorf("matplotlib's own SVG refused: %q", fine.Error)
	}
	out, _ := json.Marshal(res.Outputs)
	if bytes.Contains(out, []byte("pwned")) {
		t.Errorf("the script reached the answer")
	}
}

// cpu_time_ms counts what ran after the request arrived, not the sandbox's
// preloading of numpy, pandas, matplotlib and plotly (hundreds of ms).
func TestOutputsCPUHonest(t *testing.T) {
	t.Parallel()
	e := newPoolEnv(t, 2, nil)
	dockertest.WaitFor(t, "a warm data sandbox", 90*time.Second, func() bool {
		return e.r.Stats().Pool.Idle[runner.FlavorData] >= 1
	})
	res := e.run(t, "import numpy, pandas, matplotlib.pyplot, plotly.graph_objects\nprint(1)", 30*time.Second)
	if res.Status != runner.StatusSuccess || res.Stdout != "1\n" || !res.Warm || res.Flavor != runner.FlavorData {
		t.Fatalf("status %q stdout %q warm %v flavor %q", res.Status, res.Stdout, res.Warm, res.Flavor)
	}
	if cpu := res.Resources.CPUTime; cpu <= 0 || cpu >= 20*time.Millisecond {
		t.Errorf("cpu time %v for print(1) on a warm data sandbox, want under 20ms", cpu)
	}
	res = e.run(t, "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2:\n    pass\n", 30*time.Second)
	if cpu := res.Resources.CPUTime; cpu < 200*time.Millisecond || cpu > dockertest.Scale(time.Second) {
		t.Errorf("cpu time %v for a 200ms busy loop", cpu)
	}
}
