package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/images"
	"github.com/pyexec/pyexec/internal/engine"
	"github.com/pyexec/pyexec/policy"
	"github.com/pyexec/pyexec/runner"
)

// Config is the service's settings, read once from the environment.
//
//	name                 type      default        meaning
//	PORT                 int       8000           HTTP port
//	MAX_WORKERS          int       4              executions running at once
//	MAX_QUEUE            int       32             executions waiting for a worker; past it 429
//	TIMEOUT_SECONDS      seconds   30             default time limit of one execution
//	MAX_TIMEOUT_SECONDS  seconds   60             the most a request may ask for
//	LOG_LEVEL            level     info           debug, info, warning, error
//	MEMORY_LIMIT         bytes     512m           memory of one execution (no swap)
//	CPU_LIMIT            cpus      1.0            CPUs of one execution
//	PIDS_LIMIT           int       128            processes+threads of one execution
//	TMPFS_SIZE           bytes     128m           writable scratch space (/tmp) of one execution,
//	                                              the working directory and its input files included
//	MAX_OUTPUT_BYTES     bytes     1m             cap on stdout and on stderr, each (at most 64m)
//	IMAGE_REPOSITORY     name      pyexec-python  repository of the analytics image
//	SERVICE_ID           name      hostname       owner label; replicas sharing an engine differ
//	BUILD_IMAGE          bool      true           build the analytics image at start when missing,
//	                                              and again whenever it disappears (images.Healer)
//	POOL_SIZE            int       MAX_WORKERS    ready containers kept warm (0: none)
//	POOL_MAX_AGE_SECONDS seconds   600            an idle warm container, and the validator, are
//	                                              replaced past this age
//	RECONCILE_INTERVAL_SECONDS    seconds  30
//	    how often leftover and expired sandboxes are looked for and removed
//	POLICY               mode      strict         strict: language policy on; off: the container alone
//	MAX_INPUT_FILES      int       20             input files of one request (1 to 1000)
//	MAX_INPUT_BYTES      bytes     32m            their total decoded size (at most 64m and TMPFS_SIZE);
//	                                              the request body limit is 1 MiB + 4/3 of it + 64 KiB
//	MAX_SESSIONS         int       16             sessions alive at once; past it 429 (0: no sessions)
//	SESSION_IDLE_TIMEOUT_SECONDS  seconds  600
//	    a session unused this long is ended (at most SESSION_MAX_LIFETIME_SECONDS)
//	SESSION_MAX_LIFETIME_SECONDS  seconds  3600
//	    a session older than this is ended (at most 86400)
//	SESSION_MEMORY_LIMIT          bytes    MEMORY_LIMIT
//	SESSION_ID_PREFIX             name     unset
//	    starts every session ID ("e1-..."): a load balancer routes sessions to their
//	    replica by it (compose/nginx); lowercase letters and digits, at most 16
//	    memory of one session's container (no swap)
//	SHUTDOWN_TIMEOUT_SECONDS      seconds  MAX_TIMEOUT_SECONDS+15
//	    how long requests in flight may finish after SIGTERM; then they are cancelled
//	ADMIN_TOKEN                   secret   unset
//	    bearer token of /admin/* (at least 16 characters); unset: those routes answer 404
//	ADMIN_EXTRA_PACKAGES_ALLOWED  list     python3-sklearn,python3-statsmodels,python3-sympy,python3-networkx
//	    Debian packages an admin rebuild may add, comma-separated
//	API_KEYS_FILE                 path     unset
//	    JSON file of API keys (SHA-256) and their quotas (internal/keys); reloaded on
//	    SIGHUP and when it changes; unset: /execute, /validate, /sessions*, /mcp are open
//	DOCKER_HOST, DOCKER_API_VERSION          the engine (default: the local socket)
//	DOCKER_CERT_PATH + DOCKER_TLS_VERIFY     mutual TLS from ca.pem, cert.pem, key.pem in a directory
//	DOCKER_TLS_CA, DOCKER_TLS_CERT, DOCKER_TLS_KEY
//	    mutual TLS from these files (all three; tcp:// DOCKER_HOST); see internal/engine
type Config struct {
	Port            int
	MaxWorkers      int
	MaxQueue        int
	Timeout         time.Duration
	MaxTimeout      time.Duration
	LogLevel        logrus.Level
	MemoryBytes     int64
	NanoCPUs        int64
	PidsLimit       int64
	TmpfsBytes      int64
	MaxOutputBytes  int64
	ImageRepository string
	ServiceID       string
	BuildImage      bool
	PoolSize        int
	PoolMaxAge      time.Duration
	ReconcilePeriod time.Duration
	Policy          policy.Mode
	ShutdownTimeout time.Duration
	// MaxInputFiles and MaxInputBytes bound the input files of one request.
	MaxInputFiles int
	MaxInputBytes int64
	// MaxSessions is how many sessions may exist at once; 0 turns sessions
	// off (their routes answer 404).
	MaxSessions        int
	SessionIdleTimeout time.Duration
	SessionMaxLifetime time.Duration
	SessionMemoryBytes int64
	// SessionIDPrefix starts every session ID (runner.Options).
	SessionIDPrefix string
	// AdminToken is a secret: never logged, redacted in fields().
	AdminToken    string
	AdminPackages []string
	// Engine is how to reach the Docker engine, TLS files checked.
	Engine engine.Settings
	// APIKeysFile is the API keys file (keys.go); empty: keys are off.
	APIKeysFile string
}

