package templates

import (
	"embed"
	"fmt"
)

// Template is one example program.
type Template struct {
	// ID is stable and URL-safe (lower-case words joined by hyphens).
	ID string `json:"id"`
	// Title is a short human-readable name.
	Title string `json:"title"`
	// Description says in a sentence what the code shows.
	Description string `json:"description"`
	// Category groups templates in a UI: basics, matplotlib, plotly,
	// seaborn, pandas or numpy.
	Category string `json:"category"`
	// Code is the Python source.
	Code string `json:"code"`
}

//go:embed code/*.py
var files embed.FS

// table is the metadata; the code of entry id is code/<id>.py. The order is
// the order of All.
var table = []Template{
	{ID: "hello-world", Category: "basics", Title: "Hello, World",
		Description: "Plain Python: a function, a list comprehension, a loop and f-strings."},
	{ID: "line-chart", Category: "matplotlib", Title: "Line chart",
		Description: "A sine and a cosine wave drawn with matplotlib."},
	{ID: "bar-chart", Category: "matplotlib", Title: "Bar chart",
		Description: "Monthly sales as bars labelled with their values."},
	{ID: "scatter-plot", Category: "matplotlib", Title: "Scatter plot",
		Description: "Two correlated variables, coloured by a third, with a colour bar."},
	{ID: "subplots", Category: "matplotlib", Title: "Subplots",
		Description: "A line, bar, scatter and histogram chart in one 2x2 figure."},
	{ID: "histogram", Category: "matplotlib", Title: "Histogram",
		Description: "The distribution of normally distributed samples with the mean marked."},
	{ID: "plotly-scatter", Category: "plotly", Title: "Interactive scatter (plotly express)",
		Description: "A scatter plot of a DataFrame coloured by group and sized by a column."},
	{ID: "plotly-line", Category: "plotly", Title: "Interactive line chart (plotly)",
		Description: "Two traces in a plotly graph_objects figure."},
	{ID: "seaborn-heatmap", Category: "seaborn", Title: "Correlation heatmap",
		Description: "The correlation matrix of a DataFrame as an annotated seaborn heatmap."},
	{ID: "pandas-groupby", Category: "pandas", Title: "Group by and aggregate",
		Description: "Sales per region and product with groupby, agg and sort_values."},
	{ID: "pandas-describe", Category: "pandas", Title: "Describe a DataFrame",
		Description: "Column types, value counts and summary statistics with describe()."},
	{ID: "pivot-table", Category: "pandas", Title: "Pivot table",
		Description: "Long data reshaped into a quarter-by-channel table with totals."},
	{ID: "time-series", Category: "pandas", Title: "Time series",
		Description: "A daily series with a datetime index: monthly resample and a 30-day rolling mean."},
	{ID: "data-cleaning", Category: "pandas", Title: "Data cleaning",
		Description: "Missing values, duplicates and types fixed with dropna, fillna and to_numeric."},
	{ID: "numpy-statistics", Category: "numpy", Title: "Statistics with numpy",
		Description: "Mean, median, standard deviation, percentiles and axis-wise aggregates."},
	{ID: "linear-regression", Category: "numpy", Title: "Linear regression",
		Description: "A straight line fitted with numpy.polyfit, its R², and a plot of the fit."},
}

var (
	all  = load()
	byID = index(all)
)

// load fills in the code of every table entry. A missing file is a
// programmer error, caught by the tests.
func load() []Template {
	out := make([]Template, len(table))
	for i, t := range table {
		code, err := files.ReadFile("code/" + t.ID + ".py")
		if err != nil {
			panic(fmt.Sprintf("templates: %s: %v", t.ID, err))
		}
		t.Code = string(code)
		out[i] = t
	}
	return out
}

func index(ts []Template) map[string]Template {
	m := make(map[string]Template, len(ts))
	for _, t := range ts {
		m[t.ID] = t
	}
	return m
}

// All returns every template, in a stable order (basics first, then by
// library). The slice is a copy; callers may modify it.
func All() []Template {
	return append([]Template(nil), all...)
}

// ByID returns the template with the given id.
func ByID(id string) (Template, bool) {
	t, ok := byID[id]
	return t, ok
}
