package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"
)

// attachBlock is one block of an attach stream (stdcopy's framing).
func attachBlock(stream byte, payload string) []byte {
	b := []byte{stream, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

func TestReadStdout(t *testing.T) {
	stream := bytes.Join([][]byte{attachBlock(2, "warning"), attachBlock(1, "x"), attachBlock(1, "\n")}, nil)
	got, err := readStdout(bytes.NewReader(stream), 2)
	if err != nil || string(got) != "x\n" {
		t.Fatalf("readStdout = %q, %v; want \"x\\n\" (stderr skipped, two blocks joined)", got, err)
	}
	if _, err := readStdout(bytes.NewReader(attachBlock(1, "xyz")), 2); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("too much stdout: %v", err)
	}
	if _, err := readStdout(bytes.NewReader(attachBlock(1, "x")[:6]), 2); err != io.ErrUnexpectedEOF {
		t.Errorf("a cut header: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestFloorLine(t *testing.T) {
	phases := []phaseResult{
		{Phase: "low-rate", Target: "session", Workload: sessionPrint.Name, OK: 20, Latency: latencySummary{N: 20, P50: 4.5}},
		{Phase: "low-rate", Target: floorTarget, Workload: floorHTTP, OK: 20, Latency: latencySummary{N: 20, P50: 0.7}},
		{Phase: "low-rate", Target: floorTarget, Workload: floorAttach, OK: 20, Latency: latencySummary{N: 20, P50: 1.3}},
	}
	got := floorLine(phases)
	for _, want := range []string{"GET /livez p50 0.7 ms", "attach echo p50 1.3 ms", "print(1) p50 4.5 ms, of which 2.5 ms above both"} {
		if !strings.Contains(got, want) {
			t.Errorf("floorLine = %q, want it to say %q", got, want)
		}
	}
	phases[2].OK = 0 // the attach floor failed: nothing to say
	if got := floorLine(phases); got != "" {
		t.Errorf("floorLine without the attach floor = %q", got)
	}
}
