package main

import (
	"fmt"
	"strings"
)

// workload is one kind of request the benchmark sends.
type workload struct {
	Name string
	// Code is sent to the service as is.
	Code string
	// NaivePrelude goes before Code on the naive path only; it does what
	// the service's harness does before user code (seeding matplotlib's
	// font cache), so the baseline is not penalised for a missing setup
	// step rather than for the missing pool.
	NaivePrelude string
	// Stdout, when set, is a line stdout must contain (both paths).
	Stdout string
	// StdoutExact, when set, is what stdout must be, whole.
	StdoutExact string
	// Charts is how many charts the service must return (-1: not checked).
	Charts int
	// LowMin is the default least count of the low-rate phase.
	LowMin int
}

// mplPrelude copies the font cache built into the image into a writable
// MPLCONFIGDIR, like child.py's prepare_matplotlib_config.
const mplPrelude = `import os as _os, shutil as _sh
try:
    _os.makedirs("/tmp/.matplotlib", exist_ok=True)
    for _n in _os.listdir("/opt/pyexec/mplcache"):
        _sh.copy(_os.path.join("/opt/pyexec/mplcache", _n), "/tmp/.matplotlib")
    _os.environ["MPLCONFIGDIR"] = "/tmp/.matplotlib"
except OSError:
    pass
`

// workloads are the three; their order is the report's order.
var workloads = []workload{
	{
		Name:   "hello",
		Code:   `print("Hello World")` + "\n",
		Stdout: "Hello World",
		Charts: -1,
		LowMin: 20,
	},
	{
		// The seed service's matplotlib example.
		Name: "sine",
		Code: `import numpy as np
import matplotlib.pyplot as plt

x = np.linspace(0, 10, 100)
plt.figure(figsize=(10, 6))
plt.plot(x, np.sin(x))
plt.title('Sine Wave')
plt.show()
`,
		NaivePrelude: mplPrelude,
		Charts:       1,
		LowMin:       10,
	},
	{
		Name: "groupby",
		Code: `import numpy as np
import pandas as pd

rng = np.random.default_rng(20240601)
n = 100_000
df = pd.DataFrame({
    "group": rng.choice(list("ABCDEFGH"), size=n),
    "value": rng.normal(100.0, 15.0, size=n),
    "qty": rng.integers(1, 10, size=n),
})
agg = df.groupby("group").agg(
    rows=("value", "size"),
    mean_value=("value", "mean"),
    total_qty=("qty", "sum"),
)
print(agg.round(3).to_string())
print(f"rows={len(df)} groups={len(agg)}")
`,
		Stdout: "rows=100000 groups=8",
		Charts: -1,
		LowMin: 10,
	},
}

// lifecycleCode is what the raw lifecycle measurement runs.
const lifecycleCode = "print(1)"

func workloadNames() []string {
	names := make([]string, len(workloads))
	for i, w := range workloads {
		names[i] = w.Name
	}
	return names
}

func workloadByName(name string) workload {
	for _, w := range workloads {
		if w.Name == name {
			return w
		}
	}
	panic("unknown workload " + name) // names are checked when flags are parsed
}

// checkStdout says whether stdout has the expected line.
func (w workload) checkStdout(stdout string) error {
	if w.StdoutExact != "" && stdout != w.StdoutExact {
		return fmt.Errorf("stdout %q, want %q", clip(stdout, 120), w.StdoutExact)
	}
	if w.Stdout == "" || strings.Contains(stdout, w.Stdout) {
		return nil
	}
	return fmt.Errorf("stdout lacks %q (got %q)", w.Stdout, clip(stdout, 120))
}

// clip shortens s to n bytes for messages.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
