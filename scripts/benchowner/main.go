//go:build linux

// Command benchowner measures what a Hydra node costs its owner (docs/design.md §7), with
// real `hydra node` processes on loopback (--mdns=false, --dht=false, 127.0.0.1 only).
// scripts/bench-owner builds and runs it; see there for the usual invocations.
//
// Default mode, the owner's slowdown: the owner's program is -owner-procs processes (default
// one per core) hashing with SHA-256 flat out; its throughput (ops/s) is measured for -secs
// alternately WITHOUT Hydra (no hydra process at all) and WITH one node computing a π job at
// full speed beside it (--dedicated: the owner policy never pauses, so this measures idle
// priority alone; the node is started before the WITH window and stopped after it). -rounds
// rounds of WITHOUT then WITH; the figure is the median of the rounds' WITH/WITHOUT ratios
// (goal ≥ 0.95: at most 5 % slower). Before the rounds, the node computes alone for -secs
// to give its full-speed rate. Every phase reports the CPU the machine spent on things this
// benchmark did not start ("foreign", other people's programs: a disturbed round shows there),
// and every WITH phase the CPU the compute child got and the job units accepted, so a WITH
// phase in which Hydra did not compute is flagged.
//
// -flaps mode: a node WITHOUT --dedicated (--idle-after 0, --on-battery run, --max-owner-cpu,
// --pause-after, --resume-after as given) computes a π job while the owner's load is a square
// wave: every core busy -high % of the time for half a -period, -low % for the other half, so
// the machine's average crosses the threshold every half period. Its /api/v1/status is polled
// every 200 ms for -minutes and the node's pause/resume transitions counted; the report gives
// them per hour and the policy's promise (at most one pause and one resume per calm-down
// period). The node's log is cross-checked for the policy's decisions.
//
// Every process it starts (nodes, their compute children, load workers) runs in a process group
// of its own with Pdeathsig=SIGKILL and is killed on exit, on error, on SIGINT and SIGTERM; the
// work directory is removed unless -keep.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/hydra-compute/hydra/scripts/internal/procluster"
)

var (
	flagHydra  = flag.String("hydra", "", "hydra binary (default: build one from this module into the work directory)")
	flagSIMD   = flag.Bool("simd", true, "build hydra with GOEXPERIMENT=simd (the release builds' kernels)")
	flagWork   = flag.String("work", "", "work directory (default: a new temporary one)")
	flagKeep   = flag.Bool("keep", false, "keep the work directory (nodes' data and logs)")
	flagRounds = flag.Int("rounds", 5, "slowdown: rounds of WITHOUT then WITH")
	flagSecs   = flag.Float64("secs", 10, "slowdown: seconds per measurement")
	flagProcs  = flag.Int("owner-procs", runtime.NumCPU(), "slowdown: owner processes (one core each)")
	flagOwnerD = flag.Float64("owner-duty", 100, "slowdown: percent of the time each owner process is busy (100: flat out)")
	flagFlaps  = flag.Bool("flaps", false, "measure pause/resume flaps under an oscillating owner load instead of the slowdown")
	flagMins   = flag.Float64("minutes", 3, "flaps: how long to watch")
	flagHigh   = flag.Float64("high", 35, "flaps: owner load in the wave's first half, percent of the machine")
	flagLow    = flag.Float64("low", 15, "flaps: owner load in the wave's second half, percent of the machine")
	flagPeriod = flag.Duration("period", 4*time.Second, "flaps: period of the owner load's square wave")
	flagResume = flag.Duration("resume-after", 10*time.Second, "flaps: the node's --resume-after (calm-down)")
	flagPause  = flag.Duration("pause-after", time.Second, "flaps: the node's --pause-after")
	flagMaxCPU = flag.Float64("max-owner-cpu", 25, "flaps: the node's --max-owner-cpu (percent)")
	flagNode   = flag.String("node-args", "", "extra flags for the hydra node (space-separated)")
)

