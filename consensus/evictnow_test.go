package consensus

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestEvictedVoterLeavesAtOnce: three voters, the membership loop slowed to a look every 20 s.
// Evicting a follower takes it out of the configuration at once, and evicting the other follower
// of the two voters left too: the leader leads alone and commits. Before, the removal waited for
// the membership loop's next look; meanwhile every member refused the evicted key, so of two
// voters the leader heard nobody, stepped down when its lease ran out (1.5 s), and the survivor's
// configuration still wanted the evicted voter's vote: no leader, for good (chaos seed 83, with
// the loop's look up to a second away on a loaded machine).
func TestEvictedVoterLeavesAtOnce(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, "evict-now", func(_ int, c *Config) {
		c.timings = func(t *Timings) { t.MemberPoll, t.MemberIdle = 20*time.Second, 40*time.Second }
	})
	leader := settled(t, nodes, 3, true)
	for i, v := range otherThanAll(nodes, leader) {
		if err := leader.r.Evict(ctxT(t, testDeadline), v.h.ID(), testAdminToken); err != nil {
			t.Fatalf("evict %s: %v", v.name, err)
		}
		waitUntil(t, 10*time.Second, fmt.Sprintf("%s out of the configuration (eviction %d)", v.name, i+1), func() error {
			if leader.r.hasServer(v.h.ID()) {
				return errors.New("still a server")
			}
			return nil
		})
	}
	leadsAlone(t, leader, "after-two-evictions")
}
