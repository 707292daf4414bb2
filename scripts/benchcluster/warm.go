//go:build linux

package main

// Trust warm-up of the hetero phase: a new node has every chunk audited (docs/audits.md), which
// doubles the work of a fresh cluster's first jobs; a cluster that has run for a while has
// trusted nodes, audited at the steady-state rate.

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/scripts/internal/procluster"
)

// nodeAudits reads each node's audit record (passed audits over all kernels, standing) from
// GET /api/v1/status.
func nodeAudits(p *procluster.Proc) (map[string]struct {
	Passed uint64
	State  string
}, error) {
	b, err := api("GET", p.HTTPURL+"/api/v1/status", "", nil)
	if err != nil {
		return nil, err
	}
	var st struct {
		Nodes []struct {
			ID    string `json:"id"`
			Audit struct {
				Passed uint64 `json:"passed"`
				State  string `json:"state"`
			} `json:"audit"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("status of %s: %w", p.Name, err)
	}
	out := map[string]struct {
		Passed uint64
		State  string
	}{}
	for _, n := range st.Nodes {
		out[n.ID] = struct {
			Passed uint64
			State  string
		}{n.Audit.Passed, n.Audit.State}
	}
	return out, nil
}

// passedAll reports whether every node of c is trusted in now and has passed at least need
// audits since before.
func passedAll(c *procluster.Cluster, before, now map[string]struct {
	Passed uint64
	State  string
}, need uint64) bool {
	for _, q := range c.Nodes {
		if a := now[q.ID]; a.State != "trusted" || a.Passed < before[q.ID].Passed+need {
			return false
		}
	}
	return true
}

// waitIdle waits (at most 30 s) until no node's compute or audit counter moves for a second. A
// stopped job is not audited any more (docs/audits.md), so its uncleared chunks stay uncleared:
// there is nothing to wait for but the chunks and audits already leased. Letting them finish
// makes the next job start on an idle cluster (the node process's own CPU always moves a
// little, so it is not looked at).
func waitIdle(c *procluster.Cluster) {
	prev := scrapeAll(c)
	for i := 0; i < 30; i++ {
		time.Sleep(time.Second)
		cur := scrapeAll(c)
		moved := false
		for k := range cur {
			if cur[k].busy != prev[k].busy || cur[k].audit != prev[k].audit {
				moved = true
			}
		}
		prev = cur
		if !moved {
			return
		}
	}
}

// submitMany submits n jobs, body(i) for i in [0, n), to p by clients concurrent clients and
// returns their IDs in that order (the overhead phase's one-chunk jobs, the warm-up's).
func submitMany(p *procluster.Proc, tok string, n, clients int, body func(i int) map[string]any) []string {
	ids := make([]string, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				ids[i] = submit(p, tok, body(i))
			}
		}()
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	return ids
}

// waitAll waits until every job of ids is finished, polling one at a time in order on p.
func waitAll(p *procluster.Proc, ids []string, timeout time.Duration) {
	end := time.Now().Add(timeout)
	for i := 0; i < len(ids); {
		if v, err := getJob(p, ids[i]); err == nil && v.State.Finished() {
			i++
			continue
		}
		if time.Now().After(end) {
			fatalf("warm-up: job %s not finished after %v", ids[i], timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Steady-state warm-up (warmFloor): rounds of warmRound tiny jobs by warmClients clients.
const (
	warmRound   = 64
	warmClients = 4
)

// warmFloor brings every node of c to the steady-state audit rate of one kernel, the 5 % floor
// (docs/audits.md: need 20 audits passed in a row), as in a cluster that has run for a while.
// A trusted node is audited with probability 1/(its passes in a row), so from 10 to 20 passes
// it computes about 145 chunks: with jobs of a few seconds that is minutes for the slowest node;
// with tiny jobs (tiny(i): a few milliseconds of work, one or a few chunks each), submitted in
// rounds by a few clients while the previous round runs, seconds. Then, since a node's rate
// estimate (units ÷ seconds over its last chunks) now comes from chunks where the exchange
// costs more than the work, a job of calib runs until every node has handed in two chunks of
// it (chunks of the measured jobs' size: their rates are the ones a busy cluster has), and is
// cancelled. It returns how long it all took.
func warmFloor(c *procluster.Cluster, tok, what string, tiny func(i int) map[string]any, calib map[string]any, need uint64) time.Duration {
	p := c.Nodes[0]
	follower := c.Nodes[len(c.Nodes)-1] // polled for the jobs: the submits go to p
	before, err := nodeAudits(p)
	if err != nil {
		fatalf("warm-up: %v", err)
	}
	t0 := time.Now()
	end := t0.Add(3 * time.Minute)
	var prev []string
	jobs := 0
	for {
		cur := submitMany(p, tok, warmRound, warmClients, func(i int) map[string]any { return tiny(jobs + i) })
		jobs += len(cur)
		waitAll(follower, prev, time.Minute)
		prev = cur
		now, err := nodeAudits(p)
		if err == nil && passedAll(c, before, now, need) {
			break
		}
		if time.Now().After(end) {
			fatalf("warm-up %s: nodes not all at %d passes after 3 minutes (%d jobs): %v", what, need, jobs, now)
		}
	}
	waitAll(follower, prev, time.Minute)
	waitIdle(c)
	tiny1 := time.Since(t0)
	// rate calibration
	t1 := time.Now()
	id := submit(p, tok, calib)
	for deadline := t1.Add(time.Minute); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if _, err := getJob(follower, id); err != nil {
			continue // not applied on the follower yet: its chunks would be a 404
		}
		per := map[string]int{}
		for _, ch := range getChunks(follower, id) {
			per[ch.nodeID]++
		}
		ok := true
		for _, q := range c.Nodes {
			ok = ok && per[q.ID] >= 2
		}
		if ok {
			break
		}
	}
	cancel(p, tok, id)
	waitJob(p, id, time.Minute, nil)
	waitIdle(c)
	now, _ := nodeAudits(p)
	var passed []string
	for _, q := range c.Nodes {
		passed = append(passed, fmt.Sprintf("%s %d", q.Name, now[q.ID].Passed-before[q.ID].Passed))
	}
	d := time.Since(t0)
	fmt.Printf("  warm-up %s: every node trusted, %d+ audits passed (at the 5 %% floor) after %d one-chunk jobs in %.1f s; rates from a job of the measured size (two chunks a node) in %.1f s; %.1f s in all; audits passed: %s; load average %s\n",
		what, need, jobs, tiny1.Seconds(), time.Since(t1).Seconds(), d.Seconds(), strings.Join(passed, ", "), procluster.LoadAvg())
	return d
}

// warmPasses is how many audits in a row a node passes in the hetero warm-up: from 20 on it is
// audited at the 5 % floor (docs/audits.md), the steady state.
const warmPasses = 20
