// Command pyexec is the Python execution service: it reads its settings from
// the environment, makes sure the analytics image exists, reaps containers
// left by an earlier run, and serves the REST API until SIGINT or SIGTERM.
// Should the image disappear under it (a prune), its images.Healer rebuilds
// it (BUILD_IMAGE=true) or waits for it, and the service serves again
// without a restart.
//
//	pyexec               serve
//	pyexec -build-image  build the analytics image if missing, then exit
//	pyexec -healthcheck  GET /livez of the service on this host, exit 0 or 1
//	pyexec -hash-key     read an API key on stdin, print its SHA-256 for API_KEYS_FILE
//	pyexec -mcp-stdio    serve the MCP tools over stdin/stdout (logs on stderr)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/handlers"
	"github.com/pyexec/pyexec/images"
	"github.com/pyexec/pyexec/internal/engine"
	"github.com/pyexec/pyexec/internal/keys"
	"github.com/pyexec/pyexec/internal/logctx"
	"github.com/pyexec/pyexec/policy"
	"github.com/pyexec/pyexec/runner"
)

func main() {
	buildOnly := flag.Bool("build-image", false, "build the analytics image if missing, print its tag, and exit")
	checkOnly := flag.Bool("healthcheck", false, "GET /livez of the service on this host (PORT); exit 0 if it answers 200, else 1")
	hashKeyOnly := flag.Bool("hash-key", false, "read an API key on stdin, print its hex SHA-256 for API_KEYS_FILE, and exit")
	flag.Parse()
	if *hashKeyOnly {
		hashKeyMain() // keys.go; exits
	}
	if *checkOnly {
		healthcheckMain() // healthcheck.go; exits
	}

	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pyexec: bad configuration: %v\n", err)
		os.Exit(2)
	}
	// The standard logger, so that what packages log without a request's
	// logger (the pool, the reaper) is JSON at LOG_LEVEL too.
	log := logrus.StandardLogger()
	log.SetFormatter(&logrus.JSONFormatter{})
	log.SetLevel(cfg.LogLevel)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log, *buildOnly); err != nil {
		log.WithError(err).Error("pyexec stopped")
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg Config, log *logrus.Logger, buildOnly bool) error {
	ctx = logctx.With(ctx, logrus.NewEntry(log))
	// DOCKER_HOST, DOCKER_API_VERSION and the TLS settings (validated by
	// loadConfig); without DOCKER_API_VERSION the client negotiates.
	cli, err := engine.New(cfg.Engine)
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	log.WithField("engine", cfg.Engine.Describe()).Info("docker engine")
	if cfg.Engine.Plaintext() {
		log.WithField("docker_host", cfg.Engine.Host).Warn("engine reached over TCP without TLS: whoever reaches that port is root on its host")
	}
	// Negotiate once up front. If the engine does not answer yet, the
	// client negotiates on its first request instead, and the service
	// answers 503 meanwhile. A TLS failure is no outage but a wrong
	// certificate: stop here, naming the settings.
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if _, err := cli.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		if terr := engine.StartupError(cfg.Engine, err); terr != nil {
			cancel()
			return terr
		}
		log.WithError(err).Warn("docker engine: API version not negotiated at start")
	}
	cancel()

	builder := images.New(cli, cfg.ImageRepository, log.WithField("component", "images"))
	if buildOnly {
		tag, err := builder.Ensure(ctx)
		if err != nil {
			return err
		}
		fmt.Println(tag)
		return nil
	}
	svc, err := newService(cfg, log, cli, builder)
	if err != nil {
		return err
	}
	log.WithFields(cfg.fields()).WithField("image", builder.Tag()).Info("starting")

	if n, err := svc.rn.Reap(ctx); err != nil {
		log.WithError(err).Warn("reap leftovers")
	} else if n > 0 {
		log.WithField("containers", n).Warn("removed containers left by an earlier run")
	}
	if *mcpStdio {
		return serveMCPStdio(ctx, cfg, log, svc) // mcpstdio.go: starts svc, MCP over stdin/stdout, no HTTP
	}
	svc.start(ctx)
	go watchKeys(ctx, svc.keys, log) // keys.go: SIGHUP and file changes

	srv := handlers.NewServer(net.JoinHostPort("", strconv.Itoa(cfg.Port)), svc.handler, cfg.MaxTimeout)
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.WithField("addr", srv.Addr).Info("listening")

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	return shutdown(context.WithoutCancel(ctx), cfg, log, srv, svc)
}