// defaultAdminPackages are the extra packages a rebuild may add unless
// ADMIN_EXTRA_PACKAGES_ALLOWED says otherwise: common analytics libraries
// Debian packages for Python 3.
const defaultAdminPackages = "python3-sklearn,python3-statsmodels,python3-sympy,python3-networkx"

// minAdminTokenBytes keeps ADMIN_TOKEN from being guessable.
const minAdminTokenBytes = 16

// Bounds of the file and session settings.
const (
	// maxInputBytesLimit is the most MAX_INPUT_BYTES may be: the sandbox
	// supervisor takes a request of at most 96 MiB, and base64 makes 64 MiB
	// of files about 86 MiB.
	maxInputBytesLimit = 64 << 20
	// maxInputFilesLimit bounds MAX_INPUT_FILES.
	maxInputFilesLimit = 1000
	// maxSessionLifetime bounds SESSION_MAX_LIFETIME_SECONDS.
	maxSessionLifetime = 24 * time.Hour
)

// loadConfig parses the environment. A malformed value is an error naming
// the variable and the value.
func loadConfig(getenv func(string) string) (Config, error) {
	p := parser{getenv: getenv}
	host, _ := os.Hostname()
	c := Config{
		Port:            int(p.int("PORT", 8000, 1, 65535)),
		MaxWorkers:      int(p.int("MAX_WORKERS", 4, 1, 256)),
		MaxQueue:        int(p.int("MAX_QUEUE", 32, 0, 100000)),
		Timeout:         p.seconds("TIMEOUT_SECONDS", 30),
		MaxTimeout:      p.seconds("MAX_TIMEOUT_SECONDS", 60),
		LogLevel:        p.level("LOG_LEVEL", logrus.InfoLevel),
		MemoryBytes:     p.bytes("MEMORY_LIMIT", "512m", 64<<20, 1<<40),
		NanoCPUs:        p.cpus("CPU_LIMIT", 1.0),
		PidsLimit:       p.int("PIDS_LIMIT", 128, 16, 100000),
		TmpfsBytes:      p.bytes("TMPFS_SIZE", "128m", 1<<20, 1<<40),
		MaxOutputBytes:  p.bytes("MAX_OUTPUT_BYTES", "1m", 1<<10, runner.MaxStreamBytesLimit),
		ImageRepository: p.str("IMAGE_REPOSITORY", "pyexec-python"),
		ServiceID:       p.str("SERVICE_ID", host),
		BuildImage:      p.bool("BUILD_IMAGE", true),
		Policy:          p.mode("POLICY", policy.ModeStrict),
	}
	c.PoolSize = int(p.int("POOL_SIZE", int64(c.MaxWorkers), 0, 1024))
	c.PoolMaxAge = p.seconds("POOL_MAX_AGE_SECONDS", runner.DefaultPoolMaxAge.Seconds())
	c.ReconcilePeriod = p.seconds("RECONCILE_INTERVAL_SECONDS", runner.DefaultReconcilePeriod.Seconds())
	c.ShutdownTimeout = p.seconds("SHUTDOWN_TIMEOUT_SECONDS", c.MaxTimeout.Seconds()+15)
	c.MaxInputFiles = int(p.int("MAX_INPUT_FILES", 20, 1, maxInputFilesLimit))
	c.MaxInputBytes = p.bytes("MAX_INPUT_BYTES", "32m", 1<<10, maxInputBytesLimit)
	c.MaxSessions = int(p.int("MAX_SESSIONS", 16, 0, 4096))
	c.SessionIdleTimeout = p.secondsUpTo("SESSION_IDLE_TIMEOUT_SECONDS", 600, maxSessionLifetime)
	c.SessionMaxLifetime = p.secondsUpTo("SESSION_MAX_LIFETIME_SECONDS", 3600, maxSessionLifetime)
	c.SessionMemoryBytes = p.bytes("SESSION_MEMORY_LIMIT", strconv.FormatInt(c.MemoryBytes, 10), 64<<20, 1<<40)
	c.SessionIDPrefix = p.str("SESSION_ID_PREFIX", "")
	if p.err == nil && !sessionIDPrefixRE.MatchString(c.SessionIDPrefix) {
		p.fail("SESSION_ID_PREFIX", c.SessionIDPrefix, "want at most 16 lowercase letters and digits, e.g. e1")
	}
	c.AdminToken = p.secret("ADMIN_TOKEN", minAdminTokenBytes)
	c.AdminPackages = p.packages("ADMIN_EXTRA_PACKAGES_ALLOWED", defaultAdminPackages)
	c.Engine = p.engine()
	c.APIKeysFile = p.keysFile("API_KEYS_FILE") // keys.go: must exist and parse
	if p.err == nil && c.Timeout > c.MaxTimeout {
		p.err = fmt.Errorf("TIMEOUT_SECONDS (%v) must not exceed MAX_TIMEOUT_SECONDS (%v)", c.Timeout, c.MaxTimeout)
	}
	if p.err == nil && c.MaxInputBytes > c.TmpfsBytes {
		p.err = fmt.Errorf("MAX_INPUT_BYTES (%d) must not exceed TMPFS_SIZE (%d): the files are written there", c.MaxInputBytes, c.TmpfsBytes)
	}
	if p.err == nil && c.SessionIdleTimeout > c.SessionMaxLifetime {
		p.err = fmt.Errorf("SESSION_IDLE_TIMEOUT_SECONDS (%v) must not exceed SESSION_MAX_LIFETIME_SECONDS (%v)", c.SessionIdleTimeout, c.SessionMaxLifetime)
	}
	if p.err == nil && c.ServiceID == "" {
		p.err = errors.New("SERVICE_ID is empty and the hostname is unknown")
	}
	return c, p.err
}

