package runner_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
	"time"

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
