package consensus

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hydra-compute/hydra/internal/testdisk"
)

// TestUnreadableLogIsReported: three voters, the leader's raft state on a real ext4 file system
// whose log then fails reads, as a disk with bad blocks does. A follower that was down comes back
// needing entries older than raft's log cache holds (512), so the leader reads them from its disk
// and fails. raft's replication only logged that, again and again: the leader led on, and the
// follower never caught up while it did. The read is now reported (OnDiskFailure, naming the
// entry), once; the leader's raft, held there, still stops (the node stops on the report); and
// the follower catches up from the other voter.
func TestUnreadableLogIsReported(t *testing.T) {
	t.Parallel()
	disk := testdisk.Ext4(t, "64M")
	reports := make(chan *DiskFailure, 4)
	nodes, failing := threeWithOneOn(t, disk, "disk-reads", reports, func(c *Config) {
		c.walSegmentSize = 16 << 10 // entries 1 to about 150 in the first segment
	})
	if leader := settled(t, nodes, 3, true); leader != failing {
		handLeadership(t, leader, failing)
	}
	lag := otherThanAll(nodes, failing)[0]
	lag.kill()
	// More entries than the cache holds, committed by the failing leader and the other voter,
	// one at a time (Apply batches the proposals that wait together into one entry).
	ctx := ctxT(t, testDeadline)
	for i := range 640 {
		if _, err := failing.r.Apply(ctx, Command{Op: OpAppFirst, Payload: fmt.Appendf(nil, "entry %d", i)}); err != nil {
			t.Fatalf("apply through %s: %v", failing.name, err)
		}
	}
	select {
	case df := <-reports:
		t.Fatalf("a disk failure before the disk failed: %v", df)
	default:
	}
	// The first segment fails, the tail does not (a write to it would read its last page first).
	if err := disk.FailReads(firstSegment, 0); err != nil {
		t.Fatal(err)
	}
	lag.restart(otherThanAll(nodes, lag))
	var df *DiskFailure
	select {
	case df = <-reports:
	case <-time.After(testDeadline):
		t.Fatalf("%s's log fails reads and %s needs its old entries, but OnDiskFailure was not called", failing.name, lag.name)
	}
	if df.Dir != failing.dir || !strings.Contains(df.Error(), "read raft log entry") {
		t.Fatalf("OnDiskFailure got %v (dir %s), want a failed read of the log in %s", df, df.Dir, failing.dir)
	}
	stopsWithin(t, failing) // as the node does on the report
	other := otherThanAll(nodes, failing, lag)[0]
	waitUntil(t, testDeadline, other.name+" or "+lag.name+" leads and takes an entry", func() error {
		for _, n := range []*testNode{other, lag} {
			if n.r.IsLeader() {
				_, err := n.r.Apply(ctxT(t, 10*time.Second), Command{Op: OpAppFirst, Payload: []byte("after")})
				return err
			}
		}
		return errors.New("no leader")
	})
	waitUntil(t, testDeadline, lag.name+" catches up", func() error {
		want := other.r.raft.LastIndex()
		if got := lag.r.raft.AppliedIndex(); got < want {
			return fmt.Errorf("%s applied %d, %s holds %d", lag.name, got, other.name, want)
		}
		return nil
	})
	select {
	case df := <-reports:
		t.Fatalf("OnDiskFailure called twice: %v", df)
	default:
	}
}

// firstSegment matches the name of the raft log's first segment (raft-wal's, entries from 1).
const firstSegment = "00000000000000000001-*.wal"

// TestUnreadableLogAtStart: a node whose raft log fails reads when it starts (a disk with bad
// blocks under a stopped node) stops with an error that names the entry, in its replay of what it
// had applied, or in raft's own scan of the log for configuration entries (entries it had not
// applied). It used to log the first as a missing entry and go on, and raft then panicked in its
// scan: the process died with a stack trace at every start.
func TestUnreadableLogAtStart(t *testing.T) {
	t.Parallel()
	for _, applied := range []uint64{3, 0} {
		t.Run(map[uint64]string{3: "replay", 0: "scan"}[applied], func(t *testing.T) {
			t.Parallel()
			disk := testdisk.Ext4(t, "64M")
			dir := filepath.Join(disk.Dir, "raft")
			st, err := openStoresSized(dir, testLogger(), 8<<10)
			if err != nil {
				t.Fatal(err)
			}
			for i := uint64(1); i <= 300; i++ { // one at a time: the first segments fill and are sealed
				if err := st.logs.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: fmt.Appendf(nil, "entry %d", i)}); err != nil {
					t.Fatal(err)
				}
			}
			if applied > 0 {
				if err := st.bolt.SetUint64(appliedKey, applied); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.close(); err != nil {
				t.Fatal(err)
			}
			// Its first page (the header, read when the log opens) reads; its index does not.
			if err := disk.FailReads(firstSegment, 4096); err != nil {
				t.Fatal(err)
			}
			n := newTestNode(t, "n0", "disk-reads-at-start", func(c *Config) { c.App = sinkApp{} })
			n.kill()
			err = startFails(t, n, dir, "New started on a log that fails reads")
			var df *DiskFailure
			if !errors.As(err, &df) || df.Dir != dir || !strings.Contains(err.Error(), "read raft log entry 1") {
				t.Fatalf("New: %v, want a failed read of entry 1 in %s", err, dir)
			}
		})
	}
}
