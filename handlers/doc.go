// Package handlers is the HTTP face of pyexec: the gorilla/mux routes, JSON
// decoding with strict limits, the response shapes of the original service,
// and the one mapping from errors to status codes (writeError).
//
// It never talks to Docker: executions go through the Executor interface
// (implemented by *runner.Runner). Handlers are safe for concurrent use.
package handlers
