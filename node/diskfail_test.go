//go:build linux

package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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
		if !errors.As(err, &ce) || !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), "--data "+dir) ||
			!strings.Contains(err.Error(), "read-only") {
			t.Fatalf("the node stopped with %v (%T), want a *ConfigError naming --data %s, read-only", err, err, dir)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the node did not stop on a failing disk")
	}
}
