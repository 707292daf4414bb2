//go:build linux

package main

// The owner's slowdown: the owner's throughput WITHOUT and WITH a node computing beside it.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/hydra-compute/hydra/scripts/internal/procluster"
)

// phase is one measurement window.
type phase struct {
	with    bool
	secs    float64
	load    loadResult
	loadavg string  // at the start
	machine float64 // busy CPU-s of the whole machine
	steal   float64 // CPU-s the hypervisor gave to other guests
	node    float64 // CPU-s of the node process
	compute float64 // CPU-s of its compute child
	self    float64 // CPU-s of this program
	foreign float64 // the rest: programs this benchmark did not start
	units   uint64  // job units accepted during the window
	state   string  // the node's state at the end ("working", …)
}

// measure runs the owner load (procs workers; none: just waits) for d, with n (may be nil)
// computing job id, and accounts for the machine's CPU.
func measure(ctx context.Context, n *node, id string, procs int, d time.Duration) (phase, error) {
	p := phase{with: n != nil, loadavg: procluster.LoadAvg()}
	busy0, steal0, err := machineCPU()
	if err != nil {
		return p, err
	}
	self0, _ := procluster.ReadStat(os.Getpid())
	var node0, comp0 float64
	var units0 uint64
	if n != nil {
		node0, comp0 = treeCPU(n.PID())
		j, err := n.job(ctx, id)
		if err != nil {
			return p, fmt.Errorf("job before the window: %w", err)
		}
		units0 = j.DoneUnits
	}
	t0 := time.Now()
	if procs > 0 {
		if p.load, err = runLoad(ctx, procs, d, "-duty", fmt.Sprint(*flagOwnerD)); err != nil {
			return p, err
		}
	} else {
		select { // the window itself
		case <-time.After(d):
		case <-ctx.Done():
			return p, ctx.Err()
		}
	}
	p.secs = time.Since(t0).Seconds()
	busy1, steal1, err := machineCPU()
	if err != nil {
		return p, err
	}
	self1, _ := procluster.ReadStat(os.Getpid())
	p.machine, p.steal, p.self = busy1-busy0, steal1-steal0, self1.CPU()-self0.CPU()
	if n != nil {
		node1, comp1 := treeCPU(n.PID())
		p.node, p.compute = node1-node0, comp1-comp0
		j, err := n.job(ctx, id)
		if err != nil {
			return p, fmt.Errorf("job after the window: %w", err)
		}
		p.units = j.DoneUnits - units0
		if p.state, _, err = n.selfState(ctx); err != nil {
			return p, err
		}
	}
	p.foreign = max(p.machine-p.load.CPU-p.node-p.compute-p.self, 0)
	return p, nil
}

// pct is CPU-s over a window as percent of the whole machine.
func pct(cpu, secs float64) float64 { return 100 * cpu / secs / float64(runtime.NumCPU()) }

