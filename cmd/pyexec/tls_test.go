package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/internal/engine"
	"github.com/pyexec/pyexec/internal/loadgen"
)

// TestEngineOverTLS starts a second dockerd on this machine (its own data
// root, exec root, pidfile and socket) listening on 127.0.0.1 with mutual
// TLS, loads the analytics image into it from the main engine, and runs
// the real binary against it:
//
//   - with the client certificate (DOCKER_TLS_CA/_CERT/_KEY, then
//     DOCKER_CERT_PATH with DOCKER_TLS_VERIFY) an execution runs, and its
//     container is on the second engine, not the main one;
//   - without a client certificate, with one from another CA, or with a
//     CA that did not sign the engine's certificate, pyexec stops at
//     start-up with a message naming the setting and the TLS reason.
//
// The engine runs in a subtest, so that its cleanup (containers removed,
// dockerd stopped, state removed) has run when the test checks that no
// process of it is left and its directory is gone.
func TestEngineOverTLS(t *testing.T) {
	cli := dockertest.Require(t) // shared: the image is saved from the main engine
	begin := time.Now()
	var left dockertest.SecondEngineProcesses
	t.Run("second_engine", func(t *testing.T) { left = testEngineOverTLS(t, cli) })
	if left.Dockerd == 0 {
		return // it did not start; the subtest says why
	}
	for name, pid := range map[string]int{"dockerd": left.Dockerd, "containerd": left.Containerd} {
		if pid > 0 && dockertest.ProcessAlive(pid) {
			t.Errorf("the second engine's %s (pid %d) is still running", name, pid)
		}
	}
	if _, err := os.Stat(left.Dir); !os.IsNotExist(err) {
		t.Errorf("the second engine's state %s is still there (%v)", left.Dir, err)
	}
	t.Logf("whole test: %v", time.Since(begin).Round(time.Millisecond))
}

