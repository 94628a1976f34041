package images_test

import (
	"regexp"
	"testing"
	"time"
)

// outputsTests are the unit tests of the harness's outputs.py (pytests_test.go).
const outputsTests = "testdata/test_outputs.py"

// TestContextOutputsPy runs the unit tests of outputs.py in a locked-down
// container of the real image, against the harness the image holds, and
// requires every one of them to pass.
func TestContextOutputsPy(t *testing.T) {
	pyTests{
		file: outputsTests,
		// The hostile-objects test builds a 10,000,000-item list.
		memory:  2 << 30,
		tmpfs:   "256m",
		pids:    256,
		summary: regexp.MustCompile(`(?m)^OK\b`),
	}.run(t, 5*time.Minute)
}
