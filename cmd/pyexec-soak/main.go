// Command pyexec-soak runs the real pyexec binary on the real engine under
// the mixed load at saturation (hello, a sine chart, a pandas
// groupby, a CPU loop, a timeout; more clients than workers) for a long
// time, and meanwhile restarts the engine twice and SIGKILLs the service
// once (starting it again with the same SERVICE_ID). It prints the
// requests, the answers by class (status + code), the recovery times (first
// success after each engine restart and after the kill), the service's RSS
// and goroutines at start and end, and the containers left at the end.
//
//	go run ./cmd/pyexec-soak [-duration 30m] [-clients 4] [-bin bin/pyexec] [-json out.json]
//
// It exits 1 when any answer breaks the contract (a 500, a hung request, a
// wrong 200, a 429/503 without Retry-After, or a transport error outside
// the kill window), when a container is left, or when the service exits on
// its own; 2 when it could not run. It stops the engine, so it takes the
// engine lock (/tmp/pyexec-engine.lock) exclusively for the whole run,
// waiting for engine tests that hold it; do not wrap it in flock(1).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/moby/moby/client"

	"github.com/pyexec/pyexec/internal/enginectl"
	"github.com/pyexec/pyexec/internal/loadgen"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1
	exitSetup  = 2
)

type options struct {
	duration   time.Duration
	clients    int
	workers    int
	bin        string
	jsonPath   string
	engineDown time.Duration
	lock       bool
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 30*time.Minute, "how long the load runs")
	flag.IntVar(&o.clients, "clients", 4, "closed-loop clients (more than -workers: saturation)")
	flag.IntVar(&o.workers, "workers", 3, "the service's MAX_WORKERS")
	flag.StringVar(&o.bin, "bin", "", "the pyexec binary (default: built from this module)")
	flag.StringVar(&o.jsonPath, "json", "", "also write the figures as JSON to this file")
	flag.DurationVar(&o.engineDown, "engine-down", 10*time.Second, "how long the engine stays stopped at each restart")
	flag.BoolVar(&o.lock, "lock", true, "hold the engine lock exclusively (false: the caller holds it)")
	flag.Parse()
	if o.duration < 2*time.Minute || o.clients < 1 || o.workers < 1 {
		fmt.Fprintln(os.Stderr, "pyexec-soak: want -duration of at least 2m, -clients and -workers at least 1")
		os.Exit(exitSetup)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := soak(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pyexec-soak: %v\n", err)
		os.Exit(exitSetup)
	}
	rep.print(os.Stdout)
	if o.jsonPath != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.jsonPath, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "pyexec-soak: %v\n", err)
		}
	}
	if !rep.Passed {
		os.Exit(exitFailed)
	}
	os.Exit(exitOK)
}

// serviceEnv is the service's environment: MAX_TIMEOUT_SECONDS bounds the
// longest execution, so the client timeout (hung) is that plus hangMargin.
func serviceEnv(owner string, workers int) []string {
	return []string{
		"SERVICE_ID=" + owner,
		"MAX_WORKERS=" + strconv.Itoa(workers),
		"POOL_SIZE=" + strconv.Itoa(workers),
		"MAX_QUEUE=32",
		"TIMEOUT_SECONDS=10",
		"MAX_TIMEOUT_SECONDS=15",
		"SHUTDOWN_TIMEOUT_SECONDS=30",
		"BUILD_IMAGE=false",
		"LOG_LEVEL=info",
	}
}

const (
	maxExec    = 15 * time.Second
	hangMargin = 45 * time.Second
	readyLimit = 5 * time.Minute
)

// event is one fault and what followed.
type event struct {
	Kind string    `json:"kind"` // "engine_restart" or "service_kill"
	At   time.Time `json:"at"`
	// Back is when the engine answered again, or the new process served.
	Back time.Time `json:"back"`
	// StopS and StartS: the engine's stop and start (engine restarts).
	StopS  float64 `json:"stop_s,omitempty"`
	StartS float64 `json:"start_s,omitempty"`
	// RecoveryS is from Back to the first success; FromFaultS from At.
	RecoveryS  float64 `json:"recovery_s"`
	FromFaultS float64 `json:"from_fault_s"`
	Recovered  bool    `json:"recovered"`
}

