package runner

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pyexec/pyexec/policy"
	"github.com/pyexec/pyexec/runner/seccomp"
)

// Options configure a Runner. Zero values take the defaults below.
type Options struct {
	// Image is the analytics image to run (a tag or ID). Required.
	Image string
	// Owner names this deployment on a shared engine (LabelOwner). Required.
	Owner string

	// MemoryBytes caps each container's memory; swap is set equal (none).
	MemoryBytes int64
	// NanoCPUs caps each container's CPU (1e9 = one CPU).
	NanoCPUs int64
	// PidsLimit caps processes and threads in each container.
	PidsLimit int64
	// TmpfsBytes caps the writable scratch space at /tmp.
	TmpfsBytes int64
	// MaxStreamBytes caps stdout and stderr, each.
	MaxStreamBytes int
	// MaxOutputsBytes caps the rich outputs (charts, tables, files) of one
	// run.
	MaxOutputsBytes int
	// MaxInputFiles and MaxInputBytes bound the input files of one request
	// (Request.Files): their number and their total size.
	MaxInputFiles int
	MaxInputBytes int
	// SeccompProfile is the JSON seccomp profile applied to every container;
	// empty means pyexec's own profile (package runner/seccomp).
	SeccompProfile []byte

	// Policy is the language policy sent with every execution and
	// validation; nil turns the language layer off (POLICY=off): the
	// container alone restricts the code.
	Policy *policy.Rules

	// MaxWorkers is how many executions run at once.
	MaxWorkers int
	// MaxQueue is how many more wait for a worker before ErrBusy; 0 means
	// no queue (DefaultMaxQueue is the service's default, set by its config).
	MaxQueue int
	// PoolSize is how many ready containers the warm pool keeps (0: none,
	// every execution starts its container on the request path).
	PoolSize int
	// PoolMaxAge retires idle pooled containers older than this, and
	// replaces the validator past this age.
	PoolMaxAge time.Duration

	// MaxSessions is how many sessions may exist at once (session.go).
	MaxSessions int
	// SessionMemoryBytes caps the memory of a session's container;
	// default MemoryBytes.
	SessionMemoryBytes int64
	// SessionIdleTimeout ends a session unused this long;
	// SessionMaxLifetime one older than this.
	SessionIdleTimeout time.Duration
	SessionMaxLifetime time.Duration
	// SessionIDPrefix, when set, starts every session ID ("<prefix>-<random>")
	// so that a load balancer can route a session to the replica that owns
	// it (compose/nginx). Lowercase letters and digits, at most 16.
	SessionIDPrefix string

	// MaxTimeout is the longest Request.Timeout Run accepts (the service's
	// MAX_TIMEOUT_SECONDS); it bounds every sandbox's life (LabelExpires).
	MaxTimeout time.Duration

	// ReconcilePeriod is how often the reconciler looks for leftover and
	// expired containers (reconcile.go).
	ReconcilePeriod time.Duration

	// KillGrace is how long past the timeout the runner waits for the
	// harness's own timeout report before killing the container.
	KillGrace time.Duration
	// StartTimeout bounds creating a container and its harness getting ready.
	StartTimeout time.Duration
	// CleanupTimeout bounds removing one container.
	CleanupTimeout time.Duration

	// OnNoImage is called when creating a container fails because its
	// image is missing from the engine (the create's NotFound): the image
	// was removed under the service (docker image prune). The request gets
	// ErrNoImage; the callee may start a rebuild. It is called in a
	// goroutine the runner tracks, at most one call at a time (others are
	// dropped meanwhile); Close waits for it, so it should return promptly
	// (start a long rebuild on its own). nil: nothing happens.
	OnNoImage func(image string)

	// Registerer receives the runner's metrics (runner/metrics.go); main
	// passes its private registry. nil: no metrics are registered.
	Registerer prometheus.Registerer
}

// Defaults, as the original service documents them.
const (
	DefaultMemoryBytes     = 512 << 20
	DefaultNanoCPUs        = 1e9
	DefaultPidsLimit       = 128
	DefaultTmpfsBytes      = 128 << 20
	DefaultMaxStreamBytes  = 1 << 20
	DefaultMaxOutputsBytes = 64 << 20
	// MaxStreamBytesLimit and MaxOutputsBytesLimit are the largest caps the
	// sandbox supervisor accepts (MAX_STREAM_CAP and MAX_OUTPUTS_CAP in
	// images/context/supervisor/supervisor.c).
	MaxStreamBytesLimit  = 64 << 20
	MaxOutputsBytesLimit = 256 << 20
	DefaultMaxWorkers    = 4
	DefaultMaxQueue      = 32
	DefaultMaxTimeout    = 60 * time.Second
	// MaxTimeoutLimit is the longest timeout the sandbox supervisor accepts
	// (MAX_TIMEOUT_MS in images/context/supervisor/supervisor.c).
	MaxTimeoutLimit        = time.Hour
	DefaultKillGrace       = 1500 * time.Millisecond
	DefaultStartTimeout    = 60 * time.Second
	DefaultCleanupTimeout  = 30 * time.Second
	DefaultPoolMaxAge      = 10 * time.Minute
	DefaultReconcilePeriod = 30 * time.Second
)

