package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"github.com/pyexec/pyexec/internal/engine"
)

// attachBlock is one block of an attach stream (stdcopy's framing).
func attachBlock(stream byte, payload string) []byte {
	b := []byte{stream, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// TestEchoRead: the attach floor reads its line back through
// engine.AttachReader, as roundTrip does: stderr skipped, a line split over
// blocks joined, a reply that is not the line seen as one, a cut stream an
// error.
func TestEchoRead(t *testing.T) {
	read := func(stream []byte) (string, error) {
		got := make([]byte, len(echoLine))
		_, err := io.ReadFull(engine.NewAttachReader(bytes.NewReader(stream), io.Discard), got)
		return string(got), err
	}
	stream := bytes.Join([][]byte{attachBlock(2, "warning"), attachBlock(1, "x"), attachBlock(1, "\n")}, nil)
	if got, err := read(stream); err != nil || got != string(echoLine) {
		t.Fatalf("read %q, %v; want %q (stderr skipped, two blocks joined)", got, err, echoLine)
	}
	if got, err := read(attachBlock(1, "xyz")); err != nil || got == string(echoLine) {
		t.Errorf("another reply read as %q, %v: roundTrip would take it for the line", got, err)
	}
	if _, err := read(attachBlock(1, "x")[:6]); err != io.ErrUnexpectedEOF {
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
