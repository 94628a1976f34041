package templates

import (
	"embed"
	"encoding/base64"
	"fmt"
	"io/fs"
	"path"
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
	// Files are input files the code reads, in the shape of the /execute
	// body's "files": {"code": t.code, "files": t.files} runs as is.
	Files []File `json:"files,omitempty"`
}

// File is an input file of a template.
type File struct {
	Name string `json:"name"`
	// Content is the file's bytes in base64.
	Content string `json:"content"`
}

//go:embed code/*.py files
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
	{ID: "read-csv", Category: "pandas", Title: "Read an uploaded CSV",
		Description: "Reads sales.csv sent with the request, groups it by region, plots it and writes outputs/summary.csv."},
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

// load fills in the code of every table entry, and its input files: those
// under files/<id>/. A missing code file is a programmer error, caught by
// the tests.
func load() []Template {
	out := make([]Template, len(table))
	for i, t := range table {
		code, err := files.ReadFile("code/" + t.ID + ".py")
		if err != nil {
			panic(fmt.Sprintf("templates: %s: %v", t.ID, err))
		}
		t.Code = string(code)
		entries, _ := fs.ReadDir(files, "files/"+t.ID) // none: no files
		for _, e := range entries {
			data, err := files.ReadFile(path.Join("files", t.ID, e.Name()))
			if err != nil {
				panic(fmt.Sprintf("templates: %s: %v", t.ID, err))
			}
			t.Files = append(t.Files, File{Name: e.Name(), Content: base64.StdEncoding.EncodeToString(data)})
		}
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
// library). The slice and the templates' files are copies; callers may
// modify them.
func All() []Template {
	out := make([]Template, len(all))
	for i, t := range all {
		out[i] = clone(t)
	}
	return out
}

// ByID returns the template with the given id (a copy).
func ByID(id string) (Template, bool) {
	t, ok := byID[id]
	return clone(t), ok
}

func clone(t Template) Template {
	t.Files = append([]File(nil), t.Files...)
	return t
}
