package images

import (
	"archive/tar"
	"bytes"
	"io"
	"path"
	"regexp"
	"strings"
	"testing"
)

// testFile matches the names of test code and test data: such files stay out
// of the build context, where they would ship in the image and change its
// tag with every edit of a test (images/testdata holds them instead).
var testFile = regexp.MustCompile(`^(test_.*\.py|.*_test\.[a-z]+|conftest\.py)$|^testdata$`)

// TestContextHasNoTests: the embedded build context holds the image's files
// and no test.
func TestContextHasNoTests(t *testing.T) {
	for name, want := range map[string]bool{
		"test_outputs.py": true, "outputs_test.go": true, "runner_test.py": true, "testdata": true, "conftest.py": true,
		"outputs.py": false, "checker.py": false, "supervisor.c": false, "Dockerfile": false, "attest.py": false,
	} {
		if testFile.MatchString(name) != want {
			t.Errorf("testFile matches %q: %t, want %t", name, !want, want)
		}
	}
	files := contextFiles()
	if len(files) < 5 {
		t.Fatalf("the embedded context holds only %v", files)
	}
	for _, f := range files {
		for _, part := range strings.Split(f, "/") {
			if testFile.MatchString(part) {
				t.Errorf("%s is test code in the image's build context: move it to images/testdata and send it to the container at test time", f)
			}
		}
	}
	// The tar the engine builds from holds the same files, and nothing else.
	tarball, err := contextTar()
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(tarball))
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if testFile.MatchString(path.Base(hdr.Name)) {
			t.Errorf("the build's tar stream holds test file %s", hdr.Name)
		}
	}
	if len(names) != len(files) {
		t.Errorf("the tar stream holds %d files, the context %d", len(names), len(files))
	}
	for _, f := range []string{"Dockerfile", "supervisor/supervisor.c", "harness/child.py", "harness/outputs.py"} {
		if !strings.Contains("\n"+strings.Join(names, "\n")+"\n", "\n"+f+"\n") {
			t.Errorf("the tar stream lacks %s", f)
		}
	}
}

// TestContextExtrasUser: an image rebuilt with extra packages ends as the
// user of the base image's Dockerfile (runner/shared_test.go checks that
// user against the runner's).
func TestContextExtrasUser(t *testing.T) {
	base, err := contextFS.ReadFile("context/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^USER[ \t]+(\S+)[ \t]*$`).FindAllSubmatch(base, -1)
	if len(m) == 0 {
		t.Fatal("images/context/Dockerfile: no USER line")
	}
	user := string(m[len(m)-1][1])
	tarball, err := extrasTar("repo:base", []string{"python3-sympy"})
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(tarball))
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	extras, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	e := regexp.MustCompile(`(?m)^USER[ \t]+(\S+)[ \t]*$`).FindAllSubmatch(extras, -1)
	if len(e) == 0 || string(e[len(e)-1][1]) != user {
		t.Errorf("the extras Dockerfile (rebuild.go) ends with USER %q, but images/context/Dockerfile runs as USER %q:\n%s", e, user, extras)
	}
}
