package work

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/internal/syncbuf"
)

// TestAuditWaiveWaitsForEveryMembersLevel: the coordinator proposes an AuditWaive only when
// every raft member's build knows it (CheckOp, consensus.Raft.CheckOp in a node). While a
// member's build is older (level 1, or none advertised), the waive that is due is not proposed,
// and that is logged once at info however often it comes due; once every member is at level 2
// it is proposed.
func TestAuditWaiveWaitsForEveryMembersLevel(t *testing.T) {
	audits := &fakeAudits{tasks: []compute.AuditTask{piTask(1, "a")}}
	var logs syncbuf.Buffer
	c := auditLeadership(t, audits, slog.New(slog.NewTextHandler(&logs, nil)))
	var mu sync.Mutex
	lowest := 1 // the lowest level among the members
	c.cfg.CheckOp = func(op byte) error {
		mu.Lock()
		defer mu.Unlock()
		if need := compute.OpLevel(op); need > lowest {
			return fmt.Errorf("op %#02x needs level %d; member x is at %d", op, need, lowest)
		}
		return nil
	}
	waives := func() (n int) {
		audits.mu.Lock()
		defer audits.mu.Unlock()
		for _, cmd := range audits.applied {
			if _, ok := cmd.(compute.AuditWaive); ok {
				n++
			}
		}
		return n
	}
	start := c.began.Add(workerSilence)
	c.lastSeen[nodeID("a")] = start // a is the only live node
	ctx := context.Background()
	c.waiveLoneAudits(ctx, start)
	for i := range 3 {
		c.waiveLoneAudits(ctx, start.Add(time.Duration(2+10*i)*waiveAfter))
	}
	if n := waives(); n != 0 {
		t.Fatalf("%d waives proposed with a member at level 1", n)
	}
	if got := strings.Count(logs.String(), "not proposed until every member"); got != 1 {
		t.Fatalf("the held-back op was logged %d times, want once:\n%s", got, logs.String())
	}
	if !strings.Contains(logs.String(), "level=INFO") {
		t.Fatalf("not logged at info:\n%s", logs.String())
	}
	mu.Lock()
	lowest = compute.Level // the last member was upgraded
	mu.Unlock()
	c.waiveLoneAudits(ctx, start.Add(100*waiveAfter))
	if n := waives(); n != 1 {
		t.Fatalf("%d waives once every member is at level %d, want 1", n, compute.Level)
	}
}
