package testdisk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Failing is a real ext4 file system, on a loop device, that a test can make fail as a worn
// SD card or a dying disk does: the kernel finds an error, and with errors=remount-ro (the
// default of Debian and Raspberry Pi OS for their root file system) it makes the file system
// read-only at once. Files stay open; every later write fails with EROFS.
type Failing struct {
	// Dir is the mounted file system's root.
	Dir string
	dev string // the loop device, /dev/loopN
	img string // its image
}

// Ext4 makes a Failing file system of size (truncate's syntax: "64M"), its image in the test's
// temporary directory, mounted until the test ends. A test that cannot have one (no root, no
// loop device, no mkfs.ext4) fails: a skipped test fails CI.
func Ext4(t testing.TB, size string) *Failing {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return Ext4At(t, filepath.Join(base, "disk.img"), dir, size)
}

// Ext4At is Ext4 with its image at img (on a tmpfs, say, for a disk as fast as one) and mounted
// on dir, an existing directory. The loop device is detached and dir unmounted when the test
// ends.
func Ext4At(t testing.TB, img, dir, size string) *Failing {
	t.Helper()
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s (root, a loop device and e2fsprogs needed): %v: %s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("truncate", "-s", size, img)
	f := &Failing{Dir: dir, dev: run("losetup", "--find", "--show", img), img: img}
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", f.dev).Run() })
	if err := f.format(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmount(dir) }) // runs before the loop device's detach
	return f
}

// format makes a new empty file system on the device and mounts it on Dir.
func (f *Failing) format() error {
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", f.dev).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 %s (e2fsprogs needed): %w: %s", f.dev, err, out)
	}
	if out, err := exec.Command("mount", "-t", "ext4", "-o", "errors=remount-ro", f.dev, f.Dir).CombinedOutput(); err != nil {
		return fmt.Errorf("mount %s on %s: %w: %s", f.dev, f.Dir, err, out)
	}
	return nil
}

// Break makes the file system meet an error now (ext4's trigger_fs_error, the kernel's own test
// hook): it turns read-only as a failing disk's does.
func (f *Failing) Break() error {
	p := filepath.Join("/sys/fs/ext4", filepath.Base(f.dev), "trigger_fs_error")
	if err := os.WriteFile(p, []byte("hydra test\n"), 0); err != nil {
		return fmt.Errorf("make %s fail: %w", f.Dir, err)
	}
	return nil
}

// Fail is Break, and checks that the file system refuses writes as read-only.
func (f *Failing) Fail(t testing.TB) {
	t.Helper()
	if err := f.Break(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.Dir, ".probe"), nil, 0o600); err == nil {
		t.Fatalf("%s still takes writes after its error", f.Dir)
	} else if !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("%s after its error: %v, want a read-only file system", f.Dir, err)
	}
}

// FailReads makes the disk fail reads as one with bad blocks does, the file system left as it is
// (read-write, mounted): what the files under Dir whose names match pattern (filepath.Match's
// syntax: "*" for all) hold from byte from on now reads back as I/O errors (EIO). The image
// under the loop device is cut to nothing (the loop driver fails a read past its end) once
// everything written is on it, and the page cache of those files' bytes from from on is dropped,
// so that their reads go to the device. The rest, the file system's own blocks too (its
// directories), reads from the cache while it holds it (a memory-mapped database: a fault on a
// page that fails to read is a SIGBUS, which no program survives). Writes go on: each extends
// the image, and what lies below it then reads back as zeros, a disk that gives back garbage.
func (f *Failing) FailReads(pattern string, from int64) error {
	var fds []int // the files' to drop, opened before their directories fail reads too
	defer func() {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
	}()
	err := filepath.WalkDir(f.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if ok, err := filepath.Match(pattern, d.Name()); !ok || err != nil {
			return err
		}
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			fds = append(fds, fd)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("make %s fail reads: %w", f.Dir, err)
	}
	unix.Sync()
	if err := os.Truncate(f.img, 0); err != nil {
		return fmt.Errorf("make %s fail reads: %w", f.Dir, err)
	}
	for _, fd := range fds {
		if err := unix.Fadvise(fd, from, 0, unix.FADV_DONTNEED); err != nil {
			return fmt.Errorf("drop the page cache of %s's files: %w", f.Dir, err)
		}
	}
	return nil
}

// Replace puts a new disk in: the failed file system is unmounted (whatever used it has
// stopped) and a new empty one made on the same device and mounted on Dir. A process that
// dies with the one that used the disk (a node's compute child, killed by its parent's
// death) may hold it a moment longer: the unmount is tried again until it goes through, for up
// to replaceWait; a lazy unmount would leave the device busy, and mkfs would refuse it.
func (f *Failing) Replace() error {
	deadline := time.Now().Add(replaceWait)
	tick := time.NewTicker(20 * time.Millisecond) // polls the unmount's condition, with a deadline
	defer tick.Stop()
	for {
		err := syscall.Unmount(f.Dir, 0)
		if err == nil || errors.Is(err, syscall.EINVAL) { // EINVAL: nothing mounted there any more
			break
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			held := holders(f.Dir)
			unmount(f.Dir)
			return fmt.Errorf("unmount the failed disk at %s: %w (held by %s)", f.Dir, err, held)
		}
		if busyHook != nil {
			busyHook()
		}
		<-tick.C
	}
	return f.format()
}

// holders names the processes with a file, a working directory or a mapping under dir, for an
// unmount that stays busy.
func holders(dir string) string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		links, _ := filepath.Glob(filepath.Join(p, "fd", "*"))
		links = append(links, filepath.Join(p, "cwd"), filepath.Join(p, "root"))
		maps, _ := os.ReadFile(filepath.Join(p, "maps"))
		hit := strings.Contains(string(maps), dir+"/")
		for _, l := range links {
			if t, err := os.Readlink(l); err == nil && (t == dir || strings.HasPrefix(t, dir+"/")) {
				hit = true
				break
			}
		}
		if hit {
			comm, _ := os.ReadFile(filepath.Join(p, "comm"))
			out = append(out, fmt.Sprintf("%s (pid %s)", strings.TrimSpace(string(comm)), filepath.Base(p)))
		}
	}
	if len(out) == 0 {
		return "no process found"
	}
	return strings.Join(out, ", ")
}

// busyHook, nil outside tests, runs at each busy unmount Replace meets.
var busyHook func()

// replaceWait bounds how long Replace waits for the failed disk's last user to let it go.
const replaceWait = 30 * time.Second

func (f *Failing) String() string { return fmt.Sprintf("ext4 on %s at %s", f.dev, f.Dir) }