// report is what the soak prints.
type report struct {
	Duration      string            `json:"duration"`
	Clients       int               `json:"clients"`
	Workers       int               `json:"workers"`
	Requests      int               `json:"requests"`
	OK            int               `json:"ok"`
	Failures      int               `json:"failures"`
	ByClass       map[string]int    `json:"by_class"`
	FailureSample map[string]string `json:"failure_samples"`
	Events        []event           `json:"events"`
	RSSStartBytes int64             `json:"rss_start_bytes"`
	RSSEndBytes   int64             `json:"rss_end_bytes"`
	// RSSRestartBytes is the RSS of the process started after the kill,
	// once serving.
	RSSRestartBytes int64    `json:"rss_restart_bytes"`
	GoroutinesStart float64  `json:"goroutines_start"`
	GoroutinesEnd   float64  `json:"goroutines_end"`
	ContainersLeft  int      `json:"containers_left"`
	ServiceExit     string   `json:"service_exit"`
	Log             string   `json:"log"`
	Passed          bool     `json:"passed"`
	Problems        []string `json:"problems"`
	timeline        string
}

func soak(ctx context.Context, o options) (*report, error) {
	if o.lock {
		release, err := enginectl.Lock(true, func() {
			fmt.Fprintf(os.Stderr, "soak: waiting for the exclusive engine lock %s\n", enginectl.LockPath)
		})
		if err != nil {
			return nil, err
		}
		defer release()
	}
	if !enginectl.Answers(5 * time.Second) {
		return nil, errors.New("the engine does not answer (make engine)")
	}
	cli, err := client.New(client.FromEnv) // negotiates the API version
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	root, err := enginectl.ModuleRoot()
	if err != nil {
		return nil, err
	}
	bin := o.bin
	if bin == "" {
		dir, err := os.MkdirTemp("", "pyexec-soak-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		if bin, err = loadgen.Build(root, dir); err != nil {
			return nil, err
		}
	}
	port, err := loadgen.FreePort()
	if err != nil {
		return nil, err
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	owner := "pyexec-soak-" + hex.EncodeToString(b[:])
	rep := &report{Duration: o.duration.String(), Clients: o.clients, Workers: o.workers,
		Log: filepath.Join(os.TempDir(), owner+".log")}
	logf, err := os.Create(rep.Log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	env := serviceEnv(owner, o.workers)
	say := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "soak %s: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}

	say("service %s on port %d, log %s", owner, port, rep.Log)
	svc, err := loadgen.Start(bin, port, env, logf)
	if err != nil {
		return nil, err
	}
	// Whatever happens, no process is left running.
	defer func() { _ = svc.Stop(60 * time.Second) }()
	if err := svc.WaitReady(readyLimit, o.workers); err != nil {
		return nil, err
	}
	rep.RSSStartBytes, _ = svc.RSS()
	rep.GoroutinesStart, _ = svc.Metric("go_goroutines")
	say("ready: RSS %.1f MB, %v goroutines", mb(rep.RSSStartBytes), rep.GoroutinesStart)

	lc := loadgen.NewClient(svc.URL, maxExec+hangMargin)
	var rec loadgen.Recorder
	lctx, cancel := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(loadDone)
		lc.Run(lctx, o.clients, loadgen.Mixed, 200*time.Millisecond, &rec)
	}()
	stopLoad := func() { cancel(); <-loadDone }
	defer stopLoad()

	// The schedule: engine restarts at 1/4 and 3/4, the kill at 1/2.
	var killFrom, killTo time.Time
	waitUntil := func(frac float64) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Until(start.Add(time.Duration(frac * float64(o.duration))))):
			return true
		}
	}
	progress := time.NewTicker(time.Minute)
	defer progress.Stop()
	go func() {
		for range progress.C {
			// Connection errors are judged at the end, against the kill.
			s := loadgen.Summarize(rec.Answers(), time.Time{}, time.Time{}, func(a loadgen.Answer) bool { return a.Code == "transport" })
			say("%v: %d requests, %d ok, %d outside the contract (connection errors aside)",
				time.Since(start).Round(time.Second), s.Requests, s.OK, s.Failures)
		}
	}()
	unexpectedExit := func() error {
		select {
		case <-svc.Exited():
			return fmt.Errorf("the service exited on its own: %v", svc.ExitErr)
		default:
			return nil
		}
	}
	for _, step := range []struct {
		at   float64
		kind string
	}{{0.25, "engine_restart"}, {0.5, "service_kill"}, {0.75, "engine_restart"}} {
		if !waitUntil(step.at) {
			break
		}
		if err := unexpectedExit(); err != nil {
			rep.Problems = append(rep.Problems, err.Error())
			break
		}
		ev := event{Kind: step.kind, At: time.Now()}
		switch step.kind {
		case "engine_restart":
			say("stopping the engine")
			d, err := enginectl.Stop(45 * time.Second)
			if err != nil {
				return nil, err
			}
			ev.StopS = d.Seconds()
			time.Sleep(o.engineDown)
			d, err = enginectl.Start(90 * time.Second)
			if err != nil {
				return nil, err
			}
			ev.StartS = d.Seconds()
			ev.Back = time.Now()
			say("engine back (stop %.1fs, start %.1fs)", ev.StopS, ev.StartS)
		case "service_kill":
			say("SIGKILL the service")
			killFrom = time.Now()
			rssBefore, _ := svc.RSS()
			svc.Kill()
			svc, err = loadgen.Start(bin, port, env, logf)
			if err != nil {
				return nil, err
			}
			if err := svc.WaitReady(readyLimit, 1); err != nil {
				return nil, err
			}
			ev.Back = time.Now()
			killTo = ev.Back
			rep.RSSRestartBytes, _ = svc.RSS()
			say("service serving again after %.1fs (RSS before the kill %.1f MB, new %.1f MB)",
				ev.Back.Sub(ev.At).Seconds(), mb(rssBefore), mb(rep.RSSRestartBytes))
		}
		rep.Events = append(rep.Events, ev)
	}
	if ctx.Err() == nil {
		waitUntil(1)
	}
	if err := unexpectedExit(); err != nil {
		rep.Problems = append(rep.Problems, err.Error())
	}
	stopLoad()
	progress.Stop()
	answers := rec.Answers()

	// Recovery: the first success after each event.
	for i := range rep.Events {
		ev := &rep.Events[i]
		if d, ok := loadgen.FirstSuccessAfter(answers, ev.Back); ok {
			ev.Recovered = true
			ev.RecoveryS = d.Seconds()
			ev.FromFaultS = ev.Back.Add(d).Sub(ev.At).Seconds()
		} else {
			rep.Problems = append(rep.Problems, fmt.Sprintf("no success after the %s at %s", ev.Kind, ev.At.Format("15:04:05")))
		}
	}
	// Connection errors while the service was killed are expected.
	excused := func(a loadgen.Answer) bool {
		return a.HTTP == 0 && a.Code == "transport" && !killFrom.IsZero() &&
			!a.End.Before(killFrom) && a.End.Before(killTo)
	}
	s := loadgen.Summarize(answers, time.Time{}, time.Time{}, excused)
	rep.Requests, rep.OK, rep.Failures, rep.ByClass, rep.FailureSample = s.Requests, s.OK, s.Failures, s.ByClass, s.Samples
	rep.timeline = loadgen.Timeline(answers, start, time.Duration(max(int64(o.duration/40), int64(5*time.Second)))/time.Second*time.Second)

	// The end: goroutines and RSS once the load is gone, then a graceful
	// stop, then what the owner left on the engine.
	time.Sleep(5 * time.Second)
	rep.RSSEndBytes, _ = svc.RSS()
	rep.GoroutinesEnd, _ = svc.Metric("go_goroutines")
	if err := svc.Stop(60 * time.Second); err != nil {
		rep.ServiceExit = err.Error()
		rep.Problems = append(rep.Problems, "service exit after SIGTERM: "+err.Error())
	} else {
		rep.ServiceExit = "0"
	}
	lctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	left, err := cli.ContainerList(lctx2, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", "io.pyexec.managed=1", "io.pyexec.owner="+owner)})
	if err != nil {
		rep.Problems = append(rep.Problems, "list containers: "+err.Error())
	}
	rep.ContainersLeft = len(left.Items)
	for _, c := range left.Items {
		_, _ = cli.ContainerRemove(lctx2, c.ID, client.ContainerRemoveOptions{Force: true})
	}
	if rep.Failures > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d answers outside the contract", rep.Failures))
	}
	if rep.ContainersLeft > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d containers left", rep.ContainersLeft))
	}
	rep.Passed = len(rep.Problems) == 0
	return rep, nil
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }
