package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/pyexec/pyexec/internal/keys"
)

// minKeyBytes keeps the keys -hash-key hashes from being guessable.
const minKeyBytes = 16

// hashKeyMain is `pyexec -hash-key`: it reads a key on stdin and prints its
// hex SHA-256, the "sha256" of an entry of API_KEYS_FILE; then it exits.
func hashKeyMain() {
	os.Exit(hashKey(os.Stdin, os.Stdout, os.Stderr))
}

// hashKey is hashKeyMain's work, returning the exit code. Surrounding
// whitespace (the newline of echo) is not part of the key: the service
// trims it from the headers too.
func hashKey(stdin io.Reader, stdout, stderr io.Writer) int {
	data, err := io.ReadAll(io.LimitReader(bufio.NewReader(stdin), 64<<10))
	if err != nil {
		fmt.Fprintf(stderr, "pyexec -hash-key: read stdin: %v\n", err)
		return 2
	}
	key := strings.TrimSpace(string(data))
	switch {
	case key == "":
		fmt.Fprintln(stderr, "pyexec -hash-key: no key on stdin (try: openssl rand -hex 32 | tee key.txt | pyexec -hash-key)")
		return 2
	case len(key) < minKeyBytes:
		fmt.Fprintf(stderr, "pyexec -hash-key: the key is too short, want at least %d characters (try: openssl rand -hex 32)\n", minKeyBytes)
		return 2
	case strings.ContainsAny(key, " \t\r\n"):
		fmt.Fprintln(stderr, "pyexec -hash-key: the key contains whitespace; an HTTP header cannot carry it intact")
		return 2
	}
	fmt.Fprintln(stdout, keys.Hash(key))
	return 0
}

// keysFile reads API_KEYS_FILE: empty (keys off), or a keys file that must
// exist and parse; a problem is an error naming API_KEYS_FILE.
func (p *parser) keysFile(name string) string {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return ""
	}
	if _, err := keys.Open(v, logrus.New()); err != nil && p.err == nil {
		p.err = fmt.Errorf("%s: %w", name, err)
	}
	return v
}

// openKeys opens the keys of cfg: nil when API_KEYS_FILE is not set, and
// then it logs a warning, for everything is open.
func openKeys(cfg Config, log *logrus.Logger) (*keys.Store, error) {
	if cfg.APIKeysFile == "" {
		log.Warn("API_KEYS_FILE is not set: /execute, /validate, /sessions and /mcp are open to anyone who reaches the port")
		return nil, nil
	}
	store, err := keys.Open(cfg.APIKeysFile, log.WithField("component", "keys"))
	if err != nil {
		return nil, fmt.Errorf("API_KEYS_FILE: %w", err)
	}
	log.WithFields(logrus.Fields{"component": "keys", "keys": store.Len(), "names": store.Names()}).Info("API keys loaded")
	return store, nil
}

// watchKeys reloads the keys on SIGHUP and when the file changes, until ctx
// ends. SIGHUP is caught even without keys, so that it never kills the
// service.
func watchKeys(ctx context.Context, store *keys.Store, log *logrus.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if store != nil {
		go store.Watch(ctx, keys.DefaultPollInterval)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if store == nil {
				log.Info("SIGHUP: API_KEYS_FILE is not set, nothing to reload")
				continue
			}
			store.ReloadAndLog("SIGHUP")
		}
	}
}
