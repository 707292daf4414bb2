//go:build linux

package main

// Phase 2: per-chunk overhead (chunks leased, computed, committed and acked per second).

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/scripts/internal/procluster"
)

func overhead(work string) {
	c := newCluster(filepath.Join(work, "overhead"), "o", 3, func(int) []string {
		return []string{"--cpus", "1", "--chunk-target", "100ms"}
	})
	leader := startStable(c, 3)
	lp := c.ByID(leader)
	tok := token(lp)
	fmt.Printf("overhead: 3 voters up, leader %s; %d one-chunk π jobs (65536 samples) by 16 clients; load average %s\n", lp.Name, *flagTinyJobs, procluster.LoadAvg())
	// warm up: every node's first chunk of a kind
	warm := submit(lp, tok, map[string]any{"kind": "pi", "samples": 1 << 22, "seed": 1})
	waitJob(lp, warm, time.Minute, nil)
	if *flagWarm {
		// Trusted nodes, audited at the floor (docs/audits.md): a cluster that has run for a while.
		warmFloor(c, tok, "π", func(i int) map[string]any {
			return map[string]any{"kind": "pi", "samples": 1 << 22, "seed": 1000 + i}
		}, map[string]any{"kind": "pi", "samples": int64(1e14), "seed": 5}, warmPasses)
	}

	overheadChunked(c, lp, tok, work)
	if *flagTinyJobs <= 0 {
		c.Stop()
		return // the chunked job alone
	}
	perf := startPerf(lp, filepath.Join(work, "perf.data"))
	i0 := metric(lp, "hydra_raft_applied_index")
	cpu0 := ownTicks(lp)
	var cpuF0 []int64
	for _, p := range c.Nodes {
		cpuF0 = append(cpuF0, ownTicks(p))
	}
	start := time.Now()
	ids := submitMany(lp, tok, *flagTinyJobs, 16, func(i int) map[string]any {
		return map[string]any{"kind": "pi", "samples": 65536, "seed": i + 100}
	})
	submitted := time.Since(start)
	// Wait for all of them, polling one job at a time in submit order on a
	// follower (a big GET /api/v1/jobs list every 200 ms cost the leader a
	// quarter of its CPU in a first version), then read the list once.
	var follower *procluster.Proc
	for _, p := range c.Nodes {
		if p != lp {
			follower = p
			break
		}
	}
	done := 0
	for done < len(ids) && time.Since(start) < 10*time.Minute {
		if v, err := getJob(follower, ids[done]); err == nil && v.State == compute.StateDone {
			done++
			continue
		}
		time.Sleep(20 * time.Millisecond)
	}
	if done < len(ids) {
		// The figures below would count the unfinished jobs' chunks with no finish time.
		fatalf("overhead: job %s (%d of %d) not done after 10 minutes", ids[done], done+1, len(ids))
	}
	var views []jobView
	if b, err := api("GET", follower.HTTPURL+"/api/v1/jobs", "", nil); err == nil {
		json.Unmarshal(b, &views)
	}
	// the last finish, from the replica's own times
	entries := metric(lp, "hydra_raft_applied_index") - i0
	var fin []time.Time
	chunks := 0
	tiny := map[string]bool{}
	for _, id := range ids {
		tiny[id] = true
	}
	var toStart, toDone, whole []float64 // per job: submit → started (its result committed), → done
	for _, v := range views {
		if !tiny[v.ID] {
			continue // the warm-up jobs and the chunked job
		}
		fin = append(fin, v.FinishedAt)
		chunks += v.chunks()
		if !v.StartedAt.IsZero() {
			toStart = append(toStart, v.StartedAt.Sub(v.SubmittedAt).Seconds()*1000)
			toDone = append(toDone, v.FinishedAt.Sub(v.StartedAt).Seconds()*1000)
		}
		whole = append(whole, v.wall()*1000)
	}
	sort.Slice(fin, func(i, j int) bool { return fin[i].Before(fin[j]) })
	wall := fin[len(fin)-1].Sub(start).Seconds()
	cpu := float64(ownTicks(lp)-cpu0) / procluster.ClockTick
	var cpuAll float64
	for i, p := range c.Nodes {
		cpuAll += float64(ownTicks(p)-cpuF0[i]) / procluster.ClockTick
	}
	lo, hi := fin[len(fin)/10], fin[len(fin)*9/10]
	mid := float64(len(fin)*9/10-len(fin)/10) / hi.Sub(lo).Seconds()
	hydraChunksPerS = float64(chunks) / wall
	fmt.Printf("  %d jobs, %d chunks; submits took %.2f s; last done at %.2f s; load average %s\n", len(fin), chunks, submitted.Seconds(), wall, procluster.LoadAvg())
	addReport("per-chunk overhead (3 voters, %d one-chunk π jobs of 65536 samples): %.0f chunks/s end to end (%d chunks in %.2f s; %.0f/s between the 10th and 90th percentile of finishes); leader node process CPU %.2f ms per chunk (%.2f s over the window; compute children excluded), all 3 node processes %.2f ms per chunk",
		len(fin), float64(chunks)/wall, chunks, wall, mid, cpu*1000/float64(chunks), cpu, cpuAll*1000/float64(chunks))
	fmt.Printf("  one-chunk jobs: %.1f raft entries per job; per job, ms p10/p50/p90/max: submit to started (its result committed, or its Started entry) %s, started to done (challenged and audited) %s, submit to done %s\n",
		entries/float64(len(fin)), pcts(toStart), pcts(toDone), pcts(whole))
	perf.report()
	// One big job at --chunk-target 100ms: the chunk path alone (no per-job
	// entries), at the rate the policy allows (about one chunk per node per
	// 100 ms).
	{
		id := submit(lp, tok, map[string]any{"kind": "pi", "samples": int64(1e14), "seed": 5})
		time.Sleep(3 * time.Second)
		v0, _ := getJob(lp, id)
		l0 := ownTicks(lp)
		var a0 int64
		for _, p := range c.Nodes {
			a0 += ownTicks(p)
		}
		t0 := time.Now()
		time.Sleep(10 * time.Second)
		v1, _ := getJob(lp, id)
		dt := time.Since(t0).Seconds()
		l1 := ownTicks(lp)
		var a1 int64
		for _, p := range c.Nodes {
			a1 += ownTicks(p)
		}
		cancel(lp, tok, id)
		n := v1.chunks() - v0.chunks()
		if n > 0 {
			addReport("one π job at --chunk-target 100ms (3 nodes, 10 s): %.0f chunks/s (%d chunks; the policy sizes chunks to 100 ms of work, so about 3 nodes x 10/s at most), leader node process CPU %.2f ms per chunk, all 3 node processes %.2f ms per chunk",
				float64(n)/dt, n, float64(l1-l0)*1000/procluster.ClockTick/float64(n), float64(a1-a0)*1000/procluster.ClockTick/float64(n))
		}
	}
	c.Stop()
}

