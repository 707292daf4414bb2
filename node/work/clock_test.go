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

// TestStampsUseTheClusterClock: the times a leader writes into the log (a job started, a job
// failed) and publishes in its activity are the cluster's clock, not its own: a leader whose
// clock is decades off (a board without an RTC, a clock set by hand) among two nodes whose
// clocks agree stamps their time, so a job's times do not jump by decades when leadership
// moves. With two clocks the leader keeps its own (there is no majority to follow).
func TestStampsUseTheClusterClock(t *testing.T) {
	ahead := 30 * 365 * 24 * time.Hour // this leader's clock (the test's) minus the others'
	store := compute.NewJobStore(compute.NewMemResults())
	t.Cleanup(func() { store.Close() })
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 10, Seed: 1}}
	if err, ok := store.ApplyCommand(compute.Submit{ID: "j", Time: time.Now().Add(-ahead), Spec: spec}, 1).(error); ok {
		t.Fatal(err)
	}
	var got []any
	cfg := &CoordinatorConfig{Jobs: store, Apply: func(_ context.Context, cmd any) (json.RawMessage, error) {
		got = append(got, cmd)
		return nil, nil
	}}
	c := &leadership{co: &Coordinator{}, cfg: cfg, log: discardLogger(), ctx: context.Background(), lastSeen: map[string]time.Time{},
		offsets: map[string]time.Duration{"a": -ahead, "b": -ahead - time.Second}, sched: compute.NewScheduler(compute.SchedulerConfig{})}
	c.lastSeen["a"], c.lastSeen["b"] = time.Now(), time.Now()
	near := func(what string, at time.Time) {
		t.Helper()
		if d := time.Now().Add(-ahead).Sub(at); d < 0 || d > time.Minute {
			t.Fatalf("%s stamped %s, want about %s (the cluster's clock)", what, at, time.Now().Add(-ahead))
		}
	}
	c.failJob("j", "test")
	c.markStarted("j", time.Now())
	if len(got) != 2 {
		t.Fatalf("commands %#v, want a Fail and a Started", got)
	}
	near("fail", got[0].(compute.Fail).Time)
	near("started", got[1].(compute.Started).Time)
	near("activity", c.snapshotActivity(time.Now()).At)

	// Two clocks: the leader's own, whichever way the other is off.
	mine := time.Date(1970, 1, 1, 0, 5, 0, 0, time.UTC)
	for _, o := range []time.Duration{ahead, -3 * time.Hour} {
		c.offsets = map[string]time.Duration{"a": o}
		c.lastSeen = map[string]time.Time{"a": mine}
		if s := c.stamp(mine); !s.Equal(mine) {
			t.Fatalf("one other clock %s off: stamped %s, want the leader's %s", o, s, mine)
		}
	}
	// Alone: its own.
	c.lastSeen = map[string]time.Time{}
	if s := c.stamp(mine); !s.Equal(mine) {
		t.Fatalf("alone: stamped %s", s)
	}
}

// TestChallengeWaitBoundedWhenTheClockStepsBack: the challenger waits for Results entries to
// stop for challengeWait at most, even when the leader's wall clock stepped back since the last
// one (NTP correcting a clock an hour ahead): the wait does not grow by the step.
func TestChallengeWaitBoundedWhenTheClockStepsBack(t *testing.T) {
	c := &leadership{}
	now := time.Now()
	c.resultsAt.Store(now.Add(-challengeWait / 4).UnixNano())
	if d := c.challengeDelay(now); d <= 0 || d > challengeWait {
		t.Fatalf("Results a moment ago: wait %s, want within (0, %s]", d, challengeWait)
	}
	c.resultsAt.Store(now.Add(time.Hour).UnixNano()) // proposed before the clock stepped back an hour
	if d := c.challengeDelay(now); d < 0 || d > challengeWait {
		t.Fatalf("after a step back: wait %s, want at most %s", d, challengeWait)
	}
	c.resultsAt.Store(now.Add(-time.Hour).UnixNano())
	if d := c.challengeDelay(now); d != 0 {
		t.Fatalf("quiet for an hour: wait %s", d)
	}
}

// quarantinedAudits is fakeAudits with some nodes quarantined.
type quarantinedAudits struct {
	*fakeAudits
	out map[string]bool
}

func (q quarantinedAudits) Quarantined(node string) bool { return q.out[node] }

// TestAuditWaiveUsesTheClusterClock: the AuditWaive for the only live node that may audit is
// stamped with the cluster's clock, as every command the leader proposes: the time is the
// finish time of a job the waive completes, which retention evicts by. A leader whose clock is
// decades behind the others' (quarantined nodes sync, and count for the clock) stamped its own,
// and such a job was evicted, its result with it, at the next eviction.
func TestAuditWaiveUsesTheClusterClock(t *testing.T) {
	behind := 30 * 365 * 24 * time.Hour // the others' clocks minus this leader's
	audits := &fakeAudits{tasks: []compute.AuditTask{piTask(1, "a")}}
	qa := quarantinedAudits{audits, map[string]bool{nodeID("q1"): true, nodeID("q2"): true}}
	co := NewCoordinator(CoordinatorConfig{Jobs: fakeJobs{}, Audits: qa, Apply: audits.apply, Logger: discardLogger()})
	c := co.newLeadership(context.Background(), 3, time.Second)
	start := c.began.Add(workerSilence)
	for _, n := range []string{"a", "q1", "q2"} {
		c.lastSeen[nodeID(n)], c.offsets[nodeID(n)] = start, behind
	}
	c.waiveLoneAudits(context.Background(), start)
	now := start.Add(waiveAfter)
	c.waiveLoneAudits(context.Background(), now)
	audits.mu.Lock()
	defer audits.mu.Unlock()
	for _, cmd := range audits.applied {
		if w, ok := cmd.(compute.AuditWaive); ok {
			if d := w.Time.Sub(now.Add(behind)); d.Abs() > time.Minute {
				t.Fatalf("waive stamped %s, want about %s (the cluster's clock)", w.Time, now.Add(behind))
			}
			return
		}
	}
	t.Fatalf("no waive proposed: %#v", audits.applied)
}
