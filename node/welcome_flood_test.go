package node

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestWorkingMemberAnswersHellosAtMostOncePerGap: a member owed answers (a flood of joiners'
// hellos, a peer that comes and goes) answers at most once per promptGap (welcome.go). A
// working member (here one without a worker, which is never idle) published at every
// announcement that asked for an answer, whatever the gap: the announce loop took any wake
// for its turn. One member saying hello every 20 ms made the other publish as often, and each
// of those announcements went to every node.
func TestWorkingMemberAnswersHellosAtMostOncePerGap(t *testing.T) {
	const interval = 2 * time.Second
	nodes := startClusterWith(t, 2, func(c *Config) { c.Compute = false; c.AnnounceInterval = interval })
	waitLeader(t, nodes, 30*time.Second)
	waitFor(t, 30*time.Second, "the members online in each other's status", func() error {
		for _, n := range nodes {
			if err := showsOnline(n, nodes); err != nil {
				return err
			}
		}
		return nil
	})
	a, b := nodes[0], nodes[1]
	topic, err := b.host.Topic(announceTopic)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var heard atomic.Int64
	if err := topic.Subscribe(ctx, func(from peer.ID, _ []byte) {
		if from == a.ID() {
			heard.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	hello := b.self()
	hello.Hello = true
	data, err := json.Marshal(hello)
	if err != nil {
		t.Fatal(err)
	}

	const flood = 4 * time.Second
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	before := heard.Load()
	for end := time.Now().Add(flood); time.Now().Before(end); <-tick.C {
		if err := topic.Publish(ctx, data); err != nil {
			t.Fatalf("publish a hello: %v", err)
		}
	}
	got := heard.Load() - before
	// One answer per gap, the announcements in turn (every interval at most), and one in flight
	// at either end.
	gap := promptGap(interval)
	if limit := int64(flood/gap + flood/interval + 2); got > limit {
		t.Fatalf("the working member published %d announcements during %v of hellos, want at most %d (one answer per %v, one in turn per %v)",
			got, flood, limit, gap, interval)
	}
	t.Logf("%d announcements during %v of hellos", got, flood)
}
