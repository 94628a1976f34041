package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/pyexec/pyexec/policy"
)

// The validator is one long-lived container, locked down like any sandbox,
// running validate.py: it parses code and applies the policy but never
// executes anything, so one process can safely serve every /validate call
// and the pre-check of every /execute. It is restarted when it dies.

const (
	roleValidator = "validator"
	// validateTimeout bounds one validation (parsing 50 KB takes ~0.1 s).
	validateTimeout = 5 * time.Second
	frameValidation = "validation"
)

var validatorEntrypoint = []string{"/usr/bin/python3", "-I", "-B", "/opt/pyexec/validate.py"}

type validator struct {
	mu sync.Mutex // guards sb and seq; serialises requests
	sb *sandbox
	// seq numbers requests so answers can be matched.
	seq uint64
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
		sb, err := r.prepareWith(context.WithoutCancel(ctx), roleValidator, PreloadNone, validatorEntrypoint)
		if err != nil {
			return Validation{}, fmt.Errorf("start validator: %w", err)
		}
		v.sb = sb
	}
	v.seq++
	id := strconv.FormatUint(v.seq, 10)
	line, err := json.Marshal(map[string]any{"id": id, "code": code, "policy": r.policyJSON})
	if err != nil {
		return Validation{}, err
	}
	if _, err := v.sb.conn.Conn.Write(append(line, '\n')); err != nil {
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
		var ans struct {
			ID     string             `json:"id"`
			Valid  bool               `json:"valid"`
			Errors []policy.Violation `json:"errors"`
		}
		if err := json.Unmarshal(fe.f.payload, &ans); err != nil || ans.ID != id {
			v.reset(r, ctx)
			return Validation{}, fmt.Errorf("%w: validator answer for %q: %v", errProtocol, ans.ID, err)
		}
		if !ans.Valid && len(ans.Errors) == 0 {
			v.reset(r, ctx)
			return Validation{}, fmt.Errorf("%w: validator refused code without saying why", errProtocol)
		}
		if ans.Errors == nil {
			ans.Errors = []policy.Violation{}
		}
		return Validation{Valid: len(ans.Errors) == 0, Errors: ans.Errors}, nil
	case <-timer.C:
		v.reset(r, ctx)
		return Validation{}, errors.New("validator did not answer in time")
	case <-ctx.Done():
		// The answer may still come; a fresh process avoids a stale one.
		v.reset(r, ctx)
		return Validation{}, ctx.Err()
	}
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
