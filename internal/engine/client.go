// Package engine owns how pyexec connects to the Docker engine: where
// (DOCKER_HOST), with which TLS material (DOCKER_CERT_PATH with
// DOCKER_TLS_VERIFY, or DOCKER_TLS_CA, DOCKER_TLS_CERT and DOCKER_TLS_KEY),
// and which connection failures at start-up are a misconfiguration (a
// certificate or TLS error) rather than an outage (an engine that does not
// answer yet).
//
// A TCP engine is reached over mutual TLS, always verified: the engine's
// certificate must chain to the given CA alone (not the system roots), and
// pyexec presents a client certificate. There is no insecure mode.
//
// It also reads the engine's attach streams (attach.go): the stdout and
// stderr of a container without a TTY, told apart.
//
// The package reads no environment: cmd/pyexec fills Settings.
package engine

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/go-connections/tlsconfig"
	"github.com/moby/moby/client"
)

// Names of the settings, as users set them and as errors name them.
const (
	EnvHost       = "DOCKER_HOST"
	EnvAPIVersion = "DOCKER_API_VERSION"
	EnvCertPath   = "DOCKER_CERT_PATH"
	EnvTLSVerify  = "DOCKER_TLS_VERIFY"
	EnvTLSCA      = "DOCKER_TLS_CA"
	EnvTLSCert    = "DOCKER_TLS_CERT"
	EnvTLSKey     = "DOCKER_TLS_KEY"
)

// Settings say how to reach the engine. The zero value is the local
// engine's default socket.
type Settings struct {
	// Host is DOCKER_HOST: unix:///path, tcp://host:port, or empty for
	// the default socket.
	Host string
	// APIVersion pins the API version (DOCKER_API_VERSION); empty
	// negotiates it.
	APIVersion string
	// CertPath is DOCKER_CERT_PATH, a directory with ca.pem, cert.pem and
	// key.pem, used with TLSVerify (DOCKER_TLS_VERIFY set to anything).
	CertPath  string
	TLSVerify bool
	// CAFile, CertFile and KeyFile are DOCKER_TLS_CA, DOCKER_TLS_CERT and
	// DOCKER_TLS_KEY: the CA the engine's certificate must chain to, and
	// pyexec's client certificate and key. Set, they replace CertPath.
	CAFile   string
	CertFile string
	KeyFile  string
}

// files are the TLS files in use, each with the setting it comes from.
type files struct {
	ca, cert, key             string
	caName, certName, keyName string
}

// tlsFiles resolves the TLS files: the explicit ones, or those under
// CertPath. ok is false without TLS.
func (s Settings) tlsFiles() (f files, ok bool) {
	switch {
	case s.CAFile != "" || s.CertFile != "" || s.KeyFile != "":
		return files{s.CAFile, s.CertFile, s.KeyFile, EnvTLSCA, EnvTLSCert, EnvTLSKey}, true
	case s.CertPath != "":
		name := func(file string) string { return EnvCertPath + " (" + file + ")" }
		return files{
			filepath.Join(s.CertPath, "ca.pem"), filepath.Join(s.CertPath, "cert.pem"), filepath.Join(s.CertPath, "key.pem"),
			name("ca.pem"), name("cert.pem"), name("key.pem"),
		}, true
	}
	return files{}, false
}

// TLS reports whether the engine is reached over TLS.
func (s Settings) TLS() bool {
	_, ok := s.tlsFiles()
	return ok
}

// Plaintext reports whether the engine is reached over TCP without TLS:
// whoever reaches that port is root on the engine's host. pyexec allows it
// (a socket proxy on a private network, say) but warns.
func (s Settings) Plaintext() bool {
	return strings.HasPrefix(s.Host, "tcp://") && !s.TLS()
}

