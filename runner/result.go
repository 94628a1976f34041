package runner

import (
	"encoding/json"
	"time"

	"github.com/pyexec/pyexec/policy"
)

// Status values of a Result: how the user's code ended. None of them is a
// service failure; those are returned as errors.
const (
	StatusSuccess     = "success"
	StatusError       = "error"
	StatusTimeout     = "timeout"
	StatusOutOfMemory = "out_of_memory"
)

// Request is one execution.
type Request struct {
	// Code is the Python source, run as __main__.
	Code string
	// Timeout bounds the run of the code; the container is killed from
	// outside shortly after it.
	Timeout time.Duration
	// Options tune the rich outputs (chart format, caps); passed through,
	// with the output file caps added (session.go's outputOptions).
	Options map[string]any
	// Files are written into the working directory before the code runs
	// (CheckFileName names; Options.MaxInputFiles and MaxInputBytes).
	Files []File
	// OnEvent, when set, streams the execution: it is called with each
	// chunk of stdout and stderr as it is printed and each chart as show()
	// renders it (stream.go), in order, on the goroutine that runs the
	// execution, before Run returns. The Result is the same as without it.
	// It must not block for long: the execution waits for it.
	OnEvent func(Event)
	// Tenant names who asks (the API key's name; "" without keys): the warm
	// pool shares its containers fairly between tenants (fair.go).
	Tenant string

	// policyChecked says the validator has already checked Code against the
	// runner's policy and passed it (Run's pre-check): the sandbox does not
	// check it again. Without it the sandbox checks before running anything.
	policyChecked bool
}

// Result is what an execution produced. Fields marked untrusted come from the
// user's process and are only ever decoded into these fixed types.
type Result struct {
	Status string
	// ExecutionTime is how long the user's code ran, measured in the sandbox.
	ExecutionTime time.Duration
	Stdout        string
	Stderr        string
	// StdoutTruncated and StderrTruncated say the stream went past the cap;
	// StdoutBytes and StderrBytes count everything it wrote.
	StdoutTruncated bool
	StderrTruncated bool
	StdoutBytes     int64
	StderrBytes     int64
	Error           *ExecError
	// Violations lists the policy rules the code broke (nothing ran then).
	Violations []policy.Violation
	// Rejected says the code was refused before it ran (syntax error or
	// policy violation), by the validator or by the sandbox's own check.
	Rejected  bool
	Outputs   Outputs
	Resources Resources
	// Flavor is the kind of sandbox that ran the code ("none" or "data").
	Flavor string
	// Warm says the sandbox came ready from the pool.
	Warm bool
	// Image is the image of the container that ran the code.
	Image string
	// Session is set for a cell of a session (RunInSession): the session
	// after the cell, and whether the cell ended it.
	Session *SessionState
}

// ExecError describes how the user's code failed.
type ExecError struct {
	Type      string `json:"type"`
	Message   string `json:"message"`
	Traceback string `json:"traceback"`
	Line      *int   `json:"line"`
	Column    *int   `json:"column"`
}

// Resources is what the execution used, as the sandbox measured it.
type Resources struct {
	// CPUTime is the user+system CPU time of the user's process tree.
	CPUTime time.Duration
	// PeakMemoryBytes is the container's peak memory (cgroup), 0 if unknown.
	PeakMemoryBytes int64
	// MemoryLimitBytes is the container's memory limit.
	MemoryLimitBytes int64
	// OOMKilled says the kernel killed a process of the execution for memory.
	OOMKilled bool
}

// Outputs are the rich outputs (untrusted: produced by the user's process).
type Outputs struct {
	Charts              []Chart             `json:"charts"`
	DataFrames          []DataFrame         `json:"dataframes"`
	Variables           map[string]Variable `json:"variables"`
	Result              *Display            `json:"result"`
	ChartsTruncated     bool                `json:"charts_truncated,omitempty"`
	DataFramesTruncated bool                `json:"dataframes_truncated,omitempty"`
	VariablesTruncated  bool                `json:"variables_truncated,omitempty"`
	// Files are what the code wrote under outputs/ (in a session, what the
	// cell created or changed), checked by sanitizeFiles.
	Files          []OutputFile  `json:"files"`
	FilesTruncated bool          `json:"files_truncated,omitempty"`
	FilesSkipped   []SkippedFile `json:"files_skipped,omitempty"`
	// CollectError says collecting outputs failed; the run's status stands.
	CollectError string `json:"collect_error,omitempty"`
}

// Chart is one matplotlib image or plotly figure.
type Chart struct {
	Type   string `json:"type"`
	Format string `json:"format"`
	// Data is a base64 string for images and the figure object for plotly.
	Data   json.RawMessage `json:"data"`
	Width  int             `json:"width,omitempty"`
	Height int             `json:"height,omitempty"`
	Title  string          `json:"title,omitempty"`
	// Error says why the service refused the chart (its data is then null).
	Error string `json:"error,omitempty"`
}

// DataFrame is a pandas DataFrame or Series rendered as a table.
type DataFrame struct {
	Name      string            `json:"name"`
	Kind      string            `json:"kind,omitempty"`
	Shape     []int64           `json:"shape"`
	Columns   json.RawMessage   `json:"columns"`
	Dtypes    map[string]string `json:"dtypes"`
	Index     json.RawMessage   `json:"index"`
	Data      json.RawMessage   `json:"data"`
	TotalRows int64             `json:"total_rows"`
	Truncated bool              `json:"truncated"`
	// ColumnsTruncated says columns were cut to the column cap.
	ColumnsTruncated bool   `json:"columns_truncated,omitempty"`
	HTML             string `json:"html"`
}

// Variable summarises one top-level name left by the user's code.
type Variable struct {
	Type  string  `json:"type"`
	Repr  string  `json:"repr"`
	Shape []int64 `json:"shape,omitempty"`
	Len   *int64  `json:"len,omitempty"`
	// Dtype is the element type of arrays and Series.
	Dtype string `json:"dtype,omitempty"`
}

// Display is the value of the code's final bare expression.
type Display struct {
	Type string `json:"type"`
	Repr string `json:"repr"`
}

func emptyOutputs() Outputs {
	return Outputs{Charts: []Chart{}, DataFrames: []DataFrame{}, Variables: map[string]Variable{}, Files: []OutputFile{}}
}
