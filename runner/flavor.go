package runner

import (
	"regexp"
	"slices"
	"strings"
)

// Sandbox flavors: the kind of sandbox that ran the code, as the API and the
// metrics report it.
const (
	// FlavorNone preloads nothing: cheapest for plain Python.
	FlavorNone = "none"
	// FlavorData preloads some of the analytics libraries (see Preload).
	FlavorData = "data"
	// FlavorValidator is the Flavor of a Result the validator decided:
	// the code was refused before any sandbox ran it.
	FlavorValidator = "validator"
)

// A preload is the set of analytics libraries a sandbox's harness imports
// before the code arrives, written as their names joined by commas in
// preloadOrder ("" for none). Importing costs more CPU than the container
// itself, so the pool keeps sandboxes preloaded with what recent code
// imported, and no more: a sandbox with pandas and plotly loaded for code
// that only plots with matplotlib would cost more than a fresh container.
const (
	// PreloadNone is a bare sandbox.
	PreloadNone = ""
	// PreloadFull is what the pool keeps before it has seen any demand, and
	// what a probe loads to report the libraries' versions.
	PreloadFull = "numpy,pandas,matplotlib,plotly"
)

// preloadOrder lists the libraries a sandbox can preload, each after what it
// imports itself.
var preloadOrder = []string{"numpy", "pandas", "matplotlib", "scipy", "plotly", "seaborn"}

// preloadDeps says what else importing a library loads, so a preload names
// everything that will be in memory.
var preloadDeps = map[string][]string{
	"pandas":     {"numpy"},
	"matplotlib": {"numpy"},
	"scipy":      {"numpy"},
	"seaborn":    {"numpy", "pandas", "matplotlib"},
	// plotly alone (graph_objects) needs neither; plotly.express needs
	// pandas, added by PreloadFor when the code names it.
}

var importRE = regexp.MustCompile(`(?m)^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import[ \t]+\(?([\w., \t]*)|import[ \t]+([\w., \t]+))`)

// PreloadFor is the preload that fits the code: the analytics libraries it
// imports, with what they import. It is only a speed decision: any sandbox
// runs any code correctly, importing what it has not preloaded.
func PreloadFor(code string) string {
	need := map[string]bool{}
	add := func(module string) {
		top, _, _ := strings.Cut(module, ".")
		if !slices.Contains(preloadOrder, top) {
			return
		}
		need[top] = true
		for _, d := range preloadDeps[top] {
			need[d] = true
		}
		if top == "plotly" && strings.HasPrefix(module+".", "plotly.express.") {
			need["pandas"], need["numpy"] = true, true
		}
	}
	for _, m := range importRE.FindAllStringSubmatch(code, -1) {
		if from := m[1]; from != "" {
			add(from)
			for _, name := range strings.Split(m[2], ",") {
				if f := strings.Fields(name); len(f) > 0 {
					add(from + "." + f[0])
				}
			}
			continue
		}
		for _, name := range strings.Split(m[3], ",") {
			if f := strings.Fields(name); len(f) > 0 {
				add(f[0])
			}
		}
	}
	var out []string
	for _, lib := range preloadOrder {
		if need[lib] {
			out = append(out, lib)
		}
	}
	return strings.Join(out, ",")
}

// FlavorOf is the kind of sandbox a preload makes.
func FlavorOf(preload string) string {
	if preload == PreloadNone {
		return FlavorNone
	}
	return FlavorData
}

// FlavorFor is the kind of sandbox that fits the code.
func FlavorFor(code string) string { return FlavorOf(PreloadFor(code)) }

// covers reports whether a sandbox with preload have has loaded everything
// preload want names; extra is how many libraries it loaded beyond that.
func covers(have, want string) (ok bool, extra int) {
	h := splitPreload(have)
	for _, lib := range splitPreload(want) {
		if !slices.Contains(h, lib) {
			return false, 0
		}
	}
	return true, len(h) - len(splitPreload(want))
}

func splitPreload(p string) []string {
	if p == PreloadNone {
		return nil
	}
	return strings.Split(p, ",")
}
