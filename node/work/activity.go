package work

import (
	"context"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/webui"
)

// MaxActivityLeases bounds one activity message (gossip caps messages at
// 64 KiB here); a cluster with more chunks in flight shows the oldest.
// Receivers reject longer messages.
const MaxActivityLeases = 300

// snapshotActivity builds the activity message from the scheduler.
func (c *leadership) snapshotActivity(now time.Time) webui.Activity {
	c.mu.Lock()
	defer c.mu.Unlock()
	// At and the leases' times are the cluster's clock (stampLocked), as in the commands this
	// leader proposes: the nodes set their own stamps by it (node/clock.go).
	at := c.stampLocked(now)
	shift := at.Sub(now)
	a := webui.Activity{Term: c.term, Leader: c.cfg.Self.String(), At: at, Nodes: map[string]webui.NodeActivity{}}
	for _, l := range c.sched.Leases() {
		if len(a.Leases) == MaxActivityLeases {
			break
		}
		a.Leases = append(a.Leases, webui.LeaseView{ID: l.ID, Chunk: l.Chunk, Node: l.Node,
			Issued: l.Issued.Add(shift).UTC(), Probe: l.Probe, Backup: l.Backup})
	}
	for node := range c.lastSeen {
		na := webui.NodeActivity{Rates: map[string]float64{}, Kernel: c.kernels[node]}
		for _, k := range []compute.Kind{compute.KindPi, compute.KindMandelbrot} {
			if r := c.sched.Rate(node, k); r > 0 {
				na.Rates[string(k)] = r
			}
		}
		a.Nodes[node] = na
	}
	return a
}

// publishActivity sends the coordinator's soft state to every node.
func (c *leadership) publishActivity(ctx context.Context, now time.Time) {
	if c.cfg.Publish != nil {
		c.cfg.Publish(ctx, c.snapshotActivity(now))
	}
}
