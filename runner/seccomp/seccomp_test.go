package seccomp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"github.com/pyexec/pyexec/internal/dockertest"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/pyexec/pyexec/runner/seccomp"
)

// Errno values on Linux x86_64, as the container sees them.
const (
	eperm  = 1
	enosys = 38
)

// required are the calls the profile must always refuse with EPERM; Denied
// may list more.
var required = []string{
	"acct", "add_key", "bpf", "chroot", "delete_module", "fanotify_init",
	"finit_module", "init_module", "io_uring_enter", "io_uring_register",
	"io_uring_setup", "kexec_file_load", "kexec_load", "keyctl",
	"lookup_dcookie", "mount", "name_to_handle_at", "open_by_handle_at",
	"perf_event_open", "personality", "pivot_root", "process_vm_readv",
	"process_vm_writev", "ptrace", "quotactl", "reboot", "request_key",
	"setns", "swapoff", "swapon", "umount2", "unshare", "userfaultfd",
}

// The profile as JSON, decoded independently of the Go types that produced
// it, with the field names engine 20.10 reads.
type (
	profileJSON struct {
		DefaultAction   string     `json:"defaultAction"`
		DefaultErrnoRet *uint      `json:"defaultErrnoRet"`
		ArchMap         []archJSON `json:"archMap"`
		Syscalls        []ruleJSON `json:"syscalls"`
	}
	archJSON struct {
		Arch      string   `json:"architecture"`
		SubArches []string `json:"subArchitectures"`
	}
	ruleJSON struct {
		Names    []string   `json:"names"`
		Name     string     `json:"name"`
		Action   string     `json:"action"`
		Args     []argJSON  `json:"args"`
		ErrnoRet *uint      `json:"errnoRet"`
		Includes filterJSON `json:"includes"`
		Excludes filterJSON `json:"excludes"`
	}
	argJSON struct {
		Index    uint   `json:"index"`
		Value    uint64 `json:"value"`
		ValueTwo uint64 `json:"valueTwo"`
		Op       string `json:"op"`
	}
	filterJSON struct {
		Caps      []string `json:"caps"`
		Arches    []string `json:"arches"`
		MinKernel string   `json:"minKernel"`
	}
)

func (r ruleJSON) names() []string {
	if r.Name != "" {
		return append(slices.Clone(r.Names), r.Name)
	}
	return r.Names
}

func (f filterJSON) empty() bool {
	return len(f.Caps) == 0 && len(f.Arches) == 0 && f.MinKernel == ""
}

func loadProfile(t *testing.T) ([]byte, profileJSON) {
	t.Helper()
	b, err := seccomp.Profile()
	if err != nil {
		t.Fatalf("Profile: %v", err)
	}
	var p profileJSON
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("profile is not valid JSON: %v", err)
	}
	return b, p
}

func TestProfileDeniesWithErrno(t *testing.T) {
	_, p := loadProfile(t)
	if p.DefaultAction != "SCMP_ACT_ERRNO" {
		t.Errorf("defaultAction = %q, want SCMP_ACT_ERRNO", p.DefaultAction)
	}
	if p.DefaultErrnoRet != nil && *p.DefaultErrnoRet != eperm {
		t.Errorf("defaultErrnoRet = %d, want %d (EPERM)", *p.DefaultErrnoRet, eperm)
	}
	if len(p.ArchMap) == 0 {
		t.Error("archMap is empty")
	}
	for _, r := range p.Syscalls {
		if r.Action != "SCMP_ACT_ALLOW" && r.Action != "SCMP_ACT_ERRNO" {
			t.Errorf("rule for %v has action %s, want only SCMP_ACT_ALLOW or SCMP_ACT_ERRNO", r.names(), r.Action)
		}
		if len(r.Includes.Caps) > 0 || len(r.Excludes.Caps) > 0 {
			t.Errorf("rule for %v depends on capabilities (includes %v, excludes %v)", r.names(), r.Includes.Caps, r.Excludes.Caps)
		}
	}
}

