package main

import (
	"strings"

	"github.com/pyexec/pyexec/internal/engine"
)

// engine reads how to reach the Docker engine and validates it: the TLS
// files exist and parse, and come with a tcp:// DOCKER_HOST. An error names
// the setting at fault and stops start-up.
func (p *parser) engine() engine.Settings {
	get := func(name string) string { return strings.TrimSpace(p.getenv(name)) }
	s := engine.Settings{
		Host:       get(engine.EnvHost),
		APIVersion: get(engine.EnvAPIVersion),
		CertPath:   get(engine.EnvCertPath),
		// Any value turns verification on, as for the docker CLI.
		TLSVerify: get(engine.EnvTLSVerify) != "",
		CAFile:    get(engine.EnvTLSCA),
		CertFile:  get(engine.EnvTLSCert),
		KeyFile:   get(engine.EnvTLSKey),
	}
	if err := s.Validate(); err != nil && p.err == nil {
		p.err = err
	}
	return s
}
