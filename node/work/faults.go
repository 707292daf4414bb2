package work

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// FaultNodes is on how many different nodes a job's chunks must fail because of its module
// (a trap, an endless loop, memory past the cap) before the job fails: the same module fails
// the same way everywhere, but one node failing could be that node's doing. A cluster with
// fewer compute nodes fails the job once every one of them saw the fault.
const FaultNodes = 3

// jobFaults is what the coordinator knows of a job's module faults in this term.
type jobFaults struct {
	nodes  map[string]string // node → its last fault message
	first  string            // the first fault, with its range: the job's reason
	failed bool              // the Fail command is proposed
}

// faultLocked records a module fault reported by node for one of its leases, and fails the
// job once faults came from FaultNodes different nodes (or every node working).
func (c *leadership) faultLocked(node string, f fault) {
	// The lease may have expired while the module was stuck: the range leased to the node in
	// this term is what counts.
	if !c.grantedLocked(node, f.Job, f.Range) {
		return
	}
	if j, ok := c.cfg.Jobs.Job(f.Job); !ok || j.Kind != compute.KindWasm || j.State.Finished() {
		return
	}
	l := f.Chunk
	if c.faults == nil {
		c.faults = map[string]*jobFaults{}
	}
	jf := c.faults[l.Job]
	if jf == nil {
		jf = &jobFaults{nodes: map[string]string{}}
		c.faults[l.Job] = jf
	}
	if jf.first == "" {
		jf.first = fmt.Sprintf("items [%d, %d): %s", l.Start, l.End, f.Msg)
	}
	jf.nodes[node] = f.Msg
	need := min(FaultNodes, max(1, len(c.lastSeen)))
	c.log.Warn("chunk failed by its module", "job", l.Job, "node", node, "range", l.Range, "err", f.Msg, "nodes", len(jf.nodes), "need", need)
	if len(jf.nodes) < need || jf.failed {
		return
	}
	jf.failed = true
	nodes := make([]string, 0, len(jf.nodes))
	for n := range jf.nodes {
		nodes = append(nodes, shortNode(n))
	}
	slices.Sort(nodes)
	reason := fmt.Sprintf("the module failed on %d nodes (%s): %s", len(nodes), strings.Join(nodes, ", "), jf.first)
	if len(reason) > compute.MaxFailReason {
		reason = strings.ToValidUTF8(reason[:compute.MaxFailReason-3], "") + "..."
	}
	go c.failJob(l.Job, reason)
}

// faultedLocked reports whether node saw job's module fail while other working nodes did not:
// the job's chunks then go to those, so that a module that fails everywhere fails the job soon.
func (c *leadership) faultedLocked(job, node string) bool {
	jf := c.faults[job]
	if jf == nil {
		return false
	}
	_, seen := jf.nodes[node]
	return seen && len(jf.nodes) < len(c.lastSeen)
}

func (c *leadership) failJob(job, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.cfg.Apply(ctx, compute.Fail{Job: job, Reason: reason, Time: time.Now().UTC()}); err != nil {
		c.log.Warn("fail job", "job", job, "err", err)
		c.mu.Lock()
		if jf := c.faults[job]; jf != nil {
			jf.failed = false // the next fault tries again
		}
		c.mu.Unlock()
		return
	}
	c.log.Warn("job failed", "job", job, "reason", reason)
}

// shortNode is a peer ID's tail, as the UI shows nodes.
func shortNode(id string) string {
	if len(id) > 8 {
		return id[len(id)-8:]
	}
	return id
}