// overheadChunked is the figure that matches Dask's client.map(noop, range(n)): one job of
// -chunk-job π chunks of the minimum size (chunk_units 65536 samples, about 60 µs of work each),
// each chunk leased (in runs of whole chunks), computed in the compute child, its own result
// and commitment committed through raft and acknowledged. Figure = chunks accepted ÷ (finished_at
// − submitted_at), with the leader's and all three node processes' CPU per chunk over that window.
// A binary without chunk_units refuses the job: then the figure is skipped.
func overheadChunked(c *procluster.Cluster, lp *procluster.Proc, tok, work string) {
	if *flagChunkJob <= 0 {
		return
	}
	const cu = compute.MinPiChunkUnits
	body := map[string]any{"kind": "pi", "samples": int64(*flagChunkJob) * cu, "seed": 11, "chunk_units": cu}
	var fp *procluster.Proc // a follower
	for _, p := range c.Nodes {
		if p != lp {
			fp = p
			break
		}
	}
	perf := startPerf(lp, filepath.Join(work, "perf-chunked.data"))
	var perfW *perfRun
	if *flagPerfWorker {
		perfW = startPerf(fp, filepath.Join(work, "perf-worker.data"))
	}
	i0 := metric(lp, "hydra_raft_applied_index")
	m0 := workerMetrics(c)
	l0 := ownTicks(lp)
	var a0 int64
	for _, p := range c.Nodes {
		a0 += ownTicks(p)
	}
	b, err := api("POST", lp.HTTPURL+"/api/v1/jobs", tok, body)
	var v0 jobView
	if err == nil {
		err = json.Unmarshal(b, &v0)
	}
	if err != nil {
		fmt.Printf("  one job of %d chunks: not run (%v)\n", *flagChunkJob, err)
		perf.report()
		perfW.report()
		return
	}
	// Polled on a follower every 100 ms (its finished_at is the replica's own: the poll only
	// says when to look), so that the benchmark's reads cost the leader nothing.
	// Every 0.2 s the chunks done and the ones not yet cleared (waiting for a challenge or an
	// audit) are kept for the timeline printed at the end: where the job's time goes.
	var v *jobView
	var timeline []string
	polled := time.Now()
	for end := polled.Add(10 * time.Minute); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		x, err := getJob(fp, v0.ID)
		if err == nil && x.State.Finished() {
			v = x
			break
		}
		if err == nil && time.Since(polled) >= 200*time.Millisecond {
			polled = time.Now()
			timeline = append(timeline, fmt.Sprintf("%.1f s %d/%d", time.Since(v0.SubmittedAt).Seconds(), x.DoneUnits/cu, (x.DoneUnits-x.ClearedUnits)/cu))
		}
	}
	if v == nil {
		fatalf("chunked job %s: not finished after 10 minutes", v0.ID)
	}
	l1 := ownTicks(lp)
	var a1 int64
	for _, p := range c.Nodes {
		a1 += ownTicks(p)
	}
	entries := metric(lp, "hydra_raft_applied_index") - i0
	if v.State != compute.StateDone {
		fatalf("chunked job %s: %s", v.ID, v.State)
	}
	n, wall := v.chunks(), v.wall()
	var first, last int64
	for _, ch := range getChunks(fp, v.ID) {
		if first == 0 || ch.committedMS < first {
			first = ch.committedMS
		}
		last = max(last, ch.committedMS)
	}
	rel := func(ms int64) float64 { return time.UnixMilli(ms).Sub(v.SubmittedAt).Seconds() }
	fmt.Printf("  chunked job: first chunk committed at %.2f s, last at %.2f s, done (every chunk cleared) at %.2f s\n", rel(first), rel(last), wall)
	fmt.Printf("  chunked job, chunks done/not yet cleared: %s\n", strings.Join(timeline, ", "))
	for i, m1 := range workerMetrics(c) {
		m := m1.minus(m0[i])
		fmt.Printf("  %s: %.2f s with chunks in its compute child (%.0f runs, %.2f s CPU), %.2f s with audits (%.2f s CPU)\n",
			c.Nodes[i].Name, m.busy, m.runs, m.cpu, m.auditBusy, m.auditCPU)
	}
	hydraChunkedPerS = float64(n) / wall
	addReport("one π job of %d chunks of %d samples (chunk_units; 3 voters): %.0f chunks/s (%d chunks accepted in %.2f s, submit to done; %.1f %% of the units audited; %.0f raft entries); leader node process CPU %.3f ms per chunk, all 3 node processes %.3f ms per chunk; load average %s",
		*flagChunkJob, cu, hydraChunkedPerS, n, wall, 100*float64(v.AuditedUnits)/float64(v.TotalUnits), entries,
		float64(l1-l0)*1000/procluster.ClockTick/float64(n), float64(a1-a0)*1000/procluster.ClockTick/float64(n), procluster.LoadAvg())
	perf.report()
	perfW.report()
}

