package runner

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestFrameReader(t *testing.T) {
	big := strings.Repeat("x", 200<<10) // larger than the bufio buffer
	stream := "PYEXEC1 ready 2\n{}\n" + "PYEXEC1 stdout " + itoa(len(big)) + "\n" + big + "\n"
	fr := newFrameReader(strings.NewReader(stream), 1<<20)
	f, err := fr.next()
	if err != nil || f.kind != frameReady || string(f.payload) != "{}" {
		t.Fatalf("first frame = %q %q, %v", f.kind, f.payload, err)
	}
	f, err = fr.next()
	if err != nil || f.kind != frameStdout || string(f.payload) != big {
		t.Fatalf("second frame kind %q len %d, %v", f.kind, len(f.payload), err)
	}
	if _, err := fr.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v, want EOF", err)
	}
}

func TestFrameReaderRejects(t *testing.T) {
	for name, stream := range map[string]string{
		"no magic":       "HELLO ready 2\n{}\n",
		"bad length":     "PYEXEC1 ready -1\n\n",
		"too long":       "PYEXEC1 result 99999999\n",
		"unterminated":   "PYEXEC1 ready 2\n{}X",
		"short payload":  "PYEXEC1 ready 10\n{}",
		"header no end":  "PYEXEC1 ready",
		"giant header":   strings.Repeat("P", 100000) + "\n",
		"too few fields": "PYEXEC1 ready\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := newFrameReader(strings.NewReader(stream), 1<<20).next()
			if !errors.Is(err, errProtocol) {
				t.Fatalf("err = %v, want a protocol error", err)
			}
		})
	}
}

func itoa(n int) string {
	s := ""
	for {
		s = string(rune('0'+n%10)) + s
		n /= 10
		if n == 0 {
			return s
		}
	}
}

func TestSandboxSpecIsHardened(t *testing.T) {
	r, err := New(nil, Options{Image: "img", Owner: "me", SeccompProfile: []byte(`{"defaultAction":"SCMP_ACT_ERRNO"}`)})
	if err != nil {
		t.Fatal(err)
	}
	sp := r.sandboxSpec(roleExec, "numpy,matplotlib", nil)
	c, h := sp.config, sp.host
	checks := map[string]bool{
		"network none":      h.NetworkMode == "none" && c.NetworkDisabled,
		"read-only root":    h.ReadonlyRootfs,
		"all caps dropped":  len(h.CapDrop) == 1 && h.CapDrop[0] == "ALL" && len(h.CapAdd) == 0,
		"not privileged":    !h.Privileged,
		"non-root user":     c.User == sandboxUser,
		"memory capped":     h.Memory == DefaultMemoryBytes,
		"no swap":           h.MemorySwap == h.Memory,
		"cpu capped":        h.NanoCPUs == DefaultNanoCPUs,
		"pids capped":       h.PidsLimit != nil && *h.PidsLimit == DefaultPidsLimit,
		"tmpfs capped":      strings.Contains(h.Tmpfs["/tmp"], "size=134217728") && strings.Contains(h.Tmpfs["/tmp"], "noexec"),
		"no host env":       len(c.Env) == 1 && c.Env[0] == "PYEXEC_PRELOAD=numpy,matplotlib",
		"no mounts":         len(h.Binds) == 0 && len(h.Mounts) == 0 && len(h.VolumesFrom) == 0,
		"no-new-privileges": contains(h.SecurityOpt, "no-new-privileges:true"),
		"seccomp profile":   contains(h.SecurityOpt, `seccomp={"defaultAction":"SCMP_ACT_ERRNO"}`),
		"labels": c.Labels[LabelManaged] == "1" && c.Labels[LabelOwner] == "me" && c.Labels[LabelInstance] != "" && c.Labels[LabelRole] == roleExec &&
			c.Labels[LabelFlavor] == FlavorData && c.Labels[LabelPreload] == "numpy,matplotlib",
		"no log to disk":        h.LogConfig.Type == "none",
		"not auto-removed":      !h.AutoRemove,
		"host namespaces unset": h.PidMode == "" && h.UTSMode == "" && h.UsernsMode == "" && h.IpcMode == "private",
	}
	for name, ok := range checks {
		if !ok {
			t.Errorf("sandbox spec: %s does not hold", name)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestPreloadFor(t *testing.T) {
	cases := map[string]string{
		"print(1)":                                                     "",
		"import math\nprint(math.pi)":                                  "",
		"import numpy as np":                                           "numpy",
		"import os, pandas":                                            "numpy,pandas",
		"import numpy as np, pandas as pd":                             "numpy,pandas",
		"from matplotlib import pyplot as plt":                         "numpy,matplotlib",
		"import matplotlib.pyplot as plt":                              "numpy,matplotlib",
		"  import plotly.express as px":                                "numpy,pandas,plotly",
		"from plotly import express as px":                             "numpy,pandas,plotly",
		"import plotly.graph_objects as go":                            "plotly",
		"from plotly.graph_objects import (Figure, Bar)":               "plotly",
		"from scipy.stats import norm":                                 "numpy,scipy",
		"# import numpy\nprint('numpy')":                               "",
		"x = 'import numpy'":                                           "",
		"if True:\n    import seaborn as sns\n":                        "numpy,pandas,matplotlib,seaborn",
		"from . import numpy":                                          "",
		"import numpyx":                                                "",
		"import numpy\nimport matplotlib.pyplot as plt\nimport pandas": "numpy,pandas,matplotlib",
	}
	for code, want := range cases {
		if got := PreloadFor(code); got != want {
			t.Errorf("PreloadFor(%q) = %q, want %q", code, got, want)
		}
		wantFlavor := FlavorData
		if want == "" {
			wantFlavor = FlavorNone
		}
		if got := FlavorFor(code); got != wantFlavor {
			t.Errorf("FlavorFor(%q) = %q, want %q", code, got, wantFlavor)
		}
	}
}

func TestCovers(t *testing.T) {
	cases := []struct {
		have, want string
		ok         bool
		extra      int
	}{
		{PreloadFull, "numpy,matplotlib", true, 2},
		{"numpy,matplotlib", "numpy,matplotlib", true, 0},
		{"numpy,matplotlib", "numpy,pandas", false, 0},
		{"numpy", "", true, 1},
		{"", "numpy", false, 0},
	}
	for _, c := range cases {
		if ok, extra := covers(c.have, c.want); ok != c.ok || extra != c.extra {
			t.Errorf("covers(%q, %q) = %v, %d; want %v, %d", c.have, c.want, ok, extra, c.ok, c.extra)
		}
	}
}

// FuzzFrameReader: whatever a container writes, the reader never panics,
// never returns more than its cap, and ends with an error or EOF.
func FuzzFrameReader(f *testing.F) {
	f.Add([]byte("PYEXEC1 ready 2\n{}\nPYEXEC1 result 4\nnull\n"))
	f.Add([]byte("PYEXEC1 result 99999999999999999999\n"))
	f.Add([]byte("PYEXEC1  ready  2 \n{}\n"))
	f.Add([]byte("\n\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := newFrameReader(strings.NewReader(string(data)), 1024)
		for i := 0; i < len(data)+1; i++ {
			fm, err := fr.next()
			if err != nil {
				return
			}
			if len(fm.payload) > 1024 {
				t.Fatalf("payload of %d bytes over the cap", len(fm.payload))
			}
		}
		t.Fatal("reader did not end")
	})
}
