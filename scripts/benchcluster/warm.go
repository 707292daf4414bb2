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
// is trusted (for every kernel it has a record of), then cancels it and waits until no node's
// counters move; it returns how long that took.
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
	// A stopped job is not audited any more (docs/audits.md), so its uncleared chunks stay
	// uncleared: there is nothing to wait for but the chunks and audits already leased. Let them
	// finish, so the measured job starts on an idle cluster (no node's compute or audit counter
	// moves for a second; the node process's own CPU always moves a little).
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
			break
		}
	}
	d := time.Since(t0)
	fmt.Printf("  warm-up %s: every node trusted after %.1f s; load average %s\n", what, d.Seconds(), procluster.LoadAvg())
	return d
}