// pcts formats the 10th, 50th and 90th percentile and the maximum of xs.
func pcts(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	at := func(q float64) float64 { return xs[min(len(xs)-1, int(q*float64(len(xs))))] }
	return fmt.Sprintf("%.0f/%.0f/%.0f/%.0f", at(0.1), at(0.5), at(0.9), xs[len(xs)-1])
}

// metric reads one value of p's /metrics (NaN when it has none).
func metric(p *procluster.Proc, name string) float64 {
	b, err := api("GET", p.HTTPURL+"/metrics", "", nil)
	if err != nil {
		return math.NaN()
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == name {
			x, _ := strconv.ParseFloat(f[1], 64)
			return x
		}
	}
	return math.NaN()
}

// ---- failover

// workerCounts are a node's worker totals (/metrics): where its compute child's time went.
type workerCounts struct{ busy, cpu, runs, auditBusy, auditCPU float64 }

func (a workerCounts) minus(b workerCounts) workerCounts {
	return workerCounts{a.busy - b.busy, a.cpu - b.cpu, a.runs - b.runs, a.auditBusy - b.auditBusy, a.auditCPU - b.auditCPU}
}

// workerMetrics reads every node's worker totals.
func workerMetrics(c *procluster.Cluster) []workerCounts {
	var out []workerCounts
	for _, p := range c.Nodes {
		out = append(out, workerCounts{
			busy: metric(p, "hydra_compute_busy_seconds_total"), cpu: metric(p, "hydra_compute_cpu_seconds_total"),
			runs: metric(p, "hydra_compute_chunks_total"), auditBusy: metric(p, "hydra_audit_busy_seconds_total"),
			auditCPU: metric(p, "hydra_audit_cpu_seconds_total"),
		})
	}
	return out
}
