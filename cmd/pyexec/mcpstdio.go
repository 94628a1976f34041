package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/handlers"
)

// mcpStdio selects serving the MCP tools over stdin and stdout instead of
// HTTP (run's branch after the runner has started).
var mcpStdio = flag.Bool("mcp-stdio", false, "serve the MCP tools (execute_python, ...) over stdin/stdout instead of HTTP, for a desktop MCP client that starts pyexec; logs go to stderr")

// mcpLineOverhead is what one JSON-RPC line may hold besides the base64 of
// the input files: the code and the envelope.
const mcpLineOverhead = 2 << 20

// serveMCPStdio starts svc (the healer, then the pool) and serves
// handlers.NewMCPServer over stdio until the client closes stdin or a
// signal ends ctx, then removes every container of the runner, as shutdown
// does. Stdout carries nothing but MCP messages: logs go
// to stderr, and os.Stdout points at stderr while serving, so that nothing
// printed by mistake can corrupt the stream. There is no API key on this
// transport (whoever starts the process owns the engine anyway): calls run
// under the service's own limits.
func serveMCPStdio(ctx context.Context, cfg Config, log *logrus.Logger, svc *service) error {
	// The healer and the start-up end with ctx: cancelled when the client
	// goes, before the containers are removed.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	svc.start(ctx)
	out := os.Stdout
	os.Stdout = os.Stderr
	log.SetOutput(os.Stderr)

	srv := handlers.NewMCPServer(executionOptions(cfg, svc.rn, log)) // main.go
	log.Info("serving MCP over stdio")
	err := srv.Run(ctx, &mcp.IOTransport{
		Reader:        os.Stdin,
		Writer:        out,
		MaxLineLength: int(cfg.MaxInputBytes/3*4) + mcpLineOverhead,
	})
	if errors.Is(err, context.Canceled) {
		err = nil // a signal
	}
	if err != nil {
		log.WithError(err).Warn("MCP stdio session ended")
	}

	// As shutdown, without an HTTP server: stop the healer and the start-up,
	// then remove the containers.
	cancel()
	<-svc.started
	<-svc.healed
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer ccancel()
	start := time.Now()
	if err := svc.rn.Close(cctx); err != nil {
		return err
	}
	log.WithField("duration_ms", time.Since(start).Milliseconds()).Info("stopped")
	return nil
}
