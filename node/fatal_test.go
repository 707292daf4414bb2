package node

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/webui"
)

// A node whose FSM stopped on an op its build does not know stops with a message that names
// the op, the entry's index and the version to upgrade to (the member registered with the
// highest level); a full disk keeps its own message.
func TestUpgradeErrorNamesOpIndexAndVersion(t *testing.T) {
	af := &consensus.ApplyFailure{Index: 812, Err: &compute.UnknownOpError{Op: 0x55}}
	nodes := map[string]consensus.NodeMeta{
		"p1": {ID: "p1", Name: "old", Version: "0.0.9"},
		"p2": {ID: "p2", Name: "desk", Version: "0.3.0", Level: compute.Level + 2},
		"p3": {ID: "p3", Name: "laptop", Version: "0.2.0", Level: compute.Level + 1},
	}
	err := upgradeError(fmt.Errorf("wrapped: %w", af), nodes)
	for _, want := range []string{"does not know op 0x55 committed at index 812", "upgrade hydra to version ≥ 0.3.0", "desk",
		fmt.Sprintf("job-state level %d", compute.Level)} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("unknown op: %v; want it to say %q", err, want)
		}
	}
	if !errors.Is(err, compute.ErrUnknownOp) {
		t.Fatalf("%v does not wrap ErrUnknownOp", err)
	}
	// Exit code 78: the service unit does not restart it into the same stop every few seconds.
	if ce := (*ConfigError)(nil); !errors.As(err, &ce) {
		t.Fatalf("%v is not a *ConfigError", err)
	}
	if err := upgradeError(af, nil); err == nil || !strings.Contains(err.Error(), "the version the other members run") {
		t.Fatalf("unknown op, no newer member known: %v", err)
	}
	disk := &consensus.ApplyFailure{Index: 3, Err: &compute.StorageError{Op: "results", Err: errors.New("no space left on device")}}
	if err := upgradeError(disk, nodes); err != nil {
		t.Fatalf("a full disk taken for an unknown op: %v", err)
	}
}

// A request refused because a member's build does not know its op answers 503 with the reason
// (a retry succeeds once that member is upgraded), not 500.
func TestOpUnsupportedIsUnavailable(t *testing.T) {
	err := unavailable(fmt.Errorf("trust reset: %w: member x runs hydra 0.1.0: upgrade it", consensus.ErrOpUnsupported))
	if !errors.Is(err, webui.ErrUnavailable) {
		t.Fatalf("%v: want it marked unavailable", err)
	}
}

// A disk that fails reads of the raft log (or writes with an I/O error) stops the node with what
// to check, naming --data, at start or running; exit code 1 (not a *ConfigError: a restart may
// read again). A read-only file system keeps its own *ConfigError; anything else is not a disk's.
func TestFailingDiskSaysWhatToCheck(t *testing.T) {
	read := &consensus.DiskFailure{Dir: "/d/raft", Err: fmt.Errorf("read raft log entry 7: %w", syscall.EIO)}
	for _, err := range []error{read, fmt.Errorf("open raft state: replay the raft log: %w", read)} {
		got := failingDisk("/d", err)
		if got == nil || !strings.Contains(got.Error(), "--data /d: the disk fails") || !strings.Contains(got.Error(), "read raft log entry 7") ||
			!errors.Is(got, syscall.EIO) {
			t.Fatalf("failingDisk(%v) = %v, want --data /d, the entry and EIO", err, got)
		}
		if ce := (*ConfigError)(nil); errors.As(got, &ce) {
			t.Fatalf("%v is a *ConfigError (exit code 78)", got)
		}
	}
	if got := failingDisk("/d", fmt.Errorf("open: %w", syscall.EIO)); got != nil {
		t.Fatalf("an error that is no DiskFailure taken for one: %v", got)
	}
}
