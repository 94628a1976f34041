// Command pyexec is the Python execution service: it reads its settings from
// the environment, makes sure the analytics image exists, reaps containers
// left by an earlier run, and serves the REST API until SIGINT or SIGTERM.
//
//	pyexec               serve
//	pyexec -build-image  build the analytics image if missing, then exit
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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/docker/docker/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/handlers"
	"github.com/pyexec/pyexec/images"
	"github.com/pyexec/pyexec/policy"
	"github.com/pyexec/pyexec/runner"
)

func main() {
	buildOnly := flag.Bool("build-image", false, "build the analytics image if missing, print its tag, and exit")
	flag.Parse()

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
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	// Negotiate once up front: lazy negotiation races under concurrent first use.
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cli.NegotiateAPIVersion(pctx)
	cancel()

	builder := images.New(cli, cfg.ImageRepository, log.WithField("component", "images"))
	// One private registry: the packages' metrics, Go runtime and process.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := builder.RegisterMetrics(reg); err != nil {
		return err
	}
	if buildOnly {
		tag, err := builder.Ensure(ctx)
		if err != nil {
			return err
		}
		fmt.Println(tag)
		return nil
	}

	var rules *policy.Rules
	if cfg.Policy == policy.ModeStrict {
		d := policy.Default()
		rules = &d
	}
	rn, err := runner.New(cli, runner.Options{
		Policy:         rules,
		PoolSize:       cfg.PoolSize,
		Image:          builder.Tag(),
		Owner:          cfg.ServiceID,
		MemoryBytes:    cfg.MemoryBytes,
		NanoCPUs:       cfg.NanoCPUs,
		PidsLimit:      cfg.PidsLimit,
		TmpfsBytes:     cfg.TmpfsBytes,
		MaxStreamBytes: int(cfg.MaxOutputBytes),
		MaxWorkers:     cfg.MaxWorkers,
		MaxQueue:       cfg.MaxQueue,
		Registerer:     reg,
	})
	if err != nil {
		return err
	}
	log.WithFields(cfg.fields()).WithField("image", builder.Tag()).Info("starting")

	if n, err := rn.Reap(ctx); err != nil {
		log.WithError(err).Warn("reap leftovers")
	} else if n > 0 {
		log.WithField("containers", n).Warn("removed containers left by an earlier run")
	}

	// The pool starts once the image is there (built now or already).
	var building atomic.Bool
	var buildErr atomic.Value // string
	building.Store(true)
	started := make(chan struct{}) // closed when the goroutine below ends
	go func() {
		defer close(started)
		defer building.Store(false)
		var err error
		if cfg.BuildImage {
			_, err = builder.Ensure(ctx)
		} else {
			err = waitForImage(ctx, builder)
		}
		if err != nil {
			if ctx.Err() == nil {
				buildErr.Store(err.Error())
				log.WithError(err).Error("analytics image unavailable")
			}
			return
		}
		rn.Start(ctx)
		// Start the validator now rather than on the first request.
		if _, err := rn.Validate(ctx, "pass"); err != nil && ctx.Err() == nil {
			log.WithError(err).Warn("validator warm-up")
		}
	}()

	health := func(ctx context.Context) handlers.Health {
		var h handlers.Health
		if v, err := cli.ServerVersion(ctx); err != nil {
			h.Engine.Error = err.Error()
		} else {
			h.Engine = handlers.EngineHealth{Reachable: true, Version: v.Version, APIVersion: cli.ClientVersion()}
		}
		// The image in use: the base image of this binary, or the one an
		// admin rebuild switched to (built on that base).
		h.Image.Tag = rn.Image()
		h.Image.Building = building.Load() || builder.Building()
		if msg, ok := buildErr.Load().(string); ok {
			h.Image.Error = msg
		}
		if h.Engine.Reachable {
			img, err := builder.Inspect(ctx, h.Image.Tag)
			if err != nil && !errors.Is(err, images.ErrNoImage) {
				h.Image.Error = err.Error()
			}
			h.Image.Present = err == nil
			h.Image.Current = err == nil && img.ContextHash == builder.Hash()
		}
		return h
	}

	srv := handlers.NewServer(net.JoinHostPort("", strconv.Itoa(cfg.Port)), handlers.New(handlers.Options{
		Runner:         rn,
		Logger:         log,
		DefaultTimeout: cfg.Timeout,
		MaxTimeout:     cfg.MaxTimeout,
		Health:         health,
		Settings:       cfg.fields(),

		Registerer:      reg,
		Gatherer:        reg,
		AdminToken:      cfg.AdminToken,
		Images:          builder,
		Switcher:        rn,
		AllowedPackages: cfg.AdminPackages,
	}), cfg.MaxTimeout)
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.WithField("addr", srv.Addr).Info("listening")

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	return shutdown(context.WithoutCancel(ctx), cfg, log, srv, rn, started)
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
func shutdown(ctx context.Context, cfg Config, log *logrus.Logger, srv *http.Server, rn *runner.Runner, started <-chan struct{}) error {
	start := time.Now()
	log.WithField("running", rn.Stats().Running).Info("shutting down")
	dctx, cancel := context.WithTimeout(ctx, cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.WithError(err).Warn("requests still running at the shutdown deadline; cancelling them")
		_ = srv.Close()
	}
	<-started // the image check ends with the root context; no pool starts after
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

// waitForImage waits until another replica or an operator has built the
// image (BUILD_IMAGE=false).
func waitForImage(ctx context.Context, b *images.Builder) error {
	for {
		ok, err := b.Present(ctx)
		if ok {
			return nil
		}
		if err != nil && ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}
