package runner_test

// The escape suite: known ways out of a Python sandbox, each run on the real
// engine twice, with the language policy on (strict) and off (the container
// alone). With the policy on, many attacks stop before anything runs, as a
// PolicyViolation; the suite must hold with the policy off too, so every
// attack also asserts what the container alone lets it do. Each attack ends
// in a clean error or a harmless success whose effect is asserted, never in
// an error from Run; after it, a fresh execution on the same runner works and
// no container is left (newEnv's cleanup).
//
// Attacks already covered by runner_test.go (TestExitPaths, TestMemoryBomb,
// TestHugeStdoutIsTruncated, TestForgedEnvelopeIsOnlyStdout) are not repeated
// here; the variants below differ from them. SECURITY.md refers to these
// tests by name.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/policy"
	"github.com/pyexec/pyexec/runner"
)

// canaryEnv is set in the test process (the stand-in for the service's
// environment) while the suite runs; no execution may see it.
const canaryEnv = "PYEXEC_SECRET_CANARY"

// Policy rule ids, as violations report them.
const (
	ruleModule    = policy.RuleForbiddenModule
	ruleName      = policy.RuleForbiddenName
	ruleAttribute = policy.RuleForbiddenAttribute
)

// probePrelude is prepended to every attack: probe(name, fn) records fn's
// value or the exception it raised, report() prints them all as one JSON
// line "RESULT {...}" that escapeProbes decodes. It passes the policy.
const probePrelude = `import json
R = {}
def probe(name, fn):
    try:
        v = fn()
        try:
            json.dumps(v)
        except BaseException:
            v = repr(v)[:4000]
        R[name] = {"ok": v}
    except BaseException as e:
        R[name] = {"error": type(e).__name__, "errno": getattr(e, "errno", None), "message": str(e)[:300]}
def report():
    print("RESULT " + json.dumps(R))
`

// procsPython lists the processes the code can see: {pid: cmdline}.
const procsPython = `
import os
def procs():
    out = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    out[p] = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            except OSError:
                pass
    return out
`

// escapeFixture is what the host side of the suite prepares once: a marker
// file in a host directory, a TCP listener on the host's loopback, and the
// canary in the process environment.
type escapeFixture struct {
	markerDir, marker, markerText string
	canary                        string
	port                          int
	accepted                      atomic.Int64
}

// escapeCtx is one attack in one policy mode.
type escapeCtx struct {
	*escapeFixture
	e      *env
	strict bool
}

func (c *escapeCtx) mode() string {
	if c.strict {
		return "strict"
	}
	return "off"
}

// escape is one attack.
type escape struct {
	name string
	// code is the attack, after probePrelude; {{MARKER}}, {{MARKER_DIR}},
	// {{MARKER_TEXT}} and {{PORT}} are replaced by Python literals.
	code string
	// timeout of the execution; 20 s when zero. Attacks expected to hang
	// use 2-5 s.
	timeout time.Duration
	// opts adjusts the runner's options (beyond the policy).
	opts func(*runner.Options)
	// blocked lists the rules the policy must report when it is on; nil
	// means the policy lets the code run and check applies in both modes.
	blocked []string
	// check asserts the outcome when the code ran. It may run more code on
	// c.e (a second execution on the same runner).
	check func(t *testing.T, c *escapeCtx, res runner.Result, took time.Duration)
}

func TestEscape(t *testing.T) {
	t.Parallel()
	fx := newEscapeFixture(t)
	for _, a := range escapes() {
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			for _, strict := range []bool{true, false} {
				c := &escapeCtx{escapeFixture: fx, strict: strict}
				t.Run(c.mode(), func(t *testing.T) {
					t.Parallel()
					runEscape(t, c, a)
				})
			}
		})
	}
}

func newEscapeFixture(t *testing.T) *escapeFixture {
	t.Helper()
	fx := &escapeFixture{markerDir: t.TempDir(), markerText: "host-marker-" + randHex(t)}
	fx.marker = filepath.Join(fx.markerDir, "marker.txt")
	if err := os.WriteFile(fx.marker, []byte(fx.markerText), 0o644); err != nil {
		t.Fatal(err)
	}
	// Not t.Setenv: it refuses parallel tests. The variable is unique to
	// this suite and removed when it ends.
	fx.canary = "canary-" + randHex(t)
	if err := os.Setenv(canaryEnv, fx.canary); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Unsetenv(canaryEnv) })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	fx.port = ln.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			fx.accepted.Add(1)
			_ = conn.Close()
		}
	}()
	return fx
}

func randHex(t *testing.T) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// runEscape runs one attack in one mode on a runner of its own, checks the
// outcome, then checks that the runner still serves a plain execution
// (unless the policy refused the attack: then nothing ran). newEnv's cleanup
// asserts that no container of the runner is left.
func runEscape(t *testing.T, c *escapeCtx, a escape) {
	c.e = newEnv(t, func(o *runner.Options) {
		if c.strict {
			p := policy.Default()
			o.Policy = &p
		}
		if a.opts != nil {
			a.opts(o)
		}
	})
	timeout := a.timeout
	if timeout == 0 {
		timeout = 20 * time.Second
	}
	start := time.Now()
	res := c.e.run(t, c.code(probePrelude+a.code), timeout)
	took := time.Since(start)
	t.Logf("%s: status %q error %s in %v", c.mode(), res.Status, describeError(res.Error), took.Round(time.Millisecond))
	if c.strict && a.blocked != nil {
		wantViolation(t, res, a.blocked...)
		return // nothing ran
	}
	a.check(t, c, res, took)
	// The runner is unharmed: a fresh execution works.
	ok := c.e.run(t, `print("ok")`, 20*time.Second)
	if ok.Status != runner.StatusSuccess || ok.Stdout != "ok\n" {
		t.Errorf("execution after the attack: status %q stdout %q error %s", ok.Status, ok.Stdout, describeError(ok.Error))
	}
}

// code replaces the fixture's placeholders with Python literals (JSON
// strings and numbers are valid Python literals).
func (c *escapeCtx) code(src string) string {
	lit := func(s string) string {
		b, _ := json.Marshal(s)
		return string(b)
	}
	return strings.NewReplacer(
		"{{MARKER}}", lit(c.marker),
		"{{MARKER_DIR}}", lit(c.markerDir),
		"{{MARKER_TEXT}}", lit(c.markerText),
		"{{PORT}}", strconv.Itoa(c.port),
	).Replace(src)
}

// probeResult is one entry of the RESULT line.
type probeResult struct {
	OK      json.RawMessage `json:"ok"`
	Error   string          `json:"error"`
	Errno   *int            `json:"errno"`
	Message string          `json:"message"`
}

func (p probeResult) String() string {
	if p.Error == "" {
		return "ok:" + string(p.OK)
	}
	if p.Errno != nil {
		return p.Error + ":" + strconv.Itoa(*p.Errno)
	}
	return p.Error
}

type probes map[string]probeResult

// escapeProbes decodes the RESULT line of a successful run.
func escapeProbes(t *testing.T, res runner.Result) probes {
	t.Helper()
	if res.Status != runner.StatusSuccess {
		t.Fatalf("status %q error %s, want success with a RESULT line (stdout %.500q, stderr %.500q)",
			res.Status, describeError(res.Error), res.Stdout, res.Stderr)
	}
	return parseProbes(t, res)
}

