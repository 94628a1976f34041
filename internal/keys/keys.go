// Package keys owns the API keys: the keys file (API_KEYS_FILE), key
// hashing, reloading the file without a restart, and the per-key quotas
// (executions at once, executions per minute). Keys are kept only as their
// SHA-256; a presented key is hashed and compared with every known hash in
// constant time.
package keys

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strings"
	"time"
)

// MaxNameLen bounds a key's name: names become metric labels and log fields.
const MaxNameLen = 64

// MaxKeys bounds the number of keys in a file (metric label cardinality,
// and the lookup compares with every one).
const MaxKeys = 1000

// nameRE is the charset of names: they become metric labels.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// reservedNames label requests without a key in metrics and logs.
var reservedNames = map[string]bool{"none": true, "unauthenticated": true}

// Limits are a key's quotas; 0 means the service's own.
type Limits struct {
	// MaxConcurrent bounds the key's executions at once.
	MaxConcurrent int
	// PerMinute bounds the executions the key starts in any 60 s.
	PerMinute int
	// MaxSessions bounds the key's open sessions.
	MaxSessions int
	// MaxTimeout bounds a request's timeout; it cannot exceed the
	// service's MAX_TIMEOUT_SECONDS.
	MaxTimeout time.Duration
}

// Key is one entry of the keys file.
type Key struct {
	Name string
	Hash [sha256.Size]byte
	Limits
}

// Set is a parsed keys file.
type Set struct {
	keys []Key
}

// Len is the number of keys.
func (s *Set) Len() int { return len(s.keys) }

// Names are the keys' names, in file order.
func (s *Set) Names() []string {
	out := make([]string, len(s.keys))
	for i, k := range s.keys {
		out[i] = k.Name
	}
	return out
}

// Lookup returns the key whose hash is the SHA-256 of presented.
func (s *Set) Lookup(presented string) (Key, bool) {
	i := s.index(presented)
	if i < 0 {
		return Key{}, false
	}
	return s.keys[i], true
}

