package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/node/child"
	"github.com/hydra-compute/hydra/webui"
)

// testNode is one in-process node of a test cluster.
type testNode struct {
	*Node
	dir    string
	cancel context.CancelFunc
	done   chan error
}

func testConfig(dir, name string) Config {
	c := DefaultConfig()
	c.DataDir = dir
	c.Name = name
	c.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	c.HTTPAddr = "127.0.0.1:0"
	c.MDNS = false
	c.DHT = false
	c.Admit = "lan" // loopback test nodes admit each other (docs/security.md)
	c.AnnounceInterval = 200 * time.Millisecond
	c.Out = io.Discard
	c.Owner.Dedicated = true // the test machine is busy with other tests
	if os.Getenv("HYDRA_TEST_LOG") == "" {
		c.Logger = slog.New(slog.DiscardHandler)
	} else {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
	}
	return c
}

// newTestNode creates (but does not run) a node in dir. The test's cleanup closes it if it
// never ran (New already runs raft and the libp2p host; a node that runs is stopped by start's
// cleanup, which comes first), so that no node outlives its test.
func newTestNode(t *testing.T, dir, name string, mut func(*Config)) *testNode {
	t.Helper()
	c := testConfig(dir, name)
	if mut != nil {
		mut(&c)
	}
	n, err := New(context.Background(), c)
	if err != nil {
		t.Fatalf("new node %s: %v", name, err)
	}
	t.Cleanup(n.Close)
	return &testNode{Node: n, dir: dir, done: make(chan error, 1)}
}

func (tn *testNode) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tn.cancel = cancel
	go func() { tn.done <- tn.Run(ctx) }()
	t.Cleanup(func() { tn.stop(t) })
}

// stop stops the node gracefully (as SIGTERM does) and waits for Run.
func (tn *testNode) stop(t *testing.T) {
	if tn.cancel == nil {
		return
	}
	tn.cancel()
	tn.cancel = nil
	select {
	case <-tn.done:
	case <-time.After(30 * time.Second):
		// What it waits for, to read from the log of a run that failed once (the goroutines of
		// the whole test process, identical stacks counted once).
		var b bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Errorf("node %s did not stop; goroutines:\n%s", tn.cfg.Name, b.String())
	}
}

// kill stops the node as a SIGKILL would look to the others.
func (tn *testNode) kill(t *testing.T) {
	tn.crash.Store(true)
	tn.stop(t)
}

func (tn *testNode) info() peer.AddrInfo {
	return peer.AddrInfo{ID: tn.ID(), Addrs: tn.host.Host().Addrs()}
}

// connectAll wires every node to every other, as discovery would.
func connectAll(t *testing.T, nodes []*testNode) {
	t.Helper()
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := a.Connect(ctx, b.info())
				cancel()
				if err != nil {
					t.Fatalf("connect %s → %s: %v", a.cfg.Name, b.cfg.Name, err)
				}
			}
		}
	}
}

func startCluster(t *testing.T, size int) []*testNode {
	t.Helper()
	return startClusterWith(t, size, nil)
}

// startClusterWith is startCluster with every node's config changed by mut.
func startClusterWith(t *testing.T, size int, mut func(*Config)) []*testNode {
	t.Helper()
	var nodes []*testNode
	for i := range size {
		nodes = append(nodes, newTestNode(t, t.TempDir(), fmt.Sprintf("n%d", i), mut))
	}
	connectAll(t, nodes)
	for _, n := range nodes {
		n.start(t)
	}
	return nodes
}

// startLedCluster starts a cluster of size nodes (at least 2) and waits until they agree on a
// leader: it returns the nodes, the leader and a follower, what a test of a command through the
// leader and through a follower needs.
func startLedCluster(t *testing.T, size int) (nodes []*testNode, leader, follower *testNode) {
	t.Helper()
	nodes = startCluster(t, size)
	leader = waitLeader(t, nodes, 30*time.Second)
	return nodes, leader, without(nodes, leader)[0]
}

func getStatus(n *testNode) (webui.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return webui.NewClient(n.HTTPURL(), "").Status(ctx)
}

// waitFor polls cond until it returns nil or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s: %v", d, what, err)
}

// agreedLeader returns the leader every node's status names, or an error if
// they disagree or none is known.
func agreedLeader(nodes []*testNode) (string, error) {
	leader := ""
	for _, n := range nodes {
		st, err := getStatus(n)
		if err != nil {
			return "", err
		}
		if st.Leader == "" {
			return "", fmt.Errorf("%s knows no leader", n.cfg.Name)
		}
		if leader != "" && st.Leader != leader {
			return "", fmt.Errorf("%s says leader %s, another says %s", n.cfg.Name, st.Leader, leader)
		}
		leader = st.Leader
	}
	return leader, nil
}

// wantVoters checks that n's raft configuration has exactly k voters.
func wantVoters(n *testNode, k int) error {
	v := 0
	for _, s := range n.Raft().Servers() {
		if s.Voter {
			v++
		}
	}
	if v != k {
		return fmt.Errorf("%d voters, want %d", v, k)
	}
	return nil
}

// leaderIn returns the node of nodes that every one of them names leader (agreedLeader), or an
// error: also when that leader is none of them, where a nil node would panic the test (a panic
// ends the package's run).
func leaderIn(nodes []*testNode) (*testNode, error) {
	id, err := agreedLeader(nodes)
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		if n.ID().String() == id {
			return n, nil
		}
	}
	return nil, fmt.Errorf("the leader they name, %s, is none of them", id)
}

// waitLeader waits until the nodes agree on a leader among them (leaderIn) and returns the one
// the wait saw: a test uses it, not a second look, which an election in between may answer
// otherwise (or not at all).
func waitLeader(t *testing.T, nodes []*testNode, d time.Duration) (leader *testNode) {
	t.Helper()
	waitFor(t, d, "a leader", func() (err error) { leader, err = leaderIn(nodes); return err })
	return leader
}

func without(nodes []*testNode, x *testNode) []*testNode {
	var out []*testNode
	for _, n := range nodes {
		if n != x {
			out = append(out, n)
		}
	}
	return out
}

func TestCluster_FormsServesStatusAndToken(t *testing.T) {
	nodes := startCluster(t, 3)
	waitFor(t, 20*time.Second, "one leader agreed by all", func() error { _, err := agreedLeader(nodes); return err })
	waitFor(t, 20*time.Second, "every node lists 3 online members with roles", func() error {
		for _, n := range nodes {
			st, err := getStatus(n)
			if err != nil {
				return err
			}
			roles := map[string]int{}
			for _, ns := range st.Nodes {
				if ns.Online {
					roles[ns.Role]++
				}
			}
			if roles[webui.RoleLeader] != 1 || roles[webui.RoleLeader]+roles[webui.RoleVoter]+roles[webui.RoleNonvoter] != 3 {
				return fmt.Errorf("%s sees roles %v", n.cfg.Name, roles)
			}
		}
		return nil
	})
	// Every member writes its own admin credential, private to its owner,
	// and every node accepts every member's.
	var token string
	tokens := map[string]bool{}
	waitFor(t, 10*time.Second, "api-token files", func() error {
		for _, n := range nodes {
			fi, err := os.Stat(filepath.Join(n.dir, TokenFile))
			if err != nil {
				return err
			}
			if fi.Mode().Perm() != 0o600 {
				return fmt.Errorf("api-token mode %v", fi.Mode().Perm())
			}
			u, tok, err := ReadLocal(n.dir)
			if err != nil {
				return err
			}
			if u != n.HTTPURL() {
				return fmt.Errorf("api-url %q, want %q", u, n.HTTPURL())
			}
			for _, m := range nodes {
				if m.Authorize(tok) != webui.RoleAdmin {
					return fmt.Errorf("%s does not accept %s's token yet", m.cfg.Name, n.cfg.Name)
				}
			}
			tokens[tok] = true
			token = tok
		}
		if len(tokens) != len(nodes) {
			return fmt.Errorf("%d distinct tokens for %d nodes", len(tokens), len(nodes))
		}
		return nil
	})
	if len(token) < 32 {
		t.Fatalf("token %q too short", token)
	}
	// Job views name nodes by NodeNames, which must agree with the status.
	for _, n := range nodes {
		names := n.NodeNames()
		st := n.Status()
		if len(names) != len(st.Nodes) {
			t.Errorf("%s: NodeNames has %d nodes, the status %d", n.cfg.Name, len(names), len(st.Nodes))
		}
		for _, ns := range st.Nodes {
			if names[ns.ID] != ns.Name || ns.Name == "" {
				t.Errorf("%s: node %s named %q by NodeNames, %q by the status", n.cfg.Name, ns.ID, names[ns.ID], ns.Name)
			}
		}
	}
	// Healthy everywhere; metrics parse.
	for _, n := range nodes {
		resp, err := http.Get(n.HTTPURL() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s /healthz: %d", n.cfg.Name, resp.StatusCode)
		}
	}
	checkMetrics(t, nodes[0].HTTPURL()+"/metrics")
}

// checkMetrics fetches /metrics and, where promtool is installed, checks it; it returns the body.
func checkMetrics(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"hydra_raft_term", "hydra_raft_commit_index", "hydra_raft_state{state=\"Leader\"}", "hydra_raft_peers{suffrage=\"voter\"}", "hydra_compute_busy_seconds_total", "hydra_audit_busy_seconds_total"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed: metrics format not checked by it")
		return string(body)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	return string(body)
}

// grepLines returns the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for l := range strings.Lines(text) {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

func TestCluster_LeaderCrashFailover(t *testing.T) {
	nodes := startCluster(t, 3)
	var gained atomic.Int32
	for _, n := range nodes {
		n.Raft().OnLeader(func(ctx context.Context) { gained.Add(1); <-ctx.Done() })
	}
	waitLeader(t, nodes, 20*time.Second)
	t0 := time.Now()
	// Every node's own configuration must name three voters: the leader's
	// latest configuration may hold a promotion not yet replicated, and
	// survivors that never received it cannot elect anyone. The leader to
	// kill is read in the same wait: one read before may lead no more (an
	// election while the voters settle), and killing a follower would test
	// no failover (the survivors still name another leader).
	var old *testNode
	waitFor(t, 30*time.Second, "three voters on every node, and a leader", func() (err error) {
		for _, n := range nodes {
			if err := wantVoters(n, 3); err != nil {
				return fmt.Errorf("%s: %w", n.ID(), err)
			}
		}
		old, err = leaderIn(nodes)
		return err
	})
	t.Logf("three voters %s after a leader was known", time.Since(t0).Round(time.Millisecond))
	leader := old.ID().String()
	old.kill(t)
	rest := without(nodes, old)
	var next string
	start := time.Now()
	waitFor(t, 15*time.Second, "new leader among survivors", func() (err error) {
		next, err = agreedLeader(rest)
		if err == nil && next == leader {
			err = errors.New("survivors still name the dead leader")
		}
		return
	})
	t.Logf("new leader after %s", time.Since(start).Round(time.Millisecond))
	waitFor(t, 10*time.Second, "leader hook on the new leader", func() error {
		if gained.Load() == 0 {
			return errors.New("no leader hook ran")
		}
		return nil
	})
}

func TestCluster_RestartKeepsIdentityAndRejoins(t *testing.T) {
	nodes := startCluster(t, 3)
	// Settled first: a leader, and a follower that knows its cluster and holds one of the three
	// votes. The leader is read in the same wait as the rest, so an election while the cluster
	// settles (a busy machine) cannot leave the test stopping the new leader as "the follower".
	var leader string
	var follower *testNode
	var before webui.Status
	const role = webui.RoleVoter
	waitFor(t, 20*time.Second, "a leader, and a follower that is a voter and knows its cluster", func() (err error) {
		if leader, err = agreedLeader(nodes); err != nil {
			return err
		}
		for _, n := range nodes {
			if n.ID().String() != leader {
				follower = n
			}
		}
		if before, err = getStatus(follower); err != nil {
			return err
		}
		for _, n := range before.Nodes {
			if n.ID == follower.ID().String() && n.Role == role && before.ClusterID != "" {
				return nil
			}
		}
		return fmt.Errorf("cluster %q, nodes %+v", before.ClusterID, before.Nodes)
	})
	id := follower.ID()
	follower.stop(t)
	again := newTestNode(t, follower.dir, follower.cfg.Name, nil)
	if again.ID() != id {
		t.Fatalf("restart changed the peer ID: %s → %s", id, again.ID())
	}
	others := without(nodes, follower)
	for _, o := range others {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := again.Connect(ctx, o.info()); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	again.start(t)
	all := append(others, again)
	// A follower's restart is no reason for an election: the leader it left is the one it finds.
	waitFor(t, 20*time.Second, "restarted node back with the same leader", func() error {
		l, err := agreedLeader(all)
		if err != nil {
			return err
		}
		if l != leader {
			return fmt.Errorf("leader %s, but %s led before the restart", l, leader)
		}
		st, err := getStatus(again)
		if err != nil {
			return err
		}
		if st.ClusterID == "" || st.ClusterID != before.ClusterID {
			return fmt.Errorf("restarted node's cluster %q, was %q", st.ClusterID, before.ClusterID)
		}
		for _, n := range st.Nodes {
			if n.ID == id.String() {
				if n.Role != role || !n.Online {
					return fmt.Errorf("restarted node is %s (online %v), was %s", n.Role, n.Online, role)
				}
				return nil
			}
		}
		return errors.New("restarted node is not in its own member list")
	})
}

func TestCluster_OtherClusterNeverJoins(t *testing.T) {
	a := newTestNode(t, t.TempDir(), "a", nil)
	b := newTestNode(t, t.TempDir(), "b", func(c *Config) { c.Cluster = "other" })
	connectAll(t, []*testNode{a, b})
	a.start(t)
	b.start(t)
	waitFor(t, 20*time.Second, "both clusters formed", func() error {
		for _, n := range []*testNode{a, b} {
			st, err := getStatus(n)
			if err != nil {
				return err
			}
			if st.Leader != n.ID().String() {
				return fmt.Errorf("%s: leader %q, want itself", n.cfg.Name, st.Leader)
			}
		}
		return nil
	})
	for _, n := range []*testNode{a, b} {
		for _, s := range n.Raft().Servers() {
			if s.ID != n.ID() {
				t.Fatalf("%s's raft configuration holds a peer of another cluster: %s", n.cfg.Name, s.ID)
			}
		}
	}
}

func TestNew_ConfigErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	cases := map[string]func(*Config){
		"http port in use":     func(c *Config) { c.HTTPAddr = busy.Addr().String() },
		"bad listen":           func(c *Config) { c.Listen = []string{"/ip4/1.2.3"} },
		"listen, no transport": func(c *Config) { c.Listen = []string{"/ip4/127.0.0.1/udp/0"} },
		"listen, IP not here":  func(c *Config) { c.Listen = []string{"/ip4/192.0.2.1/tcp/0"} }, // a bad flag, as --http's
		"join without id":      func(c *Config) { c.Join = []string{"/ip4/127.0.0.1/tcp/1"} },
		"data is a file":       func(c *Config) { c.DataDir = file },
		"bad voter":            func(c *Config) { c.Voter = "sometimes" },
		"even voters":          func(c *Config) { c.Voters = 4 },
		"bad cluster":          func(c *Config) { c.Cluster = "a b" },
		"bad multiplier":       func(c *Config) { c.RaftMultiplier = 0 },
		"quarantine after":     func(c *Config) { c.AuditQuarantineAfter = 1001 },
		// NaN passes every "outside the bounds" comparison; the bounds are written to catch it.
		"NaN multiplier":        func(c *Config) { c.RaftMultiplier = math.NaN() },
		"cpus over the child's": func(c *Config) { c.CPUs = child.MaxCPUs + 1 },
		"huge module cap":       func(c *Config) { c.MaxModuleBytes = 1 << 40 },
		// 256 MiB was accepted; validating such a module took the node to 1.7 GB.
		"module cap over 32 MiB": func(c *Config) { c.MaxModuleBytes = 64 << 20 },
		"infinite hard temp":     func(c *Config) { c.Owner.TempHard = math.Inf(1) },
		"NaN owner cpu":          func(c *Config) { c.Owner.MaxOwnerCPU = math.NaN() },
	}
	for name, mut := range cases {
		t.Run(name, func(t *testing.T) {
			c := testConfig(t.TempDir(), "x")
			mut(&c)
			n, err := New(context.Background(), c)
			if err == nil {
				n.Close()
				t.Fatal("no error")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a ConfigError", err)
			}
		})
	}
}

// The leader makes the cluster run its --audit-trust-after and --audit-quarantine-after: the
// replicated policy carries them.
func TestAuditPolicyFromTheLeadersFlags(t *testing.T) {
	n := newTestNode(t, t.TempDir(), "solo", func(c *Config) { c.AuditTrustAfter, c.AuditQuarantineAfter = 25, 7 })
	n.start(t)
	waitFor(t, 20*time.Second, "the leader's audit policy replicated", func() error {
		if p := n.jobs.AuditPolicy(); p.TrustAfter != 25 || p.QuarantineAfter != 7 {
			return fmt.Errorf("policy %+v", p)
		}
		return nil
	})
}

func TestAnnouncementDecode(t *testing.T) {
	id := peer.ID("x")
	good, _ := json.Marshal(Announcement{ID: id.String(), Name: "n", Cores: 4})
	if _, err := decodeAnnouncement(id, good); err != nil {
		t.Fatal(err)
	}
	if _, err := decodeAnnouncement(peer.ID("y"), good); err == nil {
		t.Fatal("accepted an announcement naming another peer")
	}
	for _, bad := range [][]byte{nil, []byte("{"), make([]byte, maxAnnouncement+1),
		[]byte(`{"id":"x","every_seconds":-1}`), []byte(`{"id":"x","every_seconds":61}`),
		[]byte(`{"id":"x","clock_offset_seconds":1e10}`)} {
		if _, err := decodeAnnouncement(id, bad); err == nil {
			t.Fatalf("accepted %q", bad)
		}
	}
}

func FuzzDecodeAnnouncement(f *testing.F) {
	good, _ := json.Marshal(Announcement{ID: "x", Name: "n", Cores: 4, Addrs: []string{"/ip4/1.2.3.4/tcp/1"}})
	f.Add(good)
	f.Add([]byte(`{"id":"x","cores":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := decodeAnnouncement(peer.ID("x"), data)
		if err == nil && (a.ID != "x" || a.Cores < 0 || len(a.Addrs) > 64 || a.Every < 0 || a.Every > maxAnnounceEvery.Seconds()) {
			t.Fatalf("accepted invalid announcement %+v", a)
		}
	})
}
