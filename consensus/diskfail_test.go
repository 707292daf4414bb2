package consensus

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hydra-compute/hydra/internal/testdisk"
)

// TestFailingDiskIsReported: three voters, one with its raft state on a real ext4 file system
// that then fails as a worn SD card does (the kernel remounts it read-only). At the cluster's
// next write that node's store refuses the entry with EROFS, and OnDiskFailure reports it, once,
// naming the directory. Then a new term comes (leadership moves, or the failing node led and
// stepped down): raft cannot save it on that node, which raft answers with a panic that took the
// whole process down; the write is held instead, the two others commit on, and the failing node
// still shuts down. Before, raft only logged each failed append: the node went on as a member
// that stored, applied and voted for nothing, until a new term crashed it.
func TestFailingDiskIsReported(t *testing.T) {
	t.Parallel()
	disk := testdisk.Ext4(t, "64M")
	reports := make(chan *DiskFailure, 4)
	nodes := make([]*testNode, 3)
	for i := range nodes {
		nodes[i] = newTestNode(t, fmt.Sprintf("n%d", i), "disk-fail", func(c *Config) {
			c.App = sinkApp{}
			if i == 2 {
				c.OnDiskFailure = func(df *DiskFailure) { reports <- df }
			}
		})
	}
	failing := nodes[2]
	failing.kill()
	failing.dir = filepath.Join(disk.Dir, "raft")
	failing.open()
	connectAll(t, nodes)
	for _, n := range nodes {
		n.run()
	}
	leader := settled(t, nodes, 3, true)
	term := leader.r.raft.CurrentTerm()
	select {
	case df := <-reports:
		t.Fatalf("a disk failure before the disk failed: %v", df)
	default:
	}

	disk.Fail(t)
	write := func(what string) {
		t.Helper()
		waitUntil(t, testDeadline, "a leader other than "+failing.name+" takes "+what, func() error {
			for _, n := range nodes {
				if n != failing && n.r.IsLeader() {
					_, err := n.r.Apply(ctxT(t, 10*time.Second), Command{Op: OpAppFirst, Payload: []byte(what)})
					return err
				}
			}
			return errors.New("no leader")
		})
	}
	write("after the failure") // committed by the two others, refused by the failing one
	var df *DiskFailure
	select {
	case df = <-reports:
	case <-time.After(testDeadline):
		t.Fatalf("%s's disk failed and the cluster wrote on, but OnDiskFailure was not called", failing.name)
	}
	if !errors.Is(df, syscall.EROFS) || df.Dir != failing.dir {
		t.Fatalf("OnDiskFailure got %v (dir %s), want EROFS in %s", df, df.Dir, failing.dir)
	}
	if leader != failing {
		other := otherThan2(nodes, leader, failing)[0]
		if err := leader.r.raft.LeadershipTransferToServer(raft.ServerID(other.h.ID().String()), raft.ServerAddress(other.h.ID().String())).Error(); err != nil {
			t.Fatalf("leadership to %s: %v", other.name, err)
		}
	}
	write("in a new term") // sent to the failing node too, whose term cannot be saved
	waitUntil(t, testDeadline, "a term after "+fmt.Sprint(term), func() error {
		for _, n := range nodes {
			if n != failing && n.r.IsLeader() && n.r.raft.CurrentTerm() > term {
				return nil
			}
		}
		return errors.New("not yet")
	})
	stopped := make(chan struct{})
	go func() {
		failing.kill() // as the node does: it stops
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(testDeadline):
		t.Fatalf("%s did not stop", failing.name)
	}
	write("without it")
	select {
	case df := <-reports:
		t.Fatalf("OnDiskFailure called twice: %v", df)
	default:
	}
}

// otherThan2 returns nodes without a and b.
func otherThan2(nodes []*testNode, a, b *testNode) []*testNode {
	var out []*testNode
	for _, n := range nodes {
		if n != a && n != b {
			out = append(out, n)
		}
	}
	return out
}
