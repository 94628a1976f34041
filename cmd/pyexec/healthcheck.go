package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

// healthcheckTimeout bounds `pyexec -healthcheck`; Docker's HEALTHCHECK
// gives it a little more (--timeout in the Dockerfile).
const healthcheckTimeout = 3 * time.Second

// healthcheck is `pyexec -healthcheck`, the Dockerfile's HEALTHCHECK (the
// image has no curl): it asks the service on this host for GET /livez on
// PORT (default 8000) and returns the process's exit code, 0 when it
// answered 200 and 1 otherwise, with the reason on stderr. It reads no
// other setting and never asks the engine: a blip of the engine must not
// get a healthy replica restarted (GET /readyz is for load balancers).
func healthcheck(getenv func(string) string, stderr io.Writer) int {
	port := 8000
	if v := getenv("PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			fmt.Fprintf(stderr, "pyexec -healthcheck: PORT=%q is not a port number\n", v)
			return 1
		}
		port = p
	}
	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/livez"
	ctx, cancel := context.WithTimeout(context.Background(), healthcheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "pyexec -healthcheck: %v\n", err)
		return 1
	}
	// No proxy: the service is on this host, whatever HTTP_PROXY says.
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "pyexec -healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "pyexec -healthcheck: GET %s answered %s\n", url, resp.Status)
		return 1
	}
	return 0
}

// healthcheckMain runs healthcheck for main and exits with its code.
func healthcheckMain() {
	os.Exit(healthcheck(os.Getenv, os.Stderr))
}