// parseProbes decodes the RESULT line, whatever the status.
func parseProbes(t *testing.T, res runner.Result) probes {
	t.Helper()
	for _, line := range strings.Split(res.Stdout, "\n") {
		if rest, ok := strings.CutPrefix(line, "RESULT "); ok {
			var p probes
			if err := json.Unmarshal([]byte(rest), &p); err != nil {
				t.Fatalf("RESULT line: %v: %.500q", err, rest)
			}
			return p
		}
	}
	t.Fatalf("no RESULT line in stdout %.1000q (stderr %.500q)", res.Stdout, res.Stderr)
	return nil
}

// get returns probe name, failing the test if it is missing.
func (p probes) get(t *testing.T, name string) probeResult {
	t.Helper()
	r, ok := p[name]
	if !ok {
		t.Fatalf("probe %q missing (have %v)", name, p)
	}
	return r
}

// fails asserts that probe name raised one of the errors given as
// "Type:errno" or "Type" (any errno).
func (p probes) fails(t *testing.T, name string, want ...string) {
	t.Helper()
	r := p.get(t, name)
	got := r.String()
	for _, w := range want {
		if got == w || (!strings.Contains(w, ":") && r.Error == w) {
			return
		}
	}
	t.Errorf("probe %q: got %s (%s), want one of %v", name, got, r.Message, want)
}

// okInto asserts that probe name succeeded and decodes its value.
func (p probes) okInto(t *testing.T, name string, v any) {
	t.Helper()
	r := p.get(t, name)
	if r.Error != "" {
		t.Fatalf("probe %q failed: %s (%s)", name, r, r.Message)
	}
	if err := json.Unmarshal(r.OK, v); err != nil {
		t.Fatalf("probe %q: %v: %s", name, err, r.OK)
	}
}