// index is the entry of presented, or -1. It compares with every entry in
// constant time and does not stop at a match, so the time taken does not
// tell which entry (or whether one) matched.
func (s *Set) index(presented string) int {
	sum := sha256.Sum256([]byte(presented))
	found := -1
	for i := range s.keys {
		eq := subtle.ConstantTimeCompare(sum[:], s.keys[i].Hash[:])
		// found = i when eq == 1, unchanged otherwise, without a branch.
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if presented == "" {
		return -1
	}
	return found
}

// Hash is the hex SHA-256 of a key, as the keys file stores it.
func Hash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// fileJSON is the keys file's shape.
type fileJSON struct {
	Keys *[]json.RawMessage `json:"keys"`
}

type entryJSON struct {
	Name              *string  `json:"name"`
	SHA256            *string  `json:"sha256"`
	MaxConcurrent     *int     `json:"max_concurrent"`
	PerMinute         *int     `json:"per_minute"`
	MaxSessions       *int     `json:"max_sessions"`
	MaxTimeoutSeconds *float64 `json:"max_timeout_seconds"`
	// Comment is free text for operators; ignored.
	Comment string `json:"comment"`
}

// ErrEmpty: the file lists no key. With keys on, nobody could call the
// service; unset API_KEYS_FILE to turn keys off instead.
var ErrEmpty = errors.New(`"keys" lists no key (unset API_KEYS_FILE to turn keys off)`)

// Parse reads a keys file:
//
//	{"keys": [{"name": "team-a", "sha256": "<hex>", "max_concurrent": 1,
//	  "per_minute": 30, "max_sessions": 2, "max_timeout_seconds": 60}]}
//
// Unknown fields, a bad hash, duplicate names or hashes, negative limits and
// names outside [A-Za-z0-9._-] (1 to 64, starting with a letter or digit) are
// errors that name the entry and the field.
func Parse(data []byte) (*Set, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f fileJSON
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("not a keys file: %w", jsonError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not a keys file: data after the JSON object")
	}
	if f.Keys == nil {
		return nil, errors.New(`field "keys" is required`)
	}
	entries := *f.Keys
	if len(entries) == 0 {
		return nil, ErrEmpty
	}
	if len(entries) > MaxKeys {
		return nil, fmt.Errorf(`"keys" has %d entries, at most %d are allowed`, len(entries), MaxKeys)
	}
	set := &Set{keys: make([]Key, 0, len(entries))}
	names := map[string]int{}
	hashes := map[[sha256.Size]byte]int{}
	for i, raw := range entries {
		var e entryJSON
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		if err := d.Decode(&e); err != nil {
			return nil, fmt.Errorf("keys[%d]: %w", i, jsonError(err))
		}
		k, err := e.key()
		var fe *entryError
		switch {
		case errors.As(err, &fe):
			return nil, fmt.Errorf("keys[%d].%s%s: %s", i, fe.field, nameNote(e.Name), fe.msg)
		case err != nil:
			return nil, fmt.Errorf("keys[%d]: %w", i, err)
		}
		if j, dup := names[k.Name]; dup {
			return nil, fmt.Errorf("keys[%d].name: %q is also the name of keys[%d]", i, k.Name, j)
		}
		if j, dup := hashes[k.Hash]; dup {
			return nil, fmt.Errorf("keys[%d].sha256 (%s): the same hash as keys[%d] (%s); every key must be distinct", i, k.Name, j, set.keys[j].Name)
		}
		names[k.Name] = i
		hashes[k.Hash] = i
		set.keys = append(set.keys, k)
	}
	return set, nil
}

// nameNote names the entry in an error when its name is sane.
func nameNote(name *string) string {
	if name != nil && len(*name) <= MaxNameLen && nameRE.MatchString(*name) {
		return " (" + *name + ")"
	}
	return ""
}

// entryError is a problem with a field of an entry.
type entryError struct{ field, msg string }

func (e *entryError) Error() string { return e.field + ": " + e.msg }

func fieldErr(field, msg string) error { return &entryError{field, msg} }

func fieldErrf(field, format string, args ...any) error {
	return &entryError{field, fmt.Sprintf(format, args...)}
}

// emptyHash is the SHA-256 of "": a key that is no key.
var emptyHash = sha256.Sum256(nil)

func (e entryJSON) key() (Key, error) {
	var k Key
	switch {
	case e.Name == nil:
		return k, fieldErr("name", `required`)
	case *e.Name == "" || len(*e.Name) > MaxNameLen || !nameRE.MatchString(*e.Name):
		// The value is not echoed: it might be a key put in the wrong field.
		return k, fieldErrf("name", `not a valid name (%d bytes): 1 to %d characters of A-Z a-z 0-9 . _ -, starting with a letter or digit (names are metric labels)`, len(*e.Name), MaxNameLen)
	}
	if reservedNames[*e.Name] {
		return k, fieldErrf("name", `%q is reserved (it labels requests without a key)`, *e.Name)
	}
	k.Name = *e.Name
	if e.SHA256 == nil {
		return k, fieldErr("sha256", `required (the hex SHA-256 of the key; pyexec -hash-key prints it)`)
	}
	h := strings.ToLower(strings.TrimSpace(*e.SHA256))
	raw, err := hex.DecodeString(h)
	if err != nil || len(raw) != sha256.Size {
		return k, fieldErr("sha256", `not 64 hex digits (the hex SHA-256 of the key; pyexec -hash-key prints it)`)
	}
	copy(k.Hash[:], raw)
	if k.Hash == emptyHash {
		return k, fieldErr("sha256", `the hash of the empty key`)
	}
	for _, l := range []struct {
		name string
		v    *int
		dst  *int
	}{
		{"max_concurrent", e.MaxConcurrent, &k.MaxConcurrent},
		{"per_minute", e.PerMinute, &k.PerMinute},
		{"max_sessions", e.MaxSessions, &k.MaxSessions},
	} {
		if l.v == nil {
			continue
		}
		if *l.v < 1 {
			return k, fieldErrf(l.name, `%d; must be at least 1 (omit it for the service's own limit)`, *l.v)
		}
		*l.dst = *l.v
	}
	if t := e.MaxTimeoutSeconds; t != nil {
		if *t <= 0 || math.IsNaN(*t) || *t > 24*3600 {
			return k, fieldErrf("max_timeout_seconds", `%g; must be greater than 0 and at most 86400 (omit it for the service's own limit)`, *t)
		}
		k.MaxTimeout = time.Duration(*t * float64(time.Second))
	}
	return k, nil
}

// jsonError makes the decoder's errors say where.
func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("invalid JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		return fmt.Errorf("field %q: %s where %s was expected", te.Field, te.Value, te.Type)
	case errors.Is(err, io.EOF):
		return errors.New("the file is empty")
	}
	return err
}
