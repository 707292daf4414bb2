package consensus

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/internal/boltfile"
	"github.com/libp2p/go-libp2p"
)

// twoSnapshotsDamageNewest runs a one-node cluster through three jobs with a snapshot after the
// first and after the third, kills it, and damages the newest snapshot's state file (its
// checksum no longer holds). trailing is how many log entries raft keeps after a snapshot
// (0: raft's default here, 4096, so the log still reaches back to the older snapshot).
func twoSnapshotsDamageNewest(t *testing.T, trailing uint64) (n *testNode, newestID string) {
	t.Helper()
	nodes := startCluster(t, 1, "snapdamage", func(i int, c *Config) {
		c.App = openJobs(t, t.TempDir())
		c.trailingLogs = trailing
	})
	n = nodes[0]
	var leader *testNode
	waitUntil(t, testDeadline, "a leader", func() error {
		l, err := agreed(nodes)
		leader = l
		return err
	})
	proposeJob(t, leader, "a", 1)
	if err := n.r.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	proposeJob(t, leader, "b", 2)
	proposeJob(t, leader, "c", 3)
	if err := n.r.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	snaps, err := n.r.st.snaps.List()
	if err != nil || len(snaps) != 2 {
		t.Fatalf("%d snapshots (%v), want 2", len(snaps), err)
	}
	n.kill()
	damageSnapshot(t, n, snaps[0].ID)
	n.cfg.App = openJobs(t, t.TempDir()) // the job state is rebuilt at every start
	return n, snaps[0].ID
}

// damageSnapshot flips bytes in the middle of a snapshot's state file: its checksum no longer
// holds.
func damageSnapshot(t *testing.T, n *testNode, id string) {
	t.Helper()
	state := filepath.Join(n.dir, "snapshots", id, "state.bin")
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 2; i < len(b)/2+8; i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(state, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A node whose newest snapshot is damaged while its log was already trimmed past the older
// snapshot cannot rebuild its state: it says so (a *boltfile.DamagedError naming DATA/raft
// and what to do; the node exits 78 with it, not restarted by hydra.service) instead of
// crashing. Before, raft fell back to the older snapshot and then panicked in NewRaft ("log
// not found": the entries after the older snapshot were gone) at every start.
func Test_DamagedNewestSnapshotWithTrimmedLogIsAnError(t *testing.T) {
	t.Parallel()
	n, newest := twoSnapshotsDamageNewest(t, 1)
	err := startFails(t, n, n.dir, "the node started from a damaged snapshot and a log that does not reach back to the older one")
	var damaged *boltfile.DamagedError
	if !errors.As(err, &damaged) || damaged.Path != n.dir || !strings.Contains(err.Error(), newest) ||
		!strings.Contains(err.Error(), "move the raft state aside") {
		t.Fatalf("New = %v, want a DamagedError on %s naming snapshot %s and the remedy", err, n.dir, newest)
	}
	if _, err := os.Stat(filepath.Join(n.dir, "snapshots", newest)); err != nil {
		t.Errorf("the damaged snapshot was moved although nothing could replace it: %v", err)
	}
}

// A node whose newest snapshot is damaged, with a log that still reaches back to the older
// snapshot, restores the older one, replays the log after it and serves every job; the damaged
// snapshot is moved aside (DATA/raft/<id>.damaged), so raft neither restores nor sends it.
func Test_DamagedNewestSnapshotFallsBackToTheOlder(t *testing.T) {
	t.Parallel()
	n, newest := twoSnapshotsDamageNewest(t, 0)
	n.open()
	n.run()
	defer n.kill()
	if got := finishedJobs(n.cfg.App.(*compute.JobStore)); got != 3 {
		t.Fatalf("after the restart the node serves %d finished jobs, want 3", got)
	}
	if _, err := os.Stat(filepath.Join(n.dir, newest+".damaged")); err != nil {
		t.Errorf("the damaged snapshot is not set aside: %v", err)
	}
	takesOneMoreJob(t, n)
}

// A young cluster's node whose every snapshot is damaged, with a log that still starts at its
// first entry, rebuilds its state from the log alone and sets both snapshots aside (review
// finding: it was refused as damaged though the log held everything).
func Test_EverySnapshotDamagedLogFromTheStart(t *testing.T) {
	t.Parallel()
	n, newest := twoSnapshotsDamageNewest(t, 0)
	snaps, err := n.r.st.snaps.List()
	if err != nil || len(snaps) != 2 {
		t.Fatalf("%d snapshots (%v), want 2", len(snaps), err)
	}
	older := snaps[1].ID
	damageSnapshot(t, n, older)
	n.open()
	n.run()
	defer n.kill()
	if got := finishedJobs(n.cfg.App.(*compute.JobStore)); got != 3 {
		t.Fatalf("after the restart the node serves %d finished jobs, want 3", got)
	}
	for _, id := range []string{newest, older} {
		if _, err := os.Stat(filepath.Join(n.dir, id+".damaged")); err != nil {
			t.Errorf("damaged snapshot %s is not set aside: %v", id, err)
		}
	}
	takesOneMoreJob(t, n)
}

// takesOneMoreJob checks that a node restarted from its three jobs leads again and applies a
// fourth.
func takesOneMoreJob(t *testing.T, n *testNode) {
	t.Helper()
	waitUntil(t, testDeadline, "a leader after the restart", func() error {
		_, err := agreed([]*testNode{n})
		return err
	})
	proposeJob(t, n, "d", 4)
	if got := finishedJobs(n.cfg.App.(*compute.JobStore)); got != 4 {
		t.Fatalf("%d finished jobs after one more, want 4", got)
	}
}

// startFails starts n's raft again on dir, with a new host of n's key, and returns New's error;
// the test fails, with why, if it starts.
func startFails(t *testing.T, n *testNode, dir, why string) error {
	t.Helper()
	h, err := libp2p.New(libp2p.Identity(n.key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	cfg := n.cfg
	cfg.Host, cfg.Dir = h, dir
	r, err := New(cfg)
	if err == nil {
		_ = r.Shutdown(false)
		t.Fatal(why)
	}
	return err
}
