package dockertest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// SecondEngine is a dockerd of the test's own, beside the main engine: its
// own data root, exec root (and so its own containerd, which dockerd starts
// under it), pidfile, unix socket, and a TCP port on 127.0.0.1 that takes
// only mutual TLS. It has a bridge of its own (never docker0) and touches no
// iptables (sandboxes use network none). The test's cleanup stops it and removes all its state.
type SecondEngine struct {
	// Dir holds all its state; removed at cleanup.
	Dir string
	// TCPHost is tcp://127.0.0.1:port, mutual TLS against the CA given.
	TCPHost string
	// Local is a client over its unix socket, without TLS, for the test.
	Local *client.Client
	// PIDFile is dockerd's pidfile.
	PIDFile string

	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

// SecondEngineTLS is the engine's TLS material: the CA its clients'
// certificates must chain to, and its server certificate.
type SecondEngineTLS struct {
	CAFile, CertFile, KeyFile string
}

// StartSecondEngine starts the engine and waits until it answers on both
// its socket and its TLS port (up to a minute, scaled). Without dockerd on
// this machine the test skips (fails when PYEXEC_REQUIRE_DOCKER=1).
func StartSecondEngine(t testing.TB, tlsFiles SecondEngineTLS) *SecondEngine {
	t.Helper()
	dockerd, err := exec.LookPath("dockerd")
	if err == nil && os.Geteuid() != 0 {
		err = fmt.Errorf("dockerd needs root (euid %d)", os.Geteuid())
	}
	if err != nil {
		if Required() {
			t.Fatalf("second engine: %v", err)
		}
		t.Skipf("second engine: %v", err)
	}
	// Short paths: containerd's sockets under the exec root must fit in
	// a unix socket address (108 bytes).
	dir, err := os.MkdirTemp("", "pxeng-")
	if err != nil {
		t.Fatal(err)
	}
	e := &SecondEngine{Dir: dir, PIDFile: filepath.Join(dir, "dockerd.pid"), exited: make(chan struct{}), log: filepath.Join(dir, "dockerd.log")}
	port, err := freeTCPPort()
	if err != nil {
		t.Fatal(err)
	}
	e.TCPHost = "tcp://127.0.0.1:" + strconv.Itoa(port)
	sock := "unix://" + filepath.Join(dir, "docker.sock")
	// An empty configuration file, so that the machine's
	// /etc/docker/daemon.json (the main engine's) does not apply.
	conf := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(conf, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A bridge of its own: with --bridge=none, dockerd 20.10 deletes the
	// host's docker0 (removeDefaultBridgeInterface) and so breaks the main
	// engine's default network, since both share the host's netns.
	br := fmt.Sprintf("pxe%d", port)
	subnet := fmt.Sprintf("10.254.%d.1/24", port%250)
	for _, args := range [][]string{
		{"link", "add", br, "type", "bridge"},
		{"addr", "add", subnet, "dev", br},
		{"link", "set", br, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("second engine: ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", br).Run() })
	t.Cleanup(func() { e.stop(t) }) // before the bridge goes (LIFO)
	logf, err := os.Create(e.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	e.cmd = exec.Command(dockerd,
		"--config-file="+conf,
		"--data-root="+filepath.Join(dir, "data"),
		"--exec-root="+filepath.Join(dir, "exec"),
		"--pidfile="+e.PIDFile,
		"-H", sock,
		"-H", e.TCPHost,
		"--tlsverify",
		"--tlscacert="+tlsFiles.CAFile,
		"--tlscert="+tlsFiles.CertFile,
		"--tlskey="+tlsFiles.KeyFile,
		"--bridge="+br,
		"--iptables=false",
		"--ip-forward=false",
		"--ip-masq=false",
		"--storage-driver=overlay2",
		"--log-level=warn",
	)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	// Its own process group: a stray signal to the test's group does
	// not reach it, and the cleanup can end the group it leaves.
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	go func() {
		_ = e.cmd.Wait()
		close(e.exited)
	}()

	e.Local, err = client.New(client.WithHost(sock))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(Scale(time.Minute))
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := e.Local.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
		cancel()
		if err == nil && tcpOpen(port) {
			break
		}
		select {
		case <-e.exited:
			t.Fatalf("second dockerd exited while starting:\n%s", e.Logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("second dockerd not up after %v: %v\n%s", Scale(time.Minute), err, e.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	return e
}

// SecondEngineProcesses are the processes of a second engine and its
// state directory, to check after its cleanup that they are gone.
type SecondEngineProcesses struct {
	Dockerd, Containerd int
	Dir                 string
}

// Processes reads dockerd's pid from its pidfile and containerd's from
// the exec root.
func (e *SecondEngine) Processes() SecondEngineProcesses {
	return SecondEngineProcesses{
		Dockerd:    readPID(e.PIDFile),
		Containerd: readPID(filepath.Join(e.Dir, "exec", "containerd", "containerd.pid")),
		Dir:        e.Dir,
	}
}

// ProcessAlive reports whether pid runs (a zombie does not).
func ProcessAlive(pid int) bool { return alive(pid) }

// Logs returns the last 8 kB of dockerd's log.
func (e *SecondEngine) Logs() string {
	b, _ := os.ReadFile(e.log)
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	return string(b)
}

// CopyImage saves ref from the engine src and loads it into this one, and
// returns how long it took.
func (e *SecondEngine) CopyImage(t testing.TB, src *client.Client, ref string) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), Scale(10*time.Minute))
	defer cancel()
	saved, err := src.ImageSave(ctx, []string{ref})
	if err != nil {
		t.Fatalf("save %s: %v", ref, err)
	}
	defer saved.Close()
	loaded, err := e.Local.ImageLoad(ctx, saved, client.ImageLoadWithQuiet(true))
	if err != nil {
		t.Fatalf("load %s: %v", ref, err)
	}
	defer loaded.Close()
	// The load's answer is a JSON stream; an error in it is a failure.
	dec := json.NewDecoder(loaded)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("load %s: %v", ref, err)
		}
		if msg.Error != "" {
			t.Fatalf("load %s: %s", ref, msg.Error)
		}
	}
	if _, err := e.Local.ImageInspect(ctx, ref); err != nil {
		t.Fatalf("load %s: not on the second engine: %v", ref, err)
	}
	return time.Since(start)
}

// stop removes the engine's containers, stops dockerd (SIGTERM, then
// SIGKILL to its process group after 30 s), checks that dockerd and its
// containerd are gone, and removes the state directory.
func (e *SecondEngine) stop(t testing.TB) {
	t.Helper()
	if e.Local != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if list, err := e.Local.ContainerList(ctx, client.ContainerListOptions{All: true}); err == nil {
			for _, c := range list.Items {
				_, _ = e.Local.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
			}
		}
		cancel()
		_ = e.Local.Close()
	}
	containerdPID := readPID(filepath.Join(e.Dir, "exec", "containerd", "containerd.pid"))
	if e.cmd != nil && e.cmd.Process != nil {
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.exited:
		case <-time.After(30 * time.Second):
			t.Errorf("second dockerd still running 30 s after SIGTERM; killing its process group")
			_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
			<-e.exited
		}
		if alive(e.cmd.Process.Pid) {
			t.Errorf("second dockerd (pid %d) still alive after it exited", e.cmd.Process.Pid)
		}
	}
	// dockerd stops the containerd it started; give it a moment.
	if containerdPID > 0 {
		deadline := time.Now().Add(10 * time.Second)
		for alive(containerdPID) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if alive(containerdPID) {
			t.Errorf("second engine's containerd (pid %d) still alive; killing it", containerdPID)
			_ = syscall.Kill(containerdPID, syscall.SIGKILL)
		}
	}
	if t.Failed() {
		t.Logf("second dockerd log (%s):\n%s", e.log, e.Logs())
	}
	unmountUnder(t, e.Dir)
	if err := os.RemoveAll(e.Dir); err != nil {
		t.Errorf("remove the second engine's state %s: %v", e.Dir, err)
	}
}

// unmountUnder detaches whatever is still mounted under dir (overlay
// layers, netns, shm of a killed engine), deepest first.
func unmountUnder(t testing.TB, dir string) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 1 && strings.HasPrefix(fields[1], dir+"/") {
			mounts = append(mounts, fields[1])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil {
			t.Logf("unmount %s: %v", mounts[i], err)
		}
	}
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may hold spaces, so take what follows ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

func freeTCPPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func tcpOpen(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