// service is the wired service: the runner, the image builder and healer,
// and the HTTP handler over them.
type service struct {
	cfg     Config
	cli     *client.Client
	builder *images.Builder
	healer  *images.Healer
	rn      *runner.Runner
	handler http.Handler
	// keys are the API keys, nil when off (keys.go).
	keys *keys.Store
	// started is closed when the start-up goroutine (start) has ended,
	// healed when the healer's has.
	started chan struct{}
	healed  chan struct{}
}

// newService wires the runner, the healer and the handlers, with one
// private metrics registry. Nothing runs until start.
func newService(cfg Config, log *logrus.Logger, cli *client.Client, builder *images.Builder) (*service, error) {
	s := &service{cfg: cfg, cli: cli, builder: builder, started: make(chan struct{}), healed: make(chan struct{})}
	// One private registry: the packages' metrics, Go runtime and process.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := builder.RegisterMetrics(reg); err != nil {
		return nil, err
	}

	var rules *policy.Rules
	if cfg.Policy == policy.ModeStrict {
		d := policy.Default()
		rules = &d
	}
	rn, err := runner.New(cli, runner.Options{
		Policy:          rules,
		PoolSize:        cfg.PoolSize,
		Image:           builder.Tag(),
		Owner:           cfg.ServiceID,
		MemoryBytes:     cfg.MemoryBytes,
		NanoCPUs:        cfg.NanoCPUs,
		PidsLimit:       cfg.PidsLimit,
		TmpfsBytes:      cfg.TmpfsBytes,
		MaxStreamBytes:  int(cfg.MaxOutputBytes),
		MaxWorkers:      cfg.MaxWorkers,
		MaxQueue:        cfg.MaxQueue,
		MaxTimeout:      cfg.MaxTimeout,
		PoolMaxAge:      cfg.PoolMaxAge,
		ReconcilePeriod: cfg.ReconcilePeriod,

		MaxInputFiles:      cfg.MaxInputFiles,
		MaxInputBytes:      int(cfg.MaxInputBytes),
		MaxSessions:        max(cfg.MaxSessions, 1), // 0 turns the routes off below
		SessionMemoryBytes: cfg.SessionMemoryBytes,
		SessionIdleTimeout: cfg.SessionIdleTimeout,
		SessionMaxLifetime: cfg.SessionMaxLifetime,
		SessionIDPrefix:    cfg.SessionIDPrefix,
		Registerer:         reg,
		// A create found no image: it was removed under the service.
		OnNoImage: func(image string) { s.healer.Trigger(image) },
	})
	if err != nil {
		return nil, err
	}
	s.rn = rn
	// The healer is set before anything can create a container.
	s.healer = images.NewHealer(builder, rn, images.HealOptions{Build: cfg.BuildImage})
	if err := s.healer.RegisterMetrics(reg); err != nil {
		return nil, err
	}

	if s.keys, err = openKeys(cfg, log); err != nil { // keys.go
		return nil, err
	}
	o := executionOptions(cfg, rn, log)
	o.Health = s.health
	o.Settings = cfg.fields()
	o.ServiceID = cfg.ServiceID
	o.Registerer, o.Gatherer = reg, reg
	o.AdminToken = cfg.AdminToken
	o.Images = builder
	// Admin switches go through the healer, which remembers the packages
	// of the image in use, to rebuild it with them.
	o.Switcher = adminSwitcher{Runner: rn, healer: s.healer}
	o.AllowedPackages = cfg.AdminPackages
	o.Keys = s.keys
	s.handler = handlers.New(o)
	return s, nil
}

// executionOptions are the handlers' options for running code, which the
// HTTP API and MCP over stdio share: the runner, sessions unless
// MAX_SESSIONS is 0, the input and timeout limits.
func executionOptions(cfg Config, rn *runner.Runner, log *logrus.Logger) handlers.Options {
	o := handlers.Options{
		Runner:         rn,
		MaxInputFiles:  cfg.MaxInputFiles,
		MaxInputBytes:  cfg.MaxInputBytes,
		Logger:         log,
		DefaultTimeout: cfg.Timeout,
		MaxTimeout:     cfg.MaxTimeout,
	}
	if cfg.MaxSessions > 0 {
		o.Sessions = rn
	}
	return o
}

