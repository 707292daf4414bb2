//go:build linux

package main

// Phase idle: what a cluster with no job costs.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hydra-compute/hydra/scripts/internal/procluster"
)

// idle starts 3 nodes with the default flags (not --dedicated: a laptop's node reads its owner
// sensors), waits until they agree on a leader, lets them settle for -idle-settle (30 s: an idle node's
// compute child exits after 20 s), then measures over
// -idle-seconds each node's CPU (the node and its compute child, from /proc/PID/stat) and its
// summed VmRSS (from /proc/PID/status; sampled every second, the mean and the maximum).
func idle(work string) {
	c, err := procluster.NewCluster(*flagHydra, filepath.Join(work, "idle"), "i", 3, func(int) []string {
		return []string{"--dht=false"}
	})
	sess.Check(err)
	leader := startStable(c, 3)
	fmt.Printf("idle: 3 nodes up (leader %s); settling %v; load average %s\n", c.Name(leader), *flagIdleSettle, procluster.LoadAvg())
	time.Sleep(*flagIdleSettle)
	n := len(c.Nodes)
	t0, own0, cs0 := make([]int64, n), make([]int64, n), make([]int64, n)
	for i, p := range c.Nodes {
		t0[i] = procluster.CPUTicks(p.PID())
		own0[i] = ownTicks(p)
		cs0[i] = ctxSwitches(p.PID())
		fmt.Printf("  %s: pid %d\n", p.Name, p.PID())
	}
	var lp *procluster.Proc
	for _, p := range c.Nodes {
		if p.ID == leader {
			lp = p
		}
	}
	perf := startPerf(lp, filepath.Join(work, "perf-idle.data"))
	w0 := time.Now()
	sumRSS, maxRSS, sumOwn := make([]float64, n), make([]int64, n), make([]float64, n)
	samples := 0
	for time.Since(w0) < *flagIdleSecs {
		time.Sleep(time.Second)
		samples++
		for i, p := range c.Nodes {
			r, own, _ := procluster.RSSKB(p.PID())
			sumRSS[i] += float64(r)
			sumOwn[i] += float64(own)
			maxRSS[i] = max(maxRSS[i], r)
		}
	}
	wall := time.Since(w0).Seconds()
	perf.report()
	var parts []string
	worstCPU, worstRSS := 0.0, 0.0
	for i, p := range c.Nodes {
		cpu := float64(procluster.CPUTicks(p.PID())-t0[i]) / procluster.ClockTick / wall * 100
		own := float64(ownTicks(p)-own0[i]) / procluster.ClockTick / wall * 100
		cs := float64(ctxSwitches(p.PID())-cs0[i]) / wall
		mean := sumRSS[i] / float64(samples) / 1024
		fmt.Printf("  %s: CPU %.2f %% (node %.2f %%), RSS %.1f MB (node %.1f MB), %.0f thread switches/s (node)\n", p.Name, cpu, own, mean, sumOwn[i]/float64(samples)/1024, cs)
		role := "follower"
		if p.ID == leader {
			role = "leader"
		}
		parts = append(parts, fmt.Sprintf("%s (%s) %.2f %% CPU, %.1f MB RSS (max %.1f), %.0f switches/s", p.Name, role, cpu, mean, float64(maxRSS[i])/1024, cs))
		worstCPU, worstRSS = max(worstCPU, cpu), max(worstRSS, float64(maxRSS[i])/1024)
	}
	c.Stop()
	addReport("idle cluster (3 nodes, default flags, no job, %.0f s; node + compute child): %s; worst %.2f %% of a core, %.1f MB",
		wall, strings.Join(parts, "; "), worstCPU, worstRSS)
}

// ctxSwitches is the node process's context switches so far, voluntary and not, summed over its
// threads (/proc/PID/task/*/status): each is a thread that woke up or was preempted, a measure
// of how often an idle node is woken that the load of a shared machine does not blur as much as
// its CPU time.
func ctxSwitches(pid int) int64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	var n int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n
}