func TestProfileAllowsNoDeniedCall(t *testing.T) {
	_, p := loadProfile(t)
	denied := seccomp.Denied()
	for _, name := range append(denied, "clone3") {
		t.Run(name, func(t *testing.T) {
			var refused bool
			for _, r := range p.Syscalls {
				if !slices.Contains(r.names(), name) {
					continue
				}
				switch {
				case r.Action == "SCMP_ACT_ALLOW":
					t.Errorf("allowed by a rule (args %v, includes %+v, excludes %+v)", r.Args, r.Includes, r.Excludes)
				case name == "clone3":
					refused = true
					if r.ErrnoRet == nil || *r.ErrnoRet != enosys || len(r.Args) > 0 || !r.Includes.empty() || !r.Excludes.empty() {
						t.Errorf("rule %+v: want errnoRet %d (ENOSYS) unconditionally", r, enosys)
					}
				default:
					refused = true
					if r.ErrnoRet == nil || *r.ErrnoRet != eperm || len(r.Args) > 0 || !r.Includes.empty() || !r.Excludes.empty() {
						t.Errorf("rule %+v: want errnoRet %d (EPERM) unconditionally", r, eperm)
					}
				}
			}
			if !refused {
				t.Error("no explicit errno rule names it")
			}
		})
	}
}

func TestProfileMasksCloneNamespaces(t *testing.T) {
	_, p := loadProfile(t)
	const namespaces = 0x7e020000 // CLONE_NEW{NS,CGROUP,UTS,IPC,USER,PID,NET}
	var n int
	for _, r := range p.Syscalls {
		if r.Action != "SCMP_ACT_ALLOW" || !slices.Contains(r.names(), "clone") {
			continue
		}
		n++
		if !slices.ContainsFunc(r.Args, func(a argJSON) bool {
			return a.Op == "SCMP_CMP_MASKED_EQ" && a.Value&namespaces == namespaces && a.ValueTwo == 0
		}) {
			t.Errorf("clone allowed without masking namespace flags: %+v", r)
		}
	}
	if n == 0 {
		t.Error("no rule allows clone: threads and fork would fail")
	}
}

func TestDenied(t *testing.T) {
	denied := seccomp.Denied()
	if !slices.IsSorted(denied) || len(slices.Compact(slices.Clone(denied))) != len(denied) {
		t.Errorf("Denied() is not sorted and unique: %v", denied)
	}
	for _, name := range required {
		if !slices.Contains(denied, name) {
			t.Errorf("Denied() lacks %s", name)
		}
	}
	denied[0] = "changed"
	if seccomp.Denied()[0] == "changed" {
		t.Error("Denied() returns shared storage")
	}
}

func TestProfileReturnsCopy(t *testing.T) {
	b1, _ := loadProfile(t)
	want := bytes.Clone(b1)
	clear(b1)
	b2, _ := loadProfile(t)
	if !bytes.Equal(b2, want) {
		t.Error("changing one result of Profile changed the next one")
	}
}

// TestProfileFieldsKnownToEngine2010 keeps the profile within the fields
// engine 20.10 decodes: the engine ignores fields it does not know, so a
// newer field would be dropped without an error. defaultErrnoRet is such a
// field (the 20.10 engine drops it); it stays because the runtime's default
// errno for SCMP_ACT_ERRNO is EPERM too, and newer engines honour it.
func TestProfileFieldsKnownToEngine2010(t *testing.T) {
	b, _ := loadProfile(t)
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	known := map[string][]string{
		"":         {"defaultAction", "defaultErrnoRet", "architectures", "archMap", "syscalls"},
		"archMap":  {"architecture", "subArchitectures"},
		"syscalls": {"names", "name", "action", "args", "errnoRet", "comment", "includes", "excludes"},
		"args":     {"index", "value", "valueTwo", "op"},
		"includes": {"caps", "arches", "minKernel"},
		"excludes": {"caps", "arches", "minKernel"},
	}
	var walk func(parent string, v any)
	walk = func(parent string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, child := range v {
				if !slices.Contains(known[parent], k) {
					t.Errorf("field %q under %q is unknown to engine 20.10", k, parent)
				}
				if _, ok := known[k]; ok {
					walk(k, child)
				}
			}
		case []any:
			for _, child := range v {
				walk(parent, child)
			}
		}
	}
	walk("", raw)
}

