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
// network namespace; its value names the scenario the child plays.
const mdnsChildEnv = "HYDRA_P2P_MDNS_CHILD"

// TestMDNSInNamespace runs TestMDNSInNamespaceChild inside fresh network
// namespaces, so that mDNS never reaches the machine's real network
// (docs/design.md §6): once where the only interface is a multicast-enabled
// loopback ("find"), once where the loopback starts without multicast
// ("retry"). It needs root and iproute2.
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
	runMDNSChild(t, ip, "find", true)
	runMDNSChild(t, ip, "retry", false)
}

// runMDNSChild runs TestMDNSInNamespaceChild as scenario in a new network
// namespace whose loopback is up, with multicast on or off.
func runMDNSChild(t *testing.T, ip, scenario string, multicast bool) {
	t.Helper()
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
	mc := "off"
	if multicast {
		mc = "on"
	}
	run("-n", ns, "link", "set", "lo", "multicast", mc)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ip, "netns", "exec", ns, exe,
		"-test.run=^TestMDNSInNamespaceChild$", "-test.v", "-test.count=1", "-test.timeout=80s")
	cmd.Env = append(os.Environ(), mdnsChildEnv+"="+scenario)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestMDNSInNamespaceChild") {
		t.Fatalf("child %q in namespace %s failed: %v\n%s", scenario, ns, err, out)
	}
}

// TestMDNSInNamespaceChild is the part of TestMDNSInNamespace that runs in
// a namespace, as the scenario mdnsChildEnv names.
func TestMDNSInNamespaceChild(t *testing.T) {
	switch os.Getenv(mdnsChildEnv) {
	case "":
		t.Skip("run by TestMDNSInNamespace inside a network namespace")
	case "find":
		mdnsFind(t)
	case "retry":
		mdnsRetry(t)
	default:
		t.Fatalf("unknown scenario %q", os.Getenv(mdnsChildEnv))
	}
}

// startMDNS starts a host of cluster with mDNS discovery alone.
func startMDNS(t *testing.T, ctx context.Context, cluster string) (*Host, *peerSet, *logRecorder) {
	t.Helper()
	h, rec := newTestHost(t, cluster, nil)
	seen := newPeerSet()
	if err := h.StartDiscovery(ctx, fastDiscovery(DiscoveryConfig{MDNS: true, OnPeer: seen.OnPeer})); err != nil {
		t.Fatal(err)
	}
	return h, seen, rec
}

// mdnsFind: two hosts of cluster "a" find each other by mDNS alone, a host
// of cluster "b" (started first, browsing all along) finds neither.
func mdnsFind(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, seenB, _ := startMDNS(t, ctx, "b")
	a1, seen1, rec1 := startMDNS(t, ctx, "a")
	a2, seen2, rec2 := startMDNS(t, ctx, "a")
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

// mdnsRetry: a host started while no interface has multicast (a machine at
// boot) could not start mDNS and retried only when its addresses changed,
// so multicast coming up on an interface it already had left it deaf and
// mute on the LAN for good. It retries with a backoff: one warning, then
// debug lines, and once multicast is on it finds a host started since.
func mdnsRetry(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a1, seen1, rec1 := startMDNS(t, ctx, "a")
	waitFor(t, 30*time.Second, "mDNS to fail to start and be retried twice", func() bool {
		return rec1.has("WARN", "mdns: not announcing") && rec1.count("DEBUG", "mdns: still not announcing") >= 2
	})
	if n := rec1.count("WARN", "mdns"); n != 1 {
		t.Fatalf("%d mDNS warnings, want 1 (retries log at debug)", n)
	}
	if out, err := exec.Command("ip", "link", "set", "lo", "multicast", "on").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo multicast on: %v\n%s", err, out)
	}
	a2, seen2, _ := startMDNS(t, ctx, "a")
	waitFor(t, 30*time.Second, "the host whose mDNS failed at start to find the other by mDNS", func() bool {
		return seen1.n(a2.ID()) > 0 && seen2.n(a1.ID()) > 0 && connected(a1, a2)
	})
	if !rec1.has("mdns: announcing on the LAN after all") {
		t.Fatal("the hosts found each other, but the first one's mDNS never started")
	}
}
