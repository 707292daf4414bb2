//go:build linux

package main

// Trust warm-up of the hetero phase: a new node has every chunk audited (docs/audits.md), which
// doubles the work of a fresh cluster's first jobs; a cluster that has run for a while has
// trusted nodes, audited at the steady-state rate.

import (
	"encoding/json"
	"fmt"
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

// warmTrust runs a job of body on c until every node has passed at least need more audits and
// is trusted (for every kernel it has a record of), then cancels it and waits for the cluster to
// drain; it returns how long that took.
func warmTrust(c *procluster.Cluster, tok, what string, body map[string]any, need uint64) time.Duration {
	p := c.Nodes[0]
	before, err := nodeAudits(p)
	if err != nil {
		fatalf("warm-up: %v", err)
	}
	t0 := time.Now()
	id := submit(p, tok, body)
	end := t0.Add(5 * time.Minute)
	for {
		time.Sleep(500 * time.Millisecond)
		now, err := nodeAudits(p)
		if err != nil {
			continue
		}
		ok := true
		for _, q := range c.Nodes {
			if a := now[q.ID]; a.State != "trusted" || a.Passed < before[q.ID].Passed+need {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(end) {
			fatalf("warm-up %s: nodes not all trusted after 5 minutes: %v", what, now)
		}
	}
	cancel(p, tok, id)
	waitJob(p, id, time.Minute, nil)
	// The chunks it committed while its nodes were new are still being audited (a cancelled
	// job's audits run, and they come before other work): wait until every one is cleared, or
	// nothing has cleared for 10 s, so that they do not run inside the measured job.
	last, moved := uint64(0), time.Now()
	for end := time.Now().Add(3 * time.Minute); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		v, err := getJob(p, id)
		if err != nil {
			continue
		}
		if v.ClearedUnits >= v.DoneUnits {
			break
		}
		if v.ClearedUnits != last {
			last, moved = v.ClearedUnits, time.Now()
		} else if time.Since(moved) > 10*time.Second {
			fmt.Printf("  warm-up %s: %d of %d done units still not cleared after 10 s without progress\n", what, v.DoneUnits-v.ClearedUnits, v.DoneUnits)
			break
		}
	}
	// Audits of the cancelled job's last chunks may still be leased: let them finish, so the
	// measured job starts on an idle cluster (no node's counters move for a second).
	prev := scrapeAll(c)
	for i := 0; i < 30; i++ {
		time.Sleep(time.Second)
		cur := scrapeAll(c)
		moved := false
		for k := range cur {
			if cur[k] != prev[k] {
				moved = true
			}
		}
		prev = cur
		if !moved {
			break
		}
	}
	d := time.Since(t0)
	fmt.Printf("  warm-up %s: every node trusted after %.1f s; load average %s\n", what, d.Seconds(), procluster.LoadAvg())
	return d
}