// adminSwitcher is the runner as the admin endpoints see it, with image
// switches made through the healer.
type adminSwitcher struct {
	*runner.Runner
	healer *images.Healer
}

// SetImage switches the runner's image through the healer.
func (a adminSwitcher) SetImage(ctx context.Context, tag string) error {
	return a.healer.SetImage(ctx, tag)
}

// start runs the healer, which first makes sure the image exists (built
// now, or restored by someone else with BUILD_IMAGE=false) and from then on
// brings it back whenever it disappears; once the image is there, it starts
// the pool and the validator. Both goroutines end with ctx, closing
// s.started and s.healed.
func (s *service) start(ctx context.Context) {
	base := logctx.From(ctx)
	go func() {
		defer close(s.healed)
		s.healer.Run(logctx.With(ctx, base.WithField("component", "images")))
	}()
	go func() {
		defer close(s.started)
		select {
		case <-s.healer.Ready():
		case <-ctx.Done():
			return
		}
		ctx := logctx.With(ctx, base.WithField("component", "runner"))
		s.rn.Start(ctx)
		// Start the validator now rather than on the first request.
		if _, err := s.rn.Validate(ctx, "pass"); err != nil && ctx.Err() == nil {
			logctx.From(ctx).WithError(err).Warn("validator warm-up")
		}
	}()
}

// health reports the engine and the image for GET /health. A missing image
// triggers the healer.
func (s *service) health(ctx context.Context) handlers.Health {
	var h handlers.Health
	if v, err := s.cli.ServerVersion(ctx, client.ServerVersionOptions{}); err != nil {
		h.Engine.Error = err.Error()
	} else {
		h.Engine = handlers.EngineHealth{Reachable: true, Version: v.Version, APIVersion: s.cli.ClientVersion()}
	}
	// The image in use: the base image of this binary, or the one an admin
	// rebuild switched to (built on that base).
	h.Image.Tag = s.rn.Image()
	st := s.healer.Status()
	h.Image.Building = st.Building || s.builder.Building()
	h.Image.Error = st.Error
	if f := st.Fallback; f != nil {
		h.Image.Fallback = &handlers.ImageFallback{From: f.From, Packages: f.Packages, At: f.At, Message: f.Message()}
	}
	if h.Engine.Reachable {
		img, err := s.builder.Inspect(ctx, h.Image.Tag)
		switch {
		case errors.Is(err, images.ErrNoImage):
			// Gone under the service: the healer rebuilds it now, unless
			// it backs off after a failed build or may not build.
			s.healer.Trigger(h.Image.Tag)
			h.Image.Building = h.Image.Building || s.cfg.BuildImage && s.healer.Status().NextAttempt.IsZero()
		case err != nil:
			h.Image.Error = err.Error()
		}
		h.Image.Present = err == nil
		h.Image.Current = err == nil && img.ContextHash == s.builder.Hash()
	}
	return h
}

// shutdown stops the service after SIGTERM or SIGINT (the pool's refills
// already stopped with the root context):
//
//  1. stop accepting connections and let requests in flight finish, for up
//     to SHUTDOWN_TIMEOUT_SECONDS;
//  2. past that, close the connections left: their requests' contexts end,
//     which kills their containers;
//  3. remove every container the runner created (pool, validator, any
//     left over), under a budget of its own.
func shutdown(ctx context.Context, cfg Config, log *logrus.Logger, srv *http.Server, svc *service) error {
	rn := svc.rn
	start := time.Now()
	log.WithField("running", rn.Stats().Running).Info("shutting down")
	dctx, cancel := context.WithTimeout(ctx, cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.WithError(err).Warn("requests still running at the shutdown deadline; cancelling them")
		_ = srv.Close()
	}
	<-svc.started // the image check ends with the root context; no pool starts after
	<-svc.healed
	cctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	if err := rn.Close(cctx); err != nil {
		return err
	}
	log.WithField("duration_ms", time.Since(start).Milliseconds()).Info("stopped")
	return nil
}

// cleanupTimeout bounds removing the containers at shutdown, after the
// requests have finished or been cancelled.
const cleanupTimeout = 60 * time.Second
