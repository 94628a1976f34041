package keys

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// DefaultPollInterval is how often Watch looks at the file.
const DefaultPollInterval = 2 * time.Second

// Store is the keys in force: loaded from a file, swapped atomically by
// Reload, with one Limiter per key name that survives reloads.
type Store struct {
	path string
	log  logrus.FieldLogger

	cur atomic.Pointer[loaded]

	mu sync.Mutex // serialises Reload
	// seen is the file's stat and content hash last read, loaded or not,
	// so that Watch reports a bad file once, not every poll.
	seen fileSig
}

// loaded is a Set with its limiters, index for index.
type loaded struct {
	set    *Set
	lims   []*Limiter
	byName map[string]*Limiter
}

type fileSig struct {
	modTime time.Time
	size    int64
	sum     [sha256.Size]byte
	statErr bool
}

// Open loads the keys file at path; its error names the file and the
// problem. log receives reload messages (never a key).
func Open(path string, log logrus.FieldLogger) (*Store, error) {
	if log == nil {
		log = logrus.StandardLogger()
	}
	s := &Store{path: path, log: log}
	set, sig, err := s.read()
	if err != nil {
		return nil, err
	}
	s.seen = sig
	s.install(set)
	return s, nil
}

// NewStatic returns a Store of a parsed Set, without a file (tests, and
// callers that configure keys themselves); Reload and Watch do nothing.
func NewStatic(set *Set) *Store {
	s := &Store{log: logrus.StandardLogger()}
	s.install(set)
	return s
}

// Path is the keys file.
func (s *Store) Path() string { return s.path }

// Names are the names of the keys in force.
func (s *Store) Names() []string { return s.cur.Load().set.Names() }

// Len is the number of keys in force.
func (s *Store) Len() int { return s.cur.Load().set.Len() }

// Authenticate returns the limiter of the key presented, or false. The
// lookup takes the same time whichever key, if any, matches.
func (s *Store) Authenticate(presented string) (*Limiter, bool) {
	l := s.cur.Load()
	i := l.set.index(presented)
	if i < 0 {
		return nil, false
	}
	return l.lims[i], true
}

// Limiter returns the limiter of the key named name, if it is in force.
func (s *Store) Limiter(name string) (*Limiter, bool) {
	l, ok := s.cur.Load().byName[name]
	return l, ok
}

// Reload reads the file again. On an error the keys in force stay, and the
// error says why. changed is false when the content did not change.
func (s *Store) Reload() (changed bool, err error) {
	if s.path == "" {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	set, sig, err := s.read()
	s.seen = sig
	if err != nil {
		return false, err
	}
	s.install(set)
	return true, nil
}

// install swaps set in, reusing the limiters of names that stay.
func (s *Store) install(set *Set) {
	old := s.cur.Load()
	l := &loaded{set: set, lims: make([]*Limiter, len(set.keys)), byName: make(map[string]*Limiter, len(set.keys))}
	for i, k := range set.keys {
		var lim *Limiter
		if old != nil {
			lim = old.byName[k.Name]
		}
		if lim == nil {
			lim = newLimiter(k.Name, k.Limits)
		} else {
			lim.setLimits(k.Limits)
		}
		l.lims[i] = lim
		l.byName[k.Name] = lim
	}
	s.cur.Store(l)
}

// read reads and parses the file; its errors name the file.
func (s *Store) read() (*Set, fileSig, error) {
	var sig fileSig
	f, err := os.Open(s.path)
	if err != nil {
		sig.statErr = true
		return nil, sig, fmt.Errorf("keys file %s: %w", s.path, errors.Unwrap(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		sig.statErr = true
		return nil, sig, fmt.Errorf("keys file %s: %w", s.path, err)
	}
	if !st.Mode().IsRegular() {
		sig.statErr = true
		return nil, sig, fmt.Errorf("keys file %s: not a regular file", s.path)
	}
	const maxFileBytes = 4 << 20
	data := make([]byte, 0, min(st.Size()+1, maxFileBytes+1))
	buf := make([]byte, 32<<10)
	for len(data) <= maxFileBytes {
		n, err := f.Read(buf)
		data = append(data, buf[:n]...)
		if err != nil {
			break
		}
	}
	sig = fileSig{modTime: st.ModTime(), size: st.Size(), sum: sha256.Sum256(data)}
	if len(data) > maxFileBytes {
		return nil, sig, fmt.Errorf("keys file %s: larger than %d bytes", s.path, maxFileBytes)
	}
	set, err := Parse(data)
	if err != nil {
		return nil, sig, fmt.Errorf("keys file %s: %w", s.path, err)
	}
	return set, sig, nil
}

// Watch reloads the file when it changes (its mtime, size or content),
// polling every interval (DefaultPollInterval when 0) until ctx ends. A
// reload that fails keeps the keys in force and is logged once per
// content.
func (s *Store) Watch(ctx context.Context, interval time.Duration) {
	if s.path == "" {
		return
	}
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.poll()
		}
	}
}

// poll reloads when the file differs from the one last read.
func (s *Store) poll() {
	s.mu.Lock()
	prev := s.seen
	s.mu.Unlock()
	st, err := os.Stat(s.path)
	if err != nil {
		if !prev.statErr {
			s.mu.Lock()
			s.seen = fileSig{statErr: true}
			s.mu.Unlock()
			s.log.WithError(err).Warn("keys file unreadable; keeping the keys in force")
		}
		return
	}
	if !prev.statErr && st.ModTime().Equal(prev.modTime) && st.Size() == prev.size {
		// Same stat: look at the content too, rarely changed in place
		// within the mtime granularity, but cheap for a small file.
		data, err := os.ReadFile(s.path)
		if err != nil || sha256.Sum256(data) == prev.sum {
			return
		}
	}
	s.ReloadAndLog("file changed")
}

// ReloadAndLog reloads and logs the outcome, naming trigger (SIGHUP, file
// changed): the names in force on success, the problem on failure.
func (s *Store) ReloadAndLog(trigger string) {
	s.mu.Lock()
	before := s.seen.sum
	s.mu.Unlock()
	changed, err := s.Reload()
	if err != nil {
		s.log.WithField("trigger", trigger).WithError(err).Error("keys file reload failed; keeping the keys in force")
		return
	}
	s.mu.Lock()
	same := s.seen.sum == before
	s.mu.Unlock()
	s.log.WithFields(logrus.Fields{"trigger": trigger, "keys": s.Len(), "names": s.Names(), "unchanged": !changed || same}).Info("keys file reloaded")
}
