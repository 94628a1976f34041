// Package images owns the hardened Python analytics image: its build context
// (Dockerfile, the C supervisor and the Python harness, embedded in the
// binary from context/), the content
// hash that names it, and building it through the Docker API.
//
// The image is tagged REPOSITORY:<first 12 hex digits of the context hash>, so
// the service knows whether the engine has the image its binary expects.
// Rebuild (rebuild.go) adds allow-listed Debian packages in a layer on top
// and tags the result with a hash of the context and the package set.
//
// Healer (heal.go) keeps the image in use present: told by the runner or
// the health check that it disappeared, it rebuilds it once (with the extra
// packages of an admin rebuild, falling back to the base image if that
// fails), or, without BUILD_IMAGE, waits for someone to restore it.
//
// It never runs containers. Builder is safe for concurrent use; concurrent
// builds of the same content share one build.
//
// engine.sh and base.sh beside this file set up a machine (Docker engine,
// base image) and are run by the Makefile, not by the service.
package images
