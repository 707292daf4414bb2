package work

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/webui"
)

// MaxActivityLeases bounds one activity message (gossip caps messages at
// 64 KiB here); a cluster with more chunks in flight shows the oldest.
// Receivers reject longer messages.
const MaxActivityLeases = 300

// maxActivityBytes bounds one activity message's JSON below the gossip cap (p2p's
// MaxGossipMessage, 64 KiB, which this package may not import): a larger message is refused
// at the publisher, and no node but the leader would see the activity, its leases, rates, or
// the cluster clock it carries. MaxActivityLeases leases alone come near the cap, with the
// rates of a hundred nodes well over it; a cluster with more than fits shows the nodes first,
// then the oldest leases that fit.
const maxActivityBytes = 62 << 10

// snapshotActivity builds the activity message from the scheduler.
func (c *leadership) snapshotActivity(now time.Time) webui.Activity {
	c.mu.Lock()
	defer c.mu.Unlock()
	// At and the leases' times are the cluster's clock (stampLocked), as in the commands this
	// leader proposes: the nodes set their own stamps by it (node/clock.go).
	at := c.stampLocked(now)
	shift := at.Sub(now)
	a := webui.Activity{Term: c.term, Leader: c.cfg.Self.String(), At: at, Nodes: map[string]webui.NodeActivity{}}
	// Every entry counts its JSON and a separator against maxActivityBytes; "null" for the
	// leases is more than the empty array's brackets.
	size := jsonSize(a)
	for _, node := range slices.Sorted(maps.Keys(c.lastSeen)) {
		na := webui.NodeActivity{Rates: map[string]float64{}, Kernel: c.kernels[node]}
		for _, k := range []compute.Kind{compute.KindPi, compute.KindMandelbrot} {
			if r := c.sched.Rate(node, k); r > 0 {
				na.Rates[string(k)] = r
			}
		}
		s := jsonSize(node) + 1 + jsonSize(na) + 1
		if size+s > maxActivityBytes {
			break
		}
		size += s
		a.Nodes[node] = na
	}
	for _, l := range c.sched.Leases() {
		if len(a.Leases) == MaxActivityLeases {
			break
		}
		lv := webui.LeaseView{ID: l.ID, Chunk: l.Chunk, Node: l.Node, Issued: l.Issued.Add(shift).UTC(), Probe: l.Probe, Backup: l.Backup}
		s := jsonSize(lv) + 1
		if size+s > maxActivityBytes {
			break
		}
		size += s
		a.Leases = append(a.Leases, lv)
	}
	return a
}

// jsonSize is the length of v's JSON (0 if it has none).
func jsonSize(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return 0
	}
	return len(b)
}

// publishActivity sends the coordinator's soft state to every node.
func (c *leadership) publishActivity(ctx context.Context, now time.Time) {
	if c.cfg.Publish != nil {
		c.cfg.Publish(ctx, c.snapshotActivity(now))
	}
}
