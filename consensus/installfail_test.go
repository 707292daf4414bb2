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
	nodes := startCluster(t, 3, "installfail", func(i int, c *Config) {
		c.App = openJobs(t, t.TempDir())
		c.trailingLogs = 4
		c.walSegmentSize = 32 << 10
	})
	leader := waitAgreed(t, nodes)
	proposeJob(t, leader, "before", 1)
	f := otherThan(nodes, leader)
	waitUntil(t, testDeadline, "the follower has the first job", func() error {
		if _, ok := f.cfg.App.(*compute.JobStore).Job("before"); !ok {
			return errors.New("not yet")
		}
		return nil
	})
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
