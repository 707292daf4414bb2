//go:build linux

package main

// Phase 1: heterogeneous efficiency against standalone rates measured in the same run.

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/scripts/internal/procluster"
)

func sum(xs []float64) float64 {
	var t float64
	for _, x := range xs {
		t += x
	}
	return t
}

func hetero(work string) {
	limits := parseInts(*flagLimits)
	n := len(limits)
	fmt.Printf("hetero: load average %s\n", procluster.LoadAvg())
	if os.Getenv(compute.KernelsEnv) == "" {
		// One kernel choice for every node, standalone and in the cluster: each node would
		// otherwise calibrate its own on a loaded machine, and two paths differ in speed by up
		// to 30 %, which moves the baseline away from the cluster it is compared with.
		os.Setenv(compute.KernelsEnv, compute.KernelPath())
		fmt.Printf("hetero: every node uses kernel %s (%s=, the benchmark's own calibration)\n", compute.KernelPath(), compute.KernelsEnv)
	}
	// The standalone nodes and the cluster are up together for the whole phase; the standalone
	// rates are measured in three rounds, before, between and after the two cluster jobs (the
	// machine is shared: its load moves), and the baseline is each node's median.
	solo := startSolo(work, limits)
	defer solo.stop()
	c := newCluster(filepath.Join(work, "hetero"), "h", n, func(i int) []string {
		return []string{"--cpus", "1", "--cpu-limit", strconv.Itoa(limits[i])}
	})
	leader := startStable(c, min(3, n))
	defer c.Stop()
	p := c.Nodes[0]
	tok := token(p)
	kern := kernelOf(p)
	fmt.Printf("hetero: %d-node cluster up (kernel %s, leader %s) and %d standalone nodes; load average %s\n", n, kern, c.ByID(leader).Name, n, procluster.LoadAvg())
	if *flagWarm {
		// Every node at the steady-state audit rate for both kernels: 20 audits passed in a
		// row, audited with probability 5 % (the floor, docs/audits.md), as the overhead phase's
		// "cluster that has run for a while". Just trusted (10 passes) a node is audited with
		// probability 1/10, and the measured jobs saw 3–8 % of their units audited.
		guess := 1.4e9 * sum(intsToFloats(limits)) / 100
		warmFloor(c, tok, "π", func(i int) map[string]any {
			return map[string]any{"kind": "pi", "samples": 1 << 22, "seed": 1000 + i}
		}, map[string]any{"kind": "pi", "samples": int64(1e14), "seed": 5}, warmPasses)
		tinyView := pickImage(0) // the measured jobs' region and max_iter, 64×36 pixels
		tinyView.Width, tinyView.Height = 64, 36
		warmFloor(c, tok, "Mandelbrot", func(int) map[string]any { return tinyView.body() }, pickImage(guess*300).body(), warmPasses)
	}

	// The Mandelbrot job is fixed before the first round, so that every round measures the
	// nodes on rows of it (standalone.go).
	solo.calibrate(*flagJobSecs)
	solo.round("before the π job")
	samples := int64(sum(solo.piMedian()) * *flagJobSecs)
	m0 := scrapeAll(c)
	id := submit(p, tok, map[string]any{"kind": "pi", "samples": samples, "seed": 11})
	v := waitJob(p, id, 10*time.Minute, nil)
	m1 := scrapeAll(c)
	fmt.Printf("  π %d samples: %.2f s, %d chunks, audited units %.3f of the job's; load average %s\n", samples, v.wall(), v.chunks(),
		float64(v.AuditedUnits)/float64(v.TotalUnits), procluster.LoadAvg())
	cr, ks := coordinatorRates(p)

	solo.round("between the π and Mandelbrot jobs")
	big := solo.img
	// with -perf: the leader's node process and another's, over the Mandelbrot job
	lp := c.ByID(leader)
	if st, _, err := procluster.GetStatus(context.Background(), p.HTTPURL); err == nil && c.ByID(st.Leader) != nil {
		lp = c.ByID(st.Leader)
	}
	other := c.Nodes[0]
	if other == lp {
		other = c.Nodes[1]
	}
	perfL := startPerf(lp, filepath.Join(work, "perf-mandel-leader.data"))
	perfO := startPerf(other, filepath.Join(work, "perf-mandel-other.data"))
	m2 := scrapeAll(c)
	mid := submit(p, tok, big.body())
	mv := waitJob(p, mid, 10*time.Minute, nil)
	m3 := scrapeAll(c) // before the raw image is read: that costs the node process too
	if perfL != nil {
		fmt.Printf("  perf of the leader %s over the Mandelbrot job:\n", lp.Name)
		perfL.report()
		fmt.Printf("  perf of %s (not the leader) over the Mandelbrot job:\n", other.Name)
		perfO.report()
	}
	fmt.Printf("  Mandelbrot %dx%d max_iter %d: %.2f s, %d chunks, audited rows %.3f of the job's; load average %s\n",
		big.Width, big.Height, big.MaxIter, mv.wall(), mv.chunks(), float64(mv.AuditedUnits)/float64(mv.TotalUnits), procluster.LoadAvg())
	ri := rowIters(getRaw(p, mid), big.Width)
	iters := sum(ri)

	solo.round("after the Mandelbrot job")
	piRate, mRate := solo.piMedian(), solo.mandelMedian()
	fmt.Println("  π job:")
	tailPi := shares(c, v, limits, piRate, sum(piRate))
	bdPi := breakdown(c, v, limits, m0, m1)
	if cr != nil {
		for i, q := range c.Nodes {
			fmt.Printf("    %s: coordinator's π rate estimate %.4g samples/s = %.2f x its standalone median (kernel %s)\n",
				q.Name, cr[q.ID]["pi"], cr[q.ID]["pi"]/piRate[i], ks[q.ID])
		}
	}
	fmt.Printf("  Mandelbrot job (%.4g iterations):\n", iters)
	tailM := shares(c, mv, limits, mRate, sum(mRate))
	bdM := breakdown(c, mv, limits, m2, m3)

	eff := func(units, rate, wall float64) float64 { return units / rate / wall }
	// the range: against the rounds with the smallest and the largest Σ
	rangeOf := func(units, wall float64, rounds [][]float64) (lo, hi float64) {
		lo, hi = math.Inf(1), 0
		for _, r := range rounds {
			e := eff(units, sum(r), wall)
			lo, hi = min(lo, e), max(hi, e)
		}
		return lo, hi
	}
	effPi, effM := eff(float64(v.TotalUnits), sum(piRate), v.wall()), eff(iters, sum(mRate), mv.wall())
	piLo, piHi := rangeOf(float64(v.TotalUnits), v.wall(), solo.pi)
	mLo, mHi := rangeOf(iters, mv.wall(), solo.m)
	spPi, dPi := spread(solo.pi)
	spM, dM := spread(solo.m)
	// Audits are work on top of the job's units: the same figure counting the units auditors
	// recomputed as done says how well the work was balanced, apart from what audits cost.
	// Mandelbrot audits recompute rows: counted at the job's mean iterations per row.
	audPi, audM := float64(v.AuditedUnits)/float64(v.TotalUnits), float64(mv.AuditedUnits)/float64(mv.TotalUnits)
	balPi, balM := effPi*(1+audPi), effM*(1+audM)
	fmt.Printf("  efficiency π %.3f (audited units %.3f of the job's; counting them as work done %.3f), Mandelbrot %.3f (audited rows %.3f; counting them %.3f)\n",
		effPi, audPi, balPi, effM, audM, balM)
	addReport("hetero audits: π %.1f %% of the units audited, efficiency counting audited units as work done %.3f (balance apart from audit cost; %.3f without); Mandelbrot %.1f %% of the rows, %.3f (%.3f without)",
		100*audPi, balPi, effPi, 100*audM, balM, effM)
	addReport("hetero efficiency (4 nodes --cpus 1 --cpu-limit %v, kernel %s), against each node's median standalone rate over %d rounds [against the rounds of least and most Σ]: π %.3f [%.3f–%.3f] (%.2f s vs ideal %.2f s, %d chunks); Mandelbrot %.3f [%.3f–%.3f] (%.2f s vs ideal %.2f s, %d chunks, %dx%d max_iter %d, units = iterations)",
		limits, kern, len(solo.pi), effPi, piLo, piHi, v.wall(), float64(v.TotalUnits)/sum(piRate), v.chunks(),
		effM, mLo, mHi, mv.wall(), iters/sum(mRate), mv.chunks(), big.Width, big.Height, big.MaxIter)
	addReport("hetero Mandelbrot standalone: %d strips of the job's own rows a node a round (its width and pixel, about -standalone %.0f s together, spread over the image), %d strip rows bit-exact against compute.MandelRows of the job's",
		stripsPerRound, flagStandalone.Seconds(), solo.checked)
	addReport("hetero standalone spread (each round's Σ ÷ Σ of the medians): π %s (±%.1f %%); Mandelbrot %s (±%.1f %%)", spPi, 100*dPi, spM, 100*dM)
	addReport("hetero breakdown π (per node, share of the makespan: computing / auditing / waiting for a chunk / idle at the end; CPU used ÷ its limit while computing): %s", bdPi)
	addReport("hetero breakdown Mandelbrot: %s", bdM)
	addReport("hetero tail efficiency (capacity idle after each node's last commit, weighted by its share; needs no baseline): π %.3f, Mandelbrot %.3f", tailPi, tailM)
	piCost := make([]float64, 1024) // π units are uniform: 1024 equal slices
	for i := range piCost {
		piCost[i] = float64(v.TotalUnits) / 1024
	}
	var fx []string
	for _, k := range parseInts(*flagFixed) {
		mp := simFixed(piCost, piRate, k)
		mm := simFixed(ri, mRate, k)
		fx = append(fx, fmt.Sprintf("%d chunks: π %.3f, Mandelbrot %.3f", k, float64(v.TotalUnits)/sum(piRate)/mp, iters/sum(mRate)/mm))
	}
	addReport("hetero fixed equal chunks (SIMULATED with the same standalone rates, zero coordination cost, greedy pull; Mandelbrot rows with their real iteration counts): %s", strings.Join(fx, "; "))
}

func intsToFloats(xs []int) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(x)
	}
	return out
}

// shares prints each node's part of the job and when its last chunk was
// committed, and returns the tail efficiency: 1 − Σ (node's share of the
// units × the fraction of the job's wall time after its last commit), i.e.
// the capacity left idle at the end, weighted by what each node delivered;
// it does not depend on a baseline measured at another time (the machine's
// load moves the standalone rates by ±30 % between phases).
func shares(c *procluster.Cluster, v *jobView, limits []int, rates []float64, sum float64) float64 {
	last := map[string]int64{}
	for _, ch := range getChunks(c.Nodes[0], v.ID) {
		last[ch.nodeID] = max(last[ch.nodeID], ch.committedMS)
	}
	tail := 1.0
	for _, x := range v.Nodes {
		if t, ok := last[x.Node]; ok && v.TotalUnits > 0 {
			idle := v.FinishedAt.Sub(time.UnixMilli(t)).Seconds() / v.wall()
			tail -= float64(x.Units) / float64(v.TotalUnits) * max(idle, 0)
		}
	}
	defer fmt.Printf("    tail efficiency %.3f\n", tail)
	for i, p := range c.Nodes {
		if t, ok := last[p.ID]; ok {
			fmt.Printf("    %s: last chunk committed at %.2f s of %.2f s\n", p.Name, time.UnixMilli(t).Sub(v.SubmittedAt).Seconds(), v.wall())
		}
		for _, x := range v.Nodes {
			if x.Node == p.ID {
				exp := ""
				if rates != nil {
					exp = fmt.Sprintf(" (rate share %.3f)", rates[i]/sum)
				}
				fmt.Printf("    %s (limit %d%%): %.3f of the units%s, %d chunks, %.1f compute s\n",
					p.Name, limits[i], float64(x.Units)/float64(v.TotalUnits), exp, x.Chunks, x.ComputeSeconds)
			}
		}
	}
	return tail
}

// ---- overhead

// ownTicks is the CPU time of the node process alone (not its compute child).
func ownTicks(p *procluster.Proc) int64 {
	st, err := procluster.ReadStat(p.PID())
	if err != nil {
		return 0
	}
	return st.UTime + st.STime
}

// scrapeAll reads each node's compute counters from /metrics (busy seconds, CPU seconds).
func scrapeAll(c *procluster.Cluster) []workCounters {
	out := make([]workCounters, len(c.Nodes))
	for i, p := range c.Nodes {
		out[i].node = float64(ownTicks(p)) / procluster.ClockTick
		b, err := api("GET", p.HTTPURL+"/metrics", "", nil)
		if err != nil {
			fatalf("metrics of %s: %v", p.Name, err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) != 2 {
				continue
			}
			x, _ := strconv.ParseFloat(f[1], 64)
			switch f[0] {
			case "hydra_compute_busy_seconds_total":
				out[i].busy = x
			case "hydra_compute_cpu_seconds_total":
				out[i].cpu = x
			case "hydra_audit_busy_seconds_total":
				out[i].audit = x
			case "hydra_audit_cpu_seconds_total":
				out[i].auditCPU = x
			}
		}
	}
	return out
}

type workCounters struct{ busy, cpu, audit, auditCPU, node float64 } // node: the node process's own CPU seconds

// breakdown prints, per node, how the job's makespan W was spent: computing (a chunk of the
// job in the compute child: the busy counter's growth), auditing (other nodes' chunks, the
// audit counter's growth: work the job needs, but not units of it), idle at the end (after its
// last commit), and waiting for a chunk (the rest: handing in a result and getting the next, a
// probe's round trip, or nothing leased); and the CPU it used while computing ÷ what its
// --cpu-limit allowed (below 1: preempted, or the limit's gate held it back more than it
// should). The counters are read before the submit and after the end, when every node is idle.
func breakdown(c *procluster.Cluster, v *jobView, limits []int, a, b []workCounters) string {
	last := map[string]int64{}
	chunks := getChunks(c.Nodes[0], v.ID)
	for _, ch := range chunks {
		last[ch.nodeID] = max(last[ch.nodeID], ch.committedMS)
	}
	W := v.wall()
	var parts []string
	for i, p := range c.Nodes {
		busy, cpu, aud, own := b[i].busy-a[i].busy, b[i].cpu-a[i].cpu, b[i].audit-a[i].audit, b[i].node-a[i].node
		end := 0.0
		if t, ok := last[p.ID]; ok {
			end = max(v.FinishedAt.Sub(time.UnixMilli(t)).Seconds(), 0)
		}
		wait := max(W-busy-aud-end, 0)
		use := 0.0
		if busy > 0 {
			use = cpu / (busy * float64(limits[i]) / 100)
		}
		l := fmt.Sprintf("%s %d%%: %.2f / %.2f / %.2f / %.2f, CPU %.2f", p.Name, limits[i], busy/W, aud/W, wait/W, end/W, use)
		fmt.Printf("    breakdown %s (computing %.2f s, auditing %.2f s, waiting %.2f s, idle at the end %.2f s of %.2f s; %.2f CPU s; the node process itself %.2f CPU s); no chunk of the job in hand: %s\n",
			l, busy, aud, wait, end, W, cpu, own, gaps(chunks, p.ID, v, float64(limits[i])/100))
		parts = append(parts, l)
	}
	return strings.Join(parts, "; ")
}

// gaps lists the spans of the job's makespan, from its submit to its end, when node computed no
// chunk of it for more than 0.2 s (auditing, waiting for a chunk, or idle), in seconds from the
// submit. A chunk's compute_seconds are its child's CPU seconds: at the node's limit (a share of
// a core) it ran for compute_seconds ÷ limit before its commit (the commit's own latency, some
// milliseconds, is not counted).
func gaps(chunks []chunk, node string, v *jobView, limit float64) string {
	type span struct{ a, b float64 }
	var busy []span
	for _, ch := range chunks {
		if ch.nodeID == node {
			b := time.UnixMilli(ch.committedMS).Sub(v.SubmittedAt).Seconds()
			busy = append(busy, span{b - ch.secs/limit, b})
		}
	}
	sort.Slice(busy, func(i, j int) bool { return busy[i].a < busy[j].a })
	var out []string
	at := 0.0
	for _, s := range append(busy, span{v.wall(), v.wall()}) {
		if s.a-at > 0.2 {
			out = append(out, fmt.Sprintf("%.1f–%.1f", at, s.a))
		}
		at = max(at, s.b)
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ", ")
}
