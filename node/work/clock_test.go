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

// TestEvictOnlyWhenAJobIsDue: the leader's minutely Evict is proposed only when it would drop a
// finished job; with none due (an idle cluster) no entry is appended and no replica fsyncs.
func TestEvictOnlyWhenAJobIsDue(t *testing.T) {
	store := compute.NewJobStore(compute.NewMemResults())
	t.Cleanup(func() { store.Close() })
	var proposed int
	cfg := &CoordinatorConfig{
		Jobs:     store,
		Settings: func() consensus.Settings { return consensus.Settings{Retention: time.Hour} },
		Apply: func(_ context.Context, cmd any) (json.RawMessage, error) {
			proposed++
			return nil, nil
		},
	}
	c := &leadership{cfg: cfg, lastSeen: map[string]time.Time{}, offsets: map[string]time.Duration{}}
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	c.evict(context.Background(), t0)
	if proposed != 0 {
		t.Fatalf("no job: %d Evict proposed", proposed)
	}
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 10, Seed: 1}}
	for i, cmd := range []any{
		compute.Submit{ID: "j", Time: t0, Spec: spec},
		compute.Cancel{Job: "j", Time: t0},
	} {
		if err, ok := store.ApplyCommand(cmd, uint64(i+1)).(error); ok {
			t.Fatal(err)
		}
	}
	c.evict(context.Background(), t0.Add(30*time.Minute))
	if proposed != 0 {
		t.Fatalf("a job within the retention: %d Evict proposed", proposed)
	}
	c.evict(context.Background(), t0.Add(2*time.Hour))
	if proposed != 1 {
		t.Fatalf("a job past the retention: %d Evict proposed, want 1", proposed)
	}
}
