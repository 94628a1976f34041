package keys

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

const (
	keyA = "key-a-0123456789abcdef"
	keyB = "key-b-0123456789abcdef"
)

func fileOf(entries ...string) string {
	return `{"keys":[` + strings.Join(entries, ",") + `]}`
}

func entry(name, key, extra string) string {
	s := `{"name":"` + name + `","sha256":"` + Hash(key) + `"`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

func TestParseValid(t *testing.T) {
	set, err := Parse([]byte(fileOf(
		entry("team-a", keyA, `"max_concurrent":1,"per_minute":30,"max_sessions":2,"max_timeout_seconds":7.5`),
		entry("团队b", keyB, ""),
	)))
	if err == nil {
		t.Fatalf("a non-ASCII name parsed: %v", set.Names())
	}
	if !strings.Contains(err.Error(), "keys[1].name") {
		t.Errorf("error %q does not name keys[1].name", err)
	}
	set, err = Parse([]byte(fileOf(
		entry("team-a", keyA, `"max_concurrent":1,"per_minute":30,"max_sessions":2,"max_timeout_seconds":7.5,"comment":"数据团队"`),
		entry("team_b.2", strings.ToUpper(keyB), ""),
	)))
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Names(); len(got) != 2 || got[0] != "team-a" || got[1] != "team_b.2" {
		t.Fatalf("names %v", got)
	}
	k, ok := set.Lookup(keyA)
	want := Limits{MaxConcurrent: 1, PerMinute: 30, MaxSessions: 2, MaxTimeout: 7500 * time.Millisecond}
	if !ok || k.Name != "team-a" || k.Limits != want {
		t.Fatalf("lookup A: %+v %v, want limits %+v", k, ok, want)
	}
	k, ok = set.Lookup(strings.ToUpper(keyB))
	if !ok || k.Name != "team_b.2" || k.Limits != (Limits{}) {
		t.Fatalf("lookup B: %+v %v", k, ok)
	}
	for _, bad := range []string{"", keyB, keyA + " ", "x"} {
		if k, ok := set.Lookup(bad); ok {
			t.Errorf("lookup %q matched %s", bad, k.Name)
		}
	}
}

func TestParseErrors(t *testing.T) {
	upperHash := strings.ToUpper(Hash(keyA))
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"empty file", ``, []string{"empty"}},
		{"not JSON", `{"keys":[`, []string{"not a keys file"}},
		{"trailing data", fileOf(entry("a", keyA, "")) + `{}`, []string{"after the JSON"}},
		{"no keys field", `{}`, []string{`"keys" is required`}},
		{"keys not a list", `{"keys":{}}`, []string{"keys"}},
		{"empty list", `{"keys":[]}`, []string{"no key"}},
		{"unknown top field", `{"keys":[],"extra":1}`, []string{`unknown field "extra"`}},
		{"unknown entry field", fileOf(entry("a", keyA, ""), entry("b", keyB, `"max_cpu":1`)), []string{"keys[1]", `"max_cpu"`}},
		{"missing name", `{"keys":[{"sha256":"` + upperHash + `"}]}`, []string{"keys[0]", ".name", "required"}},
		{"missing hash", `{"keys":[{"name":"a"}]}`, []string{"keys[0].sha256 (a)", "required"}},
		{"short hash", `{"keys":[{"name":"a","sha256":"abcd"}]}`, []string{"keys[0].sha256 (a)", "64 hex"}},
		{"bad hex", `{"keys":[{"name":"a","sha256":"` + strings.Repeat("zz", 32) + `"}]}`, []string{"keys[0].sha256 (a)"}},
		{"empty key hash", `{"keys":[{"name":"a","sha256":"` + Hash("") + `"}]}`, []string{"keys[0].sha256 (a)", "empty key"}},
		{"bad name chars", fileOf(entry("a b", keyA, "")), []string{"keys[0].name", "not a valid name"}},
		{"name too long", fileOf(entry(strings.Repeat("n", MaxNameLen+1), keyA, "")), []string{"keys[0].name"}},
		{"reserved name", fileOf(entry("none", keyA, "")), []string{"keys[0]", "reserved"}},
		{"duplicate name", fileOf(entry("a", keyA, ""), entry("a", keyB, "")), []string{"keys[1].name", "keys[0]"}},
		{"duplicate hash", fileOf(entry("a", keyA, ""), entry("b", keyA, "")), []string{"keys[1].sha256", "keys[0]"}},
		{"negative concurrent", fileOf(entry("a", keyA, `"max_concurrent":-1`)), []string{"keys[0].max_concurrent (a)", "-1"}},
		{"zero per minute", fileOf(entry("a", keyA, `"per_minute":0`)), []string{"keys[0].per_minute (a)"}},
		{"negative sessions", fileOf(entry("a", keyA, `"max_sessions":-3`)), []string{"keys[0].max_sessions (a)"}},
		{"fractional limit", fileOf(entry("a", keyA, `"per_minute":1.5`)), []string{"keys[0]", "per_minute"}},
		{"string limit", fileOf(entry("a", keyA, `"per_minute":"30"`)), []string{"keys[0]", "per_minute"}},
		{"zero timeout", fileOf(entry("a", keyA, `"max_timeout_seconds":0`)), []string{"keys[0].max_timeout_seconds (a)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file))
			if err == nil {
				t.Fatalf("parsed %s", tc.file)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), keyA) || strings.Contains(err.Error(), keyB) {
				t.Errorf("error %q contains a key", err)
			}
		})
	}
}

