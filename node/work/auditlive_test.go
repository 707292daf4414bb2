package work

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// TestEveryAuditHasATaker: whatever the nodes' architectures, speeds, pauses and audits in
// hand, an audit that some free node may run is leased to one of them when they ask, or waits
// for a node with an audit in hand that will take it once that one is answered. The
// rules that make a node pass an audit over (another architecture first, a slow node leaves
// long audits to fast ones, a node leaves an audit to one that finishes it sooner) must never
// all pass it over: before auditCandidateLocked, amd64 nodes left an audit to an arm64 board
// that refused it as too slow, and the job waited for ever. Random configurations, a fixed seed.
func TestEveryAuditHasATaker(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 29))
	arches := []string{"amd64", "arm64", "riscv64", ""}
	for round := 0; round < 400; round++ {
		n := 2 + rng.IntN(5)
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("n%d", i)
		}
		task := piTask(1, names[rng.IntN(n)])
		if rng.IntN(4) == 0 { // a dispute: the auditor who disagreed may not take it either
			task.Auditor = nodeID(names[rng.IntN(n)])
		}
		if rng.IntN(2) == 0 { // an audit of a few blocks, not the whole chunk
			task.Spans = []compute.Range{{Start: task.Chunk.Start, End: task.Chunk.Start + 1<<uint(10+rng.IntN(12))}}
		}
		audits := &fakeAudits{tasks: []compute.AuditTask{task}}
		c := auditLeadership(t, audits, slog.New(slog.DiscardHandler))
		now := time.Now()
		c.leaseAt = now.Add(-time.Second)
		took := map[string]time.Duration{}
		busy := map[string]bool{}
		for _, name := range names {
			id := nodeID(name)
			c.lastSeen[id], c.arch[id] = now, arches[rng.IntN(len(arches))]
			if rng.IntN(5) > 0 { // a measured speed: a probe took 1 ms to 10 s
				took[name] = time.Duration(math.Pow(10, 6+4*rng.Float64()))
			}
			switch rng.IntN(6) {
			case 0:
				c.paused[id] = true
			case 1:
				busy[id] = true
			case 2:
				c.auditIdle[id] = 1 // its exchange waits for audits
			}
		}
		measureRates(t, c, task.Spec, now, took)
		c.refreshAuditsLocked(now)
		for id := range busy { // an audit of unknown length in hand: it takes no other
			c.auditLeases[uint64(100+len(c.auditLeases))] = &auditLease{node: id, deadline: now.Add(time.Minute)}
		}
		var may []string
		for _, name := range names {
			if id := nodeID(name); !busy[id] && c.mayAuditLocked(id, task) {
				may = append(may, id)
			}
		}
		if len(may) == 0 {
			continue
		}
		taken := false
		c.mu.Lock()
		for _, id := range may {
			if len(c.leaseAuditsLocked(id, now, 1)) > 0 {
				taken = true
				break
			}
		}
		for id := range busy { // or a node that will take it once it has answered the audit in hand
			taken = taken || c.auditCandidateLocked(id, task)
		}
		state := describeAuditors(c, task, names, busy)
		c.mu.Unlock()
		if !taken {
			t.Fatalf("round %d: no node was leased the audit although %d may run it:\n%s", round, len(may), state)
		}
	}
}

// describeAuditors prints what the lease rules read of each node for task (c.mu held).
func describeAuditors(c *leadership, task compute.AuditTask, names []string, busy map[string]bool) string {
	out := fmt.Sprintf("task of %s (auditor %q), %d units\n", task.Node, task.Auditor, int64(auditCost(task)/compute.UnitWork(task.Spec)))
	for _, name := range names {
		id := nodeID(name)
		out += fmt.Sprintf("  %s=%s arch %q rate %.3g paused %v busy %v waiting %v may %v speed-fits %v\n", name, id, c.arch[id],
			c.sched.Rate(id, compute.RateClass(task.Spec)), c.paused[id], busy[id], c.auditIdle[id] > 0, c.mayAuditLocked(id, task), c.speedFitsLocked(id, task))
	}
	return out
}
