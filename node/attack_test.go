package node

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/internal/streamflood"
	"github.com/hydra-compute/hydra/node/work"
	"github.com/hydra-compute/hydra/p2p"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// TestAttacker_WorkAndGossip: a stranger with a fresh key, connected to a
// node, sends the work protocol a real-shaped sync request with a forged
// result, garbage and gigabyte length prefixes, and publishes real-shaped
// announcements (as itself and as the node) and garbage on the cluster's
// gossip topics. The node stays up, its job, members, cluster ID and
// credentials are unchanged, no forged unit counts, and its heap does not
// grow with what was announced (docs/security.md).
func TestAttacker_WorkAndGossip(t *testing.T) {
	n := newTestNode(t, t.TempDir(), "n0", func(c *Config) { c.Compute = false })
	n.start(t)
	var tok string
	waitFor(t, 30*time.Second, "a leading member with its credential", func() error {
		if tok = n.APIToken(); tok == "" || !n.raft.NodeTokenActive() || !n.raft.IsLeader() {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	job, err := n.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1_000_000_000, Seed: 5}})
	if err != nil {
		t.Fatal(err)
	}
	before := n.raft.State()
	st0, err := getStatus(n)
	if err != nil {
		t.Fatal(err)
	}

	evil, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer evil.Close()
	if err := evil.Connect(ctx, n.info()); err != nil {
		t.Fatal(err)
	}

	// Work: a real-shaped sync request handing in a forged result.
	forged := map[string]any{
		"want": 2, "state": "idle", "term": n.raft.Term(), "leases": []uint64{1},
		"results": []map[string]any{{"lease": 1, "term": n.raft.Term(), "job": job.ID, "start": 0, "end": 1_000_000,
			"seconds": 1, "payload": make([]byte, 16)}},
	}
	for range 5 {
		if err := p2p.Call(ctx, evil, n.ID(), work.Protocol, forged, nil); err == nil {
			t.Fatal("the work protocol answered a stranger")
		}
	}
	// Garbage and gigabyte length prefixes on every Hydra protocol the
	// node serves; the heap must not grow with what was announced.
	protos := []protocol.ID{work.Protocol, "/hydra/cluster/info/1.0.0", "/hydra/cluster/join/1.0.0",
		"/hydra/cluster/apply/1.0.0", "/hydra/cluster/stats/1.0.0", "/hydra/raft/1.0.0", ModuleGetProtocol, ModuleHoldProtocol}
	streamflood.Flood(t, ctx, evil, n.ID(), protos, 40, 4096)
	junk := make([]byte, 512)
	_, _ = rand.Read(junk)

	// Gossip: announcements as itself and as the node, and garbage.
	ps, err := pubsub.NewGossipSub(ctx, evil)
	if err != nil {
		t.Fatal(err)
	}
	var topics []*pubsub.Topic
	for _, name := range []string{"announce/1", "activity/1"} {
		tp, err := ps.Join("hydra/" + n.cfg.Cluster + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		topics = append(topics, tp)
	}
	waitFor(t, 30*time.Second, "the node in the stranger's view of the topics", func() error {
		for _, tp := range topics {
			if !slices.Contains(tp.ListPeers(), n.ID()) {
				return fmt.Errorf("%s: node not subscribed yet", tp.String())
			}
		}
		return nil
	})
	fake := func(id peer.ID, name string) []byte {
		b, _ := json.Marshal(Announcement{ID: id.String(), Name: name, Version: "9.9", OS: "linux", Arch: "amd64",
			Cores: 256, Load: 99, State: "working", Addrs: []string{"/ip4/10.0.0.66/tcp/1/p2p/" + id.String()}})
		return b
	}
	dropped0 := n.host.GossipDropped()
	waitFor(t, 30*time.Second, "the node dropping the stranger's gossip", func() error {
		for _, tp := range topics {
			for _, msg := range [][]byte{fake(evil.ID(), "evil"), fake(n.ID(), "hijacked"), junk[:512], make([]byte, p2p.MaxGossipMessage+1)} {
				_ = tp.Publish(ctx, msg)
			}
		}
		if d := n.host.GossipDropped() - dropped0; d < 20 {
			return fmt.Errorf("%d messages dropped", d)
		}
		return nil
	})

	// Whatever arrives, for a while: nothing changes.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		st, err := getStatus(n)
		if err != nil {
			t.Fatalf("the node stopped answering: %v", err)
		}
		for _, ns := range st.Nodes {
			if ns.ID == evil.ID().String() || ns.Name == "evil" || ns.Name == "hijacked" || ns.Cores == 256 {
				t.Fatalf("a stranger's announcement shows in the status: %+v", ns)
			}
		}
		if st.ClusterID != st0.ClusterID || st.Leader != st0.Leader || len(st.Nodes) != len(st0.Nodes) {
			t.Fatalf("status changed: %+v, was %+v", st, st0)
		}
		time.Sleep(100 * time.Millisecond) // polling a negative: nothing may change
	}
	after := n.raft.State()
	if after.ClusterID != before.ClusterID || len(after.Members) != len(before.Members) || len(after.Creds) != len(before.Creds) {
		t.Fatalf("cluster state changed: members %d→%d, creds %d→%d", len(before.Members), len(after.Members), len(before.Creds), len(after.Creds))
	}
	if n.APIToken() != tok {
		t.Fatal("the node's API token changed")
	}
	j, ok := n.Job(job.ID)
	if !ok || j.State.Finished() || j.DoneUnits != 0 {
		t.Fatalf("job after the attack: present %v, %+v (want untouched, 0 units: no compute here)", ok, j)
	}
}
