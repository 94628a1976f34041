package handlers

import (
	"net/http"
	"time"
)

// Server timeouts. Slow clients (slow-loris) are cut off by the header and
// read timeouts; the write timeout leaves room for the longest execution.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	idleTimeout       = 90 * time.Second
	maxHeaderBytes    = 64 << 10
	// writeMargin is added to the longest execution for queueing and output.
	writeMargin = 60 * time.Second
)

// NewServer returns the HTTP server for h with every timeout set; maxTimeout
// is the longest execution a request may ask for.
func NewServer(addr string, h http.Handler, maxTimeout time.Duration) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      maxTimeout + writeMargin,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
}
