package runner

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/policy"
)

// newValidatorRunner is a runner with policy rules (nil: POLICY=off) whose
// containers are gone at the end of the test.
func newValidatorRunner(t *testing.T, rules *policy.Rules) *Runner {
	t.Helper()
	cli := dockertest.Require(t)
	owner := dockertest.Owner(t)
	r, err := New(cli, Options{Image: dockertest.Image(t, cli), Owner: owner, Policy: rules})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dockertest.Scale(time.Minute))
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Error(err)
		}
		dockertest.AssertNoContainers(t, cli, owner)
	})
	return r
}

func rulesOf(v Validation) []string {
	var out []string
	for _, e := range v.Errors {
		out = append(out, e.Rule)
	}
	return out
}

// TestValidatorPolicyOnCommandLine: the validator gets the runner's policy
// once, on its command line, applies it to requests that carry only code,
// and an answer that does not name the runner's policy is refused, so that
// the code is checked by the sandbox instead and still refused.
func TestValidatorPolicyOnCommandLine(t *testing.T) {
	t.Parallel()
	rules := policy.Default()
	r := newValidatorRunner(t, &rules)

	cmd, sum := validatorCommand(r.policyJSON)
	if len(sum) != 64 || !slices.Equal(cmd[:len(validatorEntrypoint)], validatorEntrypoint) ||
		cmd[len(cmd)-2] != "--policy" || cmd[len(cmd)-1] != string(r.policyJSON) {
		t.Fatalf("command %q, sum %q", cmd, sum)
	}
	v, err := r.Validate(t.Context(), "import os\nprint('你好')")
	if err != nil || v.Valid || !slices.Equal(rulesOf(v), []string{policy.RuleForbiddenModule}) {
		t.Fatalf("import os: %+v, %v", v, err)
	}
	v, err = r.Validate(t.Context(), "import pandas as pd\nprint('你好')")
	if err != nil || !v.Valid || len(v.Errors) != 0 {
		t.Fatalf("allowed code: %+v, %v", v, err)
	}
	if r.validator.policySum != sum {
		t.Fatalf("validator expects policy %q, want %q", r.validator.policySum, sum)
	}

	// A validator whose answers name other rules is not trusted.
	started := r.metrics.created[roleValidator].Load()
	r.validator.mu.Lock()
	r.validator.policySum = "0000"
	r.validator.mu.Unlock()
	res, err := r.Run(t.Context(), Request{Code: "import os\nprint('ran')", Timeout: dockertest.Scale(30 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Rejected || res.Flavor == FlavorValidator || res.Stdout != "" ||
		!slices.Equal(violationRules(res.Violations), []string{policy.RuleForbiddenModule}) {
		t.Errorf("with a distrusted validator: rejected %v flavor %q stdout %q violations %+v",
			res.Rejected, res.Flavor, res.Stdout, res.Violations)
	}
	// The distrusted process was replaced; the next one is trusted again.
	v, err = r.Validate(t.Context(), "import os")
	if err != nil || v.Valid {
		t.Fatalf("after the reset: %+v, %v", v, err)
	}
	if n := r.metrics.created[roleValidator].Load(); n != started+1 {
		t.Errorf("validators started %d, want %d (one replacement)", n, started+1)
	}
	r.validator.mu.Lock()
	r.validator.policySum = "0000"
	r.validator.mu.Unlock()
	if _, err := r.Validate(t.Context(), "print(1)"); !errors.Is(err, errProtocol) {
		t.Errorf("answer naming other rules: %v, want %v", err, errProtocol)
	}
}

func violationRules(vs []policy.Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Rule)
	}
	return out
}

// TestValidatorWithoutPolicy: POLICY=off starts the validator without
// rules; it reports syntax errors only, and its answers name no policy.
func TestValidatorWithoutPolicy(t *testing.T) {
	t.Parallel()
	r := newValidatorRunner(t, nil)
	if cmd, sum := validatorCommand(r.policyJSON); !slices.Equal(cmd, validatorEntrypoint) || sum != "" {
		t.Fatalf("command %q, sum %q", cmd, sum)
	}
	v, err := r.Validate(t.Context(), "import os\nprint(os.getcwd())")
	if err != nil || !v.Valid {
		t.Fatalf("import os without a policy: %+v, %v", v, err)
	}
	v, err = r.Validate(t.Context(), "x = (1,\n")
	if err != nil || v.Valid || !slices.Equal(rulesOf(v), []string{policy.RuleSyntax}) {
		t.Fatalf("syntax error: %+v, %v", v, err)
	}
}