// piSamples is the π job's size: the API's maximum, far more than any run computes.
const piSamples = 1_000_000_000_000_000

func main() {
	flag.Parse()
	if *flagWorker {
		os.Exit(runWorker())
	}
	os.Exit(run())
}

func run() (code int) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// A second signal means now.
		<-ctx.Done()
		stop()
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		<-ch
		procluster.KillAll()
		os.Exit(130)
	}()
	work := *flagWork
	if work == "" {
		d, err := os.MkdirTemp("", "hydra-bench-owner.")
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchowner:", err)
			return 1
		}
		work = d
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "benchowner:", err)
		return 1
	}
	defer func() {
		procluster.KillAll()
		if *flagKeep {
			fmt.Println("work directory kept:", work)
		} else {
			_ = os.RemoveAll(work)
		}
	}()
	err := bench(ctx, work)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchowner:", err)
		if errors.Is(err, context.Canceled) {
			return 130
		}
		return 1
	}
	return 0
}

func bench(ctx context.Context, work string) error {
	if err := checkFlags(); err != nil {
		return err
	}
	bin := *flagHydra
	if bin == "" {
		var err error
		if bin, err = buildHydra(ctx, work); err != nil {
			return err
		}
	}
	fmt.Printf("machine: %d CPUs, %s; load average at start %s\n", runtime.NumCPU(), cpuModel(), procluster.LoadAvg())
	if *flagFlaps {
		return benchFlaps(ctx, bin, work)
	}
	return benchSlowdown(ctx, bin, work)
}

func checkFlags() error {
	switch {
	case *flagRounds < 1:
		return fmt.Errorf("-rounds %d: want at least 1", *flagRounds)
	case *flagSecs < 1:
		return fmt.Errorf("-secs %g: want at least 1", *flagSecs)
	case *flagProcs < 1:
		return fmt.Errorf("-owner-procs %d: want at least 1", *flagProcs)
	case *flagOwnerD <= 0 || *flagOwnerD > 100:
		return fmt.Errorf("-owner-duty %g: want 0 < duty ≤ 100", *flagOwnerD)
	case *flagMins <= 0:
		return fmt.Errorf("-minutes %g: want more than 0", *flagMins)
	case *flagHigh < 0 || *flagHigh > 100 || *flagLow < 0 || *flagLow > 100:
		return fmt.Errorf("-high %g, -low %g: want percentages 0–100", *flagHigh, *flagLow)
	case *flagPeriod < 2*dutySlice:
		return fmt.Errorf("-period %v: want at least %v", *flagPeriod, 2*dutySlice)
	}
	return nil
}

// buildHydra builds the module's hydra into work.
func buildHydra(ctx context.Context, work string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the hydra module: run from the repository or pass -hydra")
	}
	bin := filepath.Join(work, "hydra")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Dir(mod)
	cmd.Env = os.Environ()
	if *flagSIMD {
		cmd.Env = append(cmd.Env, "GOEXPERIMENT=simd")
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	fmt.Printf("building hydra (%s)\n", map[bool]string{true: "GOEXPERIMENT=simd", false: "plain"}[*flagSIMD])
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build hydra: %w", err)
	}
	return bin, nil
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// nodeArgs returns -node-args split into flags.
func nodeArgs() []string { return strings.Fields(*flagNode) }

// kernelOf returns what the node's compute child said it runs (from the node's log).
func kernelOf(n *node) string {
	b, _ := os.ReadFile(n.LogPath)
	s := string(b)
	i := strings.LastIndex(s, "compute child started")
	if i < 0 {
		return "?"
	}
	line, _, _ := strings.Cut(s[i:], "\n")
	var kernel, prio string
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "kernel="); ok {
			kernel = v
		}
	}
	if j := strings.Index(line, `priority="`); j >= 0 {
		prio, _, _ = strings.Cut(line[j+len(`priority="`):], `"`)
	}
	return fmt.Sprintf("kernel %s, %s", kernel, prio)
}