func (o Options) withDefaults() (Options, error) {
	if o.Image == "" {
		return o, errors.New("runner: no image")
	}
	if o.Owner == "" {
		return o, errors.New("runner: no owner")
	}
	def := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.MemoryBytes, DefaultMemoryBytes)
	def(&o.NanoCPUs, DefaultNanoCPUs)
	def(&o.PidsLimit, DefaultPidsLimit)
	def(&o.TmpfsBytes, DefaultTmpfsBytes)
	defInt(&o.MaxStreamBytes, DefaultMaxStreamBytes)
	defInt(&o.MaxOutputsBytes, DefaultMaxOutputsBytes)
	defInt(&o.MaxWorkers, DefaultMaxWorkers)
	defInt(&o.MaxInputFiles, DefaultMaxInputFiles)
	defInt(&o.MaxInputBytes, DefaultMaxInputBytes)
	defInt(&o.MaxSessions, DefaultMaxSessions)
	def(&o.SessionMemoryBytes, o.MemoryBytes)
	defDur(&o.SessionIdleTimeout, DefaultSessionIdleTimeout)
	defDur(&o.SessionMaxLifetime, DefaultSessionMaxLifetime)
	defDur(&o.MaxTimeout, DefaultMaxTimeout)
	defDur(&o.KillGrace, DefaultKillGrace)
	defDur(&o.StartTimeout, DefaultStartTimeout)
	defDur(&o.CleanupTimeout, DefaultCleanupTimeout)
	defDur(&o.PoolMaxAge, DefaultPoolMaxAge)
	defDur(&o.ReconcilePeriod, DefaultReconcilePeriod)
	if len(o.SeccompProfile) == 0 {
		p, err := seccomp.Profile()
		if err != nil {
			return o, fmt.Errorf("runner: seccomp profile: %w", err)
		}
		o.SeccompProfile = p
	}
	if o.MemoryBytes < 64<<20 {
		return o, fmt.Errorf("runner: memory limit %d below 64 MiB", o.MemoryBytes)
	}
	if o.MaxStreamBytes > MaxStreamBytesLimit || o.MaxOutputsBytes > MaxOutputsBytesLimit {
		return o, fmt.Errorf("runner: output caps %d/%d above the sandbox's %d/%d",
			o.MaxStreamBytes, o.MaxOutputsBytes, MaxStreamBytesLimit, MaxOutputsBytesLimit)
	}
	if o.SessionMemoryBytes < 64<<20 {
		return o, fmt.Errorf("runner: session memory limit %d below 64 MiB", o.SessionMemoryBytes)
	}
	if o.MaxInputFiles < 0 || o.MaxInputBytes < 0 || o.MaxInputBytes > MaxInputBytesLimit {
		return o, fmt.Errorf("runner: input limits %d files, %d bytes outside [0, %d bytes]", o.MaxInputFiles, o.MaxInputBytes, MaxInputBytesLimit)
	}
	if o.MaxSessions < 0 || o.SessionIdleTimeout < 0 || o.SessionMaxLifetime < 0 || o.SessionMaxLifetime > MaxSessionLifetimeLimit {
		return o, fmt.Errorf("runner: session limits %d, idle %v, lifetime %v outside their bounds (lifetime at most %v)",
			o.MaxSessions, o.SessionIdleTimeout, o.SessionMaxLifetime, MaxSessionLifetimeLimit)
	}
	if !sessionIDPrefixRE.MatchString(o.SessionIDPrefix) {
		return o, fmt.Errorf("runner: session ID prefix %q: want at most 16 lowercase letters and digits", o.SessionIDPrefix)
	}
	if o.MaxTimeout < 0 || o.MaxTimeout > MaxTimeoutLimit {
		return o, fmt.Errorf("runner: max timeout %v outside (0, %v]", o.MaxTimeout, MaxTimeoutLimit)
	}
	if o.MaxWorkers < 0 || o.MaxQueue < 0 || o.PoolSize < 0 {
		return o, errors.New("runner: negative worker, queue or pool size")
	}
	return o, nil
}

// sessionIDPrefixRE is what Options.SessionIDPrefix may be (empty: none).
var sessionIDPrefixRE = regexp.MustCompile(`^[a-z0-9]{0,16}$`)

// sessionIDPrefix is what starts a new session ID: "" or "<prefix>-".
func (o Options) sessionIDPrefix() string {
	if o.SessionIDPrefix == "" {
		return ""
	}
	return o.SessionIDPrefix + "-"
}
