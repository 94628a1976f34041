package templates

import (
	"encoding/base64"
	"io/fs"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pyexec/pyexec/policy"
)

var validID = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

func TestTemplates(t *testing.T) {
	ts := All()
	if len(ts) < 16 {
		t.Errorf("%d templates, want at least 16", len(ts))
	}
	categories := []string{"basics", "matplotlib", "plotly", "seaborn", "pandas", "numpy"}
	seen := map[string]bool{}
	for _, tt := range ts {
		t.Run(tt.ID, func(t *testing.T) {
			if !validID.MatchString(tt.ID) {
				t.Errorf("id %q is not lower-case words joined by hyphens", tt.ID)
			}
			if seen[tt.ID] {
				t.Errorf("id %q is used twice", tt.ID)
			}
			seen[tt.ID] = true
			for field, val := range map[string]string{
				"Title": tt.Title, "Description": tt.Description, "Category": tt.Category, "Code": tt.Code,
			} {
				if strings.TrimSpace(val) == "" {
					t.Errorf("%s is empty", field)
				}
			}
			if !slices.Contains(categories, tt.Category) {
				t.Errorf("category %q is not one of %v", tt.Category, categories)
			}
			if vs := policy.CheckSource(tt.Code, policy.MaxCodeBytes); len(vs) > 0 {
				t.Errorf("CheckSource: %v", policy.Err(vs))
			}
			if strings.Contains(tt.Code, "\t") || strings.Contains(tt.Code, "\r") {
				t.Error("code contains tabs or carriage returns")
			}
			if !strings.HasSuffix(tt.Code, "\n") {
				t.Error("code does not end with a newline")
			}
			got, ok := ByID(tt.ID)
			if !ok || !reflect.DeepEqual(got, tt) {
				t.Errorf("ByID(%q) = %+v, %v; want the same template", tt.ID, got, ok)
			}
		})
	}
}

func TestEveryFileHasAnEntry(t *testing.T) {
	names, err := fs.Glob(files, "code/*.py")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		id := strings.TrimSuffix(strings.TrimPrefix(name, "code/"), ".py")
		if _, ok := ByID(id); !ok {
			t.Errorf("%s has no entry in the table", name)
		}
	}
	if len(names) != len(All()) {
		t.Errorf("%d files, %d templates", len(names), len(All()))
	}
}

func TestByIDUnknown(t *testing.T) {
	if tt, ok := ByID("no-such-template"); ok {
		t.Errorf("ByID(unknown) = %+v, true", tt)
	}
}

func TestAllReturnsACopy(t *testing.T) {
	a := All()
	a[0].Code = "changed"
	if All()[0].Code == "changed" {
		t.Error("All() shares its backing array")
	}
	tpl, _ := ByID("read-csv")
	tpl.Files[0].Name = "changed"
	if again, _ := ByID("read-csv"); again.Files[0].Name == "changed" {
		t.Error("ByID shares a template's files")
	}
}

// TestFiles checks the templates' input files: plain names, valid base64,
// within the service's default input limits; read-csv ships sales.csv and
// its code reads it.
func TestFiles(t *testing.T) {
	withFiles := 0
	for _, tt := range All() {
		if len(tt.Files) > 0 {
			withFiles++
		}
		total := 0
		for _, f := range tt.Files {
			if f.Name == "" || strings.ContainsAny(f.Name, `/\`) {
				t.Errorf("%s: file name %q", tt.ID, f.Name)
			}
			data, err := base64.StdEncoding.DecodeString(f.Content)
			if err != nil || len(data) == 0 {
				t.Errorf("%s: %s: content %d bytes, %v", tt.ID, f.Name, len(data), err)
			}
			if !strings.Contains(tt.Code, f.Name) {
				t.Errorf("%s: the code does not name %s", tt.ID, f.Name)
			}
			total += len(data)
		}
		if len(tt.Files) > 20 || total > 1<<20 {
			t.Errorf("%s: %d files of %d bytes: keep templates small", tt.ID, len(tt.Files), total)
		}
	}
	tpl, ok := ByID("read-csv")
	if !ok || len(tpl.Files) != 1 || tpl.Files[0].Name != "sales.csv" {
		t.Fatalf("read-csv: %+v", tpl.Files)
	}
	data, _ := base64.StdEncoding.DecodeString(tpl.Files[0].Content)
	if !strings.HasPrefix(string(data), "date,region,product,units,price\n") || strings.Count(string(data), "\n") < 20 {
		t.Errorf("sales.csv: %.100q", data)
	}
	if withFiles < 1 {
		t.Error("no template reads an input file")
	}
}

func TestOrderIsStable(t *testing.T) {
	var first, second []string
	for _, tt := range All() {
		first = append(first, tt.ID)
	}
	for _, tt := range All() {
		second = append(second, tt.ID)
	}
	if !slices.Equal(first, second) || first[0] != "hello-world" {
		t.Errorf("order %v then %v, want the same, starting with hello-world", first, second)
	}
}
