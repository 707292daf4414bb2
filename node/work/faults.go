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

// jobFaults is what this coordinator is doing about a job's module faults. The faults
// themselves live in the replicated job state (compute.Fault), so that a new leader continues
// the count.
type jobFaults struct {
	proposing map[string]bool // nodes whose Fault command is in flight
	failed    bool            // the Fail command is proposed
}

// faultLocked records a module fault reported by node for one of its leases: the first fault
// of a node is replicated (compute.Fault), and the job fails once the job state holds faults
// from FaultNodes different nodes (or from every node working).
func (c *leadership) faultLocked(node string, f fault) {
	// The lease may have expired while the module was stuck: the range leased to the node in
	// this term is what counts.
	if !c.grantedLocked(node, f.Job, f.Range) {
		return
	}
	j, ok := c.cfg.Jobs.Job(f.Job)
	if !ok || j.Kind != compute.KindWasm || j.State.Finished() {
		return
	}
	if c.faults == nil {
		c.faults = map[string]*jobFaults{}
	}
	jf := c.faults[f.Job]
	if jf == nil {
		jf = &jobFaults{proposing: map[string]bool{}}
		c.faults[f.Job] = jf
	}
	need := min(FaultNodes, max(1, c.workingLocked()))
	c.log.Warn("chunk failed by its module", "job", f.Job, "node", node, "range", f.Range, "err", f.Msg, "nodes", len(j.Faults), "need", need)
	if slices.ContainsFunc(j.Faults, func(r compute.JobFault) bool { return r.Node == node }) || len(j.Faults) >= compute.MaxJobFaults {
		// Counted already (perhaps by an earlier leader, which may have stopped before failing
		// the job): decide on the replicated count.
		c.maybeFailLocked(j, need)
		return
	}
	if jf.proposing[node] {
		return
	}
	jf.proposing[node] = true
	msg := fmt.Sprintf("items [%d, %d): %s", f.Start, f.End, f.Msg)
	if len(msg) > compute.MaxFaultMsg {
		msg = strings.ToValidUTF8(msg[:compute.MaxFaultMsg-3], "") + "..."
	}
	go c.recordFault(compute.Fault{Job: f.Job, Node: node, Msg: msg, Time: c.stampLocked(time.Now())}, need)
}

// recordFault replicates a node's fault, then fails the job if enough nodes have faulted.
func (c *leadership) recordFault(cmd compute.Fault, need int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.cfg.Apply(ctx, cmd)
	c.mu.Lock()
	defer c.mu.Unlock()
	if jf := c.faults[cmd.Job]; jf != nil {
		delete(jf.proposing, cmd.Node)
	}
	if err != nil {
		c.log.Warn("record module fault", "job", cmd.Job, "node", cmd.Node, "err", err)
		return // the node's next fault tries again
	}
	if j, ok := c.cfg.Jobs.Job(cmd.Job); ok {
		c.maybeFailLocked(j, need)
	}
}

// maybeFailLocked proposes Fail for a job whose module failed on need different nodes.
func (c *leadership) maybeFailLocked(j compute.Job, need int) {
	jf := c.faults[j.ID]
	if len(j.Faults) < need || j.State.Finished() || jf == nil || jf.failed {
		return
	}
	jf.failed = true
	nodes := make([]string, 0, len(j.Faults))
	for _, f := range j.Faults {
		nodes = append(nodes, shortNode(f.Node))
	}
	slices.Sort(nodes)
	reason := failReason(nodes, j.Faults[0].Msg)
	if len(reason) > compute.MaxFailReason {
		reason = strings.ToValidUTF8(reason[:compute.MaxFailReason-3], "") + "..."
	}
	go c.failJob(j.ID, reason)
}

// workingLocked counts the live nodes that may be leased work: not quarantined (a quarantined
// node is leased nothing until an admin clears it, so a job's module never gets to fail there;
// counted as working, it held the job's chunks back from the nodes that saw them fail, and the
// job never failed). A paused node counts: it takes work again once its owner is done.
func (c *leadership) workingLocked() int {
	n := 0
	for node := range c.lastSeen {
		if c.cfg.Audits == nil || !c.cfg.Audits.Quarantined(node) {
			n++
		}
	}
	return n
}

// faultedOn reports whether node saw the job's module fail while other working nodes did not:
// the job's chunks then go to those, so that a module that fails everywhere fails the job soon.
func faultedOn(j compute.Job, node string, working int) bool {
	return len(j.Faults) < working && slices.ContainsFunc(j.Faults, func(r compute.JobFault) bool { return r.Node == node })
}

func (c *leadership) failJob(job, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.cfg.Apply(ctx, compute.Fail{Job: job, Reason: reason, Time: c.stamp(time.Now())}); err != nil {
		c.log.Warn("fail job", "job", job, "err", err)
		c.mu.Lock()
		if jf := c.faults[job]; jf != nil {
			jf.failed = false // the next fault tries again
		}
		c.mu.Unlock()
		return
	}
	c.log.Warn("job failed", "job", job, "reason", reason)
	c.co.JobsChanged() // out of the scheduler now, not at the next full reconcile
}

// shortNode is a peer ID's tail, as the UI shows nodes.
func shortNode(id string) string {
	if len(id) > 8 {
		return id[len(id)-8:]
	}
	return id
}

// failReason is a failed module job's reason: the nodes it failed on (short IDs, sorted) and the
// first fault's message. "1 node", not "1 nodes": a one-machine cluster fails a job after one.
func failReason(nodes []string, msg string) string {
	noun := "nodes"
	if len(nodes) == 1 {
		noun = "node"
	}
	return fmt.Sprintf("the module failed on %d %s (%s): %s", len(nodes), noun, strings.Join(nodes, ", "), msg)
}
