package p2p

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// deletedAddrs reads the address an RTM_DELADDR message removes, prefers IFA_LOCAL to
// IFA_ADDRESS, skips other messages and attributes of a wrong length, and returns nothing for
// bytes that are not netlink messages.
func TestDeletedAddrs(t *testing.T) {
	msg := func(typ uint16, attrs ...[]byte) []byte {
		body := make([]byte, unix.SizeofIfAddrmsg)
		for _, a := range attrs {
			body = append(body, a...)
		}
		b := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
		binary.NativeEndian.PutUint32(b[0:4], uint32(unix.SizeofNlMsghdr+len(body)))
		binary.NativeEndian.PutUint16(b[4:6], typ)
		return append(b, body...)
	}
	attr := func(typ uint16, v []byte) []byte {
		b := make([]byte, 4, 4+len(v)+3)
		binary.NativeEndian.PutUint16(b[0:2], uint16(4+len(v)))
		binary.NativeEndian.PutUint16(b[2:4], typ)
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	var b []byte
	b = append(b, msg(unix.RTM_NEWADDR, attr(unix.IFA_ADDRESS, []byte{10, 0, 0, 1}))...)
	b = append(b, msg(unix.RTM_DELADDR, attr(unix.IFA_ADDRESS, []byte{10, 0, 0, 2}))...)
	b = append(b, msg(unix.RTM_DELADDR, attr(unix.IFA_ADDRESS, []byte{10, 0, 0, 3}), attr(unix.IFA_LOCAL, []byte{10, 0, 0, 4}))...)
	b = append(b, msg(unix.RTM_DELADDR, attr(unix.IFA_ADDRESS, []byte{10, 0, 5}))...)
	got := deletedAddrs(b)
	if len(got) != 2 || got[0].String() != "10.0.0.2" || got[1].String() != "10.0.0.4" {
		t.Fatalf("deletedAddrs = %v, want [10.0.0.2 10.0.0.4]", got)
	}
	for _, bad := range [][]byte{nil, {1, 2, 3}, b[:7], b[:len(b)-3]} {
		_ = deletedAddrs(bad) // no panic
	}
}

// TestAddrWatchSurvivesOverflow: when address changes come faster than the
// watch reads them (a burst of them, a reader held up), the kernel drops
// the rest and the next read fails with ENOBUFS, which the watch meant to
// read past. os.File wraps the error, the comparison never matched, and the
// watch ended for good at the first overflow: from then on a lost address
// left its connections open until they timed out. Here the watch runs in a
// network namespace of its own, its first deletion holds it while a few
// thousand more changes overflow its socket, and a deletion made after
// must still be seen. It needs root and iproute2.
func TestAddrWatchSurvivesOverflow(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("needs iproute2's ip")
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	ns := "hydra-addrwatch-" + hex.EncodeToString(rnd[:])
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { run("netns", "delete", ns) })
	run("-n", ns, "link", "set", "lo", "up")
	nsFile, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsFile.Close()

	ctx, cancel := context.WithCancel(context.Background())
	hold := make(chan struct{})
	var held, sawLast atomic.Bool
	last := net.IPv4(10, 9, 255, 254)
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread, moved into the namespace, ends with the goroutine.
		runtime.LockOSThread()
		if err := unix.Setns(int(nsFile.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- watchAddrs(ctx, func(a net.IP) {
			if held.CompareAndSwap(false, true) {
				<-hold // the watch reads nothing meanwhile
			}
			if a.Equal(last) {
				sawLast.Store(true)
			}
		})
	}()
	released := false
	defer func() {
		if !released {
			close(hold)
		}
		cancel()
		<-errc
	}()
	ended := func() {
		t.Helper()
		select {
		case err := <-errc:
			errc <- err // for the deferred wait
			t.Fatalf("the watch ended: %v", err)
		default:
		}
	}
	// The watch opens its socket in its own time: add and delete until it sees one.
	waitFor(t, 10*time.Second, "the watch to see a deleted address", func() bool {
		ended()
		run("-n", ns, "addr", "add", "10.9.0.1/32", "dev", "lo")
		run("-n", ns, "addr", "del", "10.9.0.1/32", "dev", "lo")
		return held.Load()
	})
	var batch strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&batch, "addr add 10.9.%d.%d/32 dev lo\n", 1+i/250, 1+i%250)
	}
	for i := range 2000 {
		fmt.Fprintf(&batch, "addr del 10.9.%d.%d/32 dev lo\n", 1+i/250, 1+i%250)
	}
	file := filepath.Join(t.TempDir(), "batch")
	if err := os.WriteFile(file, []byte(batch.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	run("-n", ns, "-batch", file)
	released = true
	close(hold)
	waitFor(t, 10*time.Second, "the watch to see a deletion after the overflow", func() bool {
		ended()
		run("-n", ns, "addr", "add", last.String()+"/32", "dev", "lo")
		run("-n", ns, "addr", "del", last.String()+"/32", "dev", "lo")
		return sawLast.Load()
	})
}