func describeError(e *runner.ExecError) string {
	if e == nil {
		return "<nil>"
	}
	return e.Type + ": " + truncate(e.Message, 300)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// wantViolation asserts that the policy refused the code before it ran,
// reporting at least the given rules.
func wantViolation(t *testing.T, res runner.Result, rules ...string) {
	t.Helper()
	if res.Status != runner.StatusError || res.Error == nil || res.Error.Type != "PolicyViolation" || len(res.Violations) == 0 {
		t.Fatalf("status %q error %s violations %v, want a PolicyViolation", res.Status, describeError(res.Error), res.Violations)
	}
	if res.Stdout != "" || res.Stderr != "" {
		t.Errorf("code ran despite the violation: stdout %.200q stderr %.200q", res.Stdout, res.Stderr)
	}
	for _, rule := range rules {
		if !slices.ContainsFunc(res.Violations, func(v policy.Violation) bool { return v.Rule == rule }) {
			t.Errorf("no %q violation among %v", rule, res.Violations)
		}
	}
}

// wantStatus asserts the status and, if errTypes are given, the error type.
func wantStatus(t *testing.T, res runner.Result, status string, errTypes ...string) {
	t.Helper()
	if res.Status != status {
		t.Fatalf("status %q error %s, want %q (stdout %.300q stderr %.300q)", res.Status, describeError(res.Error), status, res.Stdout, res.Stderr)
	}
	if len(errTypes) == 0 {
		return
	}
	if res.Error == nil || !slices.Contains(errTypes, res.Error.Type) {
		t.Fatalf("error %s, want type in %v", describeError(res.Error), errTypes)
	}
}

// wantWithin asserts that the execution took at most d plus the time to
// start a container on a busy machine (scaled): it ended at its deadline
// rather than whenever the attack let it.
func wantWithin(t *testing.T, took, d time.Duration) {
	t.Helper()
	if limit := dockertest.Scale(d + 8*time.Second); took > limit {
		t.Errorf("took %v, want under %v", took, limit)
	}
}

// wantBlockedWrite asserts that a write failed on the read-only root (EROFS)
// or for lack of permission (EACCES, EPERM).
func (p probes) wantBlockedWrite(t *testing.T, name string) {
	t.Helper()
	p.fails(t, name, "OSError:30", "PermissionError:13", "PermissionError:1")
}

// secondRun runs code (after probePrelude) on the same runner and decodes
// its probes.
func (c *escapeCtx) secondRun(t *testing.T, code string) probes {
	t.Helper()
	res := c.e.run(t, c.code(probePrelude+code), 20*time.Second)
	return escapeProbes(t, res)
}

func escapes() []escape {
	return []escape{
		// ------------------------------------------------ host files, environment
		{
			name: "host-files",
			code: `import os
probe("marker", lambda: open({{MARKER}}).read())
probe("marker_dir", lambda: os.listdir({{MARKER_DIR}}))
probe("marker_via_proc1_root", lambda: open("/proc/1/root" + {{MARKER}}).read())
probe("marker_via_self_root", lambda: open("/proc/self/root" + {{MARKER}}).read())
probe("shadow", lambda: open("/etc/shadow").read())
probe("docker_sock", lambda: os.stat("/var/run/docker.sock"))
probe("run_docker_sock", lambda: os.stat("/run/docker.sock"))
probe("proc1_mem", lambda: open("/proc/1/mem", "rb").read(1))
probe("proc1_fd", lambda: os.listdir("/proc/1/fd"))
probe("proc1_maps", lambda: open("/proc/1/maps").read())
probe("hostname", lambda: open("/etc/hostname").read().strip())
probe("image_passwd", lambda: "sandbox:x:10001:10001" in open("/etc/passwd").read())
probe("dev", lambda: sorted(os.listdir("/dev")))
probe("ids", lambda: [os.getuid(), os.geteuid(), os.getgid(), os.getgroups()])
probe("caps", lambda: [l.split()[1] for l in open("/proc/self/status") if l.startswith("Cap")])
probe("no_new_privs", lambda: [l.split()[1] for l in open("/proc/self/status") if l.startswith(("NoNewPrivs", "Seccomp:"))])
probe("limits", lambda: {l[:26].strip(): l[26:47].split()[0] for l in open("/proc/self/limits").read().splitlines()[1:]})
def setid_files():
    found = []
    for top in ("/usr", "/bin", "/sbin", "/opt", "/etc"):
        for root, dirs, files in os.walk(top):
            for f in files:
                try:
                    if os.lstat(os.path.join(root, f)).st_mode & 0o6000:
                        found.append(os.path.join(root, f))
                except OSError:
                    pass
    return found
probe("setid_files", setid_files)
report()
`,
			blocked: []string{ruleModule, ruleName},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				p := escapeProbes(t, res)
				if strings.Contains(res.Stdout, c.markerText) {
					t.Errorf("the host's marker file was read: %q", res.Stdout)
				}
				p.fails(t, "marker", "FileNotFoundError:2")
				p.fails(t, "marker_dir", "FileNotFoundError:2")
				p.fails(t, "marker_via_proc1_root", "PermissionError:13", "FileNotFoundError:2")
				p.fails(t, "marker_via_self_root", "FileNotFoundError:2")
				p.fails(t, "shadow", "PermissionError:13")
				p.fails(t, "docker_sock", "FileNotFoundError:2")
				p.fails(t, "run_docker_sock", "FileNotFoundError:2")
				// The supervisor is non-dumpable: its memory and descriptors
				// are closed to the user's process of the same uid.
				p.fails(t, "proc1_mem", "PermissionError:13")
				p.fails(t, "proc1_fd", "PermissionError:13")
				p.fails(t, "proc1_maps", "PermissionError:13")
				var host string
				p.okInto(t, "hostname", &host)
				if host != "sandbox" {
					t.Errorf("hostname %q, want the container's", host)
				}
				var image bool
				p.okInto(t, "image_passwd", &image)
				if !image {
					t.Error("/etc/passwd is not the image's")
				}
				var dev []string
				p.okInto(t, "dev", &dev)
				for _, d := range dev {
					for _, disk := range []string{"sd", "vd", "xvd", "nvme", "hd", "mem", "kmem", "port", "kvm", "loop"} {
						if strings.HasPrefix(d, disk) {
							t.Errorf("host device /dev/%s visible", d)
						}
					}
				}
				var ids []any
				p.okInto(t, "ids", &ids)
				if got, _ := json.Marshal(ids); string(got) != "[10001,10001,10001,[10001]]" {
					t.Errorf("uid, euid, gid, groups = %s, want 10001 everywhere", got)
				}
				var caps []string
				p.okInto(t, "caps", &caps)
				for _, v := range caps {
					if strings.Trim(v, "0") != "" {
						t.Errorf("capabilities %v, want none", caps)
						break
					}
				}
				var nnp []string
				p.okInto(t, "no_new_privs", &nnp)
				if !slices.Equal(nnp, []string{"1", "2"}) {
					t.Errorf("NoNewPrivs, Seccomp = %v, want 1 and 2 (filter)", nnp)
				}
				var limits map[string]string
				p.okInto(t, "limits", &limits)
				for name, want := range map[string]string{
					"Max open files":     "256",
					"Max core file size": "0",
					"Max file size":      strconv.Itoa(runner.DefaultTmpfsBytes),
				} {
					if limits[name] != want {
						t.Errorf("%s = %q, want %s (all: %v)", name, limits[name], want, limits)
					}
				}
				var setid []string
				p.okInto(t, "setid_files", &setid)
				if len(setid) > 0 {
					t.Errorf("setuid/setgid files in the image: %v", setid)
				}
			},
		},
		{
			name: "service-environment",
			code: `import os
probe("names", lambda: sorted(os.environ))
probe("environ", lambda: dict(os.environ))
probe("proc1_environ", lambda: open("/proc/1/environ", "rb").read().decode())
probe("self_environ", lambda: open("/proc/self/environ", "rb").read().decode())
def scan():
    out = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            for f in ("environ", "cmdline"):
                try:
                    out[p + "/" + f] = open("/proc/%s/%s" % (p, f), "rb").read().decode("utf-8", "replace")
                except OSError as e:
                    out[p + "/" + f] = type(e).__name__
    return out
probe("scan", scan)
report()
`,
			blocked: []string{ruleModule, ruleName},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				p := escapeProbes(t, res)
				if strings.Contains(res.Stdout, c.canary) || strings.Contains(res.Stdout, canaryEnv) {
					t.Errorf("the service's environment is visible: %q", res.Stdout)
				}
				// Only what the image and the runner set: nothing from the host.
				allowed := []string{
					"DEBIAN_FRONTEND", "HOME", "HOSTNAME", "LANG", "MKL_NUM_THREADS", "MPLBACKEND",
					"MPLCONFIGDIR", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PATH",
					"PYEXEC_PRELOAD", "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING",
				}
				var names []string
				p.okInto(t, "names", &names)
				for _, n := range names {
					if !slices.Contains(allowed, n) {
						t.Errorf("unexpected variable %s in the sandbox's environment", n)
					}
				}
				p.fails(t, "proc1_environ", "PermissionError:13")
			},
		},
		// ------------------------------------------------ writing
		{
			name: "write-outside-tmpfs",
			code: `import os, subprocess
targets = ["/pwned", "/opt/pyexec/pwned", "/opt/pyexec/supervisor", "/opt/pyexec/child.py", "/opt/pyexec/runner_child.py",
           "/etc/pwned", "/etc/passwd", "/etc/hostname", "/usr/lib/python3/dist-packages/pwned.py",
           "/usr/local/bin/pwned", "/var/tmp/pwned", "/root/pwned", "/home/pwned",
           "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/pids/pids.max",
           "/proc/sys/kernel/core_pattern"]
for p in targets:
    probe("write " + p, lambda p=p: open(p, "a").write("x"))
probe("mkdir /pwned", lambda: os.mkdir("/pwned"))
probe("mkdir /etc/pwned", lambda: os.mkdir("/etc/pwned"))
probe("chmod supervisor", lambda: os.chmod("/opt/pyexec/supervisor", 0o777))
probe("rename child", lambda: os.rename("/opt/pyexec/child.py", "/tmp/h.py"))
probe("symlink in /etc", lambda: os.symlink("/tmp", "/etc/evil"))
probe("write /tmp", lambda: open("/tmp/ok", "w").write("ok"))
def exec_from(path):
    with open(path, "w") as f:
        f.write("#!/bin/sh\necho ran\n")
    os.chmod(path, 0o755)
    return subprocess.run([path], capture_output=True).stdout.decode()
probe("exec /tmp", lambda: exec_from("/tmp/x.sh"))
probe("exec /dev/shm", lambda: exec_from("/dev/shm/x.sh"))
report()
`,
			blocked: []string{ruleModule, ruleName},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				p := escapeProbes(t, res)
				for name := range p {
					if strings.HasPrefix(name, "write /") && name != "write /tmp" || strings.HasPrefix(name, "mkdir") ||
						name == "chmod supervisor" || name == "symlink in /etc" {
						p.wantBlockedWrite(t, name)
					}
				}
				// rename across file systems: EXDEV before EROFS is possible.
				p.fails(t, "rename child", "OSError:30", "PermissionError:13", "OSError:18")
				var n int
				p.okInto(t, "write /tmp", &n)
				// tmpfs and /dev/shm are noexec.
				p.fails(t, "exec /tmp", "PermissionError:13")
				p.fails(t, "exec /dev/shm", "PermissionError:13")
			},
		},
		{
			name: "fill-tmpfs",
			code: `import os
def fill(path):
    chunk = b"\0" * (1 << 20)
    n = 0
    try:
        with open(path, "wb") as f:
            while True:
                f.write(chunk)
                f.flush()
                n += 1
    except OSError as e:
        return [e.errno, n]
    return [0, n]
probe("tmp", lambda: fill("/tmp/fill"))
probe("shm", lambda: fill("/dev/shm/fill"))
report()
`,
			blocked: []string{ruleModule, ruleName},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				p := escapeProbes(t, res)
				for _, name := range []string{"tmp", "shm"} {
					var got [2]int
					p.okInto(t, name, &got)
					// ENOSPC from the tmpfs size, or EFBIG from the fsize ulimit.
					if limit := runner.DefaultTmpfsBytes >> 20; got[0] != 28 && got[0] != 27 || got[1] > limit {
						t.Errorf("filling %s: errno %d after %d MiB, want ENOSPC or EFBIG within %d MiB", name, got[0], got[1], limit)
					}
				}
				q := c.secondRun(t, `import os
probe("tmp", lambda: sorted(n for n in os.listdir("/tmp") if n not in (".matplotlib", "work")) + [n for n in os.listdir("/tmp/work") if n != "outputs"] + os.listdir("/tmp/work/outputs"))
probe("shm", lambda: os.listdir("/dev/shm"))
probe("free_mb", lambda: os.statvfs("/tmp").f_bavail * os.statvfs("/tmp").f_frsize >> 20)
report()
`)
				var tmp, shm []string
				q.okInto(t, "tmp", &tmp)
				q.okInto(t, "shm", &shm)
				if len(tmp) > 0 || len(shm) > 0 {
					t.Errorf("the next execution sees files: /tmp %v, /dev/shm %v", tmp, shm)
				}
				var free int
				q.okInto(t, "free_mb", &free)
				if free < 60 {
					t.Errorf("next execution has %d MiB free in /tmp, want a fresh tmpfs", free)
				}
			},
		},
		{
			// The policy judges only paths written in the code; a relative
			// one is on the tmpfs, whose size holds in both modes.
			name: "fill-tmpfs-numpy",
			code: `import numpy as np
np.save("fill.npy", np.zeros(200 << 20, dtype=np.uint8))  # over TMPFS_SIZE (128m)
`,
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				wantStatus(t, res, runner.StatusError, "OSError")
				// numpy reports the short write: "209715200 requested and
				// about 134000000 written"; a file object would say ENOSPC or EFBIG.
				if !strings.Contains(res.Error.Message, "requested and") && !strings.Contains(res.Error.Message, "No space left") &&
					!strings.Contains(res.Error.Message, "too large") {
					t.Errorf("error %q, want a short write, ENOSPC or EFBIG", res.Error.Message)
				}
				// The next execution has the whole tmpfs again.
				next := c.e.run(t, `import numpy as np
import pandas as pd
try:
    pd.read_csv("fill.npy")
    print("left over")
except FileNotFoundError:
    print("clean")
np.save("again.npy", np.zeros(48 << 20, dtype=np.uint8))
print("saved")
`, 20*time.Second)
				if next.Status != runner.StatusSuccess || next.Stdout != "clean\nsaved\n" {
					t.Errorf("next execution: status %q stdout %q error %s", next.Status, next.Stdout, describeError(next.Error))
				}
			},
		},
		{
			name: "savefig-and-write-html-outside-tmp",
			code: `import matplotlib.pyplot as plt
import plotly.graph_objects as go
plt.plot([1, 2, 3])
for p in ["/out.png", "/opt/pyexec/out.png", "/etc/out.png", "/usr/share/out.svg"]:
    probe(p, lambda p=p: plt.savefig(p))
fig = go.Figure(go.Scatter(y=[1, 2, 3]))
for p in ["/out.html", "/opt/pyexec/out.html", "/etc/out.html"]:
    probe(p, lambda p=p: fig.write_html(p))
probe("/tmp/ok.png", lambda: plt.savefig("ok.png"))
probe("/tmp/ok.html", lambda: fig.write_html("ok.html"))
plt.close("all")
report()
`,
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				p := escapeProbes(t, res)
				for name := range p {
					if !strings.HasPrefix(name, "/tmp/") {
						p.wantBlockedWrite(t, name)
					} else if p[name].Error != "" {
						t.Errorf("%s: %s (%s), want it written", name, p[name], p[name].Message)
					}
				}
			},
		},
		// ------------------------------------------------ persistence
		{
			name: "daemon-and-files-for-the-next-execution",
			code: procsPython + `import time
pid = os.fork()
if pid == 0:
    try:
        os.setsid()
        if os.fork() == 0:
            for fd in (0, 1, 2):
                os.close(fd)
            with open("/tmp/daemon.tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename("/tmp/daemon.tmp", "/tmp/daemon.pid")
            while True:
                time.sleep(0.1)
    finally:
        os._exit(0)
os.waitpid(pid, 0)
for _ in range(500):
    if os.path.exists("/tmp/daemon.pid"):
        break
    time.sleep(0.01)
with open("/tmp/persist", "w") as f:
    f.write("left behind")
with open("/dev/shm/persist", "w") as f:
    f.write("left behind")
probe("daemon", lambda: int(open("/tmp/daemon.pid").read()))
probe("procs", procs)
report()
`,
			blocked: []string{ruleModule, ruleName},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				p := escapeProbes(t, res)
				var daemon int
				var procs map[string]string
				p.okInto(t, "daemon", &daemon)
				p.okInto(t, "procs", &procs)
				if _, ok := procs[strconv.Itoa(daemon)]; !ok {
					t.Fatalf("the daemon (pid %d) did not start: %v", daemon, procs)
				}
				q := c.secondRun(t, procsPython+`
probe("me", os.getpid)
probe("procs", procs)
probe("tmp", lambda: sorted(n for n in os.listdir("/tmp") if n not in (".matplotlib", "work")) + [n for n in os.listdir("/tmp/work") if n != "outputs"] + os.listdir("/tmp/work/outputs"))
probe("shm", lambda: os.listdir("/dev/shm"))
report()
`)
				var me int
				q.okInto(t, "me", &me)
				procs = nil // Unmarshal would merge into the first run's map
				q.okInto(t, "procs", &procs)
				for pid, cmd := range procs {
					if pid != "1" && pid != strconv.Itoa(me) {
						t.Errorf("the next execution sees process %s %q (all: %v)", pid, cmd, procs)
					}
				}
				var tmp, shm []string
				q.okInto(t, "tmp", &tmp)
				q.okInto(t, "shm", &shm)
				if len(tmp) > 0 || len(shm) > 0 {
					t.Errorf("the next execution sees files: /tmp %v, /dev/shm %v", tmp, shm)
				}
			},
		},
		{
			// A process that outlives the user's code and keeps writing to
			// the capture pipes does not hold the result back.
			name: "orphan-keeps-writing",
			code: `import os, time
print("parent done", flush=True)
if os.fork() == 0:
    os.setsid()
    while True:
        os.write(1, b"x" * 4096)
`,
			timeout: 5 * time.Second,
			blocked: []string{ruleModule},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, took time.Duration) {
				wantStatus(t, res, runner.StatusSuccess)
				if !strings.Contains(res.Stdout, "parent done") {
					t.Errorf("stdout %.200q lacks the parent's line", res.Stdout)
				}
				wantWithin(t, took, 5*time.Second)
			},
		},
		// ------------------------------------------------ network
		{
			name: "network-loopback-to-host-listener",
			code: `import socket, time
def conn(host, port):
    t = time.monotonic()
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "connected"
    finally:
        R["took " + host] = {"ok": time.monotonic() - t}
probe("127.0.0.1", lambda: conn("127.0.0.1", {{PORT}}))
probe("localhost", lambda: conn("localhost", {{PORT}}))
probe("::1", lambda: conn("::1", {{PORT}}))
probe("interfaces", lambda: [n for _, n in socket.if_nameindex()])
report()
`,
			blocked: []string{ruleModule},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				p := escapeProbes(t, res)
				// The container's own loopback: nothing listens there.
				p.fails(t, "127.0.0.1", "ConnectionRefusedError:111")
				// localhost may not even resolve: the image has no /etc/hosts entry.
				p.fails(t, "localhost", "ConnectionRefusedError:111", "OSError:99", "OSError:101", "OSError:97", "gaierror")
				p.fails(t, "::1", "ConnectionRefusedError:111", "OSError:99", "OSError:101", "OSError:97")
				var ifaces []string
				p.okInto(t, "interfaces", &ifaces)
				if !slices.Equal(ifaces, []string{"lo"}) {
					t.Errorf("interfaces %v, want only lo", ifaces)
				}
				if n := c.accepted.Load(); n != 0 {
					t.Errorf("the host's listener accepted %d connection(s)", n)
				}
			},
		},
		{
			// Only connection attempts from inside the network-less
			// container; the test itself sends nothing to these addresses.
			name: "network-bridge-gateway-and-outside",
			code: `import socket, time
def conn(host, port):
    t = time.monotonic()
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "connected"
    finally:
        R["took %s:%d" % (host, port)] = {"ok": time.monotonic() - t}
for host, port in [("172.17.0.1", 2375), ("172.17.0.1", 2376), ("172.17.0.1", 80), ("169.254.169.254", 80), ("8.8.8.8", 53)]:
    probe("%s:%d" % (host, port), lambda h=host, p=port: conn(h, p))
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return s.sendto(b"x", ("8.8.8.8", 53))
probe("udp", udp)
probe("raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
probe("packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
report()
`,
			blocked: []string{ruleModule},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				p := escapeProbes(t, res)
				for name, r := range p {
					if strings.HasPrefix(name, "took ") {
						var s float64
						_ = json.Unmarshal(r.OK, &s)
						if s > 1 {
							t.Errorf("%s: %.2fs, want an immediate failure", name, s)
						}
						continue
					}
					switch name {
					case "raw", "packet":
						// No CAP_NET_RAW.
						p.fails(t, name, "PermissionError:1")
					default:
						p.fails(t, name, "OSError:101") // ENETUNREACH: no route at all
					}
				}
			},
		},
		{
			name: "network-dns",
			code: `import socket, time
t = time.monotonic()
probe("example.com", lambda: socket.getaddrinfo("example.com", 80))
probe("host.docker.internal", lambda: socket.getaddrinfo("host.docker.internal", 80))
R["took"] = {"ok": time.monotonic() - t}
report()
`,
			blocked: []string{ruleModule},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				p := escapeProbes(t, res)
				p.fails(t, "example.com", "gaierror")
				p.fails(t, "host.docker.internal", "gaierror")
				var took float64
				p.okInto(t, "took", &took)
				if took > dockertest.Scale(3*time.Second).Seconds() {
					t.Errorf("name resolution took %.2fs to fail, want immediately", took)
				}
			},
		},
		// ------------------------------------------------ starving the service
		{
			// Every process forks forever, in a session of its own, so that
			// killing the child's process group does not reach it.
			name: "fork-bomb",
			code: `import os
while True:
    try:
        if os.fork() == 0:
            os.setsid()
    except OSError:
        pass
`,
			timeout: 3 * time.Second,
			blocked: []string{ruleModule},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, took time.Duration) {
				wantStatus(t, res, runner.StatusTimeout, "TimeoutError")
				wantWithin(t, took, 3*time.Second)
			},
		},
		{
			name: "fork-until-failure",
			code: `import os
while True:
    os.fork()
`,
			timeout: 5 * time.Second,
			blocked: []string{ruleModule},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, took time.Duration) {
				// The pids limit makes fork fail (BlockingIOError); whichever
				// process reports first, the run ends in an error or at the
				// deadline, never in a service error.
				if res.Status != runner.StatusError && res.Status != runner.StatusTimeout {
					t.Fatalf("status %q error %s, want error or timeout", res.Status, describeError(res.Error))
				}
				if res.Status == runner.StatusError && res.Error.Type != "BlockingIOError" {
					t.Errorf("error %s, want BlockingIOError (EAGAIN from the pids limit)", describeError(res.Error))
				}
				wantWithin(t, took, 5*time.Second)
			},
		},
		{
			name: "thread-bomb",
			code: `import threading, time
n = 0
try:
    while True:
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        n += 1
except RuntimeError as e:
    R["error"] = {"ok": str(e)}
R["threads"] = {"ok": n}
report()
`,
			blocked: []string{ruleModule},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				p := escapeProbes(t, res)
				var n int
				p.okInto(t, "threads", &n)
				if n <= 0 || n >= runner.DefaultPidsLimit {
					t.Errorf("started %d threads, want fewer than the pids limit %d", n, runner.DefaultPidsLimit)
				}
				p.get(t, "error")
			},
		},
		{
			name: "memory-bomb-string-doubling",
			code: `s = "x" * (1 << 20)
while True:
    s = s + s
`,
			opts: func(o *runner.Options) { o.MemoryBytes = 128 << 20 },
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				wantStatus(t, res, runner.StatusOutOfMemory, "MemoryError")
			},
		},
		{
			name: "memory-bomb-numpy-touching-pages",
			code: `import numpy as np
a = np.ones((1 << 14, 1 << 14))
`,
			opts: func(o *runner.Options) { o.MemoryBytes = 256 << 20 },
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				wantStatus(t, res, runner.StatusOutOfMemory, "MemoryError")
				if !res.Resources.OOMKilled {
					t.Errorf("resources %+v, want oom_killed", res.Resources)
				}
			},
		},
		{
			name: "cpu-spin-ignoring-signals",
			code: `import signal
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM, signal.SIGXCPU, signal.SIGUSR1):
    signal.signal(s, signal.SIG_IGN)
while True:
    pass
`,
			timeout: 2 * time.Second,
			blocked: []string{ruleModule},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, took time.Duration) {
				wantStatus(t, res, runner.StatusTimeout, "TimeoutError")
				wantWithin(t, took, 2*time.Second)
			},
		},
		{
			// Allowed by the policy: catching everything, KeyboardInterrupt
			// included, does not outlast the deadline.
			name: "cpu-spin-catching-everything",
			code: `while True:
    try:
        while True:
            pass
    except BaseException:
        pass
`,
			timeout: 2 * time.Second,
			check: func(t *testing.T, c *escapeCtx, res runner.Result, took time.Duration) {
				wantStatus(t, res, runner.StatusTimeout, "TimeoutError")
				wantWithin(t, took, 2*time.Second)
			},
		},
		{
			// Both streams at once, stderr through warnings (allowed by
			// the policy, unlike sys.stderr).
			name: "huge-stdout-and-stderr",
			code: `import warnings
chunk = "x" * (1 << 20)
for i in range(8):
    print(chunk, end="")
for i in range(3):
    warnings.warn("%d %s" % (i, chunk))
print("end")
`,
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				wantStatus(t, res, runner.StatusSuccess)
				max := runner.DefaultMaxStreamBytes
				if !res.StdoutTruncated || len(res.Stdout) != max || res.StdoutBytes != 8<<20+4 {
					t.Errorf("stdout: truncated=%v kept %d counted %d, want the first %d of %d", res.StdoutTruncated, len(res.Stdout), res.StdoutBytes, max, 8<<20+4)
				}
				if !res.StderrTruncated || len(res.Stderr) != max || res.StderrBytes < 3<<20 {
					t.Errorf("stderr: truncated=%v kept %d counted %d, want the first %d of over %d", res.StderrTruncated, len(res.Stderr), res.StderrBytes, max, 3<<20)
				}
			},
		},
		{
			name: "many-huge-charts",
			code: `import matplotlib.pyplot as plt
for i in range(50):
    fig = plt.figure(figsize=(40, 40), dpi=100)
    fig.gca().plot(range(100), [j * i for j in range(100)])
print("drawn")
`,
			timeout: 60 * time.Second,
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				o := res.Outputs
				t.Logf("%d charts kept, charts_truncated=%v, collect_error=%q", len(o.Charts), o.ChartsTruncated, truncate(o.CollectError, 200))
				switch res.Status {
				case runner.StatusSuccess:
					if len(o.Charts) > 20 {
						t.Errorf("%d charts, want at most 20", len(o.Charts))
					}
					if !o.ChartsTruncated && o.CollectError == "" {
						t.Errorf("%d charts kept, no truncation reported", len(o.Charts))
					}
				case runner.StatusOutOfMemory:
				default:
					t.Fatalf("status %q error %s, want success with capped charts or out_of_memory", res.Status, describeError(res.Error))
				}
			},
		},
		// ------------------------------------------------ reaching the supervisor
		{
			name: "subclasses-walk-to-os",
			code: `subs = ().__class__.__bases__[0].__subclasses__()
wrap = [c for c in subs if c.__name__ == "_wrap_close"][0]
osg = wrap.__init__.__globals__
probe("reached", lambda: osg["__name__"])
probe("marker", lambda: osg["open"]({{MARKER}}, osg["O_RDONLY"]))
probe("shadow", lambda: osg["open"]("/etc/shadow", osg["O_RDONLY"]))
probe("proc1_fd1", lambda: osg["open"]("/proc/1/fd/1", osg["O_WRONLY"]))
probe("kill1", lambda: osg["kill"](1, 9))
probe("system", lambda: osg["system"]("id -u; cat /proc/self/status | grep CapEff"))
probe("setuid0", lambda: osg["setuid"](0))
report()
`,
			blocked: []string{ruleAttribute},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				// The walk reaches os; what os can do is still sandboxed.
				p := escapeProbes(t, res)
				var mod string
				p.okInto(t, "reached", &mod)
				if mod != "os" {
					t.Errorf("walk reached %q", mod)
				}
				p.fails(t, "marker", "FileNotFoundError:2")
				p.fails(t, "shadow", "PermissionError:13")
				p.fails(t, "proc1_fd1", "PermissionError:13")
				p.fails(t, "setuid0", "PermissionError:1")
				if !strings.Contains(res.Stdout, "10001\n") || !strings.Contains(res.Stdout, "CapEff:\t0000000000000000") {
					t.Errorf("system() ran as %.300q, want uid 10001 without capabilities", res.Stdout)
				}
			},
		},
		{
			// SIGKILL and SIGSTOP cannot reach a namespace's init from inside;
			// the supervisor handles no signal, so none ends it early.
			name: "kill-the-supervisor",
			code: `import os, signal, time
for s in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
          signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGPIPE, signal.SIGSTOP,
          signal.SIGSEGV, signal.SIGABRT, signal.SIGXFSZ):
    probe(s.name, lambda s=s: os.kill(1, s))
    time.sleep(0.05)
probe("killpg1", lambda: os.killpg(1, signal.SIGKILL))
probe("kill-1", lambda: os.kill(-1, signal.SIGINT))
time.sleep(0.3)
print("still here")
report()
`,
			blocked: []string{ruleModule},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				// kill(-1) hits every process but the caller and init: the
				// child itself survives it, and the result comes back.
				p := escapeProbes(t, res)
				if !strings.Contains(res.Stdout, "still here") {
					t.Errorf("stdout %.300q", res.Stdout)
				}
				for name, r := range p {
					if r.Error != "" && r.Error != "PermissionError" && r.Error != "ProcessLookupError" {
						t.Errorf("%s: %s", name, r)
					}
				}
			},
		},
		{
			// An orphan in a session of its own outlives the child's process
			// group and keeps interrupting the supervisor while it writes
			// the result: the result still comes back whole.
			name: "interrupt-the-supervisor-while-it-reports",
			code: `import os, signal, time
child = os.getpid()
if os.fork() == 0:
    os.setsid()
    for fd in range(256):
        try:
            os.close(fd)
        except OSError:
            pass
    while os.path.exists("/proc/%d" % child):
        pass
    end = time.monotonic() + 3
    while time.monotonic() < end:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
            try:
                os.kill(1, s)
            except OSError:
                pass
    os._exit(0)
print("\x01" * (1 << 20), end="", flush=True)
`,
			timeout: 10 * time.Second,
			blocked: []string{ruleModule},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				wantStatus(t, res, runner.StatusSuccess)
				if len(res.Stdout) != runner.DefaultMaxStreamBytes {
					t.Errorf("stdout %d bytes, want %d", len(res.Stdout), runner.DefaultMaxStreamBytes)
				}
			},
		},
		{
			name: "frame-walk-getframe",
			code: `import sys
f = sys._getframe()
chain, harness = [], None
while f is not None:
    chain.append(f.f_code.co_name)
    if "read_request" in f.f_globals and "RES_FD" in f.f_globals:
        harness = f.f_globals
    f = f.f_back
probe("chain", lambda: chain)
probe("harness", lambda: harness is not None)
# The harness's globals (child.py) hold nothing of the supervisor's: fd 1 is
# the stdout capture pipe, not the container's stdout.
probe("forge", lambda: harness["os"].write(1, b'PYEXEC1 exit 19\n{"state":"FORGED"}\n'))
probe("kill1", lambda: harness["os"].kill(1, 9))
probe("marker", lambda: harness["os"].open({{MARKER}}, 0))
probe("proc1_fd1", lambda: harness["os"].open("/proc/1/fd/1", 1))
report()
raise ValueError("the real error")
`,
			blocked: []string{ruleModule, ruleAttribute},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				wantStatus(t, res, runner.StatusError, "ValueError")
				p := parseProbes(t, res)
				var found bool
				p.okInto(t, "harness", &found)
				if !found {
					t.Errorf("the walk did not reach the harness's globals: %s", p.get(t, "chain"))
				}
				if !strings.Contains(res.Stdout, `PYEXEC1 exit`) || !strings.Contains(res.Stdout, "FORGED") {
					t.Errorf("the forged frame should be plain stdout: %.300q", res.Stdout)
				}
				p.fails(t, "marker", "FileNotFoundError:2")
				p.fails(t, "proc1_fd1", "PermissionError:13")
			},
		},
		{
			name: "frame-walk-generator",
			code: `def gen():
    yield g.gi_frame.f_back
g = gen()
f = next(g)
found = None
while f is not None:
    if "send_message" in f.f_globals and "res_w" in f.f_locals:
        found = f
    f = f.f_back
probe("found", lambda: found is not None)
probe("names", lambda: sorted(k for k in found.f_globals if not k.startswith("__"))[:50])
probe("kill1", lambda: found.f_globals["os"].kill(1, 9))
probe("proc1_fd1", lambda: found.f_globals["os"].open("/proc/1/fd/1", 1))
probe("marker", lambda: found.f_globals["os"].open({{MARKER}}, 0))
report()
`,
			blocked: []string{ruleAttribute},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				p := escapeProbes(t, res)
				var found bool
				p.okInto(t, "found", &found)
				if !found {
					t.Errorf("the walk did not reach runner_child.run")
				}
				p.fails(t, "proc1_fd1", "PermissionError:13")
				p.fails(t, "marker", "FileNotFoundError:2")
			},
		},
		// ------------------------------------------------ native code, deserialising
		{
			name: "ctypes-privileged-calls",
			code: `import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
def call(fn, *args):
    ctypes.set_errno(0)
    r = fn(*args)
    if r == 0 and fn is libc.syscall and args[0] == 56:
        os._exit(0)  # clone succeeded: this is the new process
    return [r, ctypes.get_errno()]
CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x00020000, 0x20000000, 0x40000000
buf = ctypes.create_string_buffer(256)
probe("mount", lambda: call(libc.mount, b"none", b"/tmp", b"tmpfs", 0, None))
probe("umount2", lambda: call(libc.umount2, b"/tmp", 2))
probe("unshare_user", lambda: call(libc.unshare, CLONE_NEWUSER))
probe("unshare_ns", lambda: call(libc.unshare, CLONE_NEWNS))
probe("clone_newuser", lambda: call(libc.syscall, 56, CLONE_NEWUSER | 17, 0, 0, 0, 0))
probe("clone3", lambda: call(libc.syscall, 435, buf, 88))
probe("ptrace_attach_1", lambda: call(libc.ptrace, 16, 1, 0, 0))
probe("ptrace_traceme", lambda: call(libc.ptrace, 0, 0, 0, 0))
probe("setns", lambda: call(libc.setns, os.open("/proc/self/ns/net", os.O_RDONLY), 0))
probe("chroot", lambda: call(libc.chroot, b"/tmp"))
probe("setuid0", lambda: call(libc.setuid, 0))
probe("personality", lambda: call(libc.personality, 0x0040000))
probe("keyctl", lambda: call(libc.syscall, 250, 0, 0, 0, 0, 0))
probe("bpf", lambda: call(libc.syscall, 321, 0, buf, 64))
probe("perf_event_open", lambda: call(libc.syscall, 298, buf, 0, -1, -1, 0))
probe("io_uring_setup", lambda: call(libc.syscall, 425, 8, buf))
probe("userfaultfd", lambda: call(libc.syscall, 323, 0))
probe("process_vm_readv", lambda: call(libc.syscall, 310, 1, buf, 1, buf, 1, 0))
probe("mknod", lambda: call(libc.mknod, b"/tmp/sda", 0o60600, (8 << 8) | 0))
probe("sethostname", lambda: call(libc.sethostname, b"evil", 4))
probe("reboot", lambda: call(libc.reboot, 0x4321FEDC))
report()
`,
			blocked: []string{ruleModule},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				p := escapeProbes(t, res)
				for name := range p {
					var got [2]int
					if name == "setns" && p[name].Error != "" {
						// /proc/self/ns/net may not even open.
						continue
					}
					p.okInto(t, name, &got)
					want := 1 // EPERM: the profile or the missing capability
					if name == "clone3" {
						want = 38 // ENOSYS, so that glibc falls back to clone
					}
					if got[0] != -1 || got[1] != want {
						t.Errorf("%s returned %d errno %d, want -1 errno %d", name, got[0], got[1], want)
					}
				}
			},
		},
		{
			name: "pickle-reduce",
			code: `import os, pickle
class Evil:
    def __reduce__(self):
        return (os.system, ("id; cat /etc/hostname; cat " + {{MARKER}} + "; echo pwned > /opt/pyexec/pwned",))
probe("loads", lambda: pickle.loads(pickle.dumps(Evil())))
report()
`,
			blocked: []string{ruleModule},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				// __reduce__ runs, inside the sandbox only.
				p := escapeProbes(t, res)
				p.get(t, "loads")
				if !strings.Contains(res.Stdout, "uid=10001(sandbox)") || !strings.Contains(res.Stdout, "sandbox\n") {
					t.Errorf("stdout %.300q, want the sandbox user and hostname", res.Stdout)
				}
				if strings.Contains(res.Stdout, c.markerText) {
					t.Error("the pickle read the host's marker")
				}
				if !strings.Contains(res.Stderr, "No such file") || !strings.Contains(res.Stderr, "Read-only file system") {
					t.Errorf("stderr %.300q, want the marker missing and the write refused", res.Stderr)
				}
			},
		},
		{
			name: "numpy-load",
			code: `import numpy as np
probe("passwd", lambda: np.load("/etc/passwd"))
probe("passwd_pickle", lambda: np.load("/etc/passwd", allow_pickle=True))
probe("marker", lambda: np.load({{MARKER}}))
report()
`,
			blocked: []string{ruleAttribute, policy.RuleForbiddenArgument},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				p := escapeProbes(t, res)
				p.fails(t, "passwd", "ValueError")
				p.fails(t, "passwd_pickle", "UnpicklingError")
				p.fails(t, "marker", "FileNotFoundError:2")
			},
		},
		{
			name: "numpy-fromfile",
			code: `import numpy as np
probe("passwd", lambda: "sandbox:x:10001" in np.fromfile("/etc/passwd", dtype=np.uint8).tobytes().decode())
probe("shadow", lambda: np.fromfile("/etc/shadow", dtype=np.uint8))
probe("marker", lambda: np.fromfile({{MARKER}}, dtype=np.uint8))
report()
`,
			blocked: []string{ruleAttribute},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				p := escapeProbes(t, res)
				var image bool
				p.okInto(t, "passwd", &image)
				if !image {
					t.Error("np.fromfile read a /etc/passwd that is not the image's")
				}
				p.fails(t, "shadow", "PermissionError:13")
				p.fails(t, "marker", "FileNotFoundError:2")
			},
		},
		{
			// Refused by the policy (literal paths out of the working
			// directory); with POLICY=off it reads the image's files, never
			// the host's.
			name:    "pandas-read-csv",
			blocked: []string{policy.RulePathOutsideWorkdir},
			code: `import pandas as pd
probe("passwd", lambda: pd.read_csv("/etc/passwd", sep=":", header=None)[0].tolist())
probe("shadow", lambda: pd.read_csv("/etc/shadow"))
probe("marker", lambda: pd.read_csv({{MARKER}}))
probe("table", lambda: pd.read_table({{MARKER_DIR}} + "/marker.txt"))
report()
`,
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				p := escapeProbes(t, res)
				var users []string
				p.okInto(t, "passwd", &users)
				if !slices.Contains(users, "sandbox") {
					t.Errorf("users %v, want the image's (with sandbox)", users)
				}
				p.fails(t, "shadow", "PermissionError:13")
				p.fails(t, "marker", "FileNotFoundError:2")
				p.fails(t, "table", "FileNotFoundError:2")
			},
		},
		{
			name: "pandas-read-pickle",
			code: `import pandas as pd
probe("passwd", lambda: pd.read_pickle("/etc/passwd"))
probe("marker", lambda: pd.read_pickle({{MARKER}}))
report()
`,
			blocked: []string{ruleAttribute},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				p := escapeProbes(t, res)
				p.fails(t, "passwd", "UnpicklingError", "TypeError", "ValueError")
				p.fails(t, "marker", "FileNotFoundError:2")
			},
		},
		// ------------------------------------------------ forging the result
		{
			name: "forge-via-supervisor-stdout",
			code: `import os
probe("proc1_fd1", lambda: os.open("/proc/1/fd/1", os.O_WRONLY))
probe("proc1_fd", lambda: os.listdir("/proc/1/fd"))
probe("dev_stdout_is_pipe", lambda: os.readlink("/proc/self/fd/1").startswith("pipe:"))
probe("no_other_fds", lambda: sorted(int(f) for f in os.listdir("/proc/self/fd")))
report()
`,
			blocked: []string{ruleModule},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				p := escapeProbes(t, res)
				p.fails(t, "proc1_fd1", "PermissionError:13")
				p.fails(t, "proc1_fd", "PermissionError:13")
				var pipe bool
				p.okInto(t, "dev_stdout_is_pipe", &pipe)
				if !pipe {
					t.Error("the child's stdout is not the capture pipe")
				}
			},
		},
		{
			// The result pipe found by scanning /proc/self/fd carries the
			// child's own report: forging it can only say what the user's
			// code could say anyway. What the supervisor measures itself
			// (the deadline, stdout, resources) stays true.
			name: "forge-report-on-result-pipe",
			code: `import os, json
def link(fd):
    try:
        return os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        return ""
pipes = [fd for fd in map(int, os.listdir("/proc/self/fd")) if fd > 2 and link(fd).startswith("pipe:")]
fake = json.dumps({"error": None, "status": "success", "stdout": "FORGED", "oom_killed": True,
                   "execution_time_ms": 1, "stdout_truncated": True}).encode()
for fd in pipes:
    os.write(fd, b"report %d\n" % len(fake) + fake)
print("real stdout", flush=True)
while True:
    pass
`,
			timeout: 2 * time.Second,
			blocked: []string{ruleModule},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, took time.Duration) {
				wantStatus(t, res, runner.StatusTimeout, "TimeoutError")
				// stdout is empty when the runner's own deadline fired first
				// (a loaded machine); it is never the forged one.
				if res.Stdout != "real stdout\n" && res.Stdout != "" || res.StdoutTruncated || res.Resources.OOMKilled {
					t.Errorf("forged fields got through: stdout %q truncated %v oom %v", res.Stdout, res.StdoutTruncated, res.Resources.OOMKilled)
				}
				wantWithin(t, took, 2*time.Second)
			},
		},
		{
			name: "forge-malformed-reports",
			code: `import os
def link(fd):
    try:
        return os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        return ""
pipes = [fd for fd in map(int, os.listdir("/proc/self/fd")) if fd > 2 and link(fd).startswith("pipe:")]
for fd in pipes:
    os.write(fd, b"report 99999999999\n{")
    os.write(fd, b"\xff" * (1 << 16))
    os.write(fd, b"outputs 5\n[1,2]")
print("real stdout")
`,
			blocked: []string{ruleModule},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				// The garbage hides the real report, so the supervisor falls
				// back to the child's exit status: success.
				wantStatus(t, res, runner.StatusSuccess)
				if res.Stdout != "real stdout\n" {
					t.Errorf("stdout %q", res.Stdout)
				}
			},
		},
		{
			// The rich outputs are passed through untouched: whatever the
			// code sends as its own outputs, the service parses it into the
			// fixed shape or drops it, and the run's status stands.
			name: "forge-outputs-message",
			code: `import os
def link(fd):
    try:
        return os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        return ""
pipes = [fd for fd in map(int, os.listdir("/proc/self/fd")) if fd > 2 and link(fd).startswith("pipe:")]
nested = b"[" * 500000 + b"]" * 500000
for fd in pipes:
    os.write(fd, b"outputs %d\n" % len(nested) + nested)
print("real stdout")
`,
			blocked: []string{ruleModule},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				wantStatus(t, res, runner.StatusSuccess)
				if res.Stdout != "real stdout\n" || res.Outputs.CollectError == "" || len(res.Outputs.Charts) != 0 {
					t.Errorf("stdout %q outputs %+v, want the malformed outputs dropped", res.Stdout, res.Outputs)
				}
			},
		},
		// ------------------------------------------------ ending badly
		{
			name: "dup2-devnull-over-stdio",
			code: `import os
fd = os.open("/dev/null", os.O_WRONLY)
os.dup2(fd, 1)
os.dup2(fd, 2)
print("lost")
raise ValueError("still reported")
`,
			blocked: []string{ruleModule},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				wantStatus(t, res, runner.StatusError, "ValueError")
				if res.Stdout != "" || res.Error.Message != "still reported" {
					t.Errorf("stdout %q error %s", res.Stdout, describeError(res.Error))
				}
			},
		},
		{
			name: "raise-system-exit-with-message",
			code: `print("before")
raise SystemExit("bye")
`,
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				wantStatus(t, res, runner.StatusError, "SystemExit")
				if res.Stdout != "before\n" || !strings.Contains(res.Error.Message, "bye") {
					t.Errorf("stdout %q error %s", res.Stdout, describeError(res.Error))
				}
			},
		},
		{
			name: "raise-unprintable-base-exception",
			code: `class Evil(BaseException):
    def __str__(self):
        raise Evil()
    def __repr__(self):
        raise Evil()
raise Evil()
`,
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				wantStatus(t, res, runner.StatusError, "Evil")
			},
		},
		{
			name: "raise-huge-message",
			code: `class Big(BaseException):
    pass
raise Big("m" * (20 << 20))
`,
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				wantStatus(t, res, runner.StatusError, "Big")
				if len(res.Error.Message) > 10000 || len(res.Error.Traceback) > 64000 {
					t.Errorf("error not capped: message %d traceback %d bytes", len(res.Error.Message), len(res.Error.Traceback))
				}
			},
		},
		{
			name: "deep-recursion-raised-limit",
			code: `import sys
sys.setrecursionlimit(10 ** 6)
def f(n):
    return f(n + 1) + 1
f(0)
`,
			timeout: 5 * time.Second,
			blocked: []string{ruleModule},
			check: func(t *testing.T, c *escapeCtx, res runner.Result, took time.Duration) {
				// The child overflows its stack (a crash), runs out of memory
				// or hits the limit; describing a million frames may also
				// outlast the deadline: all reported as the code's failure.
				wantWithin(t, took, 5*time.Second)
				switch res.Status {
				case runner.StatusError:
					if !slices.Contains([]string{"ProcessCrash", "RecursionError", "MemoryError"}, res.Error.Type) {
						t.Errorf("error %s", describeError(res.Error))
					}
				case runner.StatusOutOfMemory, runner.StatusTimeout:
				default:
					t.Errorf("status %q error %s", res.Status, describeError(res.Error))
				}
			},
		},
		{
			name: "deep-recursion-in-c",
			code: `x = []
for _ in range(1000000):
    x = [x]
print(repr(x)[:10])
`,
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				switch res.Status {
				case runner.StatusError:
					if !slices.Contains([]string{"ProcessCrash", "RecursionError", "MemoryError"}, res.Error.Type) {
						t.Errorf("error %s", describeError(res.Error))
					}
				case runner.StatusOutOfMemory:
				default:
					t.Errorf("status %q error %s", res.Status, describeError(res.Error))
				}
			},
		},
		{
			name: "deeply-nested-parentheses",
			code: strings.Repeat("(", 10000) + strings.Repeat(")", 10000) + "\n",
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				wantCompileFailure(t, c, res)
			},
		},
		{
			name: "hundred-thousand-term-sum",
			code: "x = " + strings.Repeat("1 + ", 100000) + "1\nprint(x)\n",
			check: func(t *testing.T, c *escapeCtx, res runner.Result, _ time.Duration) {
				if res.Status == runner.StatusSuccess && res.Stdout == "100001\n" {
					return // compiled after all: fine too
				}
				wantCompileFailure(t, c, res)
			},
		},
	}
}

// wantCompileFailure asserts that code too deep to compile is refused as the
// code's error: a SyntaxError (or RecursionError) when it runs, a syntax or
// complexity violation under the policy.
func wantCompileFailure(t *testing.T, c *escapeCtx, res runner.Result) {
	t.Helper()
	if res.Status != runner.StatusError || res.Error == nil {
		t.Fatalf("status %q error %s, want the code refused", res.Status, describeError(res.Error))
	}
	switch res.Error.Type {
	case "SyntaxError", "RecursionError", "MemoryError":
	case "PolicyViolation":
		if !c.strict {
			t.Errorf("a policy violation without a policy: %v", res.Violations)
		}
		for _, v := range res.Violations {
			if v.Rule != policy.RuleSyntax && v.Rule != policy.RuleComplexity {
				t.Errorf("violation %v, want syntax or complexity", v)
			}
		}
	default:
		t.Errorf("error %s, want SyntaxError, RecursionError or a policy violation", describeError(res.Error))
	}
}
