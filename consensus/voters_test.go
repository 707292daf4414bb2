package consensus

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func Test_OddStep(t *testing.T) {
	for _, tc := range []struct{ voters, want, n, k int }{
		{1, 3, 0, 0}, {1, 3, 1, 0}, {1, 3, 2, 2}, {1, 3, 5, 2},
		{3, 3, 4, 0}, {3, 5, 1, 0}, {3, 5, 2, 2}, {2, 3, 1, 1}, {1, 5, 3, 2}, {1, 5, 4, 4},
		{1, 4, 3, 3}, // a target the user set even is reached
	} {
		if k := oddStep(tc.voters, tc.want, tc.n); k != tc.k {
			t.Errorf("oddStep(%d voters, want %d, %d candidates) = %d, want %d", tc.voters, tc.want, tc.n, k, tc.k)
		}
	}
}

// Test_MultiNode_VotersFromStart: two nodes are one voter and a non-voter
// that says why; a third eligible node makes all three voters at once (no
// autopilot stabilization), and a VoterNever node says it never votes.
func Test_MultiNode_VotersFromStart(t *testing.T) {
	nodes := startCluster(t, 2, "grow", nil)
	var leader *testNode
	waitUntil(t, testDeadline, "two members", func() error {
		var err error
		if leader, err = agreed(nodes); err != nil {
			return err
		}
		if n := len(leader.r.Servers()); n != 2 {
			return fmt.Errorf("%d members", n)
		}
		return nil
	})
	if v := voters(leader.r.Servers()); v != 1 {
		t.Fatalf("%d voters of 2 members, want 1 (never an even count)", v)
	}
	for _, n := range nodes {
		if n == leader {
			continue
		}
		why := n.r.NonvoterReasons()[n.h.ID()]
		if !strings.Contains(why, "another eligible node") {
			t.Fatalf("non-voter's reason %q, want it to wait for another eligible node", why)
		}
	}

	third := newTestNode(t, "third", "grow", nil)
	never := newTestNode(t, "never", "grow", func(c *Config) { c.VoterPref = VoterNever })
	nodes = append(nodes, third, never)
	connectAll(t, nodes)
	third.run()
	var member time.Time
	waitUntil(t, testDeadline, "third node is a member", func() error {
		if !leader.r.hasServer(third.h.ID()) {
			return errors.New("not yet")
		}
		member = time.Now()
		return nil
	})
	// Far below autopilot's stabilization time plus a tick (2 s + 1 s).
	waitUntil(t, time.Second, "3 voters within a second of the join", func() error {
		if v := voters(leader.r.Servers()); v != 3 {
			return fmt.Errorf("%d voters", v)
		}
		return nil
	})
	t.Logf("3 voters %v after the third node became a member", time.Since(member).Round(time.Millisecond))

	never.run()
	waitUntil(t, testDeadline, "the never node is a member that says why it has no vote", func() error {
		why := leader.r.NonvoterReasons()[never.h.ID()]
		if !strings.Contains(why, "never") {
			return fmt.Errorf("reason %q", why)
		}
		return nil
	})
	if v := voters(leader.r.Servers()); v != 3 {
		t.Fatalf("%d voters after a never node joined, want 3", v)
	}
}
