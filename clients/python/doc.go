// Package pyexecclient holds no Go code: it owns the Go test that runs the
// Python client's unittest suite (clients/python/tests, package
// pyexec_client) with /usr/bin/python3 against the real pyexec binary on
// the real engine, so that `go test ./...` (make test) covers the client.
package pyexecclient
