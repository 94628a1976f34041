package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/pyexec/pyexec/policy"
)

// The validator is one long-lived container, locked down like any sandbox,
// running validate.py: it parses code and applies the policy but never
// executes anything, so one process can safely serve every /validate call
// and the pre-check of every /execute. It is restarted when it dies.
//
// The runner's policy is given to the process once, on its command line
// (validate.py --policy), so that a request is only {"id", "code"}: the
// 4 KB of rules are neither sent, parsed nor type-checked per request. Each
// answer names the SHA-256 of the rules it applied, and an answer that does
// not name the runner's is a protocol error, so a validator that did not
// apply the policy can never let code through unchecked (the pre-check then
// falls back to the sandbox's own check).

const (
	roleValidator = "validator"
	// validateTimeout bounds one validation (parsing 50 KB takes ~0.1 s).
	validateTimeout = 5 * time.Second
)

var validatorEntrypoint = []string{"/usr/bin/python3", "-I", "-B", "/opt/pyexec/validate.py"}

type validator struct {
	mu sync.Mutex // guards the fields below; serialises requests
	sb *sandbox
	// seq numbers requests so answers can be matched.
	seq uint64
	// policySum is the hex SHA-256 of the policy on the process's command
	// line, which every answer must name; "" without a policy.
	policySum string
}

// validatorRequest is one request line; the policy is the process's own.
type validatorRequest struct {
	ID   string `json:"id"`
	Code string `json:"code"`
}

// validatorCommand is the validator's command line for policy (nil: off),
// and the SHA-256 its answers will name.
func validatorCommand(policyJSON json.RawMessage) ([]string, string) {
	if policyJSON == nil {
		return validatorEntrypoint, ""
	}
	return append(slices.Clone(validatorEntrypoint), "--policy", string(policyJSON)), policyDigest(policyJSON)
}

// policyDigest is the hex SHA-256 that validate.py names for the policy it
// was given (--policy); "" without a policy.
func policyDigest(policyJSON json.RawMessage) string {
	if policyJSON == nil {
		return ""
	}
	sum := sha256.Sum256(policyJSON)
	return hex.EncodeToString(sum[:])
}

// Validation is the outcome of checking code without running it.
type Validation struct {
	Valid  bool               `json:"valid"`
	Errors []policy.Violation `json:"errors"`
}

// Validate checks code for syntax errors and, unless the policy is off,
// policy violations, without running it. Size, encoding and emptiness are
// the caller's checks (policy.CheckSource).
func (r *Runner) Validate(ctx context.Context, code string) (Validation, error) {
	if !r.goroutines.enter() {
		return Validation{}, ErrClosed
	}
	defer r.goroutines.leave()
	return r.validate(ctx, code)
}

// validate is Validate for a caller already counted in (Run).
func (r *Runner) validate(ctx context.Context, code string) (Validation, error) {
	v := &r.validator
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.sb == nil || !v.sb.alive() || time.Since(v.sb.created) > r.opts.PoolMaxAge {
		if v.sb != nil {
			r.discard(ctx, v.sb)
			v.sb = nil
		}
		cmd, sum := validatorCommand(r.policyJSON)
		sb, err := r.prepareWith(context.WithoutCancel(ctx), roleValidator, PreloadNone, cmd)
		if err != nil {
			return Validation{}, fmt.Errorf("start validator: %w", err)
		}
		v.sb, v.policySum = sb, sum
	}
	v.seq++
	id := strconv.FormatUint(v.seq, 10)
	line, err := checkRequest(id, code)
	if err != nil {
		return Validation{}, err
	}
	if _, err := v.sb.conn.Conn.Write(line); err != nil {
		v.reset(r, ctx)
		return Validation{}, fmt.Errorf("send to validator: %w", err)
	}
	timer := time.NewTimer(validateTimeout)
	defer timer.Stop()
	select {
	case fe, ok := <-v.sb.frames:
		if !ok || fe.err != nil || fe.f.kind != frameValidation {
			v.reset(r, ctx)
			return Validation{}, fmt.Errorf("%w: validator answered %q (%v)", errProtocol, fe.f.kind, fe.err)
		}
		ans, err := parseValidation(fe.f.payload, id, v.policySum)
		if err != nil {
			v.reset(r, ctx)
		}
		return ans, err
	case <-timer.C:
		v.reset(r, ctx)
		return Validation{}, errors.New("validator did not answer in time")
	case <-ctx.Done():
		// The answer may still come; a fresh process avoids a stale one.
		v.reset(r, ctx)
		return Validation{}, ctx.Err()
	}
}

// checkRequest is the request line (newline included) that asks a
// validate.py process, the validator or a session's checker, to check code
// under its own policy.
func checkRequest(id, code string) ([]byte, error) {
	line, err := json.Marshal(validatorRequest{ID: id, Code: code})
	return append(line, '\n'), err
}

// parseValidation reads a validate.py answer (a validation frame's payload)
// to the request id, which must have been checked under the policy whose
// SHA-256 is policySum ("" for none).
func parseValidation(payload []byte, id, policySum string) (Validation, error) {
	var ans struct {
		ID     string             `json:"id"`
		Valid  bool               `json:"valid"`
		Errors []policy.Violation `json:"errors"`
		Policy string             `json:"policy_sha256"`
	}
	if err := json.Unmarshal(payload, &ans); err != nil || ans.ID != id {
		return Validation{}, fmt.Errorf("%w: validator answer for %q: %v", errProtocol, ans.ID, err)
	}
	if ans.Policy != policySum {
		return Validation{}, fmt.Errorf("%w: validator applied policy %.16q, not the runner's %.16q", errProtocol, ans.Policy, policySum)
	}
	if ans.Valid != (len(ans.Errors) == 0) {
		return Validation{}, fmt.Errorf("%w: validator said valid=%v with %d errors", errProtocol, ans.Valid, len(ans.Errors))
	}
	if ans.Errors == nil {
		ans.Errors = []policy.Violation{}
	}
	return Validation{Valid: ans.Valid, Errors: ans.Errors}, nil
}

// reset discards the validator process; the next call starts another.
func (v *validator) reset(r *Runner, ctx context.Context) {
	if v.sb != nil {
		r.discard(ctx, v.sb)
		v.sb = nil
	}
}

func (v *validator) close(r *Runner) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.reset(r, context.Background())
}