// Validate checks the settings without contacting the engine: the host
// parses; TLS settings come whole (a CA, a certificate and its key), with
// a tcp:// host and verification on; the files exist, parse, and the
// client certificate is current, fits its key and may authenticate a
// client. Each error names the setting at fault.
func (s Settings) Validate() error {
	var scheme string
	if s.Host != "" {
		u, err := client.ParseHostURL(s.Host)
		if err != nil {
			return fmt.Errorf("%s=%q: %w", EnvHost, s.Host, err)
		}
		scheme = u.Scheme
		if scheme != "unix" && scheme != "tcp" {
			return fmt.Errorf("%s=%q: want unix:///path or tcp://host:port", EnvHost, s.Host)
		}
	}
	explicit := s.CAFile != "" || s.CertFile != "" || s.KeyFile != ""
	switch {
	case explicit && s.CertPath != "":
		return fmt.Errorf("set %s or %s/%s/%s, not both", EnvCertPath, EnvTLSCA, EnvTLSCert, EnvTLSKey)
	case explicit && (s.CertFile == "") != (s.KeyFile == ""):
		return fmt.Errorf("%s and %s come together: the client certificate and its private key", EnvTLSCert, EnvTLSKey)
	case explicit && s.CertFile == "":
		return fmt.Errorf("%s is set without %s and %s: the engine must authenticate pyexec (mutual TLS)", EnvTLSCA, EnvTLSCert, EnvTLSKey)
	case explicit && s.CAFile == "":
		return fmt.Errorf("%s is required with %s and %s: pyexec verifies the engine's certificate against it", EnvTLSCA, EnvTLSCert, EnvTLSKey)
	case s.CertPath != "" && !s.TLSVerify:
		return fmt.Errorf("%s is set without %s: pyexec never connects without verifying the engine's certificate; set %s=1",
			EnvCertPath, EnvTLSVerify, EnvTLSVerify)
	case s.TLSVerify && !explicit && s.CertPath == "":
		return fmt.Errorf("%s is set but no certificates are: set %s (a directory with ca.pem, cert.pem and key.pem) or %s, %s and %s",
			EnvTLSVerify, EnvCertPath, EnvTLSCA, EnvTLSCert, EnvTLSKey)
	}
	f, ok := s.tlsFiles()
	if !ok {
		return nil
	}
	if scheme != "tcp" {
		return fmt.Errorf("%s needs a tcp:// %s (got %q)", f.caName, EnvHost, s.Host)
	}
	if err := checkCA(f.ca); err != nil {
		return fmt.Errorf("%s=%s: %w", f.caName, f.ca, err)
	}
	if err := checkClientCert(f); err != nil {
		return err
	}
	// What tlsconfig itself refuses (an encrypted key, say).
	if _, err := s.TLSConfig(); err != nil {
		return err
	}
	return nil
}

// checkCA reads a PEM file of one or more CA certificates.
func checkCA(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %w", n+1, err)
		}
		n++
	}
	if n == 0 {
		return errors.New("no PEM certificate in the file")
	}
	return nil
}

