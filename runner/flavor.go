package runner

import (
	"regexp"
	"strings"
)

// Sandbox flavors: what the harness imports before the code arrives.
const (
	// FlavorNone preloads nothing: cheapest for plain Python.
	FlavorNone = "none"
	// FlavorData preloads numpy, pandas, matplotlib and plotly.
	FlavorData = "data"
)

// dataModules are the libraries a FlavorData sandbox has already imported
// (or that import them: seaborn and scipy pull in numpy, and usually pandas).
var dataModules = map[string]bool{
	"numpy": true, "pandas": true, "matplotlib": true, "plotly": true,
	"seaborn": true, "scipy": true,
}

var importRE = regexp.MustCompile(`(?m)^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import|import[ \t]+([\w., \t]+))`)

// FlavorFor picks the sandbox flavor from the code's imports. It is only a
// speed decision: either flavor runs any code correctly.
func FlavorFor(code string) string {
	for _, m := range importRE.FindAllStringSubmatch(code, -1) {
		names := m[1]
		if names == "" {
			names = m[2]
		}
		for _, name := range strings.Split(names, ",") {
			fields := strings.Fields(name)
			if len(fields) == 0 {
				continue
			}
			top, _, _ := strings.Cut(fields[0], ".")
			if dataModules[top] {
				return FlavorData
			}
		}
	}
	return FlavorNone
}
