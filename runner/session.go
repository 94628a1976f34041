// Sessions hold state between executions, like a notebook kernel: one
// dedicated container per session (role roleSession), created fresh with the
// same hardening as an execution and SessionMemoryBytes of memory, whose
// harness serves cells until the session ends. The session table below is
// the only map from a session ID to its container; the container stays in
// the runner's tracked set (Runner.owned) for its whole life, so the
// reconciler leaves it alone, and LabelExpires covers the longest lifetime
// (Runner.maxLife).
//
// Protocol (images/context/supervisor/supervisor.c, session mode): every
// request is a "cell" header and a JSON body naming an op: "run" (code,
// timeout, policy, options, files), "put" (files), "get" (one file) and
// "list" (the working directory). The supervisor answers each with the
// frames of one execution (stdout, stderr, report, outputs) and an exit
// frame whose state is "alive" while the session lives on. At the deadline
// the supervisor interrupts the code (KeyboardInterrupt); code that does not
// stop within its grace is killed and the session ends (state "signaled").
//
// Policy: a session's own process has run its earlier cells, so it never
// checks the next one (they can rebind what a checker there relies on).
// With a policy, the session's supervisor runs a checker process of its own
// (validate.py --checker, started before any user code and non-dumpable),
// and every run op carries a check request before its body (FLAG_CHECK):
// the supervisor hands the cell to the child only if the checker passed it,
// and answers a refused one with its validation frame and an exit frame of
// state "refused". That costs a pipe round trip inside the container where
// the service's validator costs one more round trip through the engine.
// Without a policy the validator's syntax check comes first, as for
// /execute.
//
// Serialization: the ops of one session run one at a time, in arrival
// order (the session's turn is a one-slot channel; Go queues blocked
// senders first in, first out). At most maxSessionWaiting ops wait behind
// the one in progress; past that, ErrSessionBusy (409).
//
// Accounting rule (the one the README states): a running cell holds a
// worker slot (MaxWorkers) like an execution, and queues for it in the same
// bounded queue (MaxQueue). Cells of all sessions together hold at most
// max(1, MaxWorkers-1) slots, so with more than one worker single-shot
// executions always keep at least one; executions cannot starve sessions
// beyond the shared queue, since cells queue for slots like executions.
// Idle sessions, and the put, get and list ops (file copies, no user code),
// hold no worker; the number of sessions is bounded by MaxSessions, so their
// memory is at most MaxSessions x SessionMemoryBytes.
//
// Lifetime: the janitor (runSessionJanitor, in the runner's goroutine
// tracker) ends sessions idle longer than SessionIdleTimeout and sessions
// older than SessionMaxLifetime, once their op in progress is done; an op
// that starts past the lifetime ends the session instead. DeleteSession,
// a cell that times out without stopping, running out of memory, or a crash
// end a session too. An ended session's ID stays in a bounded table of
// tombstones, so that a later call learns why it is gone (404). Close ends
// every session; Reap removes the sessions of a previous instance.

package runner

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/internal/logctx"
	"github.com/pyexec/pyexec/policy"
)

// Session settings.
const (
	// maxSessionWaiting is how many ops may wait behind the one running in
	// a session before ErrSessionBusy.
	maxSessionWaiting = 4
	// maxTombstones bounds the table of ended sessions' IDs.
	maxTombstones = 4096
	// sessionOpTimeout bounds the put, get and list ops in the sandbox.
	sessionOpTimeout = 30 * time.Second
	// checkerLost is in the supervisor's error messages for a checker that
	// is gone (TestSharedSession).
	checkerLost = "policy checker"
	// cellCheckTimeout is how long the session's checker has to answer a
	// check request (CHECK_TIMEOUT_MS) before the session ends.
	cellCheckTimeout = 10 * time.Second
	// interruptGrace is how long the supervisor waits after interrupting
	// timed-out code before it kills it (INTERRUPT_GRACE_MS).
	interruptGrace = time.Second
	// sessionIDBytes is the entropy of a session ID.
	sessionIDBytes = 32
	// sessionJanitorPeriod is how often the janitor looks for idle and
	// expired sessions (more often when the idle timeout is short).
	sessionJanitorPeriod = time.Second
)

// Session defaults (Options).
const (
	DefaultMaxSessions        = 16
	DefaultSessionIdleTimeout = 10 * time.Minute
	DefaultSessionMaxLifetime = time.Hour
	// MaxSessionLifetimeLimit bounds SessionMaxLifetime.
	MaxSessionLifetimeLimit = 24 * time.Hour
)

// Limits on files, in and out (issue 12). The service's config may lower
// the input limits; the output caps are sent to the sandbox with every
// execution unless the request's options name their own.
const (
	// MaxFileNameBytes bounds one name (a path component).
	MaxFileNameBytes = 255
	// maxFilePathBytes bounds a path of components.
	maxFilePathBytes = 1024
	// maxFileDepth bounds the components of an output file's path:
	// outputs/ is scanned 4 directories deep.
	maxFileDepth = 5
	// DefaultMaxInputFiles and DefaultMaxInputBytes are the service's
	// defaults for the input files of one request.
	DefaultMaxInputFiles = 20
	DefaultMaxInputBytes = 32 << 20
	// MaxInputBytesLimit is the most input the sandbox supervisor takes in
	// one request (MAX_REQUEST_BYTES leaves room for base64 and the code).
	MaxInputBytesLimit = 64 << 20
	// Output file caps: count, one file, all files of one execution.
	DefaultMaxOutputFiles      = 20
	DefaultMaxOutputFileBytes  = 10 << 20
	DefaultMaxOutputFilesBytes = 16 << 20
	// maxSkippedFiles bounds files_skipped; maxListedFiles a session's
	// listing.
	maxSkippedFiles = 100
	maxListedFiles  = 1000
)

// Option keys of the output file caps (Request.Options, passed to the child).
const (
	optMaxFiles           = "max_files"
	optMaxFileBytes       = "max_file_bytes"
	optMaxFilesTotalBytes = "max_files_total_bytes"
)

// Ops of a session request (the body's "op").
const (
	sessionOpRun  = "run"
	sessionOpPut  = "put"
	sessionOpGet  = "get"
	sessionOpList = "list"
)

// logSessionID is the log field of a session's ID (its first 12 characters:
// the ID is the session's only credential).
const logSessionID = "session_id"

// sessionExitAlive is the exit frame's state of a session whose child
// waits for the next cell; sessionExitRefused that of a cell the session's
// checker refused (the child never saw it, and waits on).
const (
	sessionExitAlive   = "alive"
	sessionExitRefused = "refused"
)

// Session states (SessionInfo.State).
const (
	SessionStateIdle    = "idle"
	SessionStateRunning = "running"
)

// Reasons a session ended (SessionInfo.EndReason, SessionState.EndReason).
const (
	EndDeleted = "deleted"
	EndExpired = "expired"
	EndIdle    = "idle"
	EndTimeout = "timeout"
	// EndInterrupted: a cell's request was cancelled (its client left) and
	// its code did not stop when interrupted.
	EndInterrupted = "interrupted"
	EndOutOfMemory = "out_of_memory"
	EndCrashed     = "crashed"
	EndEngine      = "engine"
	EndShutdown    = "shutdown"
)

// endMessages say why a session is gone, by end reason.
var endMessages = map[string]string{
	EndDeleted:     "the session was deleted",
	EndExpired:     "the session reached its maximum lifetime and was ended",
	EndIdle:        "the session was idle longer than its idle timeout and was ended",
	EndTimeout:     "the session was ended: its code did not stop when interrupted at the time limit",
	EndInterrupted: "the session was ended: its code did not stop when interrupted after its request was cancelled",
	EndOutOfMemory: "the session ran out of memory and was ended",
	EndCrashed:     "the session's process ended unexpectedly",
	EndEngine:      "the session's container was lost",
	EndShutdown:    "the service is shutting down",
}

// Session errors; handlers map each to a status and a stable code.
var (
	// ErrSessionNotFound means no live session has the ID; a
	// *SessionGoneError says why when the session is remembered.
	ErrSessionNotFound = errors.New("no such session")
	// ErrSessionBusy means the session's queue of ops is full.
	ErrSessionBusy = errors.New("the session is busy and its queue is full")
	// ErrTooManySessions means MaxSessions sessions exist.
	ErrTooManySessions = errors.New("too many sessions")
	// ErrFileNotFound means the session has no such file.
	ErrFileNotFound = errors.New("no such file in the session")
	// ErrFileRefused means the sandbox refused a file op (too large, not
	// a regular file, a bad name); the error says why.
	ErrFileRefused = errors.New("file refused")
	// ErrInvalidFile means an input file's name or size breaks the rules
	// (CheckFileName); handlers check first and answer 422.
	ErrInvalidFile = errors.New("invalid input file")
)

// SessionGoneError is ErrSessionNotFound for a session that existed: Reason
// is one of the End* reasons.
type SessionGoneError struct{ Reason string }

func (e *SessionGoneError) Error() string {
	if m, ok := endMessages[e.Reason]; ok {
		return m
	}
	return ErrSessionNotFound.Error()
}

// Is makes errors.Is(err, ErrSessionNotFound) true.
func (e *SessionGoneError) Is(target error) bool { return target == ErrSessionNotFound }

// File is an input file of a request, placed in the working directory
// before the code runs.
type File struct {
	Name string
	Data []byte
}

// OutputFile is a file the code wrote under outputs/ (untrusted content;
// name, size and type checked by the runner).
type OutputFile struct {
	// Name is relative to outputs/, components joined by '/'.
	Name string `json:"name"`
	Size int64  `json:"size"`
	// Mime is the type by the name's extension.
	Mime string `json:"mime"`
	// Content is the file's bytes (base64 in JSON).
	Content []byte `json:"content"`
}

// SkippedFile is an entry of outputs/ that was not read: a symlink, a FIFO,
// a socket, a device, or a directory too deep.
type SkippedFile struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// skipReasons are the reasons the child may give; others read "other".
var skipReasons = map[string]bool{
	"symlink": true, "fifo": true, "socket": true, "device": true, "directory too deep": true,
}

// SessionOptions configure a new session.
type SessionOptions struct {
	// Timeout is the default time limit of its cells (0: the caller's).
	Timeout time.Duration
}

// SessionFile is a file in a session's working directory.
type SessionFile struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// SessionInfo describes a live session.
type SessionInfo struct {
	ID        string
	CreatedAt time.Time
	ExpiresAt time.Time
	LastUsed  time.Time
	// Timeout is the default time limit of its cells (0: none set).
	Timeout time.Duration
	// IdleTimeout is how long it may stay unused before it is ended.
	IdleTimeout time.Duration
	// Executions counts the cells that ran.
	Executions int64
	// MemoryBytes is the container's memory use after the last op.
	MemoryBytes int64
	// MemoryLimitBytes is the container's memory limit.
	MemoryLimitBytes int64
	// State is SessionStateIdle or SessionStateRunning.
	State string
	// Files lists the working directory (as of the last op that looked).
	Files []SessionFile
	// FilesSkipped lists entries that are not regular files.
	FilesSkipped []SkippedFile
}

