package p2p

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestMDNSServiceName(t *testing.T) {
	seen := map[string]string{}
	for _, c := range []string{"", "default", "a", "b", "a very long cluster name that goes on and on"} {
		name := MDNSServiceName(c)
		if len(name) > 15 {
			t.Errorf("MDNSServiceName(%q) = %q: %d characters, DNS-SD allows 15", c, name, len(name))
		}
		if !strings.HasPrefix(name, "_hydra-") {
			t.Errorf("MDNSServiceName(%q) = %q", c, name)
		}
		if prev, dup := seen[name]; dup {
			t.Errorf("clusters %q and %q share service name %q", prev, c, name)
		}
		seen[name] = c
	}
	if MDNSServiceName("a") != MDNSServiceName("a") {
		t.Error("not deterministic")
	}
}

// mdnsChildEnv marks the re-executed test binary that runs inside the
// network namespace.
const mdnsChildEnv = "HYDRA_P2P_MDNS_CHILD"

// TestMDNSInNamespace runs TestMDNSInNamespaceChild inside a fresh network
// namespace whose only interface is a multicast-enabled loopback, so that
// mDNS never reaches the machine's real network (docs/design.md §6). It needs
// root and iproute2.
func TestMDNSInNamespace(t *testing.T) {
	if os.Getenv(mdnsChildEnv) != "" {
		t.Skip("in the child")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("needs iproute2's ip")
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	ns := "hydra-p2p-" + hex.EncodeToString(rnd[:])
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := exec.Command(ip, "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ip, "netns", "delete", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v\n%s", ns, err, out)
		}
	})
	run("-n", ns, "link", "set", "lo", "up")
	run("-n", ns, "link", "set", "lo", "multicast", "on")

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ip, "netns", "exec", ns, exe,
		"-test.run=^TestMDNSInNamespaceChild$", "-test.v", "-test.count=1", "-test.timeout=80s")
	cmd.Env = append(os.Environ(), mdnsChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestMDNSInNamespaceChild") {
		t.Fatalf("child in namespace %s failed: %v\n%s", ns, err, out)
	}
}

// TestMDNSInNamespaceChild is the part of TestMDNSInNamespace that runs in
// the namespace: two hosts of cluster "a" find each other by mDNS alone, a
// host of cluster "b" (started first, browsing all along) finds neither.
func TestMDNSInNamespaceChild(t *testing.T) {
	if os.Getenv(mdnsChildEnv) == "" {
		t.Skip("run by TestMDNSInNamespace inside a network namespace")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := func(cluster string) (*Host, *peerSet, *logRecorder) {
		h, rec := newTestHost(t, cluster, nil)
		seen := newPeerSet()
		if err := h.StartDiscovery(ctx, fastDiscovery(DiscoveryConfig{MDNS: true, OnPeer: seen.OnPeer})); err != nil {
			t.Fatal(err)
		}
		return h, seen, rec
	}
	b, seenB, _ := start("b")
	a1, seen1, rec1 := start("a")
	a2, seen2, rec2 := start("a")
	waitFor(t, 30*time.Second, "the two cluster-a hosts to find each other by mDNS", func() bool {
		return seen1.n(a2.ID()) > 0 && seen2.n(a1.ID()) > 0 && connected(a1, a2)
	})
	if !rec1.has("peer found", "source=mdns") && !rec2.has("peer found", "source=mdns") {
		t.Fatal("the cluster-a hosts found each other, but not through mDNS")
	}
	if seenB.len() != 0 || seen1.n(b.ID()) != 0 || seen2.n(b.ID()) != 0 {
		t.Fatalf("cluster b saw %d peers; a1 saw b %d times; a2 saw b %d times",
			seenB.len(), seen1.n(b.ID()), seen2.n(b.ID()))
	}
	if connected(b, a1) || connected(b, a2) {
		t.Fatal("cluster b is connected to cluster a")
	}
}