// checkClientCert loads the client certificate and key, and checks that
// the key fits, the certificate is current and it may serve a client.
func checkClientCert(f files) error {
	certPEM, err := os.ReadFile(f.cert)
	if err != nil {
		return fmt.Errorf("%s=%s: %w", f.certName, f.cert, err)
	}
	keyPEM, err := os.ReadFile(f.key)
	if err != nil {
		return fmt.Errorf("%s=%s: %w", f.keyName, f.key, err)
	}
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return fmt.Errorf("%s=%s: no PEM certificate in the file", f.certName, f.cert)
	}
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return fmt.Errorf("%s=%s: %w", f.certName, f.cert, err)
	}
	if kb, _ := pem.Decode(keyPEM); kb == nil || !strings.Contains(kb.Type, "PRIVATE KEY") {
		return fmt.Errorf("%s=%s: no PEM private key in the file", f.keyName, f.key)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return fmt.Errorf("%s=%s and %s=%s: %w", f.certName, f.cert, f.keyName, f.key, err)
	}
	now := time.Now()
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("%s=%s: the client certificate expired at %s", f.certName, f.cert, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("%s=%s: the client certificate is not valid before %s", f.certName, f.cert, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if len(leaf.ExtKeyUsage) > 0 {
		forClient := false
		for _, u := range leaf.ExtKeyUsage {
			forClient = forClient || u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny
		}
		if !forClient {
			return fmt.Errorf("%s=%s: not a client certificate (its extended key usage lacks clientAuth; is it the engine's server certificate?)", f.certName, f.cert)
		}
	}
	return nil
}

// TLSConfig builds the client TLS configuration through
// go-connections/tlsconfig: TLS 1.2 or later, the engine verified against
// the CA alone (ExclusiveRootPools), the client certificate presented. It
// is nil without TLS.
func (s Settings) TLSConfig() (*tls.Config, error) {
	f, ok := s.tlsFiles()
	if !ok {
		return nil, nil
	}
	cfg, err := tlsconfig.Client(tlsconfig.Options{
		CAFile:             f.ca,
		CertFile:           f.cert,
		KeyFile:            f.key,
		ExclusiveRootPools: true,
		MinVersion:         tls.VersionTLS12,
	})
	if err != nil {
		return nil, fmt.Errorf("%s, %s, %s: %w", f.caName, f.certName, f.keyName, err)
	}
	return cfg, nil
}

// New returns a client for the engine the settings name. It validates
// them first; it does not contact the engine.
func New(s Settings) (*client.Client, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	var opts []client.Opt
	if s.TLS() {
		cfg, err := s.TLSConfig()
		if err != nil {
			return nil, err
		}
		// The transport the client would make by default, with TLS;
		// WithHost then sets its dialer for the host.
		opts = append(opts, client.WithHTTPClient(&http.Client{
			Transport: &http.Transport{
				TLSClientConfig: cfg,
				MaxIdleConns:    6,
				IdleConnTimeout: 30 * time.Second,
			},
			CheckRedirect: client.CheckRedirect,
		}))
	}
	if s.Host != "" {
		opts = append(opts, client.WithHost(s.Host))
	}
	if s.APIVersion != "" {
		opts = append(opts, client.WithAPIVersion(s.APIVersion))
	}
	return client.New(opts...)
}

// Describe names where the engine is and how it is reached, for logs and
// errors: never secret (paths only).
func (s Settings) Describe() string {
	host := s.Host
	if host == "" {
		host = client.DefaultDockerHost
	}
	d := EnvHost + "=" + host
	if f, ok := s.tlsFiles(); ok {
		d += fmt.Sprintf(", %s=%s, %s=%s, %s=%s", f.caName, f.ca, f.certName, f.cert, f.keyName, f.key)
	}
	return d
}

// StartupError says whether err, from the first request to the engine, is
// a permanent misconfiguration: the TLS handshake failed (the engine's
// certificate does not chain to the CA, names another host or expired; the
// engine refused pyexec's certificate; the port does not speak TLS, or
// speaks it while pyexec has no TLS settings). Then
// it returns an error naming the settings and the reason, and start-up
// should stop. For anything else (the engine does not answer yet) it
// returns nil: the service starts, answers 503 and retries.
func StartupError(s Settings, err error) error {
	if err == nil || !isTLSError(err) && !plainToTLS(err) {
		return nil
	}
	return fmt.Errorf("engine at %s: TLS failure (%s): %w", s.Describe(), hint(s, err), err)
}

// plainToTLS reports whether the engine answered a plain HTTP request
// with the Go TLS server's refusal: it wants TLS.
func plainToTLS(err error) bool {
	return strings.Contains(err.Error(), "HTTP request to an HTTPS server")
}

// isTLSError reports whether err comes from the TLS handshake or a TLS
// alert of the engine.
func isTLSError(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		alert    tls.AlertError
		record   tls.RecordHeaderError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &alert), errors.As(err, &record),
		errors.As(err, &unknown), errors.As(err, &hostname), errors.As(err, &invalid):
		return true
	}
	// An alert may reach us flattened into text (the engine closes the
	// connection after the handshake, under TLS 1.3).
	return strings.Contains(err.Error(), "remote error: tls:")
}

// hint tells which setting is likely at fault.
func hint(s Settings, err error) string {
	f, ok := s.tlsFiles()
	if !ok {
		return "the engine speaks TLS but no TLS setting is set; set " + EnvTLSCA + ", " + EnvTLSCert + " and " + EnvTLSKey +
			" (or " + EnvCertPath + " with " + EnvTLSVerify + ")"
	}
	var (
		alert  tls.AlertError
		record tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &record):
		return "the engine's port does not speak TLS; check " + EnvHost
	case errors.As(err, &alert), strings.Contains(err.Error(), "remote error: tls:"):
		return "the engine rejected the client certificate; check " + f.certName + " and " + f.keyName + " (signed by the CA the engine's --tlscacert names)"
	}
	var hostname x509.HostnameError
	if errors.As(err, &hostname) {
		return "the engine's certificate does not name that host; check " + EnvHost + " against its subject alternative names"
	}
	return "the engine's certificate does not verify against " + f.caName
}