func testEngineOverTLS(t *testing.T, cli *client.Client) dockertest.SecondEngineProcesses {
	begin := time.Now()
	root, err := dockertest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := loadgen.Build(root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// The binary's own image tag (its embedded context may be newer than
	// this test binary's), built on the main engine if missing.
	tag := binaryImage(t, bin)

	certs := t.TempDir()
	ca := dockertest.NewCA(t, certs, "ca")
	other := dockertest.NewCA(t, certs, "other-ca")
	srvCert, srvKey := ca.Server(t, certs, "server", "127.0.0.1", "localhost")
	cliCert, cliKey := ca.Client(t, certs, "client")
	strangerCert, strangerKey := other.Client(t, certs, "stranger")

	eng := dockertest.StartSecondEngine(t, dockertest.SecondEngineTLS{CAFile: ca.File, CertFile: srvCert, KeyFile: srvKey})
	t.Logf("second engine up in %v at %s (state in %s)", time.Since(begin).Round(time.Millisecond), eng.TCPHost, eng.Dir)
	copied := eng.CopyImage(t, cli, tag)
	t.Logf("docker save | docker load of %s: %v", tag, copied.Round(time.Millisecond))
	procs := eng.Processes()
	if procs.Dockerd == 0 || !dockertest.ProcessAlive(procs.Dockerd) {
		t.Fatalf("the pidfile %s names no running dockerd (%d)", eng.PIDFile, procs.Dockerd)
	}

	// DOCKER_CERT_PATH wants ca.pem, cert.pem and key.pem in one directory.
	certPath := filepath.Join(certs, "docker")
	if err := os.Mkdir(certPath, 0o700); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{ca.File: "ca.pem", cliCert: "cert.pem", cliKey: "key.pem"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(certPath, dst), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	explicit := func(caFile, cert, key string) []string {
		return []string{"DOCKER_HOST=" + eng.TCPHost, "DOCKER_TLS_CA=" + caFile, "DOCKER_TLS_CERT=" + cert, "DOCKER_TLS_KEY=" + key}
	}

	t.Run("explicit_files", func(t *testing.T) {
		runOnSecondEngine(t, cli, eng, bin, explicit(ca.File, cliCert, cliKey))
	})
	t.Run("cert_path", func(t *testing.T) {
		runOnSecondEngine(t, cli, eng, bin, []string{"DOCKER_HOST=" + eng.TCPHost, "DOCKER_CERT_PATH=" + certPath, "DOCKER_TLS_VERIFY=1"})
	})

	t.Run("no_client_certificate", func(t *testing.T) {
		// pyexec itself refuses to connect without one...
		out, code := refusedAtStart(t, bin, []string{"DOCKER_HOST=" + eng.TCPHost, "DOCKER_TLS_CA=" + ca.File})
		if code != 2 || !strings.Contains(out, "DOCKER_TLS_CERT") || !strings.Contains(out, "mutual TLS") {
			t.Errorf("exit %d, want 2 with a message naming DOCKER_TLS_CERT:\n%s", code, out)
		}
		// ...and the engine refuses a client that has none.
		tcfg, err := tlsWithoutClientCert(ca.File)
		if err != nil {
			t.Fatal(err)
		}
		hc, err := client.New(client.WithHTTPClient(&http.Client{Transport: &http.Transport{TLSClientConfig: tcfg}}), client.WithHost(eng.TCPHost))
		if err != nil {
			t.Fatal(err)
		}
		defer hc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, perr := hc.Ping(ctx, client.PingOptions{})
		if perr == nil {
			t.Fatal("the engine answered a client without a certificate")
		}
		serr := engine.StartupError(engine.Settings{Host: eng.TCPHost}, perr)
		if serr == nil || !strings.Contains(serr.Error(), "tls") {
			t.Errorf("the refusal %q is not classified as a TLS failure (%v)", perr, serr)
		}
		t.Logf("engine's answer to a client without a certificate: %v", perr)
	})

	t.Run("client_certificate_from_another_ca", func(t *testing.T) {
		out, code := refusedAtStart(t, bin, explicit(ca.File, strangerCert, strangerKey))
		if code != 1 || !strings.Contains(out, "DOCKER_TLS_CERT") || !regexp.MustCompile(`remote error: tls: (bad certificate|unknown certificate authority|certificate required|handshake failure)`).MatchString(out) {
			t.Errorf("exit %d, want 1 naming DOCKER_TLS_CERT and the engine's TLS alert:\n%s", code, out)
		}
	})

	t.Run("wrong_server_ca", func(t *testing.T) {
		out, code := refusedAtStart(t, bin, explicit(other.File, cliCert, cliKey))
		if code != 1 || !strings.Contains(out, "DOCKER_TLS_CA") || !strings.Contains(out, "x509: certificate signed by unknown authority") {
			t.Errorf("exit %d, want 1 naming DOCKER_TLS_CA and the x509 reason:\n%s", code, out)
		}
	})

	t.Run("verify_without_certificates", func(t *testing.T) {
		// DOCKER_TLS_VERIFY without certificates is refused by the
		// configuration; the docker CLI would look in ~/.docker.
		out, code := refusedAtStart(t, bin, []string{"DOCKER_HOST=" + eng.TCPHost, "DOCKER_TLS_VERIFY=1"})
		if code != 2 || !strings.Contains(out, "DOCKER_CERT_PATH") {
			t.Errorf("exit %d, want 2 naming DOCKER_CERT_PATH:\n%s", code, out)
		}
	})

	t.Run("unreachable_engine_keeps_serving", func(t *testing.T) {
		// An engine that does not answer is an outage, not a
		// misconfiguration: the service starts, /livez answers, /readyz
		// says why it is not ready, and it retries.
		port, err := loadgen.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		dead := fmt.Sprintf("tcp://127.0.0.1:%d", port)
		svcPort, err := loadgen.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		svc, err := loadgen.Start(bin, svcPort, append([]string{"SERVICE_ID=" + dockertest.Owner(t), "BUILD_IMAGE=false"},
			"DOCKER_HOST="+dead, "DOCKER_TLS_CA="+ca.File, "DOCKER_TLS_CERT="+cliCert, "DOCKER_TLS_KEY="+cliKey), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := svc.Stop(dockertest.Scale(30 * time.Second)); err != nil {
				t.Errorf("exit after SIGTERM: %v", err)
			}
		}()
		var probe struct {
			Status, Reason, Message string
		}
		code := 0
		dockertest.WaitFor(t, "/readyz to answer", 30*time.Second, func() bool {
			resp, err := http.Get(svc.URL + "/readyz")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			code = resp.StatusCode
			return json.NewDecoder(resp.Body).Decode(&probe) == nil
		})
		if code != http.StatusServiceUnavailable || probe.Reason != "engine_unavailable" || !strings.Contains(probe.Message, strconv.Itoa(port)) {
			t.Errorf("/readyz %d %+v: want 503 engine_unavailable naming port %d", code, probe, port)
		}
		resp, err := http.Get(svc.URL + "/livez")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("/livez: %v %v", resp, err)
		} else {
			resp.Body.Close()
		}
		select {
		case <-svc.Exited():
			t.Fatalf("exited with the engine unreachable: %v\n%s", svc.ExitErr, svc.Logs.String())
		default:
		}
	})

	t.Run("plain_tcp_to_a_tls_port", func(t *testing.T) {
		out, code := refusedAtStart(t, bin, []string{"DOCKER_HOST=" + eng.TCPHost})
		if code != 1 || !strings.Contains(out, "engine speaks TLS") || !strings.Contains(out, "DOCKER_TLS_CA") {
			t.Errorf("exit %d, want 1 saying the engine speaks TLS and naming DOCKER_TLS_CA:\n%s", code, out)
		}
	})

	// Nothing of the subtests is left on the second engine.
	list, err := eng.Local.ContainerList(context.Background(), client.ContainerListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) > 0 {
		t.Errorf("%d container(s) left on the second engine", len(list.Items))
	}
	t.Logf("second engine part: %v", time.Since(begin).Round(time.Millisecond))
	return procs
}

// runOnSecondEngine starts the binary with env against the second engine,
// runs a slow execution, and checks that its containers are on the second
// engine while it runs, never on the main one, and gone after.
func runOnSecondEngine(t *testing.T, main *client.Client, eng *dockertest.SecondEngine, bin string, env []string) {
	owner := dockertest.Owner(t)
	port, err := loadgen.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	svc, err := loadgen.Start(bin, port, append([]string{
		"SERVICE_ID=" + owner,
		"BUILD_IMAGE=false",
		"MAX_WORKERS=2",
		"POOL_SIZE=1",
		"POLICY=off",
		"LOG_LEVEL=info",
	}, env...), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := svc.Stop(dockertest.Scale(60 * time.Second)); err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
		if t.Failed() {
			t.Logf("service output:\n%s", tail(svc.Logs.String(), 8<<10))
		}
		dockertest.AssertNoContainers(t, eng.Local, owner)
		dockertest.AssertNoContainers(t, main, owner)
	})
	if err := svc.WaitReady(dockertest.Scale(3*time.Minute), 1); err != nil {
		t.Fatalf("%v\n%s", err, tail(svc.Logs.String(), 8<<10))
	}
	if !strings.Contains(svc.Logs.String(), eng.TCPHost) {
		t.Errorf("the start-up log does not name the engine %s", eng.TCPHost)
	}

	// The code sleeps while the test lists both engines, then prints the
	// container's own ID as its cgroup shows it.
	code := "import time, re\n" +
		"time.sleep(4)\n" +
		"ids = re.findall(r'[0-9a-f]{64}', open('/proc/self/cgroup').read())\n" +
		"print('容器', ids[0] if ids else '')\n" +
		"print(sum(range(10)))\n"
	body, _ := json.Marshal(map[string]any{"code": code, "timeout": 30})
	type result struct {
		status int
		body   []byte
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Post(svc.URL+"/execute", "application/json", bytes.NewReader(body))
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{resp.StatusCode, b, err}
	}()

	// While it runs: the owner's containers are on the second engine
	// (the execution's and the warm one), none on the main engine.
	sawRunning := false
	deadline := time.Now().Add(dockertest.Scale(3 * time.Second))
	for time.Now().Before(deadline) {
		onSecond := dockertest.Containers(t, eng.Local, owner)
		onMain := dockertest.Containers(t, main, owner)
		if len(onMain) > 0 {
			t.Fatalf("%d container(s) of %s on the main engine", len(onMain), owner)
		}
		running := 0
		for _, c := range onSecond {
			if c.State == "running" {
				running++
			}
		}
		if running >= 1 {
			sawRunning = true
			t.Logf("during the execution: %d container(s) of %s on the second engine (%d running), 0 on the main one", len(onSecond), owner, running)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !sawRunning {
		t.Errorf("no running container of %s on the second engine during the execution", owner)
	}

	var r result
	select {
	case r = <-done:
	case <-time.After(dockertest.Scale(2 * time.Minute)):
		t.Fatal("execution did not answer")
	}
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("execute: %d %v %s", r.status, r.err, r.body)
	}
	var ans struct {
		Status string `json:"status"`
		Output struct {
			Stdout string `json:"stdout"`
		} `json:"output"`
	}
	if err := json.Unmarshal(r.body, &ans); err != nil {
		t.Fatal(err)
	}
	if ans.Status != "success" {
		t.Fatalf("execution %s: %s", ans.Status, r.body)
	}
	m := regexp.MustCompile(`容器 ([0-9a-f]{64})\n45\n$`).FindStringSubmatch(ans.Output.Stdout)
	if m == nil {
		t.Fatalf("stdout %q: want the container ID and 45", ans.Output.Stdout)
	}
	// The execution's container: known to the second engine (it may be
	// removed already), unknown to the main one.
	if err := containerKnown(eng, m[1]); err != nil {
		t.Errorf("container %.12s of the execution: %v", m[1], err)
	}
	if _, err := main.ContainerInspect(context.Background(), m[1], client.ContainerInspectOptions{}); err == nil {
		t.Errorf("container %.12s of the execution is on the main engine", m[1])
	}
}

// containerKnown checks that id ran on the second engine: it is still
// there, or the engine's event log has it.
func containerKnown(eng *dockertest.SecondEngine, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := eng.Local.ContainerInspect(ctx, id, client.ContainerInspectOptions{}); err == nil {
		return nil
	}
	ev := eng.Local.Events(ctx, client.EventsListOptions{
		Since:   "0",
		Until:   fmt.Sprint(time.Now().Unix()),
		Filters: make(client.Filters).Add("container", id).Add("event", "start"),
	})
	select {
	case m := <-ev.Messages:
		if m.Actor.ID == id {
			return nil
		}
		return fmt.Errorf("event for %s", m.Actor.ID)
	case err := <-ev.Err:
		if err == io.EOF || err == nil {
			return fmt.Errorf("no start event on the second engine")
		}
		return err
	}
}

// refusedAtStart runs the binary with env and expects it to exit on its
// own; it returns the output and the exit code.
func refusedAtStart(t *testing.T, bin string, env []string) (string, int) {
	t.Helper()
	port, err := loadgen.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	svc, err := loadgen.Start(bin, port, append([]string{"SERVICE_ID=" + dockertest.Owner(t), "BUILD_IMAGE=false"}, env...), nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-svc.Exited():
	case <-time.After(dockertest.Scale(30 * time.Second)):
		_ = svc.Stop(10 * time.Second)
		t.Fatalf("still running 30 s after start; want a refusal:\n%s", svc.Logs.String())
	}
	code := -1
	if svc.ExitErr == nil {
		code = 0
	} else if ee, ok := svc.ExitErr.(interface{ ExitCode() int }); ok {
		code = ee.ExitCode()
	}
	out := svc.Logs.String()
	t.Logf("exit %d: %s", code, strings.TrimSpace(out))
	return out, code
}

// binaryImage runs bin -build-image against the main engine and returns
// the tag it prints.
func binaryImage(t *testing.T, bin string) string {
	t.Helper()
	cmd := exec.Command(bin, "-build-image")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s -build-image: %v\n%s", bin, err, tail(stderr.String(), 4<<10))
	}
	fields := strings.Fields(string(out))
	if len(fields) == 0 {
		t.Fatalf("%s -build-image printed no tag", bin)
	}
	return fields[len(fields)-1]
}

