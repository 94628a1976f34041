package compose_test

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/internal/loadgen"
)

// swarmImage is the service image the stack runs: `docker stack deploy`
// builds nothing, and make service-image makes this one.
const swarmImage = "pyexec:latest"

// TestSwarmStack deploys stack.yml on a single-node swarm made here
// (swarm init on 127.0.0.1), checks it answers through the routing mesh,
// then removes the stack, leaves the swarm and checks what the engine still
// holds against what it held before.
func TestSwarmStack(t *testing.T) {
	dockerCLI(t)
	cli := dockertest.RequireExclusive(t)
	state, err := run(30*time.Second, nil, "docker", "info", "-f", "{{.Swarm.LocalNodeState}}")
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.TrimSpace(state); s != "inactive" {
		t.Fatalf("this engine's swarm state is %q: the test makes its own swarm and will not touch one", s)
	}
	if _, err := run(30*time.Second, nil, "docker", "image", "inspect", swarmImage); err != nil {
		t.Fatalf("%s missing (run make service-image): %v", swarmImage, err)
	}
	host, err := run(30*time.Second, nil, "docker", "info", "-f", "{{.Name}}")
	if err != nil {
		t.Fatal(err)
	}
	networks := func() map[string]bool {
		out, err := run(30*time.Second, nil, "docker", "network", "ls", "--format", "{{.Name}}")
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, n := range strings.Fields(out) {
			m[n] = true
		}
		return m
	}
	before := networks()

	suffix := randomSuffix()
	name := "pyexecswarm" + suffix
	prefix := "pyexec-swarm-test-" + suffix
	owner := prefix + "-" + strings.TrimSpace(host)
	port, err := loadgen.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	swarmPort, err := loadgen.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	// The routing mesh needs IPVS in the kernel; without it (as on this
	// machine's kernel) the published port never answers, so the test
	// publishes in host mode there and says so.
	publish := "ingress"
	if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
		publish = "host"
		t.Logf("no IPVS in this kernel (/proc/net/ip_vs: %v): the routing mesh cannot work; publishing in host mode", err)
	}
	env := []string{
		"PYEXEC_PUBLISH_MODE=" + publish,
		"PYEXEC_IMAGE=" + swarmImage,
		"PYEXEC_PORT=" + strconv.Itoa(port),
		"PYEXEC_SERVICE_ID_PREFIX=" + prefix,
		"MAX_WORKERS=2",
	}
	stackContainers := func() []string {
		out, err := run(30*time.Second, nil, "docker", "ps", "-aq", "--filter", "label=com.docker.stack.namespace="+name)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(out)
	}

	start := time.Now()
	if _, err := run(2*time.Minute, nil, "docker", "swarm", "init", "--advertise-addr", "127.0.0.1",
		"--listen-addr", "127.0.0.1:"+strconv.Itoa(swarmPort)); err != nil {
		t.Fatalf("swarm init: %v", err)
	}
	deployed := false
	t.Cleanup(func() {
		if deployed {
			if out, err := run(2*time.Minute, nil, "docker", "stack", "rm", name); err != nil {
				t.Errorf("stack rm: %v\n%s", err, out)
			}
			dockertest.WaitFor(t, "the stack's containers gone", 3*time.Minute, func() bool {
				time.Sleep(500 * time.Millisecond)
				return len(stackContainers()) == 0
			})
			dockertest.WaitFor(t, "the stack's network gone", 2*time.Minute, func() bool {
				time.Sleep(500 * time.Millisecond)
				return !networks()[name+"_default"]
			})
		}
		if out, err := run(2*time.Minute, nil, "docker", "swarm", "leave", "--force"); err != nil {
			t.Errorf("swarm leave: %v\n%s", err, out)
		}
		// Leaving removes ingress; docker_gwbridge (the swarm's bridge to
		// the host) stays with the engine: remove it when the swarm made it.
		var left []string
		dockertest.WaitFor(t, "the swarm's networks gone", time.Minute, func() bool {
			left = left[:0]
			for n := range networks() {
				if !before[n] {
					left = append(left, n)
				}
			}
			return len(left) == 0 || (len(left) == 1 && left[0] == "docker_gwbridge")
		})
		if len(left) == 1 {
			t.Logf("after swarm leave the engine still holds network docker_gwbridge (made by swarm init, not removed by leave): removing it")
			if out, err := run(time.Minute, nil, "docker", "network", "rm", "docker_gwbridge"); err != nil {
				t.Errorf("network rm docker_gwbridge: %v\n%s", err, out)
			}
		}
		var extra []string
		for n := range networks() {
			if !before[n] {
				extra = append(extra, n)
			}
		}
		if len(extra) > 0 {
			t.Errorf("networks left after the swarm test: %v", extra)
		}
		if c := stackContainers(); len(c) > 0 {
			t.Errorf("containers of the stack left: %v", c)
		}
		if st, _ := run(30*time.Second, nil, "docker", "info", "-f", "{{.Swarm.LocalNodeState}}"); strings.TrimSpace(st) != "inactive" {
			t.Errorf("swarm state after leave: %q", strings.TrimSpace(st))
		}
		dockertest.AssertNoContainers(t, cli, owner)
		t.Logf("swarm test, init to clean: %v", time.Since(start).Round(time.Second))
	})

	if out, err := run(3*time.Minute, env, "docker", "stack", "deploy", "--resolve-image", "never",
		"-c", "stack.yml", name); err != nil {
		t.Fatalf("stack deploy: %v\n%s", err, out)
	}
	deployed = true
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	var last answer
	dockertest.WaitFor(t, "the stack ready on its published port ("+publish+" mode)", 4*time.Minute, func() bool {
		last = do("GET", base+"/readyz", nil, nil, 5*time.Second)
		if last.status == http.StatusOK {
			return true
		}
		time.Sleep(time.Second)
		return false
	})
	t.Logf("stack ready on its published port (%s mode) %v after swarm init", publish, time.Since(start).Round(time.Millisecond))
	if last.servedBy != owner {
		t.Errorf("X-Served-By %q, want %q (SERVICE_ID templated with the node's hostname)", last.servedBy, owner)
	}
	a := do("POST", base+"/execute", map[string]any{"code": "print('你好, swarm')"}, nil, 2*time.Minute)
	if a.status != http.StatusOK || !strings.Contains(string(a.body), `你好, swarm\n`) {
		t.Errorf("POST /execute through the published port: %v", a)
	}
	// The task's container runs the healthcheck (GET /livez) and is healthy.
	dockertest.WaitFor(t, "the task's container healthy", 2*time.Minute, func() bool {
		time.Sleep(time.Second)
		ids := stackContainers()
		return len(ids) == 1 && inspect(t, ids[0], "{{if .State.Health}}{{.State.Health.Status}}{{end}}") == "healthy"
	})
	// Global mode: one task on this one node.
	out, err := run(30*time.Second, nil, "docker", "service", "ls", "--filter", "name="+name+"_pyexec", "--format", "{{.Mode}} {{.Replicas}}")
	if err != nil || strings.TrimSpace(out) != "global 1/1" {
		t.Errorf("service mode and replicas: %q (%v), want \"global 1/1\"", strings.TrimSpace(out), err)
	}
}
