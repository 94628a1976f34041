package runner

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/pyexec/pyexec/internal/dockertest"
)

// These tests speak the sandbox's wire protocol (supervisor.c, child.py)
// directly to a container of the real image, created from the runner's own
// hardened spec (sandboxSpec), below the runner's session code: what the
// image itself answers to cells, files and timeouts.

// wireSandbox is one attached container of the real image.
type wireSandbox struct {
	t      *testing.T
	conn   client.HijackedResponse
	frames chan frameOrErr
}

// startWireSandbox creates, attaches and starts a container with the
// runner's spec for role and waits for its ready frame. The container is
// removed when the test ends, and none of owner's may be left.
func startWireSandbox(t *testing.T, role string) *wireSandbox {
	t.Helper()
	cli := dockertest.Require(t)
	image := dockertest.Image(t, cli)
	owner := dockertest.Owner(t)
	r, err := New(nil, Options{Image: image, Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	sp := r.sandboxSpec(role, PreloadNone, nil)
	ctx, cancel := context.WithTimeout(context.Background(), dockertest.Scale(time.Minute))
	defer cancel()
	resp, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: sp.config, HostConfig: sp.host, NetworkingConfig: sp.network})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		rmCtx, rmCancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer rmCancel()
		if _, err := cli.ContainerRemove(rmCtx, resp.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Errorf("remove: %v", err)
		}
		dockertest.AssertNoContainers(t, cli, owner)
	})
	hj, err := cli.ContainerAttach(ctx, resp.ID, client.ContainerAttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	t.Cleanup(hj.Close)
	ws := &wireSandbox{t: t, conn: hj.HijackedResponse, frames: make(chan frameOrErr, 16)}
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	go func() {
		_, err := stdcopy.StdCopy(pw, &stderr, hj.Reader)
		pw.CloseWithError(err)
	}()
	go func() {
		defer close(ws.frames)
		fr := newFrameReader(pr, 256<<20)
		for {
			f, err := fr.next()
			ws.frames <- frameOrErr{f: f, err: err}
			if err != nil {
				return
			}
		}
	}()
	if _, err := cli.ContainerStart(ctx, resp.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	if f := ws.next(dockertest.Scale(30 * time.Second)); f.kind != frameReady {
		t.Fatalf("first frame %q, want ready", f.kind)
	}
	return ws
}

func (ws *wireSandbox) next(limit time.Duration) frame {
	ws.t.Helper()
	select {
	case fe, ok := <-ws.frames:
		if !ok || fe.err != nil {
			ws.t.Fatalf("frame stream ended: %v", fe.err)
		}
		return fe.f
	case <-time.After(limit):
		ws.t.Fatalf("no frame within %v", limit)
	}
	return frame{}
}

// wireReply is the sandbox's answer to one request.
type wireReply struct {
	frames  execFrames
	exit    wireExit
	memory  int64
	outputs struct {
		Result *struct {
			Repr string `json:"repr"`
		} `json:"result"`
		Variables map[string]struct {
			Repr string `json:"repr"`
		} `json:"variables"`
		Files []struct {
			Name    string `json:"name"`
			Size    int64  `json:"size"`
			Content []byte `json:"content"`
		} `json:"files"`
		FilesTruncated bool `json:"files_truncated"`
		FilesSkipped   []struct {
			Name   string `json:"name"`
			Reason string `json:"reason"`
		} `json:"files_skipped"`
	}
	report struct {
		Error *ExecError `json:"error"`
	}
	took time.Duration
}

// send writes one request (header word "cell" or "run") and reads the
// frames up to its exit frame.
func (ws *wireSandbox) send(word string, timeout time.Duration, body any) wireReply {
	ws.t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		ws.t.Fatal(err)
	}
	header := cellHeader(timeout, 1<<20, 1<<20, 64<<20, len(data))
	header = word + strings.TrimPrefix(header, "cell")
	start := time.Now()
	if _, err := ws.conn.Conn.Write(append([]byte(header), data...)); err != nil {
		ws.t.Fatalf("send: %v", err)
	}
	var rep wireReply
	for {
		f := ws.next(timeout + dockertest.Scale(10*time.Second))
		if f.kind == frameExit {
			rep.took = time.Since(start)
			rep.exit, rep.memory = decodeExit(ws.t, f.payload)
			break
		}
		if !rep.frames.add(f) {
			ws.t.Fatalf("unexpected frame %q", f.kind)
		}
	}
	if rep.frames.gotOutputs {
		if err := json.Unmarshal(rep.frames.outputs, &rep.outputs); err != nil {
			ws.t.Fatalf("outputs %s: %v", rep.frames.outputs, err)
		}
	}
	if rep.frames.gotReport {
		if err := json.Unmarshal(rep.frames.report, &rep.report); err != nil {
			ws.t.Fatalf("report %s: %v", rep.frames.report, err)
		}
	}
	return rep
}