// Real engine.

// testLabel marks every container this file creates, so that the end of the
// test can assert none is left.
const testLabel = "io.pyexec.test.seccomp"

// probe is one refused system call tried inside the container. The arguments
// are chosen so that, were the call allowed, it would mostly fail with another
// errno than EPERM (ENOENT, EBADF, EFAULT, ESRCH, EINVAL) or succeed; calls
// that check a capability first (mount API, modules, reboot, swap) return
// EPERM either way, and are listed for completeness.
type probe struct {
	name string
	nr   int   // x86_64 number; 0 when the call does not exist there
	args []any // strings are passed as C strings, numbers as longs
}

const atFDCWD = -100

var probes = []probe{
	{"acct", 163, []any{"/nonexistent"}},
	{"add_key", 248, []any{0, 0, 0, 0, 0}},
	{"bpf", 321, []any{-1, 0, 0}},
	{"chroot", 161, []any{"/nonexistent"}},
	{"delete_module", 176, []any{"nonexistent", 0}},
	{"fanotify_init", 300, []any{0, 0}},
	{"finit_module", 313, []any{-1, "", 0}},
	{"fsconfig", 431, []any{-1, 0, 0, 0, 0}},
	{"fsmount", 432, []any{-1, 0, 0}},
	{"fsopen", 430, []any{"nonexistentfs", 0}},
	{"fspick", 433, []any{atFDCWD, "/nonexistent", 0}},
	{"init_module", 175, []any{0, 0, ""}},
	{"io_uring_enter", 426, []any{-1, 0, 0, 0, 0, 0}},
	{"io_uring_register", 427, []any{-1, 0, 0, 0}},
	{"io_uring_setup", 425, []any{1, 0}},
	{"kcmp", 312, []any{0, 0, 99, 0, 0}},
	{"kexec_file_load", 320, []any{-1, -1, 0, 0, 0}},
	{"kexec_load", 246, []any{0, 0, 0, 0}},
	{"keyctl", 250, []any{0xdead, 0, 0, 0, 0}},
	{"lookup_dcookie", 212, []any{0, 0, 0}},
	{"mount", 165, []any{0, "/nonexistent", 0, 0, 0}},
	{"mount_setattr", 442, []any{-1, "", 0, 0, 0}},
	{"move_mount", 429, []any{-1, "", -1, "", 0}},
	{"name_to_handle_at", 303, []any{atFDCWD, "/nonexistent", 0, 0, 0}},
	{"open_by_handle_at", 304, []any{-1, 0, 0}},
	{"open_tree", 428, []any{atFDCWD, "/nonexistent", 0}},
	{"perf_event_open", 298, []any{0, 0, -1, -1, 0}},
	{"personality", 135, []any{0xffffffff}}, // a query; Docker's default allows it
	{"pidfd_getfd", 438, []any{-1, 0, 0}},
	{"pivot_root", 155, []any{"/nonexistent", "/nonexistent"}},
	{"process_madvise", 440, []any{-1, 0, 0, 0, 0}},
	{"process_vm_readv", 310, []any{0, 0, 0, 0, 0, 1}},
	{"process_vm_writev", 311, []any{0, 0, 0, 0, 0, 1}},
	{"ptrace", 101, []any{16, 999999, 0, 0}}, // PTRACE_ATTACH to no such pid
	{"quotactl", 179, []any{0, 0, 0, 0}},
	{"quotactl_fd", 443, []any{-1, 0, 0, 0}},
	{"reboot", 169, []any{0, 0, 0, 0}},
	{"request_key", 249, []any{0, 0, 0, 0}},
	{"setns", 308, []any{-1, 0}},
	{"swapoff", 168, []any{"/nonexistent"}},
	{"swapon", 167, []any{"/nonexistent", 0}},
	{"umount", 0, nil}, // i386 only; refused there by the same rule
	{"umount2", 166, []any{"/nonexistent", 0xffffffff}},
	{"unshare", 272, []any{0}}, // succeeds when allowed
	{"userfaultfd", 323, []any{0xffffffff}},
}

// probeScript prints one JSON object: for every probe and a few clone
// variants, [return value, errno]; and "ok" or an error for fork and threads.
const probeScript = `
import ctypes, json, os, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    conv = [ctypes.c_char_p(a.encode()) if isinstance(a, str) else ctypes.c_long(a) for a in args]
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *conv)
    return [r, ctypes.get_errno()]
out = {"calls": {}}
for name, nr, args in json.loads(sys.argv[1]):
    out["calls"][name] = call(nr, *args)
out["calls"]["clone3"] = call(435, 0, 0)
SIGCHLD = 17
for name, flag in [("NEWUSER", 0x10000000), ("NEWNS", 0x20000), ("NEWPID", 0x20000000), ("NEWNET", 0x40000000)]:
    r = call(56, flag | SIGCHLD, 0, 0, 0, 0)
    if r[0] == 0:
        os._exit(0)
    if r[0] > 0:
        os.waitpid(r[0], 0)
    out["calls"]["clone_" + name] = r
out["calls"]["getpid"] = call(39)
def check(f):
    try:
        f()
        return "ok"
    except Exception as e:
        return repr(e)
def fork():
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7, status
def threads():
    got = []
    ts = [threading.Thread(target=got.append, args=(i,)) for i in range(8)]
    for t in ts: t.start()
    for t in ts: t.join()
    assert sorted(got) == list(range(8)), got
out["fork"] = check(fork)
out["threads"] = check(threads)
print(json.dumps(out))
`

// workloadScript prints one JSON object mapping each ordinary workload to
// "ok" or the error it raised.
const workloadScript = `
import json, os, threading, traceback
os.makedirs(os.environ["MPLCONFIGDIR"], exist_ok=True)
def numpy_matmul():
    import numpy as np
    a = np.arange(40000, dtype=float).reshape(200, 200)
    b = a @ a.T
    assert b.shape == (200, 200) and b[1, 1] == float((a[1] ** 2).sum())
def pandas_dataframe():
    import pandas as pd
    df = pd.DataFrame({"k": [i % 3 for i in range(300)], "v": range(300)})
    assert df.groupby("k")["v"].sum().sum() == sum(range(300))
def matplotlib_savefig():
    import matplotlib
    matplotlib.use("agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [3, 1, 2])
    fig.savefig("/dev/null", format="png")
def plotly_to_json():
    import plotly.graph_objects as go
    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2]))
    assert json.loads(fig.to_json())["data"][0]["type"] == "scatter"
def threads():
    got = []
    ts = [threading.Thread(target=lambda i=i: got.append(i * i)) for i in range(16)]
    for t in ts: t.start()
    for t in ts: t.join()
    assert sorted(got) == [i * i for i in range(16)]
out = {}
for f in (numpy_matmul, pandas_dataframe, matplotlib_savefig, plotly_to_json, threads):
    try:
        f()
        out[f.__name__] = "ok"
    except BaseException:
        out[f.__name__] = traceback.format_exc()
print(json.dumps(out))
`

