//go:build unix

package node

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestRecoverAsRootLeavesTheDataToItsOwner: under packaging/hydra.service the node runs as a
// transient user (DynamicUser=) in /var/lib/hydra, a link into /var/lib/private, and root runs
// the client commands (`sudo hydra status --data /var/lib/hydra`, docs/install.md), so `sudo
// hydra recover` too. Recover rewrote the raft log and wrote a snapshot owned by root; the
// node, started again, stopped at once on "permission denied" (exit code 1: systemd restarts
// it every 5 s for ever). Every file of the directory must stay its owner's. CI runs as root.
func TestRecoverAsRootLeavesTheDataToItsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs hydra recover as root on a directory another user owns: run it as root (CI does)")
	}
	const uid, gid = 61234, 61235 // the unit's dynamic user: any user but root
	base := t.TempDir()
	real := filepath.Join(base, "private", "hydra")
	if err := os.MkdirAll(real, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "hydra")
	if err := os.Symlink(filepath.Join("private", "hydra"), link); err != nil {
		t.Fatal(err)
	}
	n := newTestNode(t, link, "n0", nil)
	n.start(t)
	waitLeader(t, []*testNode{n}, 30*time.Second)
	n.stop(t)
	// What the node's own user leaves behind: everything its own.
	chownAll := func(uid, gid int) {
		t.Helper()
		err := filepath.WalkDir(real, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, uid, gid)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	chownAll(uid, gid)
	// A file of root's that the directory's owner linked in (where fs.protected_hardlinks is off)
	// is not recover's to give away.
	rootsFile := filepath.Join(base, "roots-file")
	if err := os.WriteFile(rootsFile, []byte("root's"), 0o600); err != nil {
		t.Fatal(err)
	}
	planted := filepath.Join(real, "planted")
	if err := os.Link(rootsFile, planted); err != nil {
		t.Fatal(err)
	}

	if _, err := Recover(link, nil); err != nil {
		t.Fatalf("recover: %v", err)
	}
	st, err := os.Stat(rootsFile)
	if err != nil {
		t.Fatal(err)
	}
	if owner := st.Sys().(*syscall.Stat_t).Uid; owner != 0 {
		t.Fatalf("root's file linked into the data directory is owned by %d after recover, want root's still", owner)
	}
	if err := os.Remove(planted); err != nil {
		t.Fatal(err)
	}
	snapshots := 0
	err = filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		if st.Uid != uid || st.Gid != gid {
			t.Errorf("%s is owned by %d:%d after recover, want %d:%d (the node's user could not use it)", p, st.Uid, st.Gid, uid, gid)
		}
		if d.Name() == "meta.json" {
			snapshots++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if snapshots == 0 {
		t.Fatal("recover wrote no snapshot: nothing was checked")
	}
}
