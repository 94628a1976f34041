package engine_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyexec/pyexec/internal/dockertest"
	"github.com/pyexec/pyexec/internal/engine"
)

// certs are files made for one test: a CA, a client certificate it signed,
// a server certificate, and an expired client certificate.
type certs struct {
	dir                    string
	ca, cert, key          string
	serverCert, serverKey  string
	expiredCert, expiredKy string
}

func newCerts(t *testing.T) certs {
	dir := t.TempDir()
	ca := dockertest.NewCA(t, dir, "ca")
	c := certs{dir: dir, ca: ca.File}
	c.cert, c.key = ca.Client(t, dir, "client")
	c.serverCert, c.serverKey = ca.Server(t, dir, "server", "127.0.0.1")
	c.expiredCert, c.expiredKy = ca.ExpiredClient(t, dir, "expired")
	return c
}

func write(t *testing.T, dir, name, text string) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateAccepts(t *testing.T) {
	c := newCerts(t)
	certPath := filepath.Join(c.dir, "docker")
	if err := os.Mkdir(certPath, 0o700); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{c.ca: "ca.pem", c.cert: "cert.pem", c.key: "key.pem"} {
		b, _ := os.ReadFile(src)
		write(t, certPath, dst, string(b))
	}
	for name, s := range map[string]engine.Settings{
		"default socket": {},
		"unix socket":    {Host: "unix:///var/run/docker.sock"},
		"plain tcp":      {Host: "tcp://10.0.0.2:2375"},
		"explicit":       {Host: "tcp://sandbox.internal:2376", CAFile: c.ca, CertFile: c.cert, KeyFile: c.key},
		"explicit+verify": {Host: "tcp://sandbox.internal:2376", TLSVerify: true,
			CAFile: c.ca, CertFile: c.cert, KeyFile: c.key},
		"cert path": {Host: "tcp://127.0.0.1:2376", CertPath: certPath, TLSVerify: true},
	} {
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		cli, err := engine.New(s)
		if err != nil {
			t.Errorf("%s: New: %v", name, err)
			continue
		}
		cli.Close()
		cfg, err := s.TLSConfig()
		if err != nil {
			t.Errorf("%s: TLSConfig: %v", name, err)
		}
		if s.TLS() != (cfg != nil) {
			t.Errorf("%s: TLS() %v but config %v", name, s.TLS(), cfg != nil)
		}
		if cfg != nil {
			if cfg.InsecureSkipVerify || len(cfg.Certificates) != 1 || cfg.RootCAs == nil || cfg.MinVersion < tls.VersionTLS12 {
				t.Errorf("%s: TLS config insecure=%v certs=%d roots=%v min=%x", name, cfg.InsecureSkipVerify, len(cfg.Certificates), cfg.RootCAs != nil, cfg.MinVersion)
			}
			// The CA alone is trusted, not the system roots.
			if sys, err := x509.SystemCertPool(); err == nil && cfg.RootCAs.Equal(sys) {
				t.Errorf("%s: system roots trusted", name)
			}
		}
		if got := s.Plaintext(); got != (name == "plain tcp") {
			t.Errorf("%s: Plaintext() = %v", name, got)
		}
	}
	// Plain HTTP to an engine that wants TLS: the Go server's answer.
	plain := errors.New("Error response from daemon: Client sent an HTTP request to an HTTPS server.")
	got := engine.StartupError(engine.Settings{Host: "tcp://127.0.0.1:2376"}, plain)
	if got == nil || !strings.Contains(got.Error(), "engine speaks TLS") || !strings.Contains(got.Error(), "DOCKER_TLS_CA") {
		t.Errorf("plain HTTP to a TLS engine: %v", got)
	}
}

