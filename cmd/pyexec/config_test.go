package main

import (
	"strings"
	"testing"
	"time"

	"github.com/pyexec/pyexec/policy"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigDefaults(t *testing.T) {
	c, err := loadConfig(env(map[string]string{"SERVICE_ID": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 8000 || c.MaxWorkers != 4 || c.MaxQueue != 32 || c.Timeout != 30*time.Second ||
		c.MaxTimeout != 60*time.Second || c.MemoryBytes != 512<<20 || c.NanoCPUs != 1e9 ||
		c.PoolSize != 4 || c.Policy != policy.ModeStrict || c.AdminToken != "" {
		t.Errorf("defaults: %+v", c)
	}
	c, err = loadConfig(env(map[string]string{"SERVICE_ID": "x", "MAX_WORKERS": "8", "MAX_QUEUE": "0", "POLICY": "off", "LOG_LEVEL": "debug"}))
	if err != nil || c.PoolSize != 8 || c.MaxQueue != 0 || c.Policy != policy.ModeOff {
		t.Errorf("POOL_SIZE should follow MAX_WORKERS, MAX_QUEUE=0 stay 0: %+v, %v", c, err)
	}
}

func TestConfigRejectsBadValues(t *testing.T) {
	for name, val := range map[string]string{
		"PORT":                "eighty",
		"MAX_WORKERS":         "0",
		"MAX_QUEUE":           "-1",
		"TIMEOUT_SECONDS":     "abc",
		"MAX_TIMEOUT_SECONDS": "0",
		"LOG_LEVEL":           "loud",
		"MEMORY_LIMIT":        "12q",
		"CPU_LIMIT":           "NaN",
		"POOL_SIZE":           "-3",
		"POLICY":              "lax",
		"BUILD_IMAGE":         "perhaps",
		"ADMIN_TOKEN":         "short",
		"MAX_OUTPUT_BYTES":    "128m", // above what the sandbox supervisor accepts
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadConfig(env(map[string]string{"SERVICE_ID": "x", name: val}))
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("%s=%q: err = %v, want one naming the variable", name, val, err)
			}
		})
	}
	if _, err := loadConfig(env(map[string]string{"SERVICE_ID": "x", "TIMEOUT_SECONDS": "90"})); err == nil {
		t.Error("TIMEOUT_SECONDS above MAX_TIMEOUT_SECONDS accepted")
	}
}

func TestConfigFilesAndSessions(t *testing.T) {
	c, err := loadConfig(env(map[string]string{"SERVICE_ID": "x", "MEMORY_LIMIT": "1g"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.TmpfsBytes != 128<<20 || c.MaxInputFiles != 20 || c.MaxInputBytes != 32<<20 || c.MaxSessions != 16 ||
		c.SessionIdleTimeout != 600*time.Second || c.SessionMaxLifetime != time.Hour || c.SessionMemoryBytes != 1<<30 {
		t.Errorf("defaults: %+v", c)
	}
	f := c.fields()
	for _, k := range []string{"max_input_files", "max_input_bytes", "max_sessions", "session_idle_timeout_seconds",
		"session_max_lifetime_seconds", "session_memory_limit_bytes"} {
		if _, ok := f[k]; !ok {
			t.Errorf("fields() lacks %s", k)
		}
	}
	c, err = loadConfig(env(map[string]string{"SERVICE_ID": "x", "MAX_SESSIONS": "0", "SESSION_MEMORY_LIMIT": "256m",
		"SESSION_MAX_LIFETIME_SECONDS": "86400", "SESSION_IDLE_TIMEOUT_SECONDS": "7200"}))
	if err != nil || c.MaxSessions != 0 || c.SessionMemoryBytes != 256<<20 || c.SessionMaxLifetime != 24*time.Hour ||
		c.SessionIdleTimeout != 2*time.Hour {
		t.Errorf("explicit values: %+v, %v", c, err)
	}
	for name, val := range map[string]string{
		"MAX_INPUT_FILES":              "1001",
		"MAX_INPUT_BYTES":              "65m", // above what the supervisor takes
		"MAX_SESSIONS":                 "-1",
		"SESSION_IDLE_TIMEOUT_SECONDS": "0",
		"SESSION_MAX_LIFETIME_SECONDS": "86401",
		"SESSION_MEMORY_LIMIT":         "1m",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadConfig(env(map[string]string{"SERVICE_ID": "x", name: val}))
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("%s=%q: err = %v, want one naming the variable", name, val, err)
			}
		})
	}
	for _, m := range []map[string]string{
		{"SERVICE_ID": "x", "TMPFS_SIZE": "16m", "MAX_INPUT_BYTES": "32m"},
		{"SERVICE_ID": "x", "SESSION_IDLE_TIMEOUT_SECONDS": "120", "SESSION_MAX_LIFETIME_SECONDS": "60"},
	} {
		if _, err := loadConfig(env(m)); err == nil {
			t.Errorf("%v accepted", m)
		}
	}
}
