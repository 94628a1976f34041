package images_test

import (
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"github.com/pyexec/pyexec/policy"
)

// checkerTests are the tests of the policy's file rule in checker.py. Like
// testdata/test_outputs.py they live out of the build context and reach the
// container on stdin.
const checkerTests = "testdata/test_checker.py"

// TestContextCheckerPy runs the tests of checker.py's file rule in a
// locked-down container of the real image, against the harness the image
// holds and the service's default rules (policy.Default()), and requires
// every one of them to pass: paths out of the working directory are refused,
// and the readers and writers of pandas, numpy and matplotlib that the policy
// lets through work in a working directory on the tmpfs.
func TestContextCheckerPy(t *testing.T) {
	rules, err := json.Marshal(policy.Default())
	if err != nil {
		t.Fatal(err)
	}

	pyTests{
		file:    checkerTests,
		env:     []string{"PYEXEC_TEST_RULES=" + string(rules)},
		memory:  1 << 30,
		tmpfs:   "128m",
		pids:    64,
		summary: regexp.MustCompile(`(?m)^OK$`), // nothing skipped
	}.run(t, 3*time.Minute)
}
