package node

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/webui"
)

// activityTopic carries the coordinator's soft state (leases, rates) to
// every node about once a second.
const activityTopic = "activity/1"

// maxActivityLeases bounds one activity message (gossip caps messages at
// 64 KiB here); a cluster with more chunks in flight shows the oldest.
const maxActivityLeases = 300

// activityBox holds the latest activity this node knows.
type activityBox struct {
	mu  sync.Mutex
	cur webui.Activity
}

func (b *activityBox) set(a webui.Activity) {
	b.mu.Lock()
	if a.Term >= b.cur.Term || a.At.After(b.cur.At) {
		b.cur = a
	}
	b.mu.Unlock()
}

// Activity implements the UI's view of the coordinator's soft state, as
// this node last heard it.
func (n *Node) Activity() webui.Activity {
	n.activity.mu.Lock()
	defer n.activity.mu.Unlock()
	a := n.activity.cur
	a.Leases = append([]webui.LeaseInfo(nil), a.Leases...)
	return a
}

// subscribeActivity records the activity the current leader publishes.
func (n *Node) subscribeActivity(ctx context.Context) error {
	topic, err := n.host.Topic(activityTopic)
	if err != nil {
		return err
	}
	n.activityTopic = topic
	return topic.Subscribe(ctx, func(from peer.ID, data []byte) {
		if l, _ := n.raft.Leader(); l != from {
			return
		}
		var a webui.Activity
		if err := json.Unmarshal(data, &a); err != nil || a.Leader != from.String() || len(a.Leases) > maxActivityLeases || len(a.Nodes) > 10000 {
			return
		}
		n.activity.set(a)
	})
}

// snapshotActivity builds the activity message from the scheduler.
func (c *coordinator) snapshotActivity(now time.Time) webui.Activity {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := webui.Activity{Term: c.term, Leader: c.n.host.ID().String(), At: now.UTC(), Nodes: map[string]webui.NodeActivity{}}
	for _, l := range c.sched.Leases() {
		if len(a.Leases) == maxActivityLeases {
			break
		}
		a.Leases = append(a.Leases, webui.LeaseInfo{ID: l.ID, Job: l.Job, Node: l.Node, Start: l.Range.Start, End: l.Range.End,
			Issued: l.Issued.UTC(), Probe: l.Probe, Backup: l.Backup})
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
func (c *coordinator) publishActivity(ctx context.Context, now time.Time) {
	a := c.snapshotActivity(now)
	c.n.activity.set(a)
	if c.n.activityTopic == nil {
		return
	}
	b, err := json.Marshal(a)
	if err != nil {
		return
	}
	if err := c.n.activityTopic.Publish(ctx, b); err != nil && ctx.Err() == nil {
		c.log.Debug("publish activity", "err", err)
	}
}
