package keys

import (
	"fmt"
	"sync"
	"time"
)

// Refusal codes: the stable error codes of a 429 for a key over a quota.
const (
	CodeQuotaExceeded     = "quota_exceeded"
	CodeTooManyConcurrent = "too_many_concurrent"
	CodeTooManySessions   = "too_many_sessions"
)

// window is the span of PerMinute.
const window = time.Minute

// Refusal is an execution a key's quota refuses.
type Refusal struct {
	Code    string
	Message string
	// RetryAfter is when the same call would be admitted, if nothing else
	// changes (at least 1 s).
	RetryAfter time.Duration
}

func (r *Refusal) Error() string { return r.Message }

// Limiter holds one key's name, limits and counters. It outlives reloads
// that keep the key's name, so its counters do too.
type Limiter struct {
	name string

	mu      sync.Mutex
	limits  Limits
	running int
	// starts are the admission times of the last minute, oldest first;
	// kept only while PerMinute is set, and at most PerMinute of them.
	starts []time.Time
}

func newLimiter(name string, l Limits) *Limiter {
	return &Limiter{name: name, limits: l}
}

// Name is the key's name.
func (l *Limiter) Name() string { return l.name }

// Limits are the key's limits in force.
func (l *Limiter) Limits() Limits {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limits
}

func (l *Limiter) setLimits(lim Limits) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limits = lim
	if lim.PerMinute == 0 {
		l.starts = nil
	}
}

// Running is the number of executions admitted and not yet released.
func (l *Limiter) Running() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.running
}

// Admit takes an execution slot at time now: it refuses with a *Refusal
// when the key has PerMinute executions started in the last minute
// (CodeQuotaExceeded) or MaxConcurrent running (CodeTooManyConcurrent).
// A refused call counts against nothing. release gives the slot back; it
// may be called more than once.
func (l *Limiter) Admit(now time.Time) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.limits
	if lim.PerMinute > 0 {
		cut := 0
		for cut < len(l.starts) && !l.starts[cut].After(now.Add(-window)) {
			cut++
		}
		l.starts = l.starts[cut:]
		if n := len(l.starts); n >= lim.PerMinute {
			// Admitted again once the oldest starts beyond PerMinute-1
			// have left the window.
			free := l.starts[n-lim.PerMinute].Add(window)
			return nil, &Refusal{
				Code:       CodeQuotaExceeded,
				Message:    fmt.Sprintf("this key's quota of %d executions per minute is used up; retry later", lim.PerMinute),
				RetryAfter: atLeastSecond(free.Sub(now)),
			}
		}
	}
	if lim.MaxConcurrent > 0 && l.running >= lim.MaxConcurrent {
		return nil, &Refusal{
			Code:       CodeTooManyConcurrent,
			Message:    fmt.Sprintf("this key may run %d executions at once and has that many running; retry when one is done", lim.MaxConcurrent),
			RetryAfter: time.Second,
		}
	}
	if lim.PerMinute > 0 {
		l.starts = append(l.starts, now)
	}
	l.running++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.running--
			l.mu.Unlock()
		})
	}, nil
}

// atLeastSecond rounds d up to whole seconds, at least one.
func atLeastSecond(d time.Duration) time.Duration {
	s := (d + time.Second - 1) / time.Second
	if s < 1 {
		s = 1
	}
	return s * time.Second
}
