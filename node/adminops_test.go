package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/webui"
)

// Cancel and delete through a follower: with an admin credential the HTTP
// request's credential goes with the command and the leader accepts it;
// without one the command is refused (the leader refuses it too when a
// member skips this check: Test_MultiNode_Forwarding).
func TestCluster_AdminCommandsCheckedByTheLeader(t *testing.T) {
	nodes, _, f := startLedCluster(t, 3)
	var tok string
	waitFor(t, 30*time.Second, "the follower's admin credential", func() error {
		if tok = f.APIToken(); tok == "" || !f.raft.NodeTokenActive() {
			return errors.New("no active token yet")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	j, err := f.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1_000_000_000_000_000, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	// Without a credential (what a member that skips its HTTP layer sends).
	if err := f.CancelJob(ctx, j.ID); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("cancel without a credential: %v, want forbidden", err)
	}
	if err := f.DeleteJob(ctx, j.ID); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("delete without a credential: %v, want forbidden", err)
	}
	if st, _ := f.Job(j.ID); st.State.Finished() {
		t.Fatalf("the job is %s after refused commands", st.State)
	}
	// With one, through the follower's API.
	c := webui.NewClient(f.HTTPURL(), tok)
	if _, err := c.CancelJob(ctx, j.ID); err != nil {
		t.Fatalf("cancel with an admin credential through a follower: %v", err)
	}
	if err := c.DeleteJob(ctx, j.ID); err != nil {
		t.Fatalf("delete with an admin credential through a follower: %v", err)
	}
	waitFor(t, 30*time.Second, "job gone on every node", func() error {
		for _, n := range nodes {
			if _, ok := n.Job(j.ID); ok {
				return fmt.Errorf("%s still has it", n.cfg.Name)
			}
		}
		return nil
	})
}

// A cluster founded with --read-auth answers reads only with a credential;
// an admin turns it off with hydra config set read-auth=false.
func TestCluster_ReadAuth(t *testing.T) {
	n := newTestNode(t, t.TempDir(), "n0", func(c *Config) { c.ReadAuth = true })
	n.start(t)
	tok := activeAdminToken(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := webui.NewClient(n.HTTPURL(), "").Status(ctx); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("status without a credential under read-auth: %v, want 401", err)
	}
	c := webui.NewClient(n.HTTPURL(), tok)
	if _, err := c.Status(ctx); err != nil {
		t.Fatalf("status with the admin credential: %v", err)
	}
	var cfg webui.ClusterConfig
	if err := c.Do(ctx, "PUT", "/api/v1/config", webui.ConfigChange{Set: []string{"read-auth=false"}}, &cfg); err != nil || cfg.ReadAuth {
		t.Fatalf("read-auth=false: %+v %v", cfg, err)
	}
	if _, err := webui.NewClient(n.HTTPURL(), "").Status(ctx); err != nil {
		t.Fatalf("status without a credential after read-auth=false: %v", err)
	}
}

// TestConfigSetConcurrentChangesBothStick: two admins change different settings at once, one
// through the leader and one through a follower (whose replica may lag); each change is made
// from the settings its node read, and neither may undo the other: both calls succeed and both
// values hold after every round (before, the later commit wrote back the value the other had
// just changed; and a follower refused for a stale base retried before its replica caught up).
func TestConfigSetConcurrentChangesBothStick(t *testing.T) {
	nodes, l, f := startLedCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	clients := []*webui.Client{webui.NewClient(l.HTTPURL(), activeAdminToken(t, l)), webui.NewClient(f.HTTPURL(), activeAdminToken(t, f))}
	for round := range 6 {
		jobs, days := 1000+round, fmt.Sprintf("%dh", 24*(round+2))
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for i, set := range []string{fmt.Sprintf("max-jobs=%d", jobs), "retention=" + days} {
			c := clients[(i+round)%2] // each change through the leader and through the follower in turn
			wg.Add(1)
			go func() {
				defer wg.Done()
				var cfg webui.ClusterConfig
				if err := c.Do(ctx, "PUT", "/api/v1/config", webui.ConfigChange{Set: []string{set}}, &cfg); err != nil {
					errs <- fmt.Errorf("%s: %w", set, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
		// Both changes are committed; every replica ends with both (a change that undid the
		// other would stay). Read every node, not l alone: l may have lost the leadership
		// meanwhile (an election on a busy machine), and a follower applies a commit a moment
		// after the call through the leader returned.
		waitFor(t, 10*time.Second, fmt.Sprintf("round %d's settings on every node", round), func() error {
			for _, n := range nodes {
				s := n.raft.State().EffectiveSettings()
				if s.MaxJobs != jobs || s.Retention != time.Duration(24*(round+2))*time.Hour {
					return fmt.Errorf("%s: settings %+v, want max-jobs %d and retention %s: one change undid the other", n.cfg.Name, s, jobs, days)
				}
			}
			return nil
		})
	}
}

// activeAdminToken waits until n's own admin credential (DATA/api-token) is in the replicated
// state, and returns it.
func activeAdminToken(t *testing.T, n *testNode) string {
	t.Helper()
	var tok string
	waitFor(t, 30*time.Second, "the node's admin credential", func() error {
		if tok = n.APIToken(); tok == "" || !n.raft.NodeTokenActive() {
			return errors.New("no active token yet")
		}
		return nil
	})
	return tok
}
