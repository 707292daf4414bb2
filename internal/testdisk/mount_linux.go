package testdisk

import (
	"fmt"
	"os/exec"
	"syscall"
)

func mount(dir, size string) error {
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

func unmount(dir string) {
	if err := syscall.Unmount(dir, 0); err != nil {
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
	}
}
