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
)

// chaosDisk is a node's data disk in the chaos harness: an ext4 file system on a loop device
// whose image lies on a tmpfs of its own (a disk as fast as the tmpfs it replaces, which the
// full-disk fault fills), mounted with errors=remount-ro as Debian and Raspberry Pi OS mount
// theirs, so that the failing-disk fault fails it as a worn SD card fails: the kernel makes it
// read-only under the running node.
type chaosDisk struct {
	data string // the mount point: the node's data directory
	loop string // the loop device, /dev/loopN
}

// chaosDiskSize is the size of a node's disk: 256 MiB of room (startCluster says why so much)
// plus ext4's own and the 5 % it keeps for root.
const chaosDiskSize = 320 << 20

// newChaosDisk makes and mounts a node's disk on data; dir holds the image's tmpfs. Everything
// is unmounted and detached when the test ends (a failed run lists the disk's files first).
func newChaosDisk(t *testing.T, dir, data string) *chaosDisk {
	t.Helper()
	imgDir := filepath.Join(dir, "disk")
	if err := os.MkdirAll(imgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", chaosDiskSize+(16<<20)), "tmpfs", imgDir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs (root needed): %v: %s", err, out)
	}
	t.Cleanup(func() { unmountDir(imgDir) })
	img := filepath.Join(imgDir, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, chaosDiskSize); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup %s (a loop device needed): %v: %s", img, err, out)
	}
	d := &chaosDisk{data: data, loop: strings.TrimSpace(string(out))}
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", d.loop).Run() })
	if err := d.format(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() { // what filled it, if anything did: the disk goes with the run
			listFiles(t, data, filepath.Join(dir, "files.txt"))
		}
		unmountDir(data)
	})
	return d
}

// format makes a new empty file system on the disk and mounts it on its data directory.
func (d *chaosDisk) format() error {
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", d.loop).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 %s (e2fsprogs needed): %w: %s", d.loop, err, out)
	}
	if out, err := exec.Command("mount", "-t", "ext4", "-o", "errors=remount-ro", d.loop, d.data).CombinedOutput(); err != nil {
		return fmt.Errorf("mount %s on %s: %w: %s", d.loop, d.data, err, out)
	}
	return nil
}

// fail makes the kernel meet an error on the disk now (ext4's trigger_fs_error): it turns
// read-only, every later write fails with EROFS.
func (d *chaosDisk) fail() error {
	p := filepath.Join("/sys/fs/ext4", filepath.Base(d.loop), "trigger_fs_error")
	if err := os.WriteFile(p, []byte("hydra chaos\n"), 0); err != nil {
		return fmt.Errorf("fail the disk %s: %w", d.loop, err)
	}
	return nil
}

// replace puts a new empty disk in: the failed file system is unmounted (its node has
// stopped) and a new one made on the same device.
func (d *chaosDisk) replace() error {
	unmountDir(d.data)
	return d.format()
}

func unmountDir(dir string) {
	if err := syscall.Unmount(dir, 0); err != nil {
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
	}
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
	if err := c.disks[p].fail(); err != nil {
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
	if err := c.disks[p].replace(); err != nil {
		return err
	}
	return c.rejoinFresh(p, oldID, off)
}

// failDiskStop bounds how long a node runs on a failed disk.
const failDiskStop = 2 * time.Minute
