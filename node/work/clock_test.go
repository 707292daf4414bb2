package work

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/consensus"
)

// TestEvictUsesTheClusterClock: the Evict a leader commits carries the median of the clocks of
// the nodes that synced (its own included) and the replicated settings, so a leader whose clock
// is a week fast, or a node started with --retention 1m, cannot evict every finished result.
func TestEvictUsesTheClusterClock(t *testing.T) {
	week := 7 * 24 * time.Hour
	set := consensus.Settings{Retention: 72 * time.Hour, DiskCap: 8 << 30, MaxJobs: 100}
	var got []compute.Evict
	cfg := &CoordinatorConfig{
		Settings: func() consensus.Settings { return set },
		Apply: func(_ context.Context, cmd any) (json.RawMessage, error) {
			got = append(got, cmd.(compute.Evict))
			return nil, nil
		},
	}
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC) // the leader's clock: a week fast
	c := &leadership{cfg: cfg, lastSeen: map[string]time.Time{}, offsets: map[string]time.Duration{}}
	for _, n := range []string{"a", "b"} { // two nodes whose clocks are right
		c.lastSeen[n] = now
		c.offsets[n] = -week
	}
	c.evict(context.Background(), now)
	if len(got) != 1 || !got[0].Now.Equal(now.Add(-week)) || got[0].Retention != set.Retention || got[0].DiskCap != set.DiskCap {
		t.Fatalf("evict %+v, want the cluster's time %s and the replicated settings", got, now.Add(-week))
	}
	// Two clocks: the earlier one (evicts less). One node a week slow, leader right.
	c.offsets = map[string]time.Duration{"a": -week}
	c.lastSeen = map[string]time.Time{"a": now}
	if cn := c.clusterNow(now); !cn.Equal(now.Add(-week)) {
		t.Fatalf("two clocks: %s", cn)
	}
	// A node no longer seen does not count.
	delete(c.lastSeen, "a")
	if cn := c.clusterNow(now); !cn.Equal(now) {
		t.Fatalf("alone: %s", cn)
	}
}
