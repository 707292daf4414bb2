//go:build unix

package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/p2p"
	"github.com/hydra-compute/hydra/webui"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Machines started together end in one cluster (docs/design.md §5, "Joining
// and bootstrapping"): nodes that know only a common peer, not each other,
// must not each found a cluster. The common peer is started last here, the
// worst case: the others have been waiting for it longer than the
// discovery window when it comes up, and it knows none of them yet.

// presetIdentity creates a node's key in dir before it starts, so its
// --join address is known without waiting for the node.
func presetIdentity(t *testing.T, dir string) string {
	t.Helper()
	key, err := p2p.LoadOrCreateIdentity(filepath.Join(dir, "identity.key"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

// waitOneCluster waits until every process names the same leader and
// cluster ID and the leader lists all of them as raft members.
func waitOneCluster(t *testing.T, ps []*proc, limit time.Duration) {
	t.Helper()
	waitFor(t, limit, fmt.Sprintf("one cluster of all %d nodes", len(ps)), func() error {
		var cid, leader string
		views := make([]string, 0, len(ps))
		var bad error
		for _, p := range ps {
			st, err := p.status()
			if err != nil {
				return err
			}
			views = append(views, fmt.Sprintf("%s: cluster %.8s leader %.12s members %d", p.name, st.ClusterID, strings.TrimPrefix(st.Leader, "12D3KooW"), members(st)))
			switch {
			case st.Leader == "" || st.ClusterID == "":
				bad = errors.New("no leader or cluster yet")
			case cid == "":
				cid, leader = st.ClusterID, st.Leader
			case st.ClusterID != cid || st.Leader != leader:
				bad = errors.New("more than one cluster")
			}
			if st.Leader == st.Self.ID && members(st) != len(ps) {
				bad = errors.New("the leader does not list every node")
			}
		}
		if bad != nil {
			return fmt.Errorf("%w: %s", bad, strings.Join(views, "; "))
		}
		return nil
	})
}

func members(st webui.Status) int {
	n := 0
	for _, m := range st.Nodes {
		if m.Role != webui.RoleNone {
			n++
		}
	}
	return n
}

// TestSystem_StartedTogetherJoinOneCluster: three nodes --join a fourth
// that starts after them, all with --admit lan: one cluster.
func TestSystem_StartedTogetherJoinOneCluster(t *testing.T) {
	base := t.TempDir()
	hubDir := filepath.Join(base, "n0")
	hub := &proc{id: presetIdentity(t, hubDir), p2pPort: freeTCPPort(t)}
	var ps []*proc
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range ps {
				t.Logf("--- log of %s ---\n%s", p.name, p.dumpLog())
			}
		}
	})
	for i := 1; i <= 3; i++ {
		ps = append(ps, startProc(t, fmt.Sprintf("n%d", i), filepath.Join(base, fmt.Sprintf("n%d", i)), freeTCPPort(t), freeTCPPort(t),
			"--join", hub.joinAddr()))
	}
	// The hub comes up once the others have waited a discovery window.
	waitFor(t, 30*time.Second, "the joiners up", func() error {
		for _, p := range ps {
			if _, err := p.status(); err != nil {
				return err
			}
		}
		return nil
	})
	time.Sleep(2 * time.Second) // not synchronisation: the scenario is "the hub starts late"
	n0 := startProc(t, "n0", hubDir, hub.p2pPort, freeTCPPort(t))
	ps = append(ps, n0)
	waitOneCluster(t, ps, 60*time.Second)
}

// TestSystem_StartedTogetherTokenOneCluster: a cluster exists; three
// machines with one join token start together, two of them knowing only
// the third (itself a joiner): all three join the existing cluster, and
// none founds one of its own (approval mode: the token is the only way in).
func TestSystem_StartedTogetherTokenOneCluster(t *testing.T) {
	base := t.TempDir()
	founder := startProc(t, "n0", filepath.Join(base, "n0"), freeTCPPort(t), freeTCPPort(t), "--admit", "approval")
	ps := []*proc{founder}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range ps {
				t.Logf("--- log of %s ---\n%s", p.name, p.dumpLog())
			}
		}
	})
	waitOneCluster(t, ps, 30*time.Second)
	founder.id = mustStatus(t, founder).Self.ID
	var tok string
	waitFor(t, 10*time.Second, "API token", func() error {
		_, tk, err := ReadLocal(founder.dir)
		if err == nil && tk == "" {
			err = errors.New("no token yet")
		}
		tok = tk
		return err
	})
	out, err := exec.Command(hydraBinary(t), "token", "create", "--api", founder.api, "--token", tok, "--role", "member", "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("hydra token create: %v\n%s", err, out)
	}
	var created struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(out, &created); err != nil || created.Token == "" {
		t.Fatalf("hydra token create --json: %q: %v", out, err)
	}
	relayDir := filepath.Join(base, "n1")
	relay := &proc{id: presetIdentity(t, relayDir), p2pPort: freeTCPPort(t)}
	for i := 2; i <= 3; i++ {
		ps = append(ps, startProc(t, fmt.Sprintf("n%d", i), filepath.Join(base, fmt.Sprintf("n%d", i)), freeTCPPort(t), freeTCPPort(t),
			"--admit", "approval", "--join-token", created.Token, "--join", relay.joinAddr()))
	}
	ps = append(ps, startProc(t, "n1", relayDir, relay.p2pPort, freeTCPPort(t),
		"--admit", "approval", "--join-token", created.Token, "--join", founder.joinAddr()))
	waitOneCluster(t, ps, 60*time.Second)
}

func mustStatus(t *testing.T, p *proc) webui.Status {
	t.Helper()
	var st webui.Status
	waitFor(t, 10*time.Second, p.name+" status", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := p.client("").Status(ctx)
		st = s
		return err
	})
	return st
}
