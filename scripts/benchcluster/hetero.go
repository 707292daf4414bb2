//go:build linux

package main

// Phase 1: heterogeneous efficiency against standalone rates measured in the same run.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/scripts/internal/procluster"
)

// standalone measures each limit's standalone rates (π samples/s,
// Mandelbrot iterations/s on img) on single-node clusters run at the same
// time; tag names this measurement.
func standalone(work, tag string, limits []int, img mandelImg) (piRate, mRate []float64, kern string) {
	n := len(limits)
	fmt.Printf("hetero: standalone rates of %d single-node clusters at --cpu-limit %v, measured at the same time for %v each (π, then Mandelbrot %dx%d max_iter %d)\n",
		n, limits, *flagStandalone, img.Width, img.Height, img.MaxIter)
	var solo []*procluster.Cluster
	for i, l := range limits {
		c := newCluster(filepath.Join(work, fmt.Sprintf("solo-%s-%d", tag, i+1)), fmt.Sprintf("s%s%d-", tag, l), 1, func(int) []string {
			return []string{"--cpus", "1", "--cpu-limit", strconv.Itoa(l)}
		})
		sess.Check(c.StartAll())
		solo = append(solo, c)
	}
	for _, c := range solo {
		if _, _, err := procluster.WaitStable(c, 1, 500*time.Millisecond, 90*time.Second); err != nil {
			c.Tails(20)
			fatalf("standalone: %v", err)
		}
	}
	piRate = make([]float64, n)
	mRate = make([]float64, n)
	var wg sync.WaitGroup
	for i, c := range solo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := c.Nodes[0]
			tok := token(p)
			id := submit(p, tok, map[string]any{"kind": "pi", "samples": int64(1e14), "seed": 7})
			time.Sleep(*flagStandalone)
			cancel(p, tok, id)
			cs := getChunks(p, id)
			var k int
			piRate[i], k = steadyRate(cs, func(c chunk) float64 { return float64(c.end - c.start) })
			fmt.Printf("  %s: π %.4g samples/s (%d chunks)\n", p.Name, piRate[i], k)
			id = submit(p, tok, img.body())
			time.Sleep(*flagStandalone)
			cancel(p, tok, id)
			time.Sleep(300 * time.Millisecond)
			cs = getChunks(p, id)
			ri := rowIters(getRaw(p, id), img.Width)
			mRate[i], k = steadyRate(cs, func(c chunk) float64 {
				var s float64
				for y := c.start; y < c.end; y++ {
					s += ri[y]
				}
				return s
			})
			fmt.Printf("  %s: Mandelbrot %.4g iterations/s (%d chunks)\n", p.Name, mRate[i], k)
		}()
	}
	wg.Wait()
	kern = kernelOf(solo[0].Nodes[0])
	for _, c := range solo {
		c.Stop()
	}
	var sumPi, sumM float64
	for i := range limits {
		sumPi += piRate[i]
		sumM += mRate[i]
		if piRate[i] == 0 || mRate[i] == 0 {
			fatalf("standalone rate of node %d not measured (too few chunks)", i+1)
		}
	}
	fmt.Printf("hetero: Σ standalone π %.4g samples/s, Mandelbrot %.4g iterations/s; load average %s\n", sumPi, sumM, procluster.LoadAvg())

	return piRate, mRate, kern
}

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
	// The image is sized from a guess of the rates (about 0.7 G iterations/s
	// per core for the AVX2 kernel, scaled by the limits), then the cluster
	// job is resized from the measured ones; standalone rates are measured
	// on this image, before and after the cluster jobs (the machine is
	// shared: the load may change), and the efficiency is given against
	// their mean, with the range against either.
	if os.Getenv(compute.KernelsEnv) == "" {
		// One kernel choice for every node, standalone and in the cluster: each node would
		// otherwise calibrate its own on a loaded machine, and two paths differ in speed by up
		// to 30 %, which moves the baseline away from the cluster it is compared with.
		os.Setenv(compute.KernelsEnv, compute.KernelPath())
		fmt.Printf("hetero: every node uses kernel %s (%s=, the benchmark's own calibration)\n", compute.KernelPath(), compute.KernelsEnv)
	}
	img := pickImage(1e10)
	piA, mA, kern := standalone(work, "a", limits, img)
	c := newCluster(filepath.Join(work, "hetero"), "h", n, func(i int) []string {
		return []string{"--cpus", "1", "--cpu-limit", strconv.Itoa(limits[i])}
	})
	leader := startStable(c, min(3, n))
	p := c.Nodes[0]
	tok := token(p)
	fmt.Printf("hetero: %d-node cluster up (kernel %s, leader %s); load average %s\n", n, kern, c.ByID(leader).Name, procluster.LoadAvg())
	if *flagWarm {
		warmTrust(c, tok, "π", map[string]any{"kind": "pi", "samples": int64(1e14), "seed": 5}, 10)
		warmTrust(c, tok, "Mandelbrot", pickImage(sum(mA)*300).body(), 10)
	}

	samples := int64(sum(piA) * *flagJobSecs)
	m0 := scrapeAll(c)
	id := submit(p, tok, map[string]any{"kind": "pi", "samples": samples, "seed": 11})
	v := waitJob(p, id, 10*time.Minute, nil)
	fmt.Printf("  π %d samples: %.2f s, %d chunks, audited units %.3f of the job's; load average %s\n", samples, v.wall(), v.chunks(),
		float64(v.AuditedUnits)/float64(v.TotalUnits), procluster.LoadAvg())
	tailPi := shares(c, v, limits, piA, sum(piA))
	bdPi := breakdown(c, v, limits, m0, scrapeAll(c))
	if cr, ks := coordinatorRates(p); cr != nil {
		for i, q := range c.Nodes {
			fmt.Printf("    %s: coordinator's π rate estimate %.4g samples/s = %.2f x the standalone rate before (kernel %s)\n",
				q.Name, cr[q.ID]["pi"], cr[q.ID]["pi"]/piA[i], ks[q.ID])
		}
	}
	piCost := make([]float64, 1024) // π units are uniform: 1024 equal slices
	for i := range piCost {
		piCost[i] = float64(v.TotalUnits) / 1024
	}

	// the Mandelbrot job: same view, resized for about -job-seconds
	big := pickImage(sum(mA) * *flagJobSecs)
	m0 = scrapeAll(c)
	id = submit(p, tok, big.body())
	mv := waitJob(p, id, 10*time.Minute, nil)
	ri := rowIters(getRaw(p, id), big.Width)
	iters := sum(ri)
	fmt.Printf("  Mandelbrot %dx%d max_iter %d (%.4g iterations): %.2f s, %d chunks, audited rows %.3f of the job's; load average %s\n",
		big.Width, big.Height, big.MaxIter, iters, mv.wall(), mv.chunks(), float64(mv.AuditedUnits)/float64(mv.TotalUnits), procluster.LoadAvg())
	tailM := shares(c, mv, limits, nil, 0)
	bdM := breakdown(c, mv, limits, m0, scrapeAll(c))
	c.Stop()

	piB, mB, _ := standalone(work, "b", limits, img)
	piRate, mRate := make([]float64, n), make([]float64, n)
	for i := range limits {
		piRate[i], mRate[i] = (piA[i]+piB[i])/2, (mA[i]+mB[i])/2
	}
	eff := func(units, rate, wall float64) float64 { return units / rate / wall }
	effPi := eff(float64(v.TotalUnits), sum(piRate), v.wall())
	effM := eff(iters, sum(mRate), mv.wall())
	addReport("hetero efficiency (4 nodes --cpus 1 --cpu-limit %v, kernel %s), against the mean of the standalone rates measured before and after [against before only, after only]: π %.3f [%.3f, %.3f] (%.2f s vs ideal %.2f s, %d chunks); Mandelbrot %.3f [%.3f, %.3f] (%.2f s vs ideal %.2f s, %d chunks, %dx%d max_iter %d, units = iterations)",
		limits, kern, effPi, eff(float64(v.TotalUnits), sum(piA), v.wall()), eff(float64(v.TotalUnits), sum(piB), v.wall()),
		v.wall(), float64(v.TotalUnits)/sum(piRate), v.chunks(),
		effM, eff(iters, sum(mA), mv.wall()), eff(iters, sum(mB), mv.wall()),
		mv.wall(), iters/sum(mRate), mv.chunks(), big.Width, big.Height, big.MaxIter)
	addReport("hetero breakdown π (per node, share of the makespan: computing / auditing / waiting for a chunk / idle at the end; CPU used ÷ its limit while computing): %s", bdPi)
	addReport("hetero breakdown Mandelbrot: %s", bdM)
	addReport("hetero tail efficiency (capacity idle after each node's last commit, weighted by its share; needs no baseline): π %.3f, Mandelbrot %.3f", tailPi, tailM)
	var fx []string
	for _, k := range parseInts(*flagFixed) {
		mp := simFixed(piCost, piRate, k)
		mm := simFixed(ri, mRate, k)
		fx = append(fx, fmt.Sprintf("%d chunks: π %.3f, Mandelbrot %.3f", k, float64(v.TotalUnits)/sum(piRate)/mp, iters/sum(mRate)/mm))
	}
	addReport("hetero fixed equal chunks (SIMULATED with the same mean standalone rates, zero coordination cost, greedy pull; Mandelbrot rows with their real iteration counts): %s", strings.Join(fx, "; "))
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
	for _, ch := range getChunks(c.Nodes[0], v.ID) {
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
		fmt.Printf("    breakdown %s (computing %.2f s, auditing %.2f s, waiting %.2f s, idle at the end %.2f s of %.2f s; %.2f CPU s; the node process itself %.2f CPU s)\n", l, busy, aud, wait, end, W, cpu, own)
		parts = append(parts, l)
	}
	return strings.Join(parts, "; ")
}