// parser keeps the first error; later lookups still return defaults.
type parser struct {
	getenv func(string) string
	err    error
}

func (p *parser) fail(name, val, why string) {
	if p.err == nil {
		p.err = fmt.Errorf("%s=%q: %s", name, val, why)
	}
}

func (p *parser) str(name, def string) string {
	if v := strings.TrimSpace(p.getenv(name)); v != "" {
		return v
	}
	return def
}

func (p *parser) int(name string, def, lo, hi int64) int64 {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		p.fail(name, v, fmt.Sprintf("want an integer from %d to %d", lo, hi))
		return def
	}
	return n
}

func (p *parser) seconds(name string, def float64) time.Duration {
	return p.secondsUpTo(name, def, runner.MaxTimeoutLimit)
}

// secondsUpTo reads seconds, greater than 0 and at most max.
func (p *parser) secondsUpTo(name string, def float64, max time.Duration) time.Duration {
	v := strings.TrimSpace(p.getenv(name))
	f := def
	if v != "" {
		var err error
		f, err = strconv.ParseFloat(v, 64)
		if limit := max.Seconds(); err != nil || math.IsNaN(f) || f <= 0 || f > limit {
			p.fail(name, v, fmt.Sprintf("want seconds, greater than 0 and at most %g", limit))
			f = def
		}
	}
	return time.Duration(f * float64(time.Second))
}

