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
	log := logrus.New()
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
	go func() {
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
	}()

	health := func(ctx context.Context) handlers.Health {
		var h handlers.Health
		if v, err := cli.ServerVersion(ctx); err != nil {
			h.Engine.Error = err.Error()
		} else {
			h.Engine = handlers.EngineHealth{Reachable: true, Version: v.Version, APIVersion: cli.ClientVersion()}
		}
		h.Image.Tag = builder.Tag()
		h.Image.Building = building.Load()
		if msg, ok := buildErr.Load().(string); ok {
			h.Image.Error = msg
		}
		if h.Engine.Reachable {
			ok, err := builder.Present(ctx)
			if err != nil {
				h.Image.Error = err.Error()
			}
			h.Image.Present, h.Image.Current = ok, ok
		}
		return h
	}

	srv := &http.Server{
		Addr: net.JoinHostPort("", strconv.Itoa(cfg.Port)),
		Handler: handlers.New(handlers.Options{
			Runner:         rn,
			Logger:         log,
			DefaultTimeout: cfg.Timeout,
			MaxTimeout:     cfg.MaxTimeout,
			Health:         health,
			Settings:       cfg.fields(),
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      cfg.MaxTimeout + 60*time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.WithField("addr", srv.Addr).Info("listening")

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.MaxTimeout+30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.WithError(err).Warn("http shutdown")
	}
	if err := rn.Close(sctx); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

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
