//go:build linux

package node

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/internal/testdisk"
)

// chaosDiskSize is the size of a node's disk: 256 MiB of room (startCluster says why so much)
// plus ext4's own and the 5 % it keeps for root.
const chaosDiskSize = 320 << 20

// newChaosDisk makes a node's data disk and mounts it on data: an ext4 file system on a loop
// device (testdisk.Failing: the failing-disk fault fails it as a worn SD card fails, read-only
// under the running node) whose image lies on a tmpfs of its own in dir, so that the disk is as
// fast as the tmpfs it replaces, which the full-disk fault fills. A failed run lists the disk's
// files before it goes.
func newChaosDisk(t *testing.T, dir, data string) *testdisk.Failing {
	t.Helper()
	imgDir := filepath.Join(dir, "disk")
	if err := os.MkdirAll(imgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", chaosDiskSize+(16<<20)), "tmpfs", imgDir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs (root needed): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(imgDir, 0); err != nil {
			_ = syscall.Unmount(imgDir, syscall.MNT_DETACH)
		}
	})
	d := testdisk.Ext4At(t, filepath.Join(imgDir, "disk.img"), data, fmt.Sprint(chaosDiskSize))
	t.Cleanup(func() {
		if t.Failed() { // what filled it, if anything did: the disk goes with the run
			listFiles(t, data, filepath.Join(dir, "files.txt"))
		}
	})
	return d
}

// failDisk fails p's disk under the running node: it must stop by itself at its next write,
// exit code 78 and a message that its data directory turned read-only, within failDiskStop
// (the cluster writes all the time: jobs, their results). Its data are lost with the disk; after
// off a new one is in, and it joins again with a new key, as a replaced disk does (wipe).
func (c *chaos) failDisk(p *proc, off time.Duration) error {
	oldID := p.id
	c.logf("disk of %s fails (the kernel makes it read-only); a new one in %s", p.name, off)
	c.mu.Lock()
	c.mayExit[p] = true
	c.mu.Unlock()
	defer func() { c.mu.Lock(); delete(c.mayExit, p); c.mu.Unlock() }()
	if err := c.disks[p].Break(); err != nil {
		return err
	}
	select {
	case <-p.exited:
	case <-time.After(failDiskStop):
		return fmt.Errorf("still running %s after its disk failed", failDiskStop)
	}
	code := p.cmd.ProcessState.ExitCode()
	log, _ := os.ReadFile(p.logPath())
	if code != 78 || !strings.Contains(string(log), "turned read-only") {
		return fmt.Errorf("stopped on its failed disk with exit code %d (want 78, saying its data directory turned read-only); its log ends:\n%s", code, p.dumpLog())
	}
	c.logf("%s stopped on its failed disk: exit 78, read-only named", p.name)
	if err := c.disks[p].Replace(); err != nil {
		return err
	}
	return c.rejoinFresh(p, oldID, off)
}

// failDiskStop bounds how long a node runs on a failed disk.
const failDiskStop = 2 * time.Minute
