package consensus

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestAutopilotForgetsRemovedServers: what the leader's autopilot delegate learnt of a server
// (its last answer, its stats while the log stands still, its availability) goes once the server
// is no longer in the configuration. Before, only the last answer did: a leader that led for
// weeks while nodes were removed kept the stats and availability of every one of them.
func TestAutopilotForgetsRemovedServers(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "autopilotprune", nil)
	leader := settled(t, nodes, 3, false)
	member := map[raft.ServerID]bool{}
	for _, s := range leader.r.Servers() {
		member[raft.ServerID(s.ID.String())] = true
	}
	d := leader.r.del
	const removed = 50
	d.mu.Lock()
	for i := range removed {
		id := raft.ServerID("removed-" + string(rune('a'+i%26)) + string(rune('a'+i/26)))
		d.lastSeen[id] = time.Now()
		d.avail[id] = Availability{}
		d.quiet[id] = quietStats{at: time.Now()}
	}
	d.mu.Unlock()
	if len(d.KnownServers()) != len(member) {
		t.Fatal("the known servers are not the configuration's")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for id := range d.lastSeen {
		if !member[id] {
			t.Errorf("last answer of removed server %s kept", id)
		}
	}
	for id := range d.avail {
		if !member[id] {
			t.Errorf("availability of removed server %s kept", id)
		}
	}
	for id := range d.quiet {
		if !member[id] {
			t.Errorf("stats of removed server %s kept", id)
		}
	}
}
