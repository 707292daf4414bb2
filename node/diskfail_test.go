//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/internal/testdisk"
)

// TestNodeStopsOnAFailingDisk: a node whose data directory's file system fails under it (the
// kernel makes it read-only, as it does when a disk fails: a worn SD card) stops with a
// *ConfigError (exit code 78: a supervisor does not restart it into the same read-only disk)
// that names the data directory and what to check. Before, it went on: raft logged each append
// it could not store, and the next term it could not save crashed the process with a panic.
func TestNodeStopsOnAFailingDisk(t *testing.T) {
	disk := testdisk.Ext4(t, "128M")
	dir := filepath.Join(disk.Dir, "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	n := newTestNode(t, dir, "n0", nil)
	n.start(t)
	waitForToken(t, n.Node)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := n.SubmitJob(ctx, diskFillJob); err != nil {
		t.Fatal(err)
	}
	disk.Fail(t)
	select {
	case err := <-n.done:
		n.cancel = nil
		var ce *ConfigError
		// EIO when raft's fsync met the aborted journal first: the file system is read-only still.
		if !errors.As(err, &ce) || !(errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EIO)) || !strings.Contains(err.Error(), "--data "+dir) ||
			!strings.Contains(err.Error(), "read-only") {
			t.Fatalf("the node stopped with %v (%T), want a *ConfigError naming --data %s, read-only", err, err, dir)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the node did not stop on a failing disk")
	}
}

// TestIOErrorOnAFileSystemTurnedReadOnlyExits78: when the kernel meets a disk's error it makes
// the file system read-only, and a write under way meanwhile (raft's fsync) fails with EIO, not
// EROFS. A node whose first failed write was that EIO stopped with exit code 1 (the chaos
// harness, seed 101): a supervisor restarted it into the same read-only disk. The file system's
// own state decides now (diskStopError): read-only, exit code 78 saying so; an EIO on a file
// system that stays writable (a bad block read) is exit code 1 with what to check.
func TestIOErrorOnAFileSystemTurnedReadOnlyExits78(t *testing.T) {
	disk := testdisk.Ext4(t, "64M")
	eio := &consensus.DiskFailure{Dir: filepath.Join(disk.Dir, "raft"), Err: fmt.Errorf("sync wal: %w", syscall.EIO)}
	err := diskStopError(disk.Dir, eio, 0)
	if ce := (*ConfigError)(nil); err == nil || errors.As(err, &ce) || !strings.Contains(err.Error(), "the disk fails") {
		t.Fatalf("EIO on a writable file system: %v (%T), want exit code 1 saying the disk fails", err, err)
	}
	disk.Fail(t)
	err = diskStopError(disk.Dir, eio, 0)
	if ce := (*ConfigError)(nil); !errors.As(err, &ce) || !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "read-only") ||
		!strings.Contains(err.Error(), "--data "+disk.Dir) {
		t.Fatalf("EIO on a file system turned read-only: %v (%T), want a *ConfigError naming --data %s, read-only", err, err, disk.Dir)
	}
	if err := diskStopError(disk.Dir, errors.New("no space left on device"), 0); err != nil {
		t.Fatalf("an error no disk failure: %v", err)
	}
}