func (p *parser) bytes(name, def string, lo, hi int64) int64 {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		v = def
	}
	n, err := units.RAMInBytes(v)
	if err != nil || n < lo || n > hi {
		p.fail(name, v, fmt.Sprintf("want a size such as %s, from %d to %d bytes", def, lo, hi))
		n, _ = units.RAMInBytes(def)
	}
	return n
}

func (p *parser) cpus(name string, def float64) int64 {
	v := strings.TrimSpace(p.getenv(name))
	f := def
	if v != "" {
		var err error
		f, err = strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || f < 0.05 || f > 64 {
			p.fail(name, v, "want CPUs from 0.05 to 64, e.g. 1.0")
			f = def
		}
	}
	return int64(f * 1e9)
}

func (p *parser) level(name string, def logrus.Level) logrus.Level {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	l, err := logrus.ParseLevel(v)
	if err != nil {
		p.fail(name, v, "want debug, info, warning or error")
		return def
	}
	return l
}

func (p *parser) mode(name string, def policy.Mode) policy.Mode {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	m, err := policy.ParseMode(v)
	if err != nil {
		p.fail(name, v, "want strict or off")
		return def
	}
	return m
}

// secret reads a token; set, it must have at least min bytes. The value
// never appears in the error.
func (p *parser) secret(name string, min int) string {
	v := strings.TrimSpace(p.getenv(name))
	if v != "" && len(v) < min {
		if p.err == nil {
			p.err = fmt.Errorf("%s: too short, want at least %d characters", name, min)
		}
		return ""
	}
	return v
}

// packages reads a comma-separated list of Debian package names.
func (p *parser) packages(name, def string) []string {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		v = def
	}
	var out []string
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !images.ValidPackageName(f) {
			p.fail(name, v, fmt.Sprintf("%q is not a Debian package name", f))
			return nil
		}
		out = append(out, f)
	}
	return out
}

func (p *parser) bool(name string, def bool) bool {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, v, "want true or false")
		return def
	}
	return b
}

// fields is the effective configuration for the startup log and /health.
func (c Config) fields() map[string]any {
	return map[string]any{
		"port":                       c.Port,
		"max_workers":                c.MaxWorkers,
		"max_queue":                  c.MaxQueue,
		"timeout_seconds":            c.Timeout.Seconds(),
		"max_timeout_seconds":        c.MaxTimeout.Seconds(),
		"log_level":                  c.LogLevel.String(),
		"memory_limit_bytes":         c.MemoryBytes,
		"cpu_limit":                  float64(c.NanoCPUs) / 1e9,
		"pids_limit":                 c.PidsLimit,
		"tmpfs_bytes":                c.TmpfsBytes,
		"max_output_bytes":           c.MaxOutputBytes,
		"image_repository":           c.ImageRepository,
		"service_id":                 c.ServiceID,
		"pool_size":                  c.PoolSize,
		"pool_max_age_seconds":       c.PoolMaxAge.Seconds(),
		"reconcile_interval_seconds": c.ReconcilePeriod.Seconds(),
		"policy":                     string(c.Policy),

		"max_input_files":              c.MaxInputFiles,
		"max_input_bytes":              c.MaxInputBytes,
		"max_sessions":                 c.MaxSessions,
		"session_idle_timeout_seconds": c.SessionIdleTimeout.Seconds(),
		"session_max_lifetime_seconds": c.SessionMaxLifetime.Seconds(),
		"session_memory_limit_bytes":   c.SessionMemoryBytes,
		"session_id_prefix":            c.SessionIDPrefix,

		"shutdown_timeout_seconds":     c.ShutdownTimeout.Seconds(),
		"admin_token":                  redact(c.AdminToken),
		"admin_extra_packages_allowed": c.AdminPackages,
		"api_keys_file":                c.APIKeysFile,
	}
}

// redact shows whether a secret is set, never its value.
func redact(secret string) string {
	if secret == "" {
		return "unset"
	}
	return "redacted"
}

// sessionIDPrefixRE is what SESSION_ID_PREFIX may be (runner.Options checks
// it too).
var sessionIDPrefixRE = regexp.MustCompile(`^[a-z0-9]{0,16}$`)