// SessionState is the session part of a cell's Result.
type SessionState struct {
	ID         string
	Executions int64
	ExpiresAt  time.Time
	// Ended says this cell ended the session; EndReason says why.
	Ended     bool
	EndReason string
}

// wireCell is the body of a session request.
type wireCell struct {
	Op      string         `json:"op"`
	Code    string         `json:"code,omitempty"`
	Timeout float64        `json:"timeout,omitempty"`
	Options map[string]any `json:"options,omitempty"`
	Files   []wireFile     `json:"files,omitempty"`
	Name    string         `json:"name,omitempty"`
}

// wireFile is an input file as the child takes it (content in base64).
type wireFile struct {
	Name    string `json:"name"`
	Content []byte `json:"content"`
}

func wireFiles(fs []File) []wireFile {
	if len(fs) == 0 {
		return nil
	}
	out := make([]wireFile, len(fs))
	for i, f := range fs {
		out[i] = wireFile{Name: f.Name, Content: f.Data}
	}
	return out
}

// controlInterrupt is the line sent to a session's supervisor while a cell
// runs whose request was cancelled: it interrupts the cell as its deadline
// would (supervisor.c, "control"); a late one, after the cell ended, is
// skipped.
const controlInterrupt = "interrupt\n"

// cellHeader is the line before a session request's body (requestHeader's
// fields, op "cell").
func cellHeader(timeout time.Duration, stdoutCap, stderrCap, outputsCap, length int) string {
	ms := max(1, (timeout + time.Millisecond - 1).Milliseconds())
	return fmt.Sprintf("cell %d %d %d %d %d\n", ms, stdoutCap, stderrCap, outputsCap, length)
}

// sessionReply is what the sandbox answered to one op.
type sessionReply struct {
	exit   wireExit
	frames execFrames
	// memory is the container's memory use after the op (exit frame).
	memory int64
	// refused lists why the session's checker refused the cell (exit state
	// sessionExitRefused); nil when it ran.
	refused []policy.Violation
}

// cellCheck is a run op's check request for the session's checker.
type cellCheck struct {
	id        string // the request's id, which the answer must name
	line      []byte // checkRequest's line
	policySum string // the policy the answer must name
}

// alive says the session's child waits for the next op.
func (rep *sessionReply) alive() bool { return rep.exit.State == sessionExitAlive }

// CheckFileName reports whether name is a plain file name: not empty, at
// most MaxFileNameBytes of valid UTF-8, no '/' or '\', not "." or "..", no
// NUL or other control character, no leading or trailing space. The error
// wraps ErrInvalidFile and says why.
func CheckFileName(name string) error {
	why := ""
	switch {
	case name == "":
		why = "is empty"
	case len(name) > MaxFileNameBytes:
		why = fmt.Sprintf("is longer than %d bytes", MaxFileNameBytes)
	case !utf8.ValidString(name):
		why = "is not valid UTF-8"
	case name == "." || name == "..":
		why = "is not a file name"
	case strings.ContainsAny(name, `/\`):
		why = "contains a path separator"
	case strings.IndexFunc(name, func(c rune) bool { return c < 0x20 || c == 0x7f }) >= 0:
		why = "contains a control character"
	case strings.TrimSpace(name) != name:
		why = "begins or ends with a space"
	default:
		return nil
	}
	return fmt.Errorf("%w: file name %q %s", ErrInvalidFile, cutChars(name, 64), why)
}

// CheckFilePath reports whether p is plain file names joined by '/' (at
// most maxFileDepth of them, maxFilePathBytes in all).
func CheckFilePath(p string) error {
	if len(p) > maxFilePathBytes {
		return fmt.Errorf("%w: file path longer than %d bytes", ErrInvalidFile, maxFilePathBytes)
	}
	parts := strings.Split(p, "/")
	if len(parts) > maxFileDepth {
		return fmt.Errorf("%w: file path %q deeper than %d", ErrInvalidFile, cutChars(p, 64), maxFileDepth)
	}
	for _, c := range parts {
		if err := CheckFileName(c); err != nil {
			return err
		}
	}
	return nil
}

// MimeType is the content type of a file by its name's extension;
// application/octet-stream when unknown.
func MimeType(name string) string {
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// session is one live session. Its sandbox serves one op at a time: the op
// holding turn.
type session struct {
	id      string
	sb      *sandbox
	created time.Time
	expires time.Time
	timeout time.Duration
	// policySum is the SHA-256 of the policy the session's checker applies
	// ("" without a policy, then there is no checker).
	policySum string
	// turn is held (one value sent) by the op in progress.
	turn chan struct{}

	mu sync.Mutex // guards the fields below
	// pending counts the ops holding or waiting for turn.
	pending    int
	running    bool
	lastUsed   time.Time
	executions int64
	memory     int64
	files      []SessionFile
	skipped    []SkippedFile
	// ended is the end reason; "" while the session lives.
	ended string
	// checks numbers the check requests sent to the session's checker.
	checks int64

	endOnce sync.Once
}

func (s *session) endReason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// sessionTable is the only map from session ID to container, with the
// tombstones of ended sessions and the cells' share of the worker slots.
type sessionTable struct {
	// cellSlots bounds the cells running at once (the accounting rule).
	cellSlots chan struct{}

	mu   sync.Mutex // guards the fields below
	live map[string]*session
	// creating counts sessions being created (they count against the cap).
	creating int
	// closed refuses new sessions (Close).
	closed bool
	tombs  map[string]string
	// tombOrder is the insertion order of tombs, oldest first.
	tombOrder []string
}

func newSessionTable(maxWorkers int) *sessionTable {
	return &sessionTable{
		cellSlots: make(chan struct{}, max(1, maxWorkers-1)),
		live:      map[string]*session{},
		tombs:     map[string]string{},
	}
}

// lookup returns the live session id, or ErrSessionNotFound saying why.
func (t *sessionTable) lookup(id string) (*session, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.live[id]; ok {
		return s, nil
	}
	if reason, ok := t.tombs[id]; ok {
		return nil, &SessionGoneError{Reason: reason}
	}
	return nil, ErrSessionNotFound
}

// drop removes s from the live table and remembers why it ended.
func (t *sessionTable) drop(s *session, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live[s.id] != s {
		return
	}
	delete(t.live, s.id)
	if len(t.tombOrder) >= maxTombstones {
		delete(t.tombs, t.tombOrder[0])
		t.tombOrder = t.tombOrder[1:]
	}
	t.tombs[s.id] = reason
	t.tombOrder = append(t.tombOrder, s.id)
}

// snapshot returns the live sessions.
func (t *sessionTable) snapshot() []*session {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*session, 0, len(t.live))
	for _, s := range t.live {
		out = append(out, s)
	}
	return out
}

// count is the number of live sessions.
func (t *sessionTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.live)
}

// newSessionID is prefix then 32 random bytes, base64url without padding
// (43 chars).
func newSessionID(prefix string) (string, error) {
	var b [sessionIDBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session id: %w", err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// CreateSession starts a session's container and returns the session.
// ErrTooManySessions when MaxSessions exist; the engine errors of prepare
// otherwise.
func (r *Runner) CreateSession(ctx context.Context, o SessionOptions) (SessionInfo, error) {
	if o.Timeout < 0 || o.Timeout > r.opts.MaxTimeout {
		return SessionInfo{}, fmt.Errorf("runner: session timeout %v outside [0, %v]", o.Timeout, r.opts.MaxTimeout)
	}
	if !r.goroutines.enter() {
		return SessionInfo{}, ErrClosed
	}
	defer r.goroutines.leave()
	id, err := newSessionID(r.opts.sessionIDPrefix())
	if err != nil {
		return SessionInfo{}, err
	}
	t := r.sessions
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return SessionInfo{}, ErrClosed
	}
	if len(t.live)+t.creating >= r.opts.MaxSessions {
		t.mu.Unlock()
		return SessionInfo{}, ErrTooManySessions
	}
	t.creating++
	t.mu.Unlock()
	created := false
	defer func() {
		if !created {
			t.mu.Lock()
			t.creating--
			t.mu.Unlock()
		}
	}()

	sb, err := r.prepare(ctx, roleSession, PreloadNone)
	if err != nil {
		return SessionInfo{}, err
	}
	now := time.Now()
	s := &session{
		id: id, sb: sb, created: now, expires: now.Add(r.opts.SessionMaxLifetime), timeout: o.Timeout,
		policySum: policyDigest(r.policyJSON), turn: make(chan struct{}, 1), lastUsed: now, memory: sb.ready.MemoryBytes, files: []SessionFile{},
	}
	t.mu.Lock()
	t.creating--
	created = true
	if t.closed {
		t.mu.Unlock()
		r.discard(ctx, sb)
		return SessionInfo{}, ErrClosed
	}
	t.live[id] = s
	t.mu.Unlock()
	logctx.From(ctx).WithFields(logrus.Fields{logSessionID: shortID(id), logContainerID: shortID(sb.id)}).Info("session created")
	return r.sessionInfo(s), nil
}

// sessionInfo is s's description with the runner's settings.
func (r *Runner) sessionInfo(s *session) SessionInfo {
	info := s.info(r.opts.SessionMemoryBytes)
	info.IdleTimeout = r.opts.SessionIdleTimeout
	return info
}

// info is the session's description.
func (s *session) info(limit int64) SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	state := SessionStateIdle
	if s.running {
		state = SessionStateRunning
	}
	return SessionInfo{
		ID: s.id, CreatedAt: s.created, ExpiresAt: s.expires, LastUsed: s.lastUsed, Timeout: s.timeout,
		Executions: s.executions, MemoryBytes: s.memory, MemoryLimitBytes: limit, State: state,
		Files: append([]SessionFile{}, s.files...), FilesSkipped: append([]SkippedFile(nil), s.skipped...),
	}
}

// state is the session part of a Result.
func (s *session) state() *SessionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &SessionState{ID: s.id, Executions: s.executions, ExpiresAt: s.expires, Ended: s.ended != "", EndReason: s.ended}
}

// gone is the error of an op on a session that ended.
func gone(reason string) error {
	if reason == EndShutdown {
		return ErrClosed
	}
	return &SessionGoneError{Reason: reason}
}

// withSession runs fn holding the session's turn. wait false gives up at
// once (nil, false) when another op holds the turn or waits for it; touch
// marks the session used (the idle clock restarts when fn returns).
func (r *Runner) withSession(ctx context.Context, id string, wait, touch bool, fn func(s *session) error) (bool, error) {
	s, err := r.sessions.lookup(id)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	switch {
	case s.ended != "":
		s.mu.Unlock()
		return false, gone(s.ended)
	case !wait && s.pending > 0:
		s.mu.Unlock()
		return false, nil
	case s.pending > maxSessionWaiting: // the op in progress and maxSessionWaiting more
		s.mu.Unlock()
		return false, ErrSessionBusy
	}
	s.pending++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.pending--
		if touch {
			s.lastUsed = time.Now()
		}
		s.mu.Unlock()
	}()
	select {
	case s.turn <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-s.turn }()
	if reason := s.endReason(); reason != "" {
		return false, gone(reason)
	}
	if time.Now().After(s.expires) {
		r.endSession(ctx, s, EndExpired)
		return false, gone(EndExpired)
	}
	return true, fn(s)
}

// endSession ends s for reason (the first reason given stands): it leaves
// the table for the tombstones and its container is discarded. An op in
// progress sees its stream end.
func (r *Runner) endSession(ctx context.Context, s *session, reason string) {
	s.mu.Lock()
	if s.ended == "" {
		s.ended = reason
	}
	reason = s.ended
	executions := s.executions
	s.mu.Unlock()
	r.sessions.drop(s, reason)
	s.endOnce.Do(func() {
		r.countSessionEnded(reason) // session_metrics.go
		logctx.From(ctx).WithFields(logrus.Fields{
			logSessionID: shortID(s.id), logContainerID: shortID(s.sb.id), logReason: reason,
			"executions": executions, "age_seconds": time.Since(s.created).Round(time.Millisecond).Seconds(),
		}).Info("session ended")
		r.discard(ctx, s.sb)
	})
}

// DeleteSession ends the session and removes its container (in the
// background, like every discard). An op in progress ends with it.
func (r *Runner) DeleteSession(ctx context.Context, id string) error {
	if !r.goroutines.enter() {
		return ErrClosed
	}
	defer r.goroutines.leave()
	s, err := r.sessions.lookup(id)
	if err != nil {
		return err
	}
	if reason := s.endReason(); reason != "" {
		return gone(reason)
	}
	r.endSession(ctx, s, EndDeleted)
	return nil
}

// Session describes the session. When no op is in progress or waiting it
// asks the sandbox for its files and memory first; otherwise it answers
// with what the last op saw. Looking does not restart the idle clock.
func (r *Runner) Session(ctx context.Context, id string) (SessionInfo, error) {
	if !r.goroutines.enter() {
		return SessionInfo{}, ErrClosed
	}
	defer r.goroutines.leave()
	var s *session
	_, err := r.withSession(ctx, id, false, false, func(ss *session) error {
		s = ss
		_, err := r.fileOp(ctx, ss, wireCell{Op: sessionOpList})
		return err
	})
	if err != nil {
		return SessionInfo{}, err
	}
	if s == nil {
		if s, err = r.sessions.lookup(id); err != nil {
			return SessionInfo{}, err
		}
	}
	return r.sessionInfo(s), nil
}

// SessionFile returns a file of the session's working directory: a plain
// name is looked up in outputs/ first, then the working directory;
// "outputs/x" names one in outputs/. ErrFileNotFound when there is none;
// ErrFileRefused when it is too large (Options' max_file_bytes) or not a
// regular file.
func (r *Runner) SessionFile(ctx context.Context, id, name string) ([]byte, error) {
	if err := CheckFilePath(name); err != nil {
		return nil, err
	}
	if !r.goroutines.enter() {
		return nil, ErrClosed
	}
	defer r.goroutines.leave()
	var data []byte
	_, err := r.withSession(ctx, id, true, true, func(s *session) error {
		out, err := r.fileOp(ctx, s, wireCell{Op: sessionOpGet, Name: name, Options: r.outputOptions(nil)})
		if err != nil {
			return err
		}
		switch {
		case len(out.Files) == 1:
			data = out.Files[0].Content
			return nil
		case out.FilesTruncated:
			return fmt.Errorf("%w: %s is larger than the download limit of %d bytes", ErrFileRefused, name, DefaultMaxOutputFileBytes)
		case len(out.FilesSkipped) > 0:
			return fmt.Errorf("%w: %s is not a regular file (%s)", ErrFileRefused, name, out.FilesSkipped[0].Reason)
		}
		return fmt.Errorf("%w: %s", ErrFileNotFound, name)
	})
	return data, err
}

// PutSessionFile writes a file into the session's working directory.
func (r *Runner) PutSessionFile(ctx context.Context, id, name string, data []byte) error {
	if err := r.checkInputFiles([]File{{Name: name, Data: data}}); err != nil {
		return err
	}
	if !r.goroutines.enter() {
		return ErrClosed
	}
	defer r.goroutines.leave()
	_, err := r.withSession(ctx, id, true, true, func(s *session) error {
		_, err := r.fileOp(ctx, s, wireCell{Op: sessionOpPut, Files: wireFiles([]File{{Name: name, Data: data}})})
		return err
	})
	return err
}

// RunInSession runs a cell in the session: the code, with the files placed
// in the working directory first, in the namespace the session's earlier
// cells left. The Result is an execution's, with Session set. Errors are
// Run's, ErrSessionNotFound, ErrSessionBusy.
func (r *Runner) RunInSession(ctx context.Context, id string, req Request) (Result, error) {
	if err := r.checkInputFiles(req.Files); err != nil {
		return Result{}, err
	}
	if !r.goroutines.enter() {
		return Result{}, ErrClosed
	}
	defer r.goroutines.leave()
	s, err := r.sessions.lookup(id)
	if err != nil {
		return Result{}, err
	}
	if req.Timeout == 0 {
		req.Timeout = s.timeout
	}
	if req.Timeout <= 0 || req.Timeout > r.opts.MaxTimeout {
		return Result{}, fmt.Errorf("runner: timeout %v outside (0, %v]", req.Timeout, r.opts.MaxTimeout)
	}
	// Without a policy, the validator's syntax check (it needs no turn);
	// with one, the session's checker checks each cell (see Policy above).
	if s.policySum == "" {
		if res, err := r.precheck(ctx, &req); err != nil || res != nil {
			if res != nil {
				res.Resources.MemoryLimitBytes = r.opts.SessionMemoryBytes
				res.Session = s.state()
				r.countSessionCell(res) // session_metrics.go
			}
			return derefResult(res), err
		}
	}
	var res Result
	_, err = r.withSession(ctx, id, true, true, func(s *session) error {
		queuedAt := time.Now()
		release, err := r.acquireCell(ctx)
		if err != nil {
			return err
		}
		defer release()
		r.hist.queueWait.Observe(time.Since(queuedAt).Seconds())
		r.metrics.running.Add(1)
		defer r.metrics.running.Add(-1)
		s.mu.Lock()
		s.running = true
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.running = false
			s.mu.Unlock()
		}()
		res, err = r.cell(ctx, s, req)
		return err
	})
	return res, err
}

// acquireCell admits one cell: a cells' slot (the accounting rule), then a
// worker slot, each at once or after a wait in the shared bounded queue.
func (r *Runner) acquireCell(ctx context.Context) (func(), error) {
	queued := false
	defer func() {
		if queued {
			r.queued.Add(-1)
		}
	}()
	wait := func(slots chan struct{}) error {
		select {
		case slots <- struct{}{}:
			return nil
		default:
		}
		if !queued {
			if r.queued.Add(1) > int64(r.opts.MaxQueue) {
				r.queued.Add(-1)
				return ErrBusy
			}
			queued = true
		}
		select {
		case slots <- struct{}{}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	cells := r.sessions.cellSlots
	if err := wait(cells); err != nil {
		return nil, err
	}
	if err := wait(r.slots); err != nil {
		<-cells
		return nil, err
	}
	return func() {
		<-r.slots
		<-cells
	}, nil
}

// roundTrip sends one op to the session's sandbox and reads its frames up
// to the exit frame. The caller holds the turn. It returns a Result instead
// (res not nil) when the op did not end with an exit frame: killed at the
// outer deadline, or the sandbox ended; the session has ended then. With
// onEvent, the op streams (stream.go).
//
// When ctx is cancelled (the client left), a cell that runs the user's code
// (interruptible) is interrupted as at its deadline: a KeyboardInterrupt,
// and the session lives on if the code stops within the grace. The op
// itself still runs to its exit frame, so that the stream stays in step: a
// file op ends on its own within its short deadline.
func (r *Runner) roundTrip(ctx context.Context, s *session, body []byte, check *cellCheck, timeout time.Duration, interruptible bool, onEvent func(Event)) (*sessionReply, *Result, error) {
	cancelled := ctx.Done()
	if !interruptible {
		cancelled = nil
	}
	ctx = context.WithoutCancel(ctx) // the engine calls below outlive the client
	header := cellHeader(timeout, r.opts.MaxStreamBytes, r.opts.MaxStreamBytes, r.opts.MaxOutputsBytes, len(body))
	var msg []byte
	if check != nil {
		msg = slices.Concat([]byte(withCheckFlag(header, onEvent != nil, len(check.line))), check.line, body)
	} else {
		msg = append([]byte(withStreamFlag(header, onEvent != nil)), body...)
	}
	em := newEmitter(onEvent)
	start := time.Now()
	base := newResult(s.sb.preload, false, r.opts.SessionMemoryBytes)
	ended := func(res Result, err error) (*sessionReply, *Result, error) {
		if reason := s.endReason(); reason != "" {
			return nil, nil, gone(reason) // ended by us (DELETE, janitor, Close)
		}
		switch {
		case err != nil:
			r.endSession(ctx, s, EndEngine)
		case res.Status == StatusOutOfMemory:
			r.endSession(ctx, s, EndOutOfMemory)
		default:
			r.endSession(ctx, s, EndCrashed)
		}
		if err != nil {
			return nil, nil, err
		}
		return nil, &res, nil
	}
	if _, err := s.sb.conn.Conn.Write(msg); err != nil {
		return ended(r.diagnose(ctx, s.sb, base, start, fmt.Errorf("send cell: %w", err)))
	}
	limit := timeout + interruptGrace + r.opts.KillGrace
	if check != nil {
		limit += cellCheckTimeout
	}
	timer := time.NewTimer(limit)
	defer timer.Stop()
	engineCheck := time.NewTicker(engineCheckPeriod)
	defer engineCheck.Stop()
	var got execFrames
	var checked *Validation // the checker's answer (check != nil)
	protocolError := func(err error) (*sessionReply, *Result, error) {
		r.endSession(ctx, s, EndCrashed)
		return nil, nil, fmt.Errorf("%w: %w", errProtocol, err)
	}
	for {
		select {
		case fe, ok := <-s.sb.frames:
			if !ok || fe.err != nil {
				if !ok {
					fe.err = errors.New("stream closed")
				}
				return ended(r.diagnose(ctx, s.sb, base, start, fe.err))
			}
			if em.take(fe.f) {
				continue
			}
			switch fe.f.kind {
			case frameValidation:
				if check == nil || checked != nil {
					return protocolError(errors.New("validation frame out of turn"))
				}
				v, err := parseValidation(fe.f.payload, check.id, check.policySum)
				if err != nil {
					return protocolError(err)
				}
				checked = &v
			case frameExit:
				em.finish()
				rep := &sessionReply{frames: got}
				if err := json.Unmarshal(fe.f.payload, &rep.exit); err != nil {
					return protocolError(fmt.Errorf("exit frame: %w", err))
				}
				rep.memory = max(0, rep.exit.MemoryBytes)
				if check != nil {
					// The answer must say the cell was checked, and what ran
					// must be what the checker passed.
					refused := rep.exit.State == sessionExitRefused
					if checked == nil || checked.Valid == refused {
						return protocolError(fmt.Errorf("exit state %q after check %+v", rep.exit.State, checked))
					}
					if refused {
						rep.refused = checked.Errors
					}
				} else if rep.exit.State == sessionExitRefused {
					return protocolError(errors.New("a cell refused without a check"))
				}
				return rep, nil, nil
			case frameError:
				r.endSession(ctx, s, EndCrashed)
				if check != nil && bytes.Contains(fe.f.payload, []byte(checkerLost)) {
					// Killed or stopped by the session's own code, most
					// likely: the session ends, and the cell says why.
					res := base
					res.Status, res.Error = errorOf(verdictCheckerGone)
					return nil, &res, nil
				}
				return nil, nil, fmt.Errorf("%w: harness refused the request: %.200s", errProtocol, fe.f.payload)
			default:
				if !got.add(fe.f) {
					r.endSession(ctx, s, EndCrashed)
					return nil, nil, fmt.Errorf("%w: unexpected %q frame", errProtocol, fe.f.kind)
				}
			}
		case <-cancelled:
			cancelled = nil
			// A write error shows as the stream's end.
			_, _ = s.sb.conn.Conn.Write([]byte(controlInterrupt))
		case <-engineCheck.C:
			if err := r.engineAnswers(ctx); err != nil {
				return ended(Result{}, err)
			}
		case <-timer.C:
			// The supervisor neither stopped the code nor killed it.
			if err := r.kill(ctx, s.sb); errors.Is(err, ErrEngineDown) {
				return ended(Result{}, err)
			}
			res := base
			timedOut(&res, timeout, time.Since(start))
			r.endSession(ctx, s, EndTimeout)
			return nil, &res, nil
		}
	}
}

// fileOp runs a put, get or list op; list results update the session's
// view of its files and memory.
func (r *Runner) fileOp(ctx context.Context, s *session, wc wireCell) (Outputs, error) {
	body, err := json.Marshal(wc)
	if err != nil {
		return Outputs{}, fmt.Errorf("encode %s: %w", wc.Op, err)
	}
	rep, res, err := r.roundTrip(ctx, s, body, nil, sessionOpTimeout, false, nil)
	if err != nil {
		return Outputs{}, err
	}
	if res != nil {
		return Outputs{}, gone(s.endReason())
	}
	if !rep.alive() {
		r.endSession(ctx, s, EndCrashed)
		return Outputs{}, gone(s.endReason())
	}
	s.mu.Lock()
	s.memory = rep.memory
	s.mu.Unlock()
	if report := parseReport(rep.frames.report, rep.frames.gotReport); report != nil && report.err != nil {
		if report.err.Type == "FileNotFoundError" {
			return Outputs{}, fmt.Errorf("%w: %s", ErrFileNotFound, wc.Name)
		}
		return Outputs{}, fmt.Errorf("%w: %s: %s", ErrFileRefused, report.err.Type, cutChars(report.err.Message, 300))
	}
	var out Outputs
	if rep.frames.gotOutputs && json.Unmarshal(rep.frames.outputs, &out) != nil {
		return Outputs{}, fmt.Errorf("%w: %s: malformed answer", ErrFileRefused, wc.Op)
	}
	if wc.Op != sessionOpList {
		sanitizeFiles(&out)
		return out, nil
	}
	// A listing has names and sizes, no content.
	files := make([]SessionFile, 0, min(len(out.Files), maxListedFiles))
	for _, f := range out.Files {
		if len(files) < maxListedFiles && CheckFilePath(f.Name) == nil && f.Size >= 0 {
			files = append(files, SessionFile{Name: f.Name, Size: f.Size})
		}
	}
	out.Files = nil
	sanitizeFiles(&out)
	s.mu.Lock()
	s.files, s.skipped = files, out.FilesSkipped
	s.mu.Unlock()
	return out, nil
}

// runSessionJanitor ends idle and expired sessions until ctx ends (Start
// runs it in the runner's goroutine tracker).
func (r *Runner) runSessionJanitor(ctx context.Context) {
	period := min(sessionJanitorPeriod, r.opts.SessionIdleTimeout/4)
	t := time.NewTicker(max(period, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.reapSessions(ctx, time.Now())
	}
}

// reapSessions ends the sessions idle or past their lifetime at now; a
// session with an op in progress or waiting is left to finish it.
func (r *Runner) reapSessions(ctx context.Context, now time.Time) {
	for _, s := range r.sessions.snapshot() {
		s.mu.Lock()
		reason := ""
		switch {
		case s.pending > 0 || s.ended != "":
		case now.After(s.expires):
			reason = EndExpired
		case now.Sub(s.lastUsed) > r.opts.SessionIdleTimeout:
			reason = EndIdle
		}
		if reason != "" {
			s.ended = reason // under the lock that guards pending: no op starts now
		}
		s.mu.Unlock()
		if reason != "" {
			r.endSession(ctx, s, reason)
		}
	}
}

// closeSessions refuses new sessions and ends every live one (Close).
func (r *Runner) closeSessions(ctx context.Context) {
	r.sessions.mu.Lock()
	r.sessions.closed = true
	r.sessions.mu.Unlock()
	for _, s := range r.sessions.snapshot() {
		r.endSession(ctx, s, EndShutdown)
	}
}

// outputOptions are the options sent to the child: the request's, with the
// output file caps added when it names none.
func (r *Runner) outputOptions(in map[string]any) map[string]any {
	out := make(map[string]any, len(in)+3)
	for k, v := range in {
		out[k] = v
	}
	for k, v := range map[string]int{
		optMaxFiles: DefaultMaxOutputFiles, optMaxFileBytes: DefaultMaxOutputFileBytes,
		optMaxFilesTotalBytes: DefaultMaxOutputFilesBytes,
	} {
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	return out
}

// checkInputFiles checks the input files again (handlers answer 422
// first): names, duplicates, count and total within the sandbox's bounds.
func (r *Runner) checkInputFiles(fs []File) error {
	seen := make(map[string]bool, len(fs))
	total := 0
	for _, f := range fs {
		if err := CheckFileName(f.Name); err != nil {
			return err
		}
		if seen[f.Name] {
			return fmt.Errorf("%w: duplicate name %q", ErrInvalidFile, f.Name)
		}
		seen[f.Name] = true
		total += len(f.Data)
	}
	if len(fs) > r.opts.MaxInputFiles || total > r.opts.MaxInputBytes {
		return fmt.Errorf("%w: %d files of %d bytes exceed %d files or %d bytes", ErrInvalidFile, len(fs), total,
			r.opts.MaxInputFiles, r.opts.MaxInputBytes)
	}
	return nil
}

// sanitizeFiles checks the output files the child sent: a name that is not
// a plain path or a size that is not the content's drops the file; the caps
// (the defaults, the sandbox's) drop the rest and set FilesTruncated. Every
// kept file gets its type by extension.
func sanitizeFiles(o *Outputs) {
	kept := make([]OutputFile, 0, len(o.Files))
	total := 0
	seen := map[string]bool{}
	for _, f := range o.Files {
		switch {
		case CheckFilePath(f.Name) != nil, seen[f.Name], f.Size != int64(len(f.Content)):
			o.FilesTruncated = true
			continue
		case len(kept) >= DefaultMaxOutputFiles, len(f.Content) > DefaultMaxOutputFileBytes,
			total+len(f.Content) > DefaultMaxOutputFilesBytes:
			o.FilesTruncated = true
			continue
		}
		seen[f.Name] = true
		total += len(f.Content)
		f.Mime = MimeType(f.Name)
		kept = append(kept, f)
	}
	o.Files = kept
	skipped := make([]SkippedFile, 0, min(len(o.FilesSkipped), maxSkippedFiles))
	for _, f := range o.FilesSkipped[:min(len(o.FilesSkipped), maxSkippedFiles)] {
		if CheckFilePath(f.Name) != nil {
			f.Name = strings.ToValidUTF8(cutChars(f.Name, MaxFileNameBytes), "\uFFFD")
		}
		if !skipReasons[f.Reason] {
			f.Reason = "other"
		}
		skipped = append(skipped, f)
	}
	o.FilesSkipped = skipped
	if len(o.FilesSkipped) == 0 {
		o.FilesSkipped = nil
	}
}

// cell runs one "run" op and builds its Result.
func (r *Runner) cell(ctx context.Context, s *session, req Request) (Result, error) {
	// The child checks nothing: the code was checked before, or is
	// checked by the session's checker on the way (check).
	wc := wireCell{
		Op: sessionOpRun, Code: req.Code, Timeout: req.Timeout.Seconds(),
		Options: streamOptions(r.outputOptions(req.Options), req.OnEvent != nil), Files: wireFiles(req.Files),
	}
	body, err := json.Marshal(wc)
	if err != nil {
		return Result{}, fmt.Errorf("encode cell: %w", err)
	}
	var check *cellCheck
	if s.policySum != "" {
		s.mu.Lock()
		s.checks++
		id := strconv.FormatInt(s.checks, 10)
		s.mu.Unlock()
		line, err := checkRequest(id, req.Code)
		if err != nil {
			return Result{}, fmt.Errorf("encode check: %w", err)
		}
		check = &cellCheck{id: id, line: line, policySum: s.policySum}
	}
	rep, res, err := r.roundTrip(ctx, s, body, check, req.Timeout, true, req.OnEvent)
	if err != nil {
		return Result{}, err
	}
	if rep != nil && rep.refused != nil {
		out := rejectedResult(rep.refused, FlavorValidator, r.opts.SessionMemoryBytes)
		res = &out
	} else if res == nil {
		out := newResult(s.sb.preload, false, r.opts.SessionMemoryBytes)
		compose(rep.exit, rep.frames, req.Timeout, &out)
		res = &out
		if !rep.alive() {
			reason := EndCrashed
			switch {
			case rep.exit.TimedOut:
				reason = EndTimeout
			case res.Status == StatusOutOfMemory || rep.exit.OOMKilled:
				reason = EndOutOfMemory
			case rep.exit.Interrupted:
				reason = EndInterrupted
			}
			r.endSession(ctx, s, reason)
		}
	}
	s.mu.Lock()
	if !res.Rejected {
		s.executions++
	}
	if rep != nil {
		s.memory = rep.memory
	}
	s.mu.Unlock()
	if !res.Rejected {
		r.metrics.completed.Add(1)
		r.hist.execDuration.Observe(res.ExecutionTime.Seconds())
	}
	res.Image = s.sb.image
	res.Session = s.state()
	sessionOutcome(res, req.Timeout) // verdict.go
	r.countSessionCell(res)          // session_metrics.go
	return *res, nil
}
