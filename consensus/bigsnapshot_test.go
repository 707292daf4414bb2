package consensus

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/internal/resultstore"
)

var _ SnapshotCapturer = (*compute.JobStore)(nil) // the job state is streamed, not buffered

// bigJobs is the state size the snapshot tests use: 10,000 finished jobs.
const bigJobs = 10_000

func openJobs(t *testing.T, dir string) *compute.JobStore {
	t.Helper()
	results, err := resultstore.Open(filepath.Join(dir, "jobs.db"))
	if err != nil {
		t.Fatal(err)
	}
	js := compute.NewJobStore(results)
	t.Cleanup(func() { js.Close() })
	return js
}

// seedJobs gives the node in dir a raft state as if it had led a cluster
// of itself alone through n finished π jobs and then taken a snapshot: the
// snapshot (written by the FSM as raft would) and the term, no log after
// it. Committing 10,000 jobs through raft would take a minute here.
func seedJobs(t *testing.T, n *testNode, count int) {
	t.Helper()
	js := n.cfg.App.(*compute.JobStore)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var items []compute.ChunkResult
	apply := func(cmd any) {
		if err, ok := js.ApplyCommand(cmd, 0).(error); ok {
			t.Fatal(err)
		}
	}
	for i := range count {
		id := fmt.Sprintf("job-%05d", i)
		apply(compute.Submit{ID: id, Time: t0, Spec: compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 64, Seed: uint64(i)}}})
		items = append(items, compute.ChunkResult{Chunk: compute.Chunk{Job: id, Range: compute.Range{Start: 0, End: 64}}, Node: "n", ComputeSeconds: 0.1,
			Payload: compute.EncodePiPayload(compute.PiHits(uint64(i), 0, 64))})
		if len(items) == 500 || i == count-1 {
			apply(compute.Results{Time: t0, Items: items})
			items = nil
		}
	}
	n.kill()
	st, err := openStores(n.dir, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	fsm := NewFSM(js)
	snap, err := fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	id := n.h.ID().String()
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(id)}}}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(id))
	defer trans.Close()
	const index = 20_000
	sink, err := st.snaps.Create(raft.SnapshotVersionMax, index, 1, conf, 1, trans)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if err := st.bolt.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}
}

func finishedJobs(js *compute.JobStore) int {
	n := 0
	for _, j := range js.Jobs() {
		if j.State == compute.StateDone {
			n++
		}
	}
	return n
}

// Test_MultiNode_BigSnapshot: a node whose state is a snapshot of 10,000
// finished jobs (no log before it) restarts from it, and two new members
// get the state by snapshot installation (the log they would replay is
// gone); a member restarted later restores it from its own snapshot file.
func Test_MultiNode_BigSnapshot(t *testing.T) {
	apps := map[string]*compute.JobStore{}
	withJobs := func(name string) func(c *Config) {
		return func(c *Config) {
			js := openJobs(t, t.TempDir())
			apps[name] = js
			c.App = js
		}
	}
	founder := newTestNode(t, "founder", "big", withJobs("founder"))
	start := time.Now()
	seedJobs(t, founder, bigJobs)
	t.Logf("%d jobs applied and snapshotted in %v", bigJobs, time.Since(start).Round(time.Millisecond))

	fresh := openJobs(t, t.TempDir())
	founder.cfg.App, apps["founder"] = fresh, fresh
	start = time.Now()
	founder.open() // raft restores the snapshot into the fresh job state here
	if n := finishedJobs(fresh); n != bigJobs {
		t.Fatalf("restart restored %d finished jobs, want %d", n, bigJobs)
	}
	t.Logf("restart restored %d jobs in %v", bigJobs, time.Since(start).Round(time.Millisecond))

	nodes := []*testNode{founder,
		newTestNode(t, "j1", "big", withJobs("j1")), newTestNode(t, "j2", "big", withJobs("j2"))}
	connectAll(t, nodes)
	start = time.Now()
	for _, n := range nodes {
		n.run()
	}
	waitUntil(t, testDeadline, "new members have every job", func() error {
		for _, n := range nodes[1:] {
			if got := finishedJobs(apps[n.name]); got != bigJobs {
				return fmt.Errorf("%s: %d finished jobs", n.name, got)
			}
		}
		return nil
	})
	t.Logf("two new members got %d jobs in %v", bigJobs, time.Since(start).Round(time.Millisecond))

	// A restarted member: its own snapshot file.
	m := nodes[1]
	// Raft refuses a snapshot until the latest configuration entry is applied
	// (the second joiner's may still be in flight): retry until it takes one.
	waitUntil(t, testDeadline, "the member takes a snapshot", func() error {
		if err := m.r.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			return err
		}
		return nil
	})
	m.kill()
	again := openJobs(t, t.TempDir())
	m.cfg.App = again
	m.open()
	if n := finishedJobs(again); n != bigJobs {
		t.Fatalf("restarted member restored %d finished jobs, want %d", n, bigJobs)
	}
	connectAll(t, nodes)
	m.run()
	waitUntil(t, testDeadline, "the restarted member is back", func() error {
		_, err := agreed(nodes)
		return err
	})
}