func TestProfileOnEngine(t *testing.T) {
	cli := requireEngine(t)
	image := testImage(t, cli)
	res, err := cli.Info(t.Context(), client.InfoOptions{})
	if err != nil {
		t.Fatalf("engine info: %v", err)
	}
	if info := res.Info; info.Architecture != "x86_64" {
		t.Skipf("system call numbers in this test are for x86_64, engine runs on %s", info.Architecture)
	}
	profile, err := seccomp.Profile()
	if err != nil {
		t.Fatal(err)
	}
	run := runID(t)
	t.Cleanup(func() { assertNoContainers(t, cli, run) })
	ours := []string{"seccomp=" + string(profile), "no-new-privileges"}

	probeArgs := make([][]any, 0, len(probes))
	for _, p := range probes {
		if p.nr != 0 {
			probeArgs = append(probeArgs, []any{p.name, p.nr, p.args})
		}
	}
	probeJSON, err := json.Marshal(probeArgs)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("denied", func(t *testing.T) {
		t.Parallel()
		for _, name := range seccomp.Denied() {
			if !slices.ContainsFunc(probes, func(p probe) bool { return p.name == name }) {
				t.Errorf("no probe for denied call %s", name)
			}
		}
		var got struct {
			Calls   map[string][2]int64
			Fork    string
			Threads string
		}
		decode(t, runPython(t, cli, image, run, ours, probeScript, string(probeJSON)), &got)
		if r := got.Calls["getpid"]; r[0] <= 0 {
			t.Fatalf("control call getpid returned %d errno %d: the probe is broken", r[0], r[1])
		}
		for _, p := range probes {
			if p.nr == 0 {
				continue
			}
			t.Run(p.name, func(t *testing.T) {
				if r := got.Calls[p.name]; r != [2]int64{-1, eperm} {
					t.Errorf("got return %d errno %d, want -1 EPERM", r[0], r[1])
				}
			})
		}
		for _, ns := range []string{"NEWUSER", "NEWNS", "NEWPID", "NEWNET"} {
			t.Run("clone_"+ns, func(t *testing.T) {
				if r := got.Calls["clone_"+ns]; r != [2]int64{-1, eperm} {
					t.Errorf("got return %d errno %d, want -1 EPERM", r[0], r[1])
				}
			})
		}
		t.Run("clone3", func(t *testing.T) {
			if r := got.Calls["clone3"]; r != [2]int64{-1, enosys} {
				t.Errorf("got return %d errno %d, want -1 ENOSYS", r[0], r[1])
			}
		})
		if got.Fork != "ok" {
			t.Errorf("fork: %s", got.Fork)
		}
		if got.Threads != "ok" {
			t.Errorf("threads: %s", got.Threads)
		}
	})

	t.Run("workloads", func(t *testing.T) {
		t.Parallel()
		var got map[string]string
		decode(t, runPython(t, cli, image, run, ours, workloadScript), &got)
		for _, name := range []string{"numpy_matmul", "pandas_dataframe", "matplotlib_savefig", "plotly_to_json", "threads"} {
			t.Run(name, func(t *testing.T) {
				if r, ok := got[name]; !ok || r != "ok" {
					t.Errorf("failed:\n%s", r)
				}
			})
		}
	})

	// The engine's own default lets through calls ours refuses, which shows
	// that the probes tell the two apart. Every Docker default since 19.03
	// allows these two (ptrace on kernels from 4.8); what else it allows
	// depends on the engine version (20.10 also allows io_uring_*).
	t.Run("engine_default_is_looser", func(t *testing.T) {
		t.Parallel()
		var got struct{ Calls map[string][2]int64 }
		decode(t, runPython(t, cli, image, run, []string{"no-new-privileges"}, probeScript, string(probeJSON)), &got)
		for _, name := range []string{"personality", "ptrace"} {
			if r := got.Calls[name]; r[1] == eperm {
				t.Errorf("%s: got EPERM under the engine's default profile too", name)
			}
		}
		for _, name := range seccomp.Denied() {
			if r, ok := got.Calls[name]; ok && r[1] != eperm {
				t.Logf("engine default lets %s through (return %d errno %d)", name, r[0], r[1])
			}
		}
	})
}

// requireEngine returns a client for the engine named by DOCKER_* variables.
// It skips the test under -short or when no engine answers a ping within 2 s,
// and fails instead when PYEXEC_REQUIRE_DOCKER=1.
func requireEngine(t *testing.T) *client.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("real engine test skipped under -short")
	}
	cli, err := client.New(client.FromEnv) // negotiates the API version
	if err == nil {
		t.Cleanup(func() { _ = cli.Close() })
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err = cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	}
	if err != nil {
		skipOrFail(t, "no Docker engine: %v", err)
	}
	return cli
}

