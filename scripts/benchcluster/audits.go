//go:build linux

package main

// Phase audits: what audits cost a job on a real cluster (docs/audits.md, Figures).

import (
	"encoding/json"
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hydra-compute/hydra/scripts/internal/procluster"
	"github.com/hydra-compute/hydra/webui"
)

var (
	flagAuditNodes      = flag.Int("audit-nodes", 3, "audits: nodes")
	flagAuditLimits     = flag.String("audit-limits", "", "audits: --cpu-limit of each node (comma-separated; replaces -audit-nodes), none by default")
	flagAuditJobSecs    = flag.Float64("audit-job-seconds", 15, "audits: target duration of the π job run while every node is new")
	flagAuditSteadySecs = flag.Float64("audit-steady-seconds", 30, "audits: target duration of the π job run once every node is trusted (0: that part is not run)")
	flagAuditTrustWait  = flag.Duration("audit-trust-wait", 4*time.Minute, "audits: how long jobs may run until every node is trusted")
	flagAuditPasses     = flag.Int("audit-passes", 0, "audits: before the steady-state job, run jobs until every node has passed this many audits (20: audited at the floor of 5 %)")
	flagAuditTarget     = flag.Duration("audit-chunk-target", 0, "audits: the nodes' --chunk-target (0: the default)")
)

// auditsPhase runs -audit-nodes fresh nodes (--cpus 1). First one π job of
// about -audit-job-seconds while every node is still new (each of its chunks
// audited): when its last chunk was committed and when the job was done (the
// wait for the last audits). Then π jobs until every node is trusted, and
// one of about -audit-steady-seconds: the share of its units auditors
// recomputed and the audits' CPU time against the chunks' (both from the
// nodes' /metrics counters).
func auditsPhase(work string) {
	n := *flagAuditNodes
	var limits []int
	if *flagAuditLimits != "" {
		limits = parseInts(*flagAuditLimits)
	}
	if len(limits) > 0 {
		n = len(limits)
	}
	c := newCluster(filepath.Join(work, "audits"), "a", n, func(i int) []string {
		args := []string{"--cpus", "1"}
		if len(limits) > 0 {
			args = append(args, "--cpu-limit", strconv.Itoa(limits[i]))
		}
		if *flagAuditTarget > 0 {
			args = append(args, "--chunk-target", flagAuditTarget.String())
		}
		return args
	})
	lp := c.ByID(startStable(c, min(3, n)))
	tok := token(lp)
	fmt.Printf("audits: %d nodes up, leader %s; load average %s\n", n, lp.Name, procluster.LoadAvg())
	// The cluster's π rate: each node's units ÷ compute seconds over the chunks of a short job
	// (probes and a few chunks; the nodes stay new).
	warm := waitJob(lp, submit(lp, tok, map[string]any{"kind": "pi", "samples": 1 << 28, "seed": 1}), 2*time.Minute, nil)
	units, secs := map[string]float64{}, map[string]float64{}
	for _, ch := range getChunks(lp, warm.ID) {
		units[ch.nodeID] += float64(ch.end - ch.start)
		secs[ch.nodeID] += ch.secs
	}
	rate := 0.0
	for id, u := range units {
		if secs[id] > 0 {
			rate += u / secs[id]
		}
	}
	if rate <= 0 {
		fatalf("audits: no π rate from the first job's chunks")
	}
	fmt.Printf("audits: cluster π rate %.4g samples/s\n", rate)
	run := func(secs float64, seed int) (*jobView, []workCounters, []workCounters) {
		a := scrapeAll(c)
		id := submit(lp, tok, map[string]any{"kind": "pi", "samples": int64(rate * secs), "seed": seed})
		v := waitJob(lp, id, 10*time.Minute, nil)
		return v, a, scrapeAll(c)
	}
	cost := func(a, b []workCounters) (chunkCPU, auditCPU float64) {
		for i := range a {
			chunkCPU += b[i].cpu - a[i].cpu
			auditCPU += b[i].auditCPU - a[i].auditCPU
		}
		return
	}

	v, a, b := run(*flagAuditJobSecs, 2)
	var last int64
	for _, ch := range getChunks(lp, v.ID) {
		last = max(last, ch.committedMS)
	}
	lastAt := time.UnixMilli(last).Sub(v.SubmittedAt).Seconds()
	cc, ac := cost(a, b)
	addReport("audit tail (%d nodes --cpus 1 --cpu-limit %v, all new: every chunk audited; π job of %d samples, %d chunks): last chunk committed %.2f s after the submit, job done at %.2f s: %.2f s from the last commit to done; audited units %.1f %% of the job; audit CPU %.2f s against the chunks' %.2f s; load average %s",
		n, limits, v.TotalUnits, v.chunks(), lastAt, v.wall(), v.wall()-lastAt, 100*float64(v.AuditedUnits)/float64(v.TotalUnits), ac, cc, procluster.LoadAvg())

	if *flagAuditSteadySecs <= 0 {
		c.Stop()
		return
	}
	end := time.Now().Add(*flagAuditTrustWait)
	jobs := 0
	for !allTrusted(lp, n, *flagAuditPasses) {
		if time.Now().After(end) {
			fatalf("audits: not every node trusted after %v (%d jobs)", *flagAuditTrustWait, jobs)
		}
		run(5, 10+jobs)
		jobs++
	}
	fmt.Printf("audits: every node trusted (at least %d audits passed) after %d more jobs of about 5 s\n", *flagAuditPasses, jobs)
	v, a, b = run(*flagAuditSteadySecs, 3)
	cc, ac = cost(a, b)
	addReport("audit overhead at steady state (%d trusted nodes --cpus 1 --chunk-target %v, each %d+ audits passed, π job of %d samples, %.2f s, %d chunks): auditors recomputed %.2f %% of its units; audit CPU %.2f s = %.2f %% of the chunks' %.2f s; load average %s",
		n, *flagAuditTarget, *flagAuditPasses, v.TotalUnits, v.wall(), v.chunks(), 100*float64(v.AuditedUnits)/float64(v.TotalUnits), ac, 100*ac/cc, cc, procluster.LoadAvg())
	c.Stop()
}

// allTrusted reports whether n nodes have the standing trusted in p's status, each with at
// least passes audits passed.
func allTrusted(p *procluster.Proc, n, passes int) bool {
	b, err := api("GET", p.HTTPURL+"/api/v1/status", "", nil)
	if err != nil {
		return false
	}
	var st webui.Status
	if json.Unmarshal(b, &st) != nil {
		return false
	}
	k := 0
	for _, nd := range st.Nodes {
		if nd.Audit.State == "trusted" && nd.Audit.Passed >= uint64(passes) {
			k++
		}
	}
	return k >= n
}