func benchSlowdown(ctx context.Context, bin, work string) error {
	d := time.Duration(*flagSecs * float64(time.Second))
	n, err := newNode(bin, filepath.Join(work, "node"), append([]string{"--dedicated"}, nodeArgs()...)...)
	if err != nil {
		return err
	}
	fmt.Printf("owner slowdown: %d owner processes (SHA-256, %g %% busy), %d rounds of %v WITHOUT then %v WITH a node (--dedicated) computing π\n",
		*flagProcs, *flagOwnerD, *flagRounds, d, d)
	if err := n.start(ctx); err != nil {
		return err
	}
	id, err := n.submitPi(ctx, piSamples, 1)
	if err != nil {
		return err
	}
	if err := n.waitComputing(ctx, id); err != nil {
		return err
	}
	fmt.Printf("node: %s\n", kernelOf(n))
	alone, err := measure(ctx, n, id, 0, d)
	if err != nil {
		return err
	}
	if alone.compute <= 0 || alone.units == 0 {
		return fmt.Errorf("the node computed nothing alone (%.2f CPU-s, %d units); see %s", alone.compute, alone.units, n.LogPath)
	}
	perCPU := float64(alone.units) / alone.compute // samples per compute CPU-s
	fmt.Printf("hydra alone: %.3g samples/s accepted, compute child %.0f %% of the machine (%.3g samples per CPU-s), node %.1f %%, foreign %.1f %%, load avg %s\n",
		float64(alone.units)/alone.secs, pct(alone.compute, alone.secs), perCPU, pct(alone.node, alone.secs), pct(alone.foreign, alone.secs), alone.loadavg)
	n.stop()

	fmt.Println("\nowner ops/s: SHA-256 blocks of 16 KiB per second, all owner processes; ratio: WITH/WITHOUT of the round;")
	fmt.Println("ops/cpu-s: per CPU-second the owner got (eff: its ratio; below 1 means Hydra slowed the owner's cycles,")
	fmt.Println("not only took some); CPU columns in percent of the machine; hydra est/s: compute CPU-s × the alone rate.")
	fmt.Printf("%-5s %-7s %11s %7s %7s %9s %7s %8s %6s %6s %8s %10s %9s %-8s %s\n", "round", "phase", "owner ops/s", "ratio",
		"owner%", "ops/cpu-s", "eff", "foreign%", "steal%", "node%", "compute%", "hydra est/s", "accepted", "state", "load avg")
	var ratios, effs []float64
	var units0 uint64 // accepted before the rounds
	var computeLess []int
	for r := 1; r <= *flagRounds; r++ {
		without, err := measure(ctx, nil, "", *flagProcs, d)
		if err != nil {
			return fmt.Errorf("round %d WITHOUT: %w", r, err)
		}
		printPhase(r, without, phase{}, perCPU)
		if err := n.start(ctx); err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		if r == 1 {
			if units0, err = n.units(ctx, id); err != nil {
				return err
			}
		}
		if err := n.waitComputing(ctx, id); err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		with, err := measure(ctx, n, id, *flagProcs, d)
		n.stop()
		if err != nil {
			return fmt.Errorf("round %d WITH: %w", r, err)
		}
		ratio := with.load.OpsPerSec / without.load.OpsPerSec
		ratios = append(ratios, ratio)
		printPhase(r, with, without, perCPU)
		effs = append(effs, with.opsPerCPU()/without.opsPerCPU())
		if with.compute <= 0 && with.units == 0 {
			computeLess = append(computeLess, r)
		}
	}
	// The job's progress over the rounds (the chunks' prefixes handed in as the node stopped)
	// shows on one more start.
	if err := n.start(ctx); err != nil {
		return fmt.Errorf("final start: %w", err)
	}
	units1, err := n.units(ctx, id)
	n.stop()
	if err != nil {
		return err
	}
	sorted := slices.Clone(ratios)
	slices.Sort(sorted)
	med := median(sorted)
	fmt.Printf("\nowner throughput WITH/WITHOUT: median %.4f (slowdown %.2f %%; goal ≤ 5 %%), min %.4f, max %.4f over %d rounds: %s\n",
		med, 100*(1-med), sorted[0], sorted[len(sorted)-1], len(ratios), fmtRatios(ratios))
	se := slices.Clone(effs)
	slices.Sort(se)
	fmt.Printf("owner ops per owner CPU-s WITH/WITHOUT: median %.4f, min %.4f, max %.4f: %s\n", median(se), se[0], se[len(se)-1], fmtRatios(effs))
	fmt.Printf("load average at the end: %s\n", procluster.LoadAvg())
	lost := strings.Count(readFile(n.LogPath), "results not handed in")
	fmt.Printf("job progress over the rounds: %d → %d samples accepted (+%.3g)\n", units0, units1, float64(units1-units0))
	fmt.Printf("node stops (SIGTERM) that did not hand in the finished prefix of the chunk in hand: %d of %d (\"results not handed in\" in %s)\n",
		lost, *flagRounds+2, filepath.Base(n.LogPath))
	if len(computeLess) > 0 {
		fmt.Printf("WARNING: in round(s) %v the compute child got no CPU and the job no units: Hydra did not compute there\n", computeLess)
	}
	return nil
}

func (p phase) opsPerCPU() float64 { return p.load.OpsPerSec * p.secs / p.load.CPU }

func printPhase(r int, p, without phase, perCPU float64) {
	name, ratio, eff, node, comp, est, acc, state := "without", "", "", "", "", "", "", ""
	if p.with {
		name = "with"
		ratio = fmt.Sprintf("%.4f", p.load.OpsPerSec/without.load.OpsPerSec)
		eff = fmt.Sprintf("%.4f", p.opsPerCPU()/without.opsPerCPU())
		node = fmt.Sprintf("%.1f", pct(p.node, p.secs))
		comp = fmt.Sprintf("%.2f", pct(p.compute, p.secs))
		est = fmt.Sprintf("%.3g", p.compute*perCPU/p.secs)
		acc = fmt.Sprint(p.units)
		state = p.state
	}
	fmt.Printf("%-5d %-7s %11.0f %7s %7.1f %9.0f %7s %8.1f %6.1f %6s %8s %10s %9s %-8s %s\n", r, name, p.load.OpsPerSec, ratio,
		pct(p.load.CPU, p.secs), p.opsPerCPU(), eff, pct(p.foreign, p.secs), pct(p.steal, p.secs), node, comp, est, acc, state, p.loadavg)
}

func median(sorted []float64) float64 {
	k := len(sorted)
	if k%2 == 1 {
		return sorted[k/2]
	}
	return (sorted[k/2-1] + sorted[k/2]) / 2
}

func fmtRatios(rs []float64) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = fmt.Sprintf("%.4f", r)
	}
	return strings.Join(s, " ")
}
