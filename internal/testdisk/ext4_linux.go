package testdisk

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Failing is a real ext4 file system, on a loop device, that a test can make fail as a worn
// SD card or a dying disk does: the kernel finds an error, and with errors=remount-ro (the
// default of Debian and Raspberry Pi OS for their root file system) it makes the file system
// read-only at once. Files stay open; every later write fails with EROFS.
type Failing struct {
	// Dir is the mounted file system's root.
	Dir string
	dev string // the loop device's name, loopN
}

// Ext4 makes a Failing file system of size (mkfs's syntax: "64M"), mounted until the test
// ends. A test that cannot have one (no root, no loop device, no mkfs.ext4) fails: a skipped
// test fails CI.
func Ext4(t testing.TB, size string) *Failing {
	t.Helper()
	base := t.TempDir()
	img, dir := filepath.Join(base, "disk.img"), filepath.Join(base, "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s (root, a loop device and e2fsprogs needed): %v: %s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("truncate", "-s", size, img)
	run("mkfs.ext4", "-q", "-F", img)
	loop := run("losetup", "--find", "--show", img)
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", loop).Run() })
	if out, err := exec.Command("mount", "-t", "ext4", "-o", "errors=remount-ro", loop, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount %s on %s: %v: %s", loop, dir, err, out)
	}
	t.Cleanup(func() { unmount(dir) }) // runs before the loop device's detach
	return &Failing{Dir: dir, dev: filepath.Base(loop)}
}

// Fail makes the file system meet an error now (ext4's trigger_fs_error, the kernel's own
// test hook): it turns read-only as a failing disk's does.
func (f *Failing) Fail(t testing.TB) {
	t.Helper()
	p := filepath.Join("/sys/fs/ext4", f.dev, "trigger_fs_error")
	if err := os.WriteFile(p, []byte("hydra test\n"), 0); err != nil {
		t.Fatalf("make %s fail: %v", f.Dir, err)
	}
	if err := os.WriteFile(filepath.Join(f.Dir, ".probe"), nil, 0o600); err == nil {
		t.Fatalf("%s still takes writes after its error", f.Dir)
	} else if !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("%s after its error: %v, want a read-only file system", f.Dir, err)
	}
}

func (f *Failing) String() string { return fmt.Sprintf("ext4 on /dev/%s at %s", f.dev, f.Dir) }
