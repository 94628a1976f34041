package main

import (
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// latencySummary is the distribution of one phase's latencies, in ms.
type latencySummary struct {
	N    int     `json:"n"`
	Min  float64 `json:"min_ms"`
	P50  float64 `json:"p50_ms"`
	P95  float64 `json:"p95_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// percentile returns the nearest-rank percentile p (0 < p <= 100) of
// sorted: the smallest value such that at least p% of the values are less
// than or equal to it. It never interpolates, so the result is always an
// observed value; with fewer than 100 values p99 is the maximum. NaN when
// sorted is empty.
func percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 || p <= 0 || p > 100 || math.IsNaN(p) {
		return math.NaN()
	}
	// The epsilon keeps p*n/100 that is an integer in theory (95*20/100 = 19)
	// from rounding up to the next rank in floating point.
	rank := int(math.Ceil(p*float64(n)/100 - 1e-9))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// summarize sorts a copy of ms and returns its summary; zero N when empty.
func summarize(ms []float64) latencySummary {
	if len(ms) == 0 {
		return latencySummary{}
	}
	s := slices.Clone(ms)
	sort.Float64s(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	return latencySummary{
		N:    len(s),
		Min:  s[0],
		P50:  percentile(s, 50),
		P95:  percentile(s, 95),
		P99:  percentile(s, 99),
		Max:  s[len(s)-1],
		Mean: sum / float64(len(s)),
	}
}

// median is percentile 50 of an unsorted slice; NaN when empty.
func median(v []float64) float64 {
	s := slices.Clone(v)
	sort.Float64s(s)
	return percentile(s, 50)
}

// ratio is a/b, NaN when either side is missing or b is zero.
func ratio(a, b float64) float64 {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return math.NaN()
	}
	return a / b
}

// durMS converts a duration to float milliseconds.
func durMS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// lowRateCount is how many requests the fixed-rate phase sends: enough to
// cover the duration at the rate, and at least min.
func lowRateCount(d time.Duration, rate float64, min int) int {
	n := int(math.Ceil(d.Seconds()*rate - 1e-9))
	return max(n, min, 1)
}

// parseCounts parses "hello=20,sine=10" into a map. Names must be in known.
func parseCounts(s string, known []string) (map[string]int, error) {
	out := map[string]int{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("%q: want name=count", part)
		}
		if !slices.Contains(known, name) {
			return nil, fmt.Errorf("%q: unknown workload %q", part, name)
		}
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 || n > 100000 {
			return nil, fmt.Errorf("%q: want a count from 1 to 100000", part)
		}
		out[name] = n
	}
	return out, nil
}

// parseList splits "a,b" into names that must be in known, without repeats.
func parseList(s string, known []string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		name := strings.TrimSpace(part)
		if name == "" {
			continue
		}
		if !slices.Contains(known, name) {
			return nil, fmt.Errorf("unknown workload %q (known: %s)", name, strings.Join(known, ","))
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no workload in %q", s)
	}
	return out, nil
}

// localURL parses the service URL and refuses anything but plain HTTP to
// the loopback interface: the tool generates load and must not be pointed
// at someone else's machine.
func localURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("%q: only http:// is supported", raw)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q: want only scheme, host and port", raw)
	}
	host := u.Hostname()
	switch {
	case host == "localhost":
	case net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback():
	default:
		return nil, fmt.Errorf("%q: only 127.0.0.1, ::1 or localhost targets are allowed", raw)
	}
	if u.Port() == "" {
		return nil, fmt.Errorf("%q: the port is required", raw)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil || p < 1 || p > 65535 {
		return nil, fmt.Errorf("%q: bad port", raw)
	}
	u.Path = ""
	return u, nil
}

// parseVmRSS returns VmRSS in bytes from the text of /proc/PID/status.
func parseVmRSS(status string) (int64, error) {
	for _, line := range strings.Split(status, "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS %q: %w", line, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no VmRSS line (kernel thread or zombie?)")
}

// listenInodes returns the socket inodes listening on port in the text of
// /proc/net/tcp or /proc/net/tcp6.
func listenInodes(table string, port int) []uint64 {
	const stateListen = "0A"
	var out []uint64
	for i, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 10 {
			continue // header or blank
		}
		// f[1] is local_address "HEXIP:HEXPORT", f[3] the state, f[9] the inode.
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok || f[3] != stateListen {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil || int(p) != port {
			continue
		}
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil || ino == 0 {
			continue
		}
		out = append(out, ino)
	}
	return out
}

// fmtMS formats milliseconds for the table; "-" for NaN.
func fmtMS(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// fmtRatio formats a ratio; "-" for NaN.
func fmtRatio(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "x"
}

// fmtCounts formats {"500": 2, "check": 1} as "500:2 check:1", sorted.
func fmtCounts(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// mb formats bytes as decimal megabytes (the unit of the target).
func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }
