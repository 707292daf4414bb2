//go:build linux

// Command benchcluster measures the job figures (docs/design.md §3) on a cluster of
// real `hydra node` processes on loopback (--mdns=false --dht=false, every
// node given every other one with --join, ports on 127.0.0.1).
// scripts/bench-cluster builds it and runs it; see there for the invocation.
// Phases (-phases, comma-separated, default all):
//
//   - hetero: heterogeneous efficiency. Baseline: -limits (default
//     75,40,20,15) single-node clusters, --cpus 1 --cpu-limit L each (a node
//     alone under its limit), up for the whole phase beside the cluster and
//     measured all at the same time (as the nodes compute in the cluster) in
//     three rounds: before the π job, between the jobs and after the
//     Mandelbrot job. Each node's baseline is its median over the rounds;
//     each round's Σ against the medians' is printed (the spread), and the
//     efficiency against the rounds of least and most Σ (the machine is
//     shared: its load moves). In a round a node computes a π job for
//     -standalone (8 s) before it is cancelled, then 4 strips of the cluster's
//     own Mandelbrot job (its width and pixel, rows spread over the image in
//     van der Corput order from a random offset, each a job of its own, bit
//     for bit the job's rows), about -standalone in all. A rate is the
//     steady state: the units of the chunks after a job's first (the probe) ÷
//     the time between its first and last commits (GET …/chunks,
//     committed_ms), summed over a node's strips. For Mandelbrot the unit is
//     an iteration (Σ of the result.raw counts of a chunk's rows), because
//     rows differ in cost. The four nodes form one cluster and run one π job
//     sized for about -job-seconds on the first round's rates and one
//     Mandelbrot job sized on a calibration before the first round (each
//     standalone node's rate on 2 strips of a provisional job): efficiency = (units ÷ Σ
//     standalone rates) ÷ (finished_at − submitted_at). Units are the job's own: audits
//     (docs/audits.md) are work the cluster does on top, so they lower the
//     figure. A new node has every chunk audited in full, which doubles a
//     fresh cluster's work; with -warm (default) every node is first brought
//     to the steady-state audit rate for both kernels, as a cluster that has
//     run for a while: 20 audits passed in a row, audited with probability
//     5 % (the floor), by rounds of one-chunk jobs (π 2^22 samples, a 64x36
//     view) from 4 clients, then one job of the measured jobs' size until
//     every node has handed in two chunks of it (so that the rate estimates
//     come from real chunks), cancelled. The share of units audited is
//     printed, and the efficiency counting the units auditors recomputed as
//     work done (the balance, apart from what audits cost; Mandelbrot rows at
//     the job's mean iterations per row). A makespan breakdown per node:
//     computing (hydra_compute_busy_seconds_total), auditing
//     (hydra_audit_busy_seconds_total), waiting for a chunk, idle after its
//     last commit, and the CPU it got while computing ÷ its limit. The
//     single-node standalone clusters audit nothing (one machine). The
//     fixed-equal-chunk policy of the old
//     prototype is not in the node, so it is simulated here (not run): the
//     measured standalone rates, N equal chunks (by units: π samples,
//     Mandelbrot rows with their real iteration counts from the cluster
//     run's result), each node taking the next chunk when it is free, no
//     coordination cost at all (an upper bound for that policy).
//   - overhead: per-chunk overhead. 3 nodes (3 voters, --cpus 1,
//     --chunk-target 100ms), made trusted first with -warm (audited at the
//     5 % floor, as a cluster that has run for a while; docs/audits.md).
//     First the figure that matches Dask's client.map(noop, range(n)) (one
//     submission of n tiny tasks): one π job of -chunk-job (default 30000)
//     chunks of chunk_units 65536 samples (the smallest π chunk, ~60 µs of
//     work); each chunk is leased (in runs of whole chunks), computed in the
//     compute child, committed through raft with its own result and
//     commitment, audited at the trusted rate, and acknowledged; figure =
//     chunks accepted ÷ (finished_at − submitted_at), with the raft entries
//     it took and the CPU per chunk of the leader's and all node processes.
//     Then -tiny-jobs (default 3000) π jobs of 65536 samples (one chunk
//     each) submitted to the leader by 16 clients at once; figure = chunks
//     accepted ÷ wall time from the first submit to the last job done (each
//     job also costs a submit and a finish entry). The leader's CPU over
//     each window is reported per chunk; with -perf a `perf record` of the
//     leader (and with -perf-worker of a follower, over the chunked job) is
//     summarised.
//   - failover: cost of a leader kill. 3 coordinator nodes (--compute=false
//     --voter prefer) and 2 workers (--voter never --cpus 1): killing the
//     leader then removes no compute capacity, so the extra time is the
//     coordination cost alone. A π job sized for -kill-seconds (calibrated
//     on the cluster) is run -kill-runs times without and with a SIGKILL of
//     the leader once 40 % is done (alternating); the victim is restarted
//     (same data dir) after the job. Extra = kill run − median of no-kill
//     runs, and kill run − the no-kill run just before it (paired, less
//     sensitive to the load of a shared machine drifting); the chunk history
//     around the kill is printed (commit gap, chunks after it).
//   - idle: a 3-node cluster (default flags) with no job: each node's CPU
//     (node + compute child) and summed VmRSS over -idle-seconds, after
//     -idle-settle (30 s) of settling, and its threads' context switches
//     per second (how often it is woken; less blurred by a shared machine's
//     load than its CPU time); with -perf a `perf record` of the leader
//     (not in the default phases: run -phases idle).
//   - hetero-wasm: one cluster at -limits runs a π job and a WebAssembly job (the Monte-Carlo
//     example), each sized for -job-seconds from a probe; each node's share of the units
//     against its share of the limits, and the tail efficiency of both (not in the default
//     phases: run -phases hetero-wasm).
//   - audits: what audits cost on a real cluster. -audit-nodes fresh nodes
//     (--cpus 1; with -audit-limits, one per limit, under --cpu-limit) run a
//     π job of about -audit-job-seconds while all are new (every chunk
//     audited): the time from its last commit to done (the wait for its last
//     audits) and its audited share; then π jobs until every node is trusted,
//     (with -audit-passes N, until each has passed N audits: 20 reaches the
//     5 % floor; -audit-chunk-target shortens the chunks to get there sooner),
//     and one of about -audit-steady-seconds: the share of its units auditors
//     recomputed and the audits' CPU time against the chunks'
//     (hydra_audit_cpu_seconds_total, hydra_compute_cpu_seconds_total).
//     Not in the default phases: run -phases audits.
//   - dask-hetero: with -dask-hetero SCRIPT, the hetero phase's figure for
//     Dask distributed: one worker process per -limits entry (1 thread)
//     held to L % of a core by a cgroup CPU quota of its own (the kernel's
//     CFS bandwidth control, exact over every 100 ms; cgroup v2 cpu.max or
//     v1 cpu.cfs_quota_us, where /sys/fs/cgroup can be written, e.g. as
//     root), else under `cpulimit -l L`; one π and one Mandelbrot job (same
//     view, numpy kernels) sized for about -job-seconds on a calibration,
//     each split into 64 and 512 equal tasks. Standalone rates are measured
//     the same way as Hydra's (all workers at the same time, three rounds:
//     before, between and after the jobs; median per worker), on the jobs'
//     own tasks: for each task count, π tasks of that job's size and a random
//     sample of that Mandelbrot job's strips (its width and strip height),
//     two in flight for -standalone ÷ 2 each; each job is held against the
//     rates of its own tasks and the better of each kind is reported beside
//     Hydra's, with each worker's CPU ÷ its limit (in the rounds, and in the
//     jobs over the job and while computing) and the CPU used beside the
//     workers (the scheduler, the rest of the machine).
//   - dask: with -dask SCRIPT, /usr/bin/python3 SCRIPT -dask-tasks runs
//     no-op tasks on a LocalCluster of 2 processes; tasks/s beside Hydra's
//     chunks/s.
//
// The load average is printed at the start and end of every phase (the
// machine is shared). Every process started is SIGKILLed on exit.
package main

import (
	"bytes"
	"cmp"
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/scripts/internal/procluster"
)

var (
	flagHydra      = flag.String("hydra", "", "path to the hydra binary (required)")
	flagWork       = flag.String("work", "", "work directory (default: a new temporary one, removed at the end)")
	flagKeep       = flag.Bool("keep", false, "keep the work directory")
	flagPhases     = flag.String("phases", "hetero,dask-hetero,overhead,failover,dask", "phases to run")
	flagLimits     = flag.String("limits", "75,40,20,15", "hetero: --cpu-limit of each node")
	flagStandalone = flag.Duration("standalone", 8*time.Second, "hetero, dask-hetero: how long each standalone rate is measured (per round; three rounds; at least 8s)")
	flagWarm       = flag.Bool("warm", true, "hetero: bring every node to the steady-state audit rate (20 audits passed in a row, audited at the 5 % floor) for π and Mandelbrot (warm-up jobs) before the measured jobs")
	flagJobSecs    = flag.Float64("job-seconds", 20, "hetero: target duration of the cluster jobs")
	flagMandelIter = flag.Int("max-iter", 2000, "hetero: Mandelbrot max_iter")
	flagFixed      = flag.String("fixed-chunks", "4,16,64", "hetero: chunk counts of the simulated fixed equal-chunk policy")
	flagTinyJobs   = flag.Int("tiny-jobs", 3000, "overhead: number of one-chunk π jobs (0: only the chunked job)")
	flagChunkJob   = flag.Int("chunk-job", 30000, "overhead: chunks of the one π job with chunk_units 65536 (0: skip)")
	flagPerfWorker = flag.Bool("perf-worker", false, "overhead: with -perf, also perf record a follower over the chunked job")
	flagPerf       = flag.Bool("perf", false, "overhead, idle: perf record the leader over the measured window")
	flagKillSecs   = flag.Float64("kill-seconds", 25, "failover: target duration of the π job")
	flagKillRuns   = flag.Int("kill-runs", 3, "failover: runs without and with a leader kill")
	flagDask       = flag.String("dask", "", "dask: path of the no-op task script (skipped if empty)")
	flagDaskTasks  = flag.Int("dask-tasks", 20000, "dask: no-op tasks")
	flagIdleSettle = flag.Duration("idle-settle", 30*time.Second, "idle: how long the idle cluster settles before it is measured")
	flagIdleSecs   = flag.Duration("idle-seconds", 60*time.Second, "idle: how long the idle cluster is measured")
	flagDaskHet    = flag.String("dask-hetero", "", "dask-hetero: path of the heterogeneous-efficiency script (skipped if empty)")
)

var (
	report           []string
	hydraChunksPerS  float64 // from the overhead phase (one-chunk jobs), for the Dask ratio
	hydraChunkedPerS float64 // the same for the one job of many minimum-size chunks
)

func addReport(format string, args ...any) {
	l := fmt.Sprintf(format, args...)
	report = append(report, l)
	fmt.Println("  => " + l)
}

// ---- API

func failoverCost(work string) {
	c := newCluster(filepath.Join(work, "kill"), "k", 5, func(i int) []string {
		if i < 3 {
			return []string{"--compute=false", "--voter", "prefer", "--voters", "3"}
		}
		return []string{"--voter", "never", "--cpus", "1", "--voters", "3"}
	})
	startStable(c, 3)
	w := c.Nodes[3] // a worker: never the leader, never killed
	tok := token(w)
	fmt.Printf("failover: 3 coordinators (--compute=false) + 2 workers (--cpus 1) up; load average %s\n", procluster.LoadAvg())
	// calibrate
	id := submit(w, tok, map[string]any{"kind": "pi", "samples": int64(1e14), "seed": 3})
	time.Sleep(4 * time.Second)
	v0, _ := getJob(w, id)
	t0 := time.Now()
	time.Sleep(4 * time.Second)
	v1, _ := getJob(w, id)
	rate := float64(v1.DoneUnits-v0.DoneUnits) / time.Since(t0).Seconds()
	cancel(w, tok, id)
	samples := int64(rate * *flagKillSecs)
	fmt.Printf("  cluster rate %.4g samples/s -> jobs of %d samples\n", rate, samples)
	var base, kill []float64
	for run := 1; run <= *flagKillRuns; run++ {
		for _, doKill := range []bool{false, true} {
			leader, _, err := procluster.WaitStable(c, 3, time.Second, 90*time.Second)
			if err != nil {
				c.Tails(20)
				fatalf("failover: %v", err)
			}
			id := submit(w, tok, map[string]any{"kind": "pi", "samples": samples, "seed": 20 + run})
			var victim *procluster.Proc
			var killAt time.Time
			v := waitJob(w, id, 10*time.Minute, func(v *jobView) {
				if doKill && victim == nil && v.TotalUnits > 0 && float64(v.DoneUnits) >= 0.4*float64(v.TotalUnits) {
					victim = c.ByID(leader)
					if st, _, err := procluster.GetStatus(context.Background(), w.HTTPURL); err == nil && st.Leader != "" {
						victim = c.ByID(st.Leader)
					}
					killAt = time.Now()
					victim.Kill()
				}
			})
			if v.State != compute.StateDone {
				fatalf("job %s: %s", id, v.State)
			}
			if doKill {
				kill = append(kill, v.wall())
				fmt.Printf("  run %d kill: %.2f s (killed leader %s at %.2f s), %d chunks; load average %s\n", run, v.wall(), victim.Name, killAt.Sub(v.SubmittedAt).Seconds(), v.chunks(), procluster.LoadAvg())
				timeline(w, v, killAt)
				if err := victim.Start(); err != nil {
					fatalf("restart: %v", err)
				}
			} else {
				base = append(base, v.wall())
				fmt.Printf("  run %d no kill: %.2f s, %d chunks; load average %s\n", run, v.wall(), v.chunks(), procluster.LoadAvg())
			}
		}
	}
	c.Stop()
	mb := median(base)
	var extra []string
	for _, k := range kill {
		extra = append(extra, fmt.Sprintf("%+.2f", k-mb))
	}
	var paired []float64
	for i := range kill {
		paired = append(paired, kill[i]-base[i])
	}
	addReport("leader kill (π job of %d samples on 2 workers, leader = a --compute=false coordinator SIGKILLed at 40%%): no kill %s s (median %.2f); kill %s s; extra seconds vs the no-kill median: %s (median %+.2f); kill run minus the no-kill run just before it: %s (median %+.2f)",
		samples, fmtList(base), mb, fmtList(kill), strings.Join(extra, ", "), median(kill)-mb, fmtList(paired), median(paired))
}

// timeline prints what the chunk history says about a kill: the commit gap
// around it and the chunks after it.
func timeline(p *procluster.Proc, v *jobView, killAt time.Time) {
	cs := getChunks(p, v.ID)
	k := killAt.UnixMilli()
	var before, after int64 = 0, 0
	nAfter := 0
	last := map[string]int64{}
	for _, c := range cs {
		if c.committedMS <= k {
			before = max(before, c.committedMS)
		} else {
			if after == 0 || c.committedMS < after {
				after = c.committedMS
			}
			nAfter++
		}
		last[c.nodeID] = max(last[c.nodeID], c.committedMS)
	}
	rel := func(ms int64) float64 { return time.UnixMilli(ms).Sub(v.SubmittedAt).Seconds() }
	var ls []string
	for id, t := range last {
		ls = append(ls, fmt.Sprintf("%.12s… %.2f s", id, rel(t)))
	}
	sort.Strings(ls)
	fmt.Printf("    timeline: kill at %.2f s; last commit before %.2f s, first after %.2f s (gap %.2f s); %d chunks after the kill; each worker's last commit: %s\n",
		rel(k), rel(before), rel(after), float64(after-before)/1000, nAfter, strings.Join(ls, ", "))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtList(xs []float64) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprintf("%.2f", x))
	}
	return strings.Join(s, ", ")
}

// ---- dask

func dask() {
	if *flagDask == "" {
		fmt.Println("dask: no -dask script, skipped")
		return
	}
	fmt.Printf("dask: %d no-op tasks on a LocalCluster of 2 processes; load average %s\n", *flagDaskTasks, procluster.LoadAvg())
	out, err := runPython(5*time.Minute, *flagDask, strconv.Itoa(*flagDaskTasks))
	var res string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "RESULT ") {
			res = strings.TrimPrefix(l, "RESULT ")
			if f := strings.Fields(res); len(f) > 0 && hydraChunksPerS > 0 {
				if r, err := strconv.ParseFloat(f[0], 64); err == nil && r > 0 {
					res += fmt.Sprintf("; Hydra ÷ Dask: one-chunk jobs %.2f", hydraChunksPerS/r)
					if hydraChunkedPerS > 0 {
						res += fmt.Sprintf(", one job of minimum-size chunks %.2f", hydraChunkedPerS/r)
					}
				}
			}
		}
	}
	if res == "" {
		addReport("dask: no result (%v): %s", err, tail(out))
		return
	}
	addReport("dask distributed no-op tasks: %s", res)
}