func (ws *wireSandbox) cell(timeout time.Duration, body map[string]any) wireReply {
	ws.t.Helper()
	return ws.send("cell", timeout, body)
}

// ok fails unless the cell ran without error and the session lives on.
func (rep wireReply) ok(t *testing.T, what string) {
	t.Helper()
	if rep.exit.State != sessionExitAlive || rep.exit.TimedOut || rep.report.Error != nil || !rep.frames.gotOutputs {
		t.Fatalf("%s: exit %+v, error %+v, stderr %q", what, rep.exit, rep.report.Error, rep.frames.stderr)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestWireSession runs a session's cells in the real image: state across
// cells, files in and out, an interrupt that works and one that does not.
func TestWireSession(t *testing.T) {
	t.Parallel()
	ws := startWireSandbox(t, roleSession)
	sec := time.Second

	rep := ws.cell(5*sec, map[string]any{"op": "run", "code": "x = 41"})
	rep.ok(t, "x = 41")
	if rep.outputs.Variables["x"].Repr != "41" || rep.memory <= 0 {
		t.Errorf("x = 41: variables %v, memory %d", rep.outputs.Variables, rep.memory)
	}
	rep = ws.cell(5*sec, map[string]any{"op": "run", "code": "print(x)\nx + 1"})
	rep.ok(t, "x + 1")
	if rep.outputs.Result == nil || rep.outputs.Result.Repr != "42" || string(rep.frames.stdout) != "41\n" {
		t.Errorf("x + 1: result %+v, stdout %q", rep.outputs.Result, rep.frames.stdout)
	}
	// Variables not (re)bound by a cell are not shown again.
	if _, shown := rep.outputs.Variables["x"]; shown {
		t.Errorf("x + 1: variables %v, want none", rep.outputs.Variables)
	}

	// Files: put, then a cell with its own input file that reads both and
	// writes outputs (and a symlink and a FIFO, which are skipped).
	ws.cell(5*sec, map[string]any{"op": "put", "files": []map[string]any{{"name": "in.csv", "content": b64("a,b\n1,2\n")}}}).ok(t, "put")
	const csv = "region,amount\nnorth,1\nsouth,2\nnorth,3\n"
	code := `import csv, os
rows = list(csv.DictReader(open("sales.csv")))
totals = {}
for r in rows:
    totals[r["region"]] = totals.get(r["region"], 0) + int(r["amount"])
with open("outputs/by_region.csv", "w") as f:
    f.write("".join("%s,%d\n" % kv for kv in sorted(totals.items())))
os.symlink("/etc/passwd", "outputs/passwd")
os.mkfifo("outputs/fifo")
print(open("in.csv").read().strip(), os.getcwd())`
	rep = ws.cell(5*sec, map[string]any{"op": "run", "code": code, "files": []map[string]any{{"name": "sales.csv", "content": b64(csv)}}})
	rep.ok(t, "files cell")
	if string(rep.frames.stdout) != "a,b\n1,2 /tmp/work\n" {
		t.Errorf("files cell: stdout %q", rep.frames.stdout)
	}
	const want = "north,4\nsouth,2\n"
	if len(rep.outputs.Files) != 1 || rep.outputs.Files[0].Name != "by_region.csv" || string(rep.outputs.Files[0].Content) != want ||
		rep.outputs.Files[0].Size != int64(len(want)) {
		t.Errorf("files cell: files %+v", rep.outputs.Files)
	}
	var skipped []string
	for _, s := range rep.outputs.FilesSkipped {
		skipped = append(skipped, s.Name+":"+s.Reason)
	}
	if slices.Sort(skipped); !slices.Equal(skipped, []string{"fifo:fifo", "passwd:symlink"}) {
		t.Errorf("files cell: skipped %v", skipped)
	}
	rep = ws.cell(5*sec, map[string]any{"op": "get", "name": "by_region.csv"})
	rep.ok(t, "get")
	if len(rep.outputs.Files) != 1 || string(rep.outputs.Files[0].Content) != want {
		t.Errorf("get: files %+v", rep.outputs.Files)
	}
	rep = ws.cell(5*sec, map[string]any{"op": "get", "name": "passwd"})
	if rep.exit.State != sessionExitAlive || rep.report.Error == nil || rep.report.Error.Type != "FileNotFoundError" {
		t.Errorf("get of a symlink: exit %+v error %+v files %+v", rep.exit, rep.report.Error, rep.outputs.Files)
	}
	rep = ws.cell(5*sec, map[string]any{"op": "list"})
	rep.ok(t, "list")
	var listed []string
	for _, f := range rep.outputs.Files {
		listed = append(listed, f.Name)
	}
	if !slices.Equal(listed, []string{"in.csv", "outputs/by_region.csv", "sales.csv"}) {
		t.Errorf("list: %v", listed)
	}
	rep = ws.cell(5*sec, map[string]any{"op": "put", "files": []map[string]any{{"name": "../escape", "content": b64("x")}}})
	if rep.exit.State != sessionExitAlive || rep.report.Error == nil || rep.report.Error.Type != "ValueError" {
		t.Errorf("put ../escape: exit %+v error %+v", rep.exit, rep.report.Error)
	}

	// A runaway Python loop: interrupted at the deadline, the session lives.
	rep = ws.cell(sec, map[string]any{"op": "run", "code": "while True: pass"})
	if rep.exit.State != sessionExitAlive || !rep.exit.TimedOut || rep.report.Error == nil || rep.report.Error.Type != "KeyboardInterrupt" {
		t.Errorf("interrupted loop: exit %+v error %+v", rep.exit, rep.report.Error)
	}
	if rep.took > sec+interruptGrace+dockertest.Scale(time.Second) {
		t.Errorf("interrupted loop answered after %v", rep.took)
	}
	rep = ws.cell(5*sec, map[string]any{"op": "run", "code": "x"})
	rep.ok(t, "x after the interrupt")
	if rep.outputs.Result == nil || rep.outputs.Result.Repr != "41" {
		t.Errorf("x after the interrupt: %+v", rep.outputs.Result)
	}

	// A C-level loop ignores the interrupt: killed after the grace, the
	// session (the container) ends.
	rep = ws.cell(sec, map[string]any{"op": "run", "code": "sum(range(10**12))"})
	if rep.exit.State != exitSignaled || rep.exit.Signal != 9 || !rep.exit.TimedOut {
		t.Errorf("C-level loop: exit %+v", rep.exit)
	}
	if rep.took < sec+interruptGrace || rep.took > sec+interruptGrace+dockertest.Scale(2*time.Second) {
		t.Errorf("C-level loop answered after %v, want %v plus the grace", rep.took, sec)
	}
	select {
	case fe, ok := <-ws.frames:
		if ok && !errors.Is(fe.err, io.EOF) {
			t.Errorf("after the session ended: frame %q, error %v", fe.f.kind, fe.err)
		}
	case <-time.After(dockertest.Scale(10 * time.Second)):
		t.Errorf("the container did not end with the session")
	}
}

// TestWireSingleShotFiles: a single-shot execution in the real image takes
// input files and returns what the code wrote under outputs/.
func TestWireSingleShotFiles(t *testing.T) {
	t.Parallel()
	ws := startWireSandbox(t, roleExec)
	code := `import os
data = open("in.txt").read()
os.makedirs("outputs/sub")
open("outputs/sub/upper.txt", "w").write(data.upper())
os.symlink("/etc", "outputs/etc")
print(os.getcwd(), sorted(os.listdir(".")))`
	rep := ws.send("run", 5*time.Second, map[string]any{"code": code, "timeout": 5, "files": []map[string]any{{"name": "in.txt", "content": b64("hello")}}})
	if rep.exit.State == sessionExitAlive || rep.exit.TimedOut || rep.report.Error != nil {
		t.Fatalf("exit %+v error %+v stderr %q", rep.exit, rep.report.Error, rep.frames.stderr)
	}
	if string(rep.frames.stdout) != "/tmp/work ['in.txt', 'outputs']\n" {
		t.Errorf("stdout %q", rep.frames.stdout)
	}
	if len(rep.outputs.Files) != 1 || rep.outputs.Files[0].Name != "sub/upper.txt" || string(rep.outputs.Files[0].Content) != "HELLO" ||
		len(rep.outputs.FilesSkipped) != 1 || rep.outputs.FilesSkipped[0].Reason != "symlink" {
		t.Errorf("files %+v skipped %+v", rep.outputs.Files, rep.outputs.FilesSkipped)
	}
	// A bad name is refused by the sandbox too: nothing runs.
	ws2 := startWireSandbox(t, roleExec)
	rep = ws2.send("run", 5*time.Second, map[string]any{"code": "print('ran')", "timeout": 5, "files": []map[string]any{{"name": "a/../../b", "content": b64("x")}}})
	if rep.report.Error == nil || rep.report.Error.Type != "ValueError" || len(rep.frames.stdout) != 0 {
		t.Errorf("bad name: error %+v stdout %q", rep.report.Error, rep.frames.stdout)
	}
}
