package consensus

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/internal/testdisk"
)

// A follower sent the leader's snapshot while its job state's disk is too full for the
// snapshot's results: the job state may hold part of it (its result store was emptied first),
// so the replica stops as after an entry it could not apply (OnFatal, nothing applied or
// snapshotted after), instead of serving its old jobs without their results and retrying the
// install for as long as the disk stays full while it looks healthy. Started again once the
// disk has room, it restores the snapshot from its disk and holds the leader's jobs. Before,
// raft logged the failed restore and went on: OnFatal never came.
func TestFollowerStopsWhenTheSnapshotSentFailsToRestore(t *testing.T) {
	t.Parallel()
	nodes, leader, f := jobsClusterWithFollower(t, "installfail")
	f.kill()
	const jobs = 200 // several log segments of 32 KiB: the leader trims its log past the follower's
	for i := range jobs {
		proposeJob(t, leader, fmt.Sprintf("j%d", i), uint64(i+2))
	}
	if err := leader.r.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}

	small := testdisk.Small(t, "2m") // the follower's job state only: its raft state has room
	f.cfg.App = openJobs(t, small)
	fatal := make(chan *ApplyFailure, 1)
	f.cfg.OnFatal = func(af *ApplyFailure) { fatal <- af }
	f.open() // replays its own log (the first job) while the disk has room
	testdisk.Fill(t, small)
	connectAll(t, alive(nodes))
	f.run()
	var af *ApplyFailure
	waitUntil(t, testDeadline, "the follower stops on the failed restore", func() error {
		select {
		case af = <-fatal:
			return nil
		default:
			return errors.New("no OnFatal yet")
		}
	})
	if _, ok := errors.AsType[*appRestoreError](af); !ok || !errors.Is(af, syscall.ENOSPC) || f.r.fsm.Failure() != af {
		t.Fatalf("OnFatal got %v (the FSM's failure %v), want the restore's ENOSPC", af, f.r.fsm.Failure())
	}

	// Started again with room, it restores the snapshot it was sent from its disk.
	f.kill()
	if err := os.Remove(filepath.Join(small, "filler")); err != nil {
		t.Fatal(err)
	}
	f.cfg.App = openJobs(t, t.TempDir())
	f.open()
	if n := f.cfg.App.(*compute.JobStore).Count(); n != jobs+1 {
		t.Fatalf("restarted, the follower holds %d jobs, want %d", n, jobs+1)
	}
}

// A node started while its job state's disk is too full for its newest snapshot's results fails
// to start with the disk's error (the node waits for space and starts again) and leaves the
// snapshot where it is. Before, the full disk read as a damaged snapshot: it was moved aside
// (DATA/raft/<id>.damaged) and an older one restored, or, with none, the node was told to drop
// its raft state.
func TestFullDiskAtStartKeepsTheSnapshot(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 1, "fullstart", func(i int, c *Config) { c.App = openJobs(t, t.TempDir()) })
	n := waitAgreed(t, nodes)
	proposeJob(t, n, "a", 1)
	if err := n.r.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	for i := range 200 { // more results than the full disk's store can take in its free pages
		proposeJob(t, n, fmt.Sprintf("b%d", i), uint64(i+2))
	}
	if err := n.r.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	snaps, err := n.r.st.snaps.List()
	if err != nil || len(snaps) != 2 {
		t.Fatalf("%d snapshots (%v), want 2", len(snaps), err)
	}
	n.kill()

	small := testdisk.Small(t, "2m")
	n.cfg.App = openJobs(t, small)
	testdisk.Fill(t, small)
	err = startFails(t, n, n.dir, "the node started with a job state its disk could not hold")
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("New = %v, want the full disk's error", err)
	}
	for _, s := range snaps {
		if _, err := os.Stat(filepath.Join(n.dir, "snapshots", s.ID)); err != nil {
			t.Errorf("snapshot %s was set aside for a full disk: %v", s.ID, err)
		}
	}
}