// testImage is the analytics image the service itself builds and runs.
func testImage(t *testing.T, cli *client.Client) string {
	t.Helper()
	return dockertest.Image(t, cli)
}

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("PYEXEC_REQUIRE_DOCKER") == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// scaled multiplies d by PYEXEC_TEST_TIMEOUT_MULT, for slow machines.
func scaled(t *testing.T, d time.Duration) time.Duration {
	t.Helper()
	s := os.Getenv("PYEXEC_TEST_TIMEOUT_MULT")
	if s == "" {
		return d
	}
	m, err := strconv.ParseFloat(s, 64)
	if err != nil || m <= 0 {
		t.Fatalf("PYEXEC_TEST_TIMEOUT_MULT=%q: want a positive number", s)
	}
	return time.Duration(float64(d) * m)
}

func runID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// runPython runs script in a fresh hardened container and returns its
// stdout; it fails the test on a non-zero exit. The container is removed
// before it returns.
func runPython(t *testing.T, cli *client.Client, image, run string, securityOpt []string, script string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), scaled(t, 2*time.Minute))
	defer cancel()
	pids := int64(64)
	created, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image:      image,
			Entrypoint: append([]string{"/usr/bin/python3", "-c", script}, args...),
			User:       "10001:10001",
			Env:        []string{"MPLCONFIGDIR=/tmp/.matplotlib"},
			WorkingDir: "/tmp",
			Labels:     map[string]string{testLabel: run},
		},
		HostConfig: &container.HostConfig{
			SecurityOpt:    securityOpt,
			CapDrop:        []string{"ALL"},
			NetworkMode:    "none",
			ReadonlyRootfs: true,
			AutoRemove:     false,
			Tmpfs:          map[string]string{"/tmp": "rw,nosuid,nodev,noexec,size=64m"},
			Resources: container.Resources{
				Memory:    1 << 30,
				PidsLimit: &pids,
			},
		},
	})
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	defer removeContainer(t, cli, created.ID)

	// Wait for the next exit before starting, so a fast exit is not missed.
	wait := cli.ContainerWait(ctx, created.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start container: %v", err)
	}
	var exit int64
	select {
	case w := <-wait.Result:
		if w.Error != nil {
			t.Fatalf("wait container: %s", w.Error.Message)
		}
		exit = w.StatusCode
	case err := <-wait.Error:
		t.Fatalf("wait container: %v", err)
	case <-ctx.Done():
		t.Fatalf("wait container: %v", ctx.Err())
	}

	rc, err := cli.ContainerLogs(ctx, created.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("container logs: %v", err)
	}
	defer rc.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, io.LimitReader(rc, 4<<20)); err != nil {
		t.Fatalf("read container logs: %v", err)
	}
	if exit != 0 {
		t.Fatalf("python exited with %d\nstdout:\n%s\nstderr:\n%s", exit, &stdout, &stderr)
	}
	if stderr.Len() > 0 {
		t.Logf("stderr:\n%s", &stderr)
	}
	return stdout.Bytes()
}

func removeContainer(t *testing.T, cli *client.Client, id string) {
	t.Helper()
	// t.Context may be done already; removal must still happen.
	ctx, cancel := context.WithTimeout(context.Background(), scaled(t, 30*time.Second))
	defer cancel()
	_, err := cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		t.Errorf("remove container %.12s: %v", id, err)
	}
}

// assertNoContainers fails the test if any container of this run is left,
// and removes it.
func assertNoContainers(t *testing.T, cli *client.Client, run string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scaled(t, 30*time.Second))
	defer cancel()
	left, err := cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", testLabel+"="+run),
	})
	if err != nil {
		t.Errorf("list containers: %v", err)
		return
	}
	for _, c := range left.Items {
		t.Errorf("container %.12s (%s) left behind", c.ID, c.State)
		removeContainer(t, cli, c.ID)
	}
}

func decode(t *testing.T, out []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(bytes.TrimSpace(out), v); err != nil {
		t.Fatalf("decode output %q: %v", strings.TrimSpace(string(out)), err)
	}
	if testing.Verbose() {
		t.Logf("output: %s", bytes.TrimSpace(out))
	}
}
