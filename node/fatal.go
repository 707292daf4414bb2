package node

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"sort"
	"syscall"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/consensus"
)

// fatalError is the error Run stops with when a committed entry could not be applied here
// (consensus.ApplyFailure): for an op this build does not know, the version to upgrade to
// (upgradeError, a *ConfigError: exit code 78, which the service unit does not restart, since
// the same build would stop at the same entry again every few seconds); for a file system that
// turned read-only (a failing disk: consensus.DiskFailure, or an entry the job store could not
// write), what to check, also a *ConfigError (a restart would only find it read-only again);
// otherwise the remedy for a full or failing disk (exit code 1). Either way the node replays
// its log when it starts again, and applies the entry then.
func (n *Node) fatalError(err error) error {
	if ue := upgradeError(err, n.raft.State().Nodes); ue != nil {
		return ue
	}
	if de := diskStopError(n.cfg.DataDir, err, readOnlyWait); de != nil {
		return de
	}
	return fmt.Errorf("%w; free the disk (or fix it) and start the node again: it replays its raft log", err)
}

// readOnlyWait is how long a node stopping on an I/O error waits for its file system to turn
// read-only: the kernel remounts it so a few milliseconds after the error it met (ext4's
// errors=remount-ro), and a write under way meanwhile (an fsync) fails with EIO, not EROFS.
const readOnlyWait = time.Second

// diskStopError returns the error a node stops with when its disk failed under it: a
// *ConfigError (exit code 78: a restart would only find it read-only again) naming --data when
// the file system is read-only (the error says so, or one that says EIO is followed within
// wait by the kernel's remount of dataDir's file system: turnsReadOnly), the failing disk's
// remedy for another consensus.DiskFailure (failingDisk, exit code 1), nil for anything else.
func diskStopError(dataDir string, err error, wait time.Duration) error {
	if errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EIO) && turnsReadOnly(dataDir, wait) {
		return &ConfigError{Err: fmt.Errorf("--data %s: the file system turned read-only under the running node (the kernel does so when a disk fails: a worn SD card, a dying disk; see its log, dmesg): check the disk (fsck) or move --data to a good one, then start the node again: it replays its raft log (%w)",
			dataDir, err)}
	}
	return failingDisk(dataDir, err)
}

// turnsReadOnly reports whether dir's file system is read-only, or turns so within wait.
// A file created and removed in dir tells: the mount's flags do not (Linux 6.x marks ext4's
// remount after an error as emergency_ro, not as a read-only mount).
func turnsReadOnly(dir string, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		f, err := os.CreateTemp(dir, ".hydra-write-probe-*")
		if err == nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		} else if errors.Is(err, syscall.EROFS) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond) // a bounded poll on the way out: nothing tells of a remount
	}
}

// failingDisk returns, for a consensus.DiskFailure that is not a read-only file system (an I/O
// error writing, or a read of the raft log that failed: a bad block), the error that says what
// to check; nil for any other error. Exit code 1: a disk that failed once may read again after
// a restart (a loose cable, a card reseated), and if not the node stops again at once.
func failingDisk(dataDir string, err error) error {
	if _, ok := errors.AsType[*consensus.DiskFailure](err); !ok {
		return nil
	}
	return fmt.Errorf("--data %s: the disk fails (%w): check it (the kernel's log, dmesg; fsck) or move --data to a good one (if its raft log stays unreadable, move DATA/raft aside: the node then gets the cluster's state from the leader, unless it was the cluster's only node), then start the node again", dataDir, err)
}

// upgradeError returns, for the failure of a committed entry whose op this build does not know
// (consensus.UnknownOp), the *ConfigError that says so and which hydra to upgrade to, found among the
// members' registrations (nodes; nil when they are not known); nil for any other error.
func upgradeError(err error, nodes map[string]consensus.NodeMeta) error {
	af, isAF := errors.AsType[*consensus.ApplyFailure](err)
	uo, unknown := errors.AsType[consensus.UnknownOp](err)
	if !isAF || !unknown {
		return nil
	}
	return &ConfigError{Err: fmt.Errorf("this build (hydra %s, job-state level %d) does not know op %#02x committed at index %d; upgrade hydra to %s and start the node again: it replays its raft log and applies the entry (%w)",
		Version, compute.Level, uo.UnknownOp(), af.Index, upgradeTarget(nodes), uo)}
}

// upgradeTarget names the hydra to upgrade to: "version ≥ V", V the version of the member
// registered with the highest job-state level above this build's (the lowest peer ID among
// equals), or any newer version when none is registered (the op's proposer registered after
// the last entry applied here).
func upgradeTarget(nodes map[string]consensus.NodeMeta) string {
	var newer []consensus.NodeMeta
	for _, m := range nodes {
		if m.Level > compute.Level && m.Version != "" {
			newer = append(newer, m)
		}
	}
	if len(newer) == 0 {
		return fmt.Sprintf("the version the other members run (newer than %s)", Version)
	}
	sort.Slice(newer, func(i, j int) bool {
		return newer[i].Level > newer[j].Level || newer[i].Level == newer[j].Level && newer[i].ID < newer[j].ID
	})
	m := newer[0]
	return fmt.Sprintf("version ≥ %s (the version of node %s, job-state level %d)", m.Version, cmp.Or(m.Name, m.ID), m.Level)
}
