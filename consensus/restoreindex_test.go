package consensus

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/hydra-compute/hydra/compute"
)

// oldSnapshot is a snapshot as builds before the state section's index wrote it: the cluster
// state alone, no App section.
func oldSnapshot(t *testing.T, st ClusterState) []byte {
	t.Helper()
	js, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	b := append([]byte(snapshotMagic), snapshotVersion)
	b = binary.AppendUvarint(b, uint64(len(js)))
	return append(append(b, js...), 0)
}

// A restored snapshot sets the FSM's index to that of the last entry applied to it: raft does
// not hand Restore the snapshot's metadata, so before, a replica sent a snapshot kept its old
// index (0 after a fresh start) until its next command, and everything that reads the index
// (WaitForIndex, the applied mark, a joiner's trust in its admission answer) lagged by the
// cluster's history.
func TestRestoredSnapshotCarriesItsIndex(t *testing.T) {
	f := NewFSM(&testApp{})
	apply(f, 1, mustCmd(t, OpInit, ClusterInit{ClusterID: "c", Token: "t"}))
	apply(f, 2, mustCmd(t, OpNodeRegister, NodeMeta{ID: "p", Name: "n"}))
	f.StoreConfiguration(4, raft.Configuration{})
	if res := apply(f, 6, mustCmd(t, OpAppFirst+1, "job")); res != 1 {
		t.Fatalf("app result %v", res)
	}
	data := snapshotBytes(t, f)

	g := NewFSM(&testApp{})
	var passed []uint64
	g.onIndex = func(i uint64) { passed = append(passed, i) }
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if got := g.index.Load(); got != 6 {
		t.Fatalf("restored FSM's index %d, want 6 (the snapshot's last entry)", got)
	}
	if fmt.Sprint(passed) != "[6]" {
		t.Fatalf("onIndex saw %v, want [6]", passed)
	}

	// An older snapshot than the replica had applied (raft applies the later entries again):
	// the index goes back with the state.
	g.StoreConfiguration(9, raft.Configuration{})
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if got := g.index.Load(); got != 6 {
		t.Fatalf("after an older snapshot the index is %d, want 6", got)
	}

	// An older build's snapshot names no index: the state is restored, the index stays.
	if err := g.Restore(io.NopCloser(bytes.NewReader(oldSnapshot(t, ClusterState{ClusterID: "old"})))); err != nil {
		t.Fatal(err)
	}
	if st := g.State(); st.ClusterID != "old" || g.index.Load() != 6 {
		t.Fatalf("older build's snapshot: cluster %q, index %d; want \"old\", 6", st.ClusterID, g.index.Load())
	}
	// And an older build reads this one's state section (encoding/json skips the new field).
	var st ClusterState
	n, k := binary.Uvarint(data[len(snapshotMagic)+1:])
	off := len(snapshotMagic) + 1 + k
	if err := json.Unmarshal(data[off:off+int(n)], &st); err != nil || st.ClusterID != "c" {
		t.Fatalf("the state section as an older build reads it: %+v, %v", st, err)
	}
}

// A node restarted from a snapshot that holds everything it applied knows its index at once,
// before any leader sends it anything. Before, it was 0 until the next command.
func TestRestartFromSnapshotKnowsItsIndex(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 1, "restoreindex", func(i int, c *Config) { c.App = openJobs(t, t.TempDir()) })
	n := waitAgreed(t, nodes)
	proposeJob(t, n, "a", 1)
	proposeJob(t, n, "b", 2)
	if err := n.r.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	want := n.r.fsm.index.Load()
	n.kill()
	n.cfg.App = openJobs(t, t.TempDir()) // the job state is rebuilt at every start
	n.open()
	if got := n.r.fsm.index.Load(); got < want {
		t.Fatalf("restarted from its snapshot, the FSM's index is %d, want at least %d", got, want)
	}
}

// A follower that was down while the leader trimmed its log past the follower's last entry is
// sent the leader's snapshot: its FSM's index is the snapshot's as soon as it is restored (the
// member registration that follows a return came to raise it anyway before, so the indexes it
// passed are what tell), it holds the leader's jobs, and restarted, it starts from the snapshot
// it was sent. The log's segments are made small (walSegmentSize), as raft-wal drops only whole
// segments: with the usual 16 MiB a test's log is never trimmed and the leader sends its log.
func TestFollowerSentTheSnapshotKnowsItsIndex(t *testing.T) {
	t.Parallel()
	nodes, leader, f := jobsClusterWithFollower(t, "installsnap")
	behind := f.r.fsm.index.Load()
	f.kill()

	const jobs = 200 // about 100 KB of log: several segments of 32 KiB
	for i := range jobs {
		proposeJob(t, leader, fmt.Sprintf("j%d", i), uint64(i+2))
	}
	if err := leader.r.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	want := leader.r.fsm.index.Load()
	first, err := leader.r.st.logs.FirstIndex()
	if err != nil || first <= behind+1 {
		t.Fatalf("the leader's log starts at %d (%v), want past %d, the follower's last entry", first, err, behind+1)
	}

	f.cfg.App = openJobs(t, t.TempDir()) // the job state is rebuilt at every start
	f.open()
	var passed []uint64 // the indexes f's FSM passes, under its mu
	f.r.fsm.mu.Lock()
	pass := f.r.fsm.onIndex
	f.r.fsm.onIndex = func(i uint64) { passed = append(passed, i); pass(i) }
	f.r.fsm.mu.Unlock()
	connectAll(t, alive(nodes))
	f.run()
	waitUntil(t, testDeadline, "the follower installs the leader's snapshot", func() error {
		if snaps, err := f.r.st.snaps.List(); err != nil || len(snaps) == 0 || snaps[0].Index < want {
			return fmt.Errorf("its snapshots: %v, %v", snaps, err)
		}
		if got := f.r.fsm.index.Load(); got < want {
			return fmt.Errorf("its FSM's index is %d, want %d", got, want)
		}
		return nil
	})
	f.r.fsm.mu.Lock()
	seen := slices.Clone(passed)
	f.r.fsm.mu.Unlock()
	if !slices.Contains(seen, want) {
		t.Fatalf("the follower's FSM passed indexes %v, none of them the snapshot's, %d", seen, want)
	}
	if n := f.cfg.App.(*compute.JobStore).Count(); n != jobs+1 {
		t.Fatalf("the follower holds %d jobs after the install, want %d", n, jobs+1)
	}

	// Restarted, it starts from the snapshot it was sent: its log holds nothing before it.
	f.kill()
	f.cfg.App = openJobs(t, t.TempDir())
	f.open()
	if got := f.r.fsm.index.Load(); got < want {
		t.Fatalf("restarted, the FSM's index is %d, want at least %d", got, want)
	}
	if n := f.cfg.App.(*compute.JobStore).Count(); n != jobs+1 {
		t.Fatalf("restarted, the follower holds %d jobs, want %d", n, jobs+1)
	}
}

// jobsClusterWithFollower starts three nodes with job stores and small log segments (raft-wal
// drops only whole segments: with the usual 16 MiB a test's log is never trimmed, and a leader
// sends its log, not a snapshot), and returns them, the leader, and a follower that holds a
// first job.
func jobsClusterWithFollower(t *testing.T, cluster string) (nodes []*testNode, leader, f *testNode) {
	t.Helper()
	nodes = startCluster(t, 3, cluster, func(i int, c *Config) {
		c.App = openJobs(t, t.TempDir())
		c.trailingLogs = 4
		c.walSegmentSize = 32 << 10
	})
	leader = waitAgreed(t, nodes)
	proposeJob(t, leader, "before", 1)
	f = otherThan(nodes, leader)
	waitUntil(t, testDeadline, "the follower has the first job", func() error {
		if _, ok := f.cfg.App.(*compute.JobStore).Job("before"); !ok {
			return errors.New("not yet")
		}
		return nil
	})
	return nodes, leader, f
}