// daskHetero runs the Dask heterogeneous-efficiency script and reports its RESULT lines.
func daskHetero() {
	if *flagDaskHet == "" {
		fmt.Println("dask-hetero: no -dask-hetero script (python3-distributed missing), skipped")
		return
	}
	fmt.Printf("dask-hetero: workers limited to %s %% of a core; load average %s\n", *flagLimits, procluster.LoadAvg())
	p := compute.MandelParams{CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.02, MaxIter: *flagMandelIter}
	out, err := runPython(15*time.Minute, *flagDaskHet, *flagLimits, fmt.Sprint(*flagJobSecs), fmt.Sprint(flagStandalone.Seconds()),
		fmt.Sprint(p.CenterX), fmt.Sprint(p.CenterY), fmt.Sprint(p.Span), fmt.Sprint(p.MaxIter))
	n, limiter := 0, "cpulimit"
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "dask: ") {
			fmt.Println("  " + l)
		}
		if v, ok := strings.CutPrefix(l, "LIMITER "); ok {
			limiter = map[string]string{"cgroup": "a cgroup CPU quota each"}[v]
			limiter = cmp.Or(limiter, "cpulimit")
		}
		if r, ok := strings.CutPrefix(l, "RESULT "); ok {
			addReport("dask hetero efficiency (workers under %s at %s, same method): %s", limiter, *flagLimits, r)
			n++
		}
	}
	if n == 0 {
		addReport("dask-hetero: no result (%v): %s", err, tail(out))
	}
	fmt.Printf("dask-hetero: load average %s\n", procluster.LoadAvg())
}

// runPython runs a Python script with its arguments, killed (with its children) after limit,
// and returns its combined output and its exit error (or the error starting it).
func runPython(limit time.Duration, script string, args ...string) (string, error) {
	cmd := exec.Command("/usr/bin/python3", append([]string{script}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := procluster.StartTracked(cmd); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(limit):
		procluster.KillTree(cmd)
		err = <-done
	}
	procluster.Untrack(cmd)
	return out.String(), err
}

// tail is the last 2000 bytes of a script's output, for a report.
func tail(out string) string {
	if len(out) > 2000 {
		return out[len(out)-2000:]
	}
	return out
}

// ---- main

// minStandalone is the shortest -standalone window that measures every node in every round.
const minStandalone = 8 * time.Second

func main() {
	flag.Parse()
	if *flagHydra == "" {
		fmt.Fprintln(os.Stderr, "benchcluster: -hydra is required")
		os.Exit(2)
	}
	if *flagStandalone < minStandalone {
		// A rate is the steady state after each job's first chunk, and chunks take about 2 s: a
		// shorter window left a round with no π chunk after the first (a fatal 0 rate).
		fmt.Fprintf(os.Stderr, "benchcluster: -standalone %v: at least %v (a standalone rate needs several 2 s chunks after each job's first)\n", *flagStandalone, minStandalone)
		os.Exit(2)
	}
	if abs, err := filepath.Abs(*flagHydra); err == nil {
		*flagHydra = abs
	}
	sess.Keep = *flagKeep
	if err := sess.SetWorkDir(*flagWork, "hydra-benchcluster-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sess.ExitOnSignal()
	workDir := sess.WorkDir()
	probeFlags()
	fmt.Printf("benchcluster: %s, %d CPUs, load average %s (--dedicated: %v)\n", *flagHydra, runtime.NumCPU(), procluster.LoadAvg(), hasDedicated)
	for _, ph := range strings.Split(*flagPhases, ",") {
		switch strings.TrimSpace(ph) {
		case "hetero":
			hetero(workDir)
		case "overhead":
			overhead(workDir)
		case "failover":
			failoverCost(workDir)
		case "dask":
			dask()
		case "idle":
			idle(workDir)
		case "dask-hetero":
			daskHetero()
		case "hetero-wasm":
			heteroWasm(workDir)
		case "audits":
			auditsPhase(workDir)
		default:
			fatalf("unknown phase %q", ph)
		}
	}
	fmt.Println("\n==== report (load average now " + procluster.LoadAvg() + ")")
	for _, l := range report {
		fmt.Println(l)
	}
	sess.Cleanup()
}
