package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
)

// testMultiplier slows raft down for tests: several raft nodes share one
// -race process on a loaded 2-core machine.
const testMultiplier = 2

// testDeadline bounds every wait in the multi-node tests.
const testDeadline = 90 * time.Second

func testLogger() *slog.Logger {
	if lv := os.Getenv("HYDRA_TEST_LOG"); lv != "" {
		var level slog.Level
		_ = level.UnmarshalText([]byte(lv))
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	return slog.New(slog.DiscardHandler)
}

// testNode is one Hydra consensus node on a real libp2p host on loopback.
type testNode struct {
	t      testing.TB
	name   string
	key    crypto.PrivKey
	dir    string
	cfg    Config
	h      host.Host
	r      *Raft
	cancel context.CancelFunc
	done   chan struct{}
	dead   bool
	listen string // the host's listen address; "" picks a free loopback port
}

func newKey(t testing.TB) crypto.PrivKey {
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newTestNode creates the host and the Raft (not yet running). mod may
// adjust the config.
func newTestNode(t testing.TB, name, cluster string, mod func(*Config)) *testNode {
	t.Helper()
	n := &testNode{t: t, name: name, key: newKey(t), dir: filepath.Join(t.TempDir(), "raft")}
	n.cfg = Config{
		Cluster:     cluster,
		Admit:       AdmitLAN, // test clusters admit loopback peers (docs/security.md)
		NodeToken:   testAdminToken,
		Multiplier:  testMultiplier,
		ChunkTarget: 2 * time.Second,
		Self:        NodeMeta{Name: name, OS: "linux", Arch: "amd64", Version: "test", Cores: 2},
		Logger:      testLogger().With("node", name),
	}
	if mod != nil {
		mod(&n.cfg)
	}
	n.open()
	t.Cleanup(n.kill)
	return n
}

// open (re)creates host and Raft from the node's key and directory.
func (n *testNode) open() {
	n.t.Helper()
	listen := "/ip4/127.0.0.1/tcp/0"
	if n.listen != "" {
		listen = n.listen
	}
	h, err := libp2p.New(libp2p.Identity(n.key), libp2p.ListenAddrStrings(listen))
	if err != nil {
		n.t.Fatal(err)
	}
	cfg := n.cfg
	cfg.Host, cfg.Dir = h, n.dir
	r, err := New(cfg)
	if err != nil {
		_ = h.Close()
		n.t.Fatal(err)
	}
	n.h, n.r, n.dead = h, r, false
}

func (n *testNode) run() {
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan struct{})
	go func() {
		defer close(n.done)
		n.r.Run(ctx)
	}()
}

// kill simulates SIGKILL: the host goes first (nothing more leaves the
// node), then the in-process raft is stopped without leadership transfer.
func (n *testNode) kill() {
	if n.dead {
		return
	}
	n.dead = true
	_ = n.h.Close()
	if n.cancel != nil {
		n.cancel()
		<-n.done
	}
	_ = n.r.Shutdown(false)
}

// restart reopens a killed node with the same key and directory and
// connects it to the given peers.
func (n *testNode) restart(peers []*testNode) {
	n.t.Helper()
	n.open()
	connectAll(n.t, append([]*testNode{n}, peers...))
	n.run()
}

// connectAll connects every pair of hosts and tells each Raft about the
// others, as discovery would.
func connectAll(t testing.TB, nodes []*testNode) {
	t.Helper()
	var live []*testNode
	for _, n := range nodes {
		if !n.dead {
			live = append(live, n)
		}
	}
	for i, a := range live {
		for _, b := range live[i+1:] {
			a.h.Peerstore().AddAddrs(b.h.ID(), b.h.Addrs(), peerstore.PermanentAddrTTL)
			b.h.Peerstore().AddAddrs(a.h.ID(), a.h.Addrs(), peerstore.PermanentAddrTTL)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := a.h.Connect(ctx, peer.AddrInfo{ID: b.h.ID(), Addrs: b.h.Addrs()})
			cancel()
			if err != nil {
				t.Fatalf("connect %s-%s: %v", a.name, b.name, err)
			}
		}
	}
	for _, a := range live {
		for _, b := range live {
			if a != b {
				a.r.PeerFound(b.h.ID())
			}
		}
	}
}

// startCluster creates k nodes, connects them and starts them all at the
// same instant.
func startCluster(t testing.TB, k int, cluster string, mod func(i int, c *Config)) []*testNode {
	t.Helper()
	nodes := make([]*testNode, k)
	for i := range nodes {
		nodes[i] = newTestNode(t, fmt.Sprintf("n%d", i), cluster, func(c *Config) {
			if mod != nil {
				mod(i, c)
			}
		})
	}
	connectAll(t, nodes)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			n.run()
		}()
	}
	close(gate)
	wg.Wait()
	return nodes
}

func alive(nodes []*testNode) []*testNode {
	var out []*testNode
	for _, n := range nodes {
		if !n.dead {
			out = append(out, n)
		}
	}
	return out
}

// waitUntil polls cond every 20ms until it holds or the deadline passes.
func waitUntil(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s: %v", d, what, err)
		case <-tick.C:
		}
	}
}

func serverIDs(ss []Server) string {
	ids := make([]string, len(ss))
	for i, s := range ss {
		v := "n"
		if s.Voter {
			v = "v"
		}
		ids[i] = s.ID.String() + ":" + v
	}
	sort.Strings(ids)
	return fmt.Sprint(ids)
}

// agreed checks that the live nodes agree on one leader (which is one of
// them and the only one in the leader state), one configuration containing
// exactly them, and one initialized cluster ID. It returns the leader.
func agreed(nodes []*testNode) (*testNode, error) {
	live := alive(nodes)
	var leader *testNode
	for _, n := range live {
		if n.r.IsLeader() {
			if leader != nil {
				return nil, fmt.Errorf("two leaders: %s and %s", leader.name, n.name)
			}
			leader = n
		}
	}
	if leader == nil {
		return nil, fmt.Errorf("no leader")
	}
	want := leader.r.Servers()
	if len(want) != len(live) {
		return nil, fmt.Errorf("leader %s has %d servers, want %d", leader.name, len(want), len(live))
	}
	cid := leader.r.State().ClusterID
	if cid == "" {
		return nil, fmt.Errorf("cluster not initialized")
	}
	for _, n := range live {
		if l, ok := n.r.Leader(); !ok || l != leader.h.ID() {
			return nil, fmt.Errorf("%s sees leader %v, want %s", n.name, l, leader.name)
		}
		if got := n.r.Servers(); serverIDs(got) != serverIDs(want) {
			return nil, fmt.Errorf("%s has configuration %s, leader %s", n.name, serverIDs(got), serverIDs(want))
		}
		if got := n.r.State().ClusterID; got != cid {
			return nil, fmt.Errorf("%s has cluster %q, leader %q", n.name, got, cid)
		}
	}
	return leader, nil
}

// waitAgreed waits until the live nodes agree on their cluster (agreed) and returns the leader.
func waitAgreed(tb testing.TB, nodes []*testNode) *testNode {
	tb.Helper()
	var leader *testNode
	waitUntil(tb, testDeadline, fmt.Sprintf("%d nodes agree", len(alive(nodes))), func() error {
		var err error
		leader, err = agreed(nodes)
		return err
	})
	return leader
}

// applyThroughLeader proposes cmd through the leader the live nodes agree on (agreed): with the
// admin credential auth (ApplyAs), or as the leader's own proposal when auth is "" (Apply). Again
// until a leader takes it, within testDeadline: the leader a test's wait saw may have lost the
// leadership by the time of the proposal (an election on a loaded machine), and Apply's own
// retries across a leader change are bounded. cmd must be idempotent (a retry after a lost
// answer may apply it twice). A refusal (ErrRejected) by a node that still leads after it is the
// cluster's answer and fails the test at once; one that came back from another leader after a
// change (a forwarded proposal may be refused where the leader's own was not) is tried again.
func applyThroughLeader(tb testing.TB, nodes []*testNode, what string, cmd Command, auth string) {
	tb.Helper()
	waitUntil(tb, testDeadline, "a leader takes "+what, func() error {
		l, err := agreed(nodes)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if auth == "" {
			_, err = l.r.Apply(ctx, cmd)
		} else {
			_, err = l.r.ApplyAs(ctx, cmd, auth)
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrRejected) && l.r.IsLeader():
			tb.Fatalf("%s refused by the leader %s: %v", what, l.name, err)
		}
		return fmt.Errorf("apply on %s: %w", l.name, err)
	})
}

// otherThan returns the first of nodes that is not n.
func otherThan(nodes []*testNode, n *testNode) *testNode {
	for _, o := range nodes {
		if o != n {
			return o
		}
	}
	return nil
}

// settled waits until the live nodes agree on their cluster (agreed) with want voters and, if
// registered, every live node in every live node's registry; it returns the leader.
func settled(tb testing.TB, nodes []*testNode, want int, registered bool) *testNode {
	tb.Helper()
	var leader *testNode
	what := fmt.Sprintf("%d nodes agree, %d voters", len(alive(nodes)), want)
	if registered {
		what += ", all registered"
	}
	waitUntil(tb, testDeadline, what, func() error {
		var err error
		if leader, err = agreed(nodes); err != nil {
			return err
		}
		if v := voters(leader.r.Servers()); v != want {
			return fmt.Errorf("%d voters", v)
		}
		if !registered {
			return nil
		}
		// Every live node's replica, not only the leader's: a follower's lags, and a test that
		// asks a follower (CheckOp counts an unregistered member as an older build) needs its
		// replica to have every registration.
		for _, n := range alive(nodes) {
			if got := len(n.r.State().Nodes); got != len(alive(nodes)) {
				return fmt.Errorf("%s: %d of %d nodes registered", n.name, got, len(alive(nodes)))
			}
		}
		return nil
	})
	return leader
}

func voters(ss []Server) int {
	v := 0
	for _, s := range ss {
		if s.Voter {
			v++
		}
	}
	return v
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// registerFake applies a NodeRegister for a made-up node: test data that
// goes through the log like any command.
func registerFake(t testing.TB, n *testNode, name string) {
	t.Helper()
	cmd, err := NewCommand(OpNodeRegister, NodeMeta{ID: "fake-" + name, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.r.ApplyAs(ctxT(t, testDeadline), cmd, testAdminToken); err != nil {
		t.Fatalf("apply on %s: %v", n.name, err)
	}
}

// testAdminToken is every test node's NodeToken: the founder's is the
// cluster's first admin credential, so tests may propose admin commands.
const testAdminToken = "test-admin-token"

func hasFake(n *testNode, name string) bool {
	_, ok := n.r.State().Nodes["fake-"+name]
	return ok
}

// handLeadership makes to the leader: cur, the leader now, hands it leadership unless to leads
// already, and the call waits until to leads.
func handLeadership(tb testing.TB, cur, to *testNode) {
	tb.Helper()
	if cur != to {
		id := to.h.ID().String()
		if err := cur.r.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(id)).Error(); err != nil {
			tb.Fatalf("hand leadership from %s to %s: %v", cur.name, to.name, err)
		}
	}
	waitUntil(tb, testDeadline, to.name+" leads", func() error {
		if !to.r.IsLeader() {
			return fmt.Errorf("not yet")
		}
		return nil
	})
}
