package node

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/node/work"
	"github.com/hydra-compute/hydra/webui"
)

// activityTopic carries the coordinator's soft state (leases, rates) to
// every node about once a second.
const activityTopic = "activity/1"

// activityBox holds the latest activity this node knows.
type activityBox struct {
	mu  sync.Mutex
	cur webui.Activity
}

// set keeps a unless the box holds a later term's, and reports whether it did. The terms
// order activities, never their times: At is the clock of the leader that sent it, and a
// deposed leader's clock may be ahead of its successor's by any amount.
func (b *activityBox) set(a webui.Activity) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.Term < b.cur.Term {
		return false
	}
	b.cur = a
	return true
}

// noteActivity keeps a leader's activity and what it says of the cluster's clock (node/clock.go).
func (n *Node) noteActivity(a webui.Activity) {
	if n.activity.set(a) {
		n.clock.observe(a.At, n.wall(), n.log)
	}
}

// Activity implements the UI's view of the coordinator's soft state, as
// this node last heard it.
func (n *Node) Activity() webui.Activity {
	n.activity.mu.Lock()
	defer n.activity.mu.Unlock()
	a := n.activity.cur
	a.Leases = append([]webui.LeaseView(nil), a.Leases...)
	return a
}

// subscribeActivity records the activity the current leader publishes.
func (n *Node) subscribeActivity(ctx context.Context) error {
	topic, err := n.host.Topic(activityTopic)
	if err != nil {
		return err
	}
	n.activityTopic.Store(topic)
	return topic.Subscribe(ctx, func(from peer.ID, data []byte) {
		if l, _ := n.raft.Leader(); l != from {
			return
		}
		var a webui.Activity
		if err := json.Unmarshal(data, &a); err != nil || a.Leader != from.String() || len(a.Leases) > work.MaxActivityLeases || len(a.Nodes) > 10000 {
			return
		}
		n.noteActivity(a)
	})
}

// publishActivity is the coordinator's Publish: it records the activity
// here and sends it to every node — each time while chunks are leased,
// else only when it changed or idlePublishEvery has passed (an idle
// cluster need not gossip the same nothing every second).
func (n *Node) publishActivity(ctx context.Context, a webui.Activity) {
	n.noteActivity(a)
	topic := n.activityTopic.Load()
	if topic == nil {
		return
	}
	timeless := a
	timeless.At = time.Time{}
	same, err := json.Marshal(timeless)
	if err != nil {
		return
	}
	n.pubMu.Lock()
	skip := len(a.Leases) == 0 && string(same) == string(n.lastPub) && time.Since(n.pubAt) < idlePublishEvery
	if !skip {
		n.lastPub, n.pubAt = same, time.Now()
	}
	n.pubMu.Unlock()
	if skip {
		return
	}
	b, err := json.Marshal(a)
	if err != nil {
		return
	}
	if err := topic.Publish(ctx, b); err != nil && ctx.Err() == nil {
		n.log.Debug("publish activity", "err", err)
	}
}
