package consensus

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hydra-compute/hydra/compute"
)

// proposeJob commits a finished π job through the leader.
func proposeJob(t *testing.T, leader *testNode, id string, seed uint64) {
	t.Helper()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, cmd := range []any{
		compute.Submit{ID: id, Time: t0, Spec: compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 64, Seed: seed}}},
		compute.Results{Time: t0, Items: []compute.ChunkResult{{Chunk: compute.Chunk{Job: id, Range: compute.Range{Start: 0, End: 64}}, Node: "n",
			ComputeSeconds: 0.1, Payload: compute.EncodePiPayload(compute.PiHits(seed, 0, 64))}}},
	} {
		op, payload, err := compute.EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		_, err = leader.r.Apply(ctx, Command{Op: Op(op), Payload: payload})
		cancel()
		if err != nil {
			t.Fatalf("propose %s: %v", id, err)
		}
	}
}

// A node restarted alone, with no leader to be had, serves every job it had
// applied before it stopped: its newest snapshot plus the log entries after
// it, replayed at start. Once the others are back, raft hands the same
// entries over again; they are skipped, the replicas agree, and the node
// snapshots again.
func Test_MultiNode_RestartAloneServesApplied(t *testing.T) {
	t.Parallel()
	apps := make([]*compute.JobStore, 3)
	nodes := startCluster(t, 3, "replay", func(i int, c *Config) {
		apps[i] = openJobs(t, t.TempDir())
		c.App = apps[i]
	})
	var leader *testNode
	waitUntil(t, testDeadline, "three voters agree", func() error {
		l, err := agreed(nodes)
		if err == nil && voters(l.r.Servers()) != 3 {
			err = fmt.Errorf("%d voters", voters(l.r.Servers()))
		}
		leader = l
		return err
	})
	proposeJob(t, leader, "before-snapshot", 1)
	allHave := func(want int) func() error {
		return func() error {
			for i, n := range nodes {
				if got := finishedJobs(apps[i]); got != want {
					return fmt.Errorf("%s: %d finished jobs, want %d", n.name, got, want)
				}
			}
			return nil
		}
	}
	waitUntil(t, testDeadline, "every replica has the job", allHave(1))
	m := nodes[1]
	if err := m.r.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	proposeJob(t, leader, "after-snapshot-1", 2)
	proposeJob(t, leader, "after-snapshot-2", 3)
	waitUntil(t, testDeadline, "every replica has the jobs", allHave(3))
	for _, n := range nodes {
		n.kill()
	}

	// Alone: no peer is running, so no leader can be known.
	fresh := openJobs(t, t.TempDir()) // the job state is rebuilt at every start
	m.cfg.App, apps[1] = fresh, fresh
	m.open()
	if got := finishedJobs(fresh); got != 3 {
		t.Fatalf("restarted alone, the node serves %d finished jobs, want 3", got)
	}
	if l, ok := m.r.Leader(); ok {
		t.Fatalf("a leader (%s) is known with every peer down", l)
	}

	// The others come back: raft re-sends what was replayed; nothing twice.
	leader = restartOthers(t, nodes, m, apps)
	proposeJob(t, leader, "after-restart", 4)
	waitUntil(t, testDeadline, "every replica has the four jobs", allHave(4))
	for i, n := range nodes {
		if got := len(apps[i].Jobs()); got != 4 {
			t.Fatalf("%s holds %d jobs, want 4", n.name, got)
		}
	}
	waitUntil(t, testDeadline, "the restarted node snapshots again", func() error {
		err := m.r.raft.Snapshot().Error()
		if errors.Is(err, raft.ErrNothingNewToSnapshot) {
			return nil
		}
		return err
	})
}

// The FSM skips the entries replayed at start when raft hands them over
// again, applies what follows, and refuses to snapshot until raft caught up.
func TestFSMSkipsReplayed(t *testing.T) {
	js := openJobs(t, t.TempDir())
	f := NewFSM(js)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sub := func(id string) any {
		return compute.Submit{ID: id, Time: t0, Spec: compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 64, Seed: 1}}}
	}
	for i, id := range []string{"a", "b"} {
		if res, ok := f.Apply(appLog(t, uint64(i+1), sub(id))).(error); ok {
			t.Fatal(res)
		}
	}
	f.setReplayed(2)
	if _, err := f.Snapshot(); !errors.Is(err, errCatchingUp) {
		t.Fatalf("snapshot while catching up: %v, want errCatchingUp", err)
	}
	// raft re-sends entry 1 with other content: were it applied, "x" would exist.
	if res := f.Apply(appLog(t, 1, sub("x"))); res != nil {
		t.Fatalf("replayed entry 1 applied again: %v", res)
	}
	f.StoreConfiguration(2, raft.Configuration{})
	if got := f.index.Load(); got != 2 {
		t.Fatalf("index %d after the replayed configuration entry, want 2", got)
	}
	if res, ok := f.Apply(appLog(t, 3, sub("c"))).(error); ok {
		t.Fatal(res)
	}
	if n := len(js.Jobs()); n != 3 {
		t.Fatalf("%d jobs, want a, b and c", n)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("snapshot after catching up: %v", err)
	}
	snap.Release()
}

// restartOthers opens and runs again every node of nodes but m (already running), each with a
// new job state in apps, and returns the leader they then agree on.
func restartOthers(t *testing.T, nodes []*testNode, m *testNode, apps []*compute.JobStore) *testNode {
	t.Helper()
	for i, n := range nodes {
		if n != m {
			apps[i] = openJobs(t, t.TempDir())
			n.cfg.App = apps[i]
			n.open()
		}
	}
	connectAll(t, nodes)
	for _, n := range nodes {
		n.run()
	}
	var leader *testNode
	waitUntil(t, testDeadline, "the cluster is back", func() error {
		l, err := agreed(nodes)
		leader = l
		return err
	})
	return leader
}