// tlsWithoutClientCert trusts caFile and presents no certificate.
func tlsWithoutClientCert(caFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}

// TestConfigEngineSettings checks that loadConfig reads the engine
// settings and that a bad one stops start-up naming it.
func TestConfigEngineSettings(t *testing.T) {
	dir := t.TempDir()
	ca := dockertest.NewCA(t, dir, "ca")
	cert, key := ca.Client(t, dir, "client")
	good := map[string]string{
		"DOCKER_HOST":     "tcp://sandbox.internal:2376",
		"DOCKER_TLS_CA":   ca.File,
		"DOCKER_TLS_CERT": cert,
		"DOCKER_TLS_KEY":  key,
	}
	c, err := loadConfig(env(good))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Engine.TLS() || c.Engine.Host != good["DOCKER_HOST"] || c.Engine.CertFile != cert {
		t.Errorf("engine settings %+v", c.Engine)
	}
	if c, err := loadConfig(env(nil)); err != nil || c.Engine.TLS() || c.Engine.Host != "" {
		t.Errorf("defaults: %+v %v", c.Engine, err)
	}
	for name, change := range map[string]map[string]string{
		"DOCKER_TLS_KEY":  {"DOCKER_TLS_KEY": ""},
		"DOCKER_TLS_CA":   {"DOCKER_TLS_CA": filepath.Join(dir, "missing.pem")},
		"DOCKER_HOST":     {"DOCKER_HOST": "unix:///var/run/docker.sock"},
		"DOCKER_TLS_CERT": {"DOCKER_TLS_CERT": ca.File}, // a CA certificate without its key
	} {
		m := map[string]string{}
		for k, v := range good {
			m[k] = v
		}
		for k, v := range change {
			m[k] = v
		}
		if _, err := loadConfig(env(m)); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%v: %v, want an error naming %s", change, err, name)
		}
	}
}
