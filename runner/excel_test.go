package runner_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pyexec/pyexec/runner"
)

// excelCSV is a CSV of n rows (date, region in Chinese, amount).
func excelCSV(n int) ([]byte, []string) {
	regions := []string{"华东", "华北", "华南", "西部"}
	var b bytes.Buffer
	b.WriteString("date,region,amount\n")
	for i := range n {
		fmt.Fprintf(&b, "2024-%02d-%02d,%s,%d.%02d\n", 1+i%12, 1+i%28, regions[i%len(regions)], 10+i%90, 1+i%99)
	}
	return b.Bytes(), regions
}

// outputFile returns the output file called name, failing the test if
// there is none.
func outputFile(t *testing.T, res runner.Result, name string) runner.OutputFile {
	t.Helper()
	for _, f := range res.Outputs.Files {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no output file %q in %+v", name, res.Outputs.Files)
	return runner.OutputFile{}
}

// checkXLSX checks that f is an .xlsx file (a zip archive) of its size.
func checkXLSX(t *testing.T, f runner.OutputFile) {
	t.Helper()
	if !bytes.HasPrefix(f.Content, []byte("PK\x03\x04")) || f.Size != int64(len(f.Content)) || f.Size < 1000 {
		t.Errorf("%s: size %d, %d bytes starting %q: not an xlsx file", f.Name, f.Size, len(f.Content), f.Content[:min(8, len(f.Content))])
	}
	if f.Mime != runner.MimeType(f.Name) {
		t.Errorf("%s: mime %q, want %q", f.Name, f.Mime, runner.MimeType(f.Name))
	}
}

// TestExcelRoundTrip: under POLICY=strict, code writes an .xlsx with
// DataFrame.to_excel into outputs/ and reads it back with pd.read_excel
// (the image's openpyxl engine), in a session across two cells and in a
// single-shot execution.
func TestExcelRoundTrip(t *testing.T) {
	e := newEnv(t, strict)
	const rows = 500
	csv, regions := excelCSV(rows)

	t.Run("session", func(t *testing.T) {
		id := e.newSession(t)
		res := ok(t, e.cell(t, id, `import pandas as pd
df = pd.read_csv("销售.csv")
df.to_excel("outputs/销售.xlsx", index=False, sheet_name="汇总")
print(len(df))
`, runner.File{Name: "销售.csv", Data: csv}))
		if strings.TrimSpace(res.Stdout) != fmt.Sprint(rows) {
			t.Fatalf("stdout %q, want %d", res.Stdout, rows)
		}
		written := outputFile(t, res, "销售.xlsx")
		checkXLSX(t, written)

		res = ok(t, e.cell(t, id, `x = pd.read_excel("outputs/销售.xlsx", sheet_name="汇总")
print(x.equals(df), x.shape[0], x.shape[1], x["region"].iloc[1], round(float(x["amount"].sum()), 2) == round(float(df["amount"].sum()), 2))
`))
		if want := fmt.Sprintf("True %d 3 %s True", rows, regions[1]); strings.TrimSpace(res.Stdout) != want {
			t.Errorf("read back: stdout %q, want %q", res.Stdout, want)
		}
		if len(res.Outputs.Files) != 0 {
			t.Errorf("reading changed no file, yet the cell lists %+v", res.Outputs.Files)
		}

		got, err := e.r.SessionFile(t.Context(), id, "销售.xlsx")
		if err != nil {
			t.Fatalf("SessionFile: %v", err)
		}
		if !bytes.Equal(got, written.Content) {
			t.Errorf("download: %d bytes, differ from the cell's %d", len(got), len(written.Content))
		}
		if err := e.r.DeleteSession(t.Context(), id); err != nil {
			t.Fatalf("DeleteSession: %v", err)
		}
		e.noContainers(t, "after DELETE")
	})

	t.Run("execute", func(t *testing.T) {
		res, err := e.r.Run(t.Context(), runner.Request{Code: `import pandas as pd
df = pd.read_csv("sales.csv")
by = df.groupby("region", sort=True)["amount"].sum().reset_index()
by.to_excel("outputs/by_region.xlsx", index=False)
back = pd.read_excel("outputs/by_region.xlsx")
print(back["region"].tolist() == by["region"].tolist(), (back["amount"] - by["amount"]).abs().max() < 1e-9)
`, Timeout: 60 * time.Second, Files: []runner.File{{Name: "sales.csv", Data: csv}}})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		ok(t, res)
		if strings.TrimSpace(res.Stdout) != "True True" {
			t.Errorf("stdout %q, want %q", res.Stdout, "True True")
		}
		checkXLSX(t, outputFile(t, res, "by_region.xlsx"))
	})
}