func TestLimiterPerMinute(t *testing.T) {
	l := newLimiter("a", Limits{PerMinute: 3})
	t0 := time.Unix(1_000_000, 0)
	for i := range 3 {
		rel, err := l.Admit(t0.Add(time.Duration(i) * 10 * time.Second))
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		rel()
		rel() // twice is harmless
	}
	if l.Running() != 0 {
		t.Fatalf("running %d after releases", l.Running())
	}
	// At t0+25s the window holds t0, t0+10, t0+20: the next slot frees at
	// t0+60s, 35 s from now.
	_, err := l.Admit(t0.Add(25 * time.Second))
	var rf *Refusal
	if !errors.As(err, &rf) || rf.Code != CodeQuotaExceeded || rf.RetryAfter != 35*time.Second {
		t.Fatalf("4th call: %v (%+v), want quota_exceeded retry 35s", err, rf)
	}
	// Refused calls count against nothing: at t0+60.5 one slot is free.
	rel, err := l.Admit(t0.Add(60*time.Second + 500*time.Millisecond))
	if err != nil {
		t.Fatalf("after the window: %v", err)
	}
	rel()
	// Now t0+10, t0+20, t0+60.5: the next frees at t0+70 → 9.5 s → 10 s.
	_, err = l.Admit(t0.Add(61 * time.Second))
	if !errors.As(err, &rf) || rf.RetryAfter != 9*time.Second {
		t.Fatalf("retry after: %v (%+v), want 9s", err, rf)
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l := newLimiter("a", Limits{MaxConcurrent: 2})
	now := time.Now()
	r1, err1 := l.Admit(now)
	r2, err2 := l.Admit(now)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	_, err := l.Admit(now)
	var rf *Refusal
	if !errors.As(err, &rf) || rf.Code != CodeTooManyConcurrent || rf.RetryAfter != time.Second {
		t.Fatalf("3rd at once: %v", err)
	}
	r1()
	r3, err := l.Admit(now)
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	r2()
	r3()
	if l.Running() != 0 {
		t.Fatalf("running %d", l.Running())
	}
	// Without limits, anything goes and nothing is recorded.
	u := newLimiter("u", Limits{})
	for range 1000 {
		if _, err := u.Admit(now); err != nil {
			t.Fatal(err)
		}
	}
	if len(u.starts) != 0 {
		t.Fatalf("unlimited limiter kept %d starts", len(u.starts))
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestStoreReload(t *testing.T) {
	log, hook := test.NewNullLogger()
	path := filepath.Join(t.TempDir(), "keys.json")
	writeFile(t, path, fileOf(entry("a", keyA, `"max_concurrent":1`)))
	s, err := Open(path, log)
	if err != nil {
		t.Fatal(err)
	}
	la, ok := s.Authenticate(keyA)
	if !ok || la.Name() != "a" {
		t.Fatal("A not authenticated")
	}
	if _, ok := s.Authenticate(keyB); ok {
		t.Fatal("B authenticated before it was added")
	}
	release, err := la.Admit(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Reload with B added and A's limit raised: A's counter stays.
	writeFile(t, path, fileOf(entry("a", keyA, `"max_concurrent":2`), entry("b", keyB, "")))
	if _, err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	la2, ok := s.Authenticate(keyA)
	if !ok || la2 != la || la2.Running() != 1 || la2.Limits().MaxConcurrent != 2 {
		t.Fatalf("A after reload: same=%v running=%d limits=%+v", la2 == la, la2.Running(), la2.Limits())
	}
	if _, ok := s.Authenticate(keyB); !ok {
		t.Fatal("B not authenticated after reload")
	}
	release()

	// A malformed file keeps the keys in force and says why, once.
	writeFile(t, path, `{"keys":[{"name":"a","sha256":"nothex"}]}`)
	s.ReloadAndLog("SIGHUP")
	if _, ok := s.Authenticate(keyB); !ok {
		t.Fatal("a malformed reload dropped B")
	}
	last := hook.LastEntry()
	if last == nil || last.Level != logrus.ErrorLevel || !strings.Contains(last.Data[logrus.ErrorKey].(error).Error(), "keys[0].sha256 (a)") {
		t.Fatalf("last log %+v", last)
	}

	// Watch picks up a change without a signal.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Watch(ctx, 20*time.Millisecond)
	writeFile(t, path, fileOf(entry("b", keyB, "")))
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, okA := s.Authenticate(keyA)
		_, okB := s.Authenticate(keyB)
		if !okA && okB {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not reload the changed file")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := s.Limiter("a"); ok {
		t.Fatal("a removed key still has a limiter")
	}
	// A malformed file seen by the watcher is reported once, not every poll.
	hook.Reset()
	writeFile(t, path, `{"keys":`)
	time.Sleep(300 * time.Millisecond)
	errs := 0
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.ErrorLevel {
			errs++
		}
	}
	if errs != 1 {
		t.Fatalf("%d error lines for one malformed file, want 1", errs)
	}
	if _, ok := s.Authenticate(keyB); !ok {
		t.Fatal("a malformed file dropped B")
	}
	for _, e := range hook.AllEntries() {
		line, _ := e.String()
		if strings.Contains(line, keyA) || strings.Contains(line, keyB) {
			t.Fatalf("a log line carries a key: %s", line)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing.json"), nil); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := Open(dir, nil); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("directory: %v", err)
	}
	p := filepath.Join(dir, "k.json")
	writeFile(t, p, fileOf(entry("a", keyA, `"per_minute":-1`)))
	if _, err := Open(p, nil); err == nil || !strings.Contains(err.Error(), "keys[0].per_minute (a)") {
		t.Fatalf("negative limit: %v", err)
	}
}