func TestValidateRefuses(t *testing.T) {
	c := newCerts(t)
	garbage := write(t, c.dir, "garbage.pem", "not a certificate, 不是证书\n")
	keyOnly := c.key
	const host = "tcp://127.0.0.1:2376"
	cases := []struct {
		name string
		s    engine.Settings
		want []string // all in the error
	}{
		{"bad host", engine.Settings{Host: "ftp://x"}, []string{"DOCKER_HOST"}},
		{"cert without key", engine.Settings{Host: host, CAFile: c.ca, CertFile: c.cert}, []string{"DOCKER_TLS_CERT and DOCKER_TLS_KEY come together"}},
		{"key without cert", engine.Settings{Host: host, CAFile: c.ca, KeyFile: c.key}, []string{"DOCKER_TLS_CERT and DOCKER_TLS_KEY come together"}},
		{"CA alone", engine.Settings{Host: host, CAFile: c.ca}, []string{"DOCKER_TLS_CA", "mutual TLS"}},
		{"no CA", engine.Settings{Host: host, CertFile: c.cert, KeyFile: c.key}, []string{"DOCKER_TLS_CA is required"}},
		{"unix host", engine.Settings{Host: "unix:///var/run/docker.sock", CAFile: c.ca, CertFile: c.cert, KeyFile: c.key}, []string{"tcp://", "DOCKER_HOST"}},
		{"no host", engine.Settings{CAFile: c.ca, CertFile: c.cert, KeyFile: c.key}, []string{"tcp://", "DOCKER_HOST"}},
		{"both ways", engine.Settings{Host: host, CertPath: c.dir, TLSVerify: true, CAFile: c.ca, CertFile: c.cert, KeyFile: c.key}, []string{"not both"}},
		{"cert path unverified", engine.Settings{Host: host, CertPath: c.dir}, []string{"DOCKER_TLS_VERIFY"}},
		{"verify without certs", engine.Settings{Host: host, TLSVerify: true}, []string{"DOCKER_CERT_PATH"}},
		{"cert path empty dir", engine.Settings{Host: host, CertPath: t.TempDir(), TLSVerify: true}, []string{"DOCKER_CERT_PATH (ca.pem)", "no such file"}},
		{"missing CA", engine.Settings{Host: host, CAFile: c.ca + ".gone", CertFile: c.cert, KeyFile: c.key}, []string{"DOCKER_TLS_CA=", "no such file"}},
		{"garbage CA", engine.Settings{Host: host, CAFile: garbage, CertFile: c.cert, KeyFile: c.key}, []string{"DOCKER_TLS_CA=", "no PEM certificate"}},
		{"garbage cert", engine.Settings{Host: host, CAFile: c.ca, CertFile: garbage, KeyFile: c.key}, []string{"DOCKER_TLS_CERT=", "no PEM certificate"}},
		{"key as cert", engine.Settings{Host: host, CAFile: c.ca, CertFile: keyOnly, KeyFile: c.key}, []string{"DOCKER_TLS_CERT=", "no PEM certificate"}},
		{"garbage key", engine.Settings{Host: host, CAFile: c.ca, CertFile: c.cert, KeyFile: garbage}, []string{"DOCKER_TLS_KEY=", "no PEM private key"}},
		{"key of another cert", engine.Settings{Host: host, CAFile: c.ca, CertFile: c.cert, KeyFile: c.serverKey}, []string{"DOCKER_TLS_CERT=", "DOCKER_TLS_KEY=", "private key does not match"}},
		{"server cert as client", engine.Settings{Host: host, CAFile: c.ca, CertFile: c.serverCert, KeyFile: c.serverKey}, []string{"DOCKER_TLS_CERT=", "clientAuth"}},
		{"expired", engine.Settings{Host: host, CAFile: c.ca, CertFile: c.expiredCert, KeyFile: c.expiredKy}, []string{"DOCKER_TLS_CERT=", "expired"}},
	}
	for _, tc := range cases {
		err := tc.s.Validate()
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", tc.name, err, w)
			}
		}
		if _, nerr := engine.New(tc.s); nerr == nil {
			t.Errorf("%s: New accepted what Validate refuses", tc.name)
		}
	}
	// Plain HTTP to an engine that wants TLS: the Go server's answer.
	plain := errors.New("Error response from daemon: Client sent an HTTP request to an HTTPS server.")
	got := engine.StartupError(engine.Settings{Host: "tcp://127.0.0.1:2376"}, plain)
	if got == nil || !strings.Contains(got.Error(), "engine speaks TLS") || !strings.Contains(got.Error(), "DOCKER_TLS_CA") {
		t.Errorf("plain HTTP to a TLS engine: %v", got)
	}
}

func TestStartupErrorClassifies(t *testing.T) {
	s := engine.Settings{Host: "tcp://127.0.0.1:2376", CAFile: "/c/ca.pem", CertFile: "/c/cert.pem", KeyFile: "/c/key.pem"}
	unknown := &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	for name, tc := range map[string]struct {
		err  error
		want string // "" when not a start-up error
	}{
		"unknown authority": {unknown, "DOCKER_TLS_CA"},
		"bad certificate":   {&net.OpError{Op: "remote error", Err: tls.AlertError(42)}, "DOCKER_TLS_CERT"},
		"alert as text":     {errors.New("read tcp: remote error: tls: certificate required"), "DOCKER_TLS_KEY"},
		"not TLS":           {tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, "does not speak TLS"},
		"wrong host":        {x509.HostnameError{Certificate: &x509.Certificate{}, Host: "10.0.0.9"}, "subject alternative names"},
		"refused":           {&net.OpError{Op: "dial", Err: errors.New("connect: connection refused")}, ""},
		"timeout":           {errors.New("context deadline exceeded"), ""},
	} {
		got := engine.StartupError(s, tc.err)
		switch {
		case tc.want == "" && got != nil:
			t.Errorf("%s: %v is an outage, not a start-up error: %v", name, tc.err, got)
		case tc.want != "" && got == nil:
			t.Errorf("%s: %v not classified as a TLS failure", name, tc.err)
		case tc.want != "" && (!strings.Contains(got.Error(), tc.want) || !strings.Contains(got.Error(), "DOCKER_HOST=tcp://127.0.0.1:2376") || !errors.Is(got, tc.err)):
			t.Errorf("%s: %q lacks %q, the host or the cause", name, got, tc.want)
		}
	}
	// Plain HTTP to an engine that wants TLS: the Go server's answer.
	plain := errors.New("Error response from daemon: Client sent an HTTP request to an HTTPS server.")
	got := engine.StartupError(engine.Settings{Host: "tcp://127.0.0.1:2376"}, plain)
	if got == nil || !strings.Contains(got.Error(), "engine speaks TLS") || !strings.Contains(got.Error(), "DOCKER_TLS_CA") {
		t.Errorf("plain HTTP to a TLS engine: %v", got)
	}
}
