package consensus

import (
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/internal/testdisk"
)

// TestFailingDiskIsReported: three voters, one with its raft state on a real ext4 file system
// that then fails as a worn SD card does (the kernel remounts it read-only), once as a follower
// and once as the leader. At the next write that node's store refuses the entry with EROFS or EIO (a
// leader then steps down), and OnDiskFailure reports it, once, naming the directory. Then a new
// term comes: raft cannot save it on that node, which raft answers with a panic that took the
// whole process down; the write is held instead, the two others commit on, and the failing node
// still shuts down. Before, raft only logged each failed append: the node went on as a member
// that stored, applied and voted for nothing, until a new term crashed it.
func TestFailingDiskIsReported(t *testing.T) {
	t.Parallel()
	for _, leads := range []bool{false, true} {
		t.Run(map[bool]string{false: "follower", true: "leader"}[leads], func(t *testing.T) {
			t.Parallel()
			failingDisk(t, leads)
		})
	}
}

// failingDisk is TestFailingDiskIsReported with the failing node leading or not.
func failingDisk(t *testing.T, leads bool) {
	disk := testdisk.Ext4(t, "64M")
	reports := make(chan *DiskFailure, 4)
	nodes, failing := threeWithOneOn(t, disk, fmt.Sprintf("disk-fail-%v", leads), reports, nil)
	leader := settled(t, nodes, 3, true)
	if leads != (leader == failing) {
		to := otherThanAll(nodes, leader, failing)[0]
		if leads {
			to = failing
		}
		handLeadership(t, leader, to)
		leader = to
	}
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
	if leads {
		// A leader writes nothing on its own: the first entry proposed to it meets the disk.
		if _, err := failing.r.Apply(ctxT(t, 10*time.Second), Command{Op: OpAppFirst, Payload: []byte("to the failing leader")}); err == nil {
			t.Fatalf("%s committed an entry on its failed disk", failing.name)
		}
	}
	write("after the failure") // committed by the two others, refused by the failing one
	var df *DiskFailure
	select {
	case df = <-reports:
	case <-time.After(testDeadline):
		t.Fatalf("%s's disk failed and the cluster wrote on, but OnDiskFailure was not called", failing.name)
	}
	// EROFS, or EIO: the log's fsync on the file system the kernel turned read-only can fail with
	// EIO (the journal aborted; CI's run of 510c136); the node tells a read-only file system from
	// a failing one by its state (node's diskStopError).
	if !(errors.Is(df, syscall.EROFS) || errors.Is(df, syscall.EIO)) || df.Dir != failing.dir {
		t.Fatalf("OnDiskFailure got %v (dir %s), want EROFS or EIO in %s", df, df.Dir, failing.dir)
	}
	if !leads { // a failing leader stepped down: the next one has a new term already
		handLeadership(t, leader, otherThanAll(nodes, leader, failing)[0])
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
	stopsWithin(t, failing) // as the node does on the report
	write("without it")
	select {
	case df := <-reports:
		t.Fatalf("OnDiskFailure called twice: %v", df)
	default:
	}
}

// stopsWithin stops n (kill) and fails the test if that takes longer than testDeadline: a node
// whose disk failed must still stop, though raft's write or read of that disk is held.
func stopsWithin(t *testing.T, n *testNode) {
	t.Helper()
	stopped := make(chan struct{})
	go func() {
		n.kill()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(testDeadline):
		t.Fatalf("%s did not stop", n.name)
	}
}

// threeWithOneOn starts three voters of cluster, the third's raft state on disk (mod, if set,
// adjusts its Config further) and its disk failures sent to reports, and returns them and the third.
func threeWithOneOn(t *testing.T, disk *testdisk.Failing, cluster string, reports chan<- *DiskFailure, mod func(*Config)) ([]*testNode, *testNode) {
	t.Helper()
	nodes := make([]*testNode, 3)
	for i := range nodes {
		nodes[i] = newTestNode(t, fmt.Sprintf("n%d", i), cluster, func(c *Config) {
			c.App = sinkApp{}
			if i == 2 {
				c.OnDiskFailure = func(df *DiskFailure) { reports <- df }
				if mod != nil {
					mod(c)
				}
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
	return nodes, failing
}
