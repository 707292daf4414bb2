package work

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/audit"
)

// TestAuditGoesToTheNodeFreeSoonest: an audit that is not short goes to the node that would finish
// it first, counting what each node holds, not to the first that asks: a slow node is passed over
// while a fast one waits for audits (free now), and takes it while the fast one has a chunk in
// hand that ends later than the slow node would be done.
func TestAuditGoesToTheNodeFreeSoonest(t *testing.T) {
	audits := &fakeAudits{tasks: []compute.AuditTask{piTask(1, "owner")}}
	c := auditLeadership(t, audits, slog.New(slog.DiscardHandler))
	c.leaseAt = time.Now().Add(-time.Second)
	now := time.Now()
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 40, Seed: 1}}
	if err := c.sched.AddJob("rates", spec, []compute.Range{{Start: 0, End: 1 << 40}}, true); err != nil {
		t.Fatal(err)
	}
	// Probes of 2²⁰ samples: the audit (2²² samples) takes the fast node 40 ms, the slow one
	// 0.5 s (under the chunk target, 1 s: auditSlowdown lets it take it).
	for node, took := range map[string]time.Duration{"fast": 10 * time.Millisecond, "slow": 125 * time.Millisecond} {
		l, ok := c.sched.Lease(nodeID(node), now)
		if !ok {
			t.Fatal("no probe lease")
		}
		c.sched.Complete(l.ID, now.Add(took))
		c.sched.Accepted("rates", l.Range)
	}
	c.refreshAuditsLocked(now)
	for _, n := range []string{"owner", "fast", "slow"} {
		c.lastSeen[nodeID(n)], c.arch[nodeID(n)] = now, "amd64"
	}
	c.mu.Lock()
	c.auditIdle[nodeID("fast")] = 1 // its exchange waits for audits: free now
	c.mu.Unlock()
	if got := syncAs(t, c, "slow", "amd64"); len(got) != 0 {
		t.Fatalf("the slow node was leased audit %v while the fast one waited for audits", got)
	}
	// The fast node takes a chunk of 1 s (its rate × the chunk target): busy until after the
	// slow node would be done.
	c.mu.Lock()
	delete(c.auditIdle, nodeID("fast"))
	l, ok := c.sched.Lease(nodeID("fast"), time.Now())
	c.mu.Unlock()
	if !ok || l.Expected < 900*time.Millisecond {
		t.Fatalf("the fast node's chunk: %+v, %v; want one of about 1 s", l, ok)
	}
	if got := syncAs(t, c, "slow", "amd64"); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("with the fast node busy for 1 s, the slow one was leased %v, want audit 1", got)
	}
}

// TestNoChunkBehindALongAudit: a node that holds an audit that is not short is leased no chunk
// until it has answered it (a chunk queued behind it would start seconds after it was sized
// for, and end a job late); short audits do not hold chunks back, and once the answer is in,
// the node is leased chunks in the same exchange.
func TestNoChunkBehindALongAudit(t *testing.T) {
	audits := &fakeAudits{tasks: []compute.AuditTask{piTask(1, "owner")}}
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 40, Seed: 1}}
	c := auditLeadershipJobs(t, audits, fakeJobs{"j": {ID: "j", Spec: spec, State: compute.StateRunning}}, slog.New(slog.DiscardHandler))
	c.leaseAt = time.Now().Add(-time.Second)
	now := time.Now()
	if err := c.sched.AddJob("j", spec, []compute.Range{{Start: 0, End: 1 << 40}}, true); err != nil {
		t.Fatal(err)
	}
	// Probes of 2²⁰ samples: the audit (2²² samples) takes "slow" 0.5 s, "fast" 4 ms.
	for node, took := range map[string]time.Duration{"slow": 125 * time.Millisecond, "fast": time.Millisecond} {
		l, ok := c.sched.Lease(nodeID(node), now)
		if !ok {
			t.Fatal("no probe lease")
		}
		c.sched.Complete(l.ID, now.Add(took))
		c.sched.Accepted("j", l.Range)
	}
	c.refreshAuditsLocked(now)
	for _, n := range []string{"owner", "slow"} {
		c.lastSeen[nodeID(n)], c.arch[nodeID(n)] = now, "amd64"
	}
	exchange := func(node string, req *syncRequest) (audits, chunks int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req.Term, req.Arch = c.term, "amd64"
		resp, err := c.sync(ctx, peer.ID(node), req)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range resp.Leases {
			if l.Audit != nil {
				audits++
			} else {
				chunks++
			}
		}
		return audits, chunks
	}
	if a, n := exchange("slow", &syncRequest{Want: 2}); a != 1 || n != 0 {
		t.Fatalf("the slow node was leased %d audits and %d chunks, want the audit and no chunk behind it", a, n)
	}
	if a, n := exchange("slow", &syncRequest{Want: 1, Leases: []uint64{auditLeaseBase + 1}}); a != 0 || n != 0 {
		t.Fatalf("holding its long audit, the slow node was leased %d audits and %d chunks, want none", a, n)
	}
	answer := result{Lease: auditLeaseBase + 1, Term: c.term, Chunk: compute.Chunk{Job: "j", Range: piTask(1, "owner").Chunk},
		Audit: &auditAnswer{ID: 1, Leaves: []audit.Hash{{}}}}
	if a, n := exchange("slow", &syncRequest{Want: 2, Results: []result{answer}}); a != 0 || n != 2 {
		t.Fatalf("with its audit answered, the slow node was leased %d audits and %d chunks, want 2 chunks", a, n)
	}
	// A short audit (4 ms on the fast node) holds nothing back.
	audits.mu.Lock()
	audits.tasks = []compute.AuditTask{piTask(2, "owner")}
	audits.mu.Unlock()
	c.auditsDirty.Store(true)
	c.mu.Lock()
	c.refreshAuditsLocked(time.Now())
	c.lastSeen[nodeID("fast")], c.arch[nodeID("fast")] = time.Now(), "amd64"
	c.mu.Unlock()
	if a, n := exchange("fast", &syncRequest{Want: 2}); a != 1 || n != 1 {
		t.Fatalf("the fast node was leased %d audits and %d chunks, want the short audit and a chunk", a, n)
	}
}

// TestAuditNotLeftToANodeThatRefusesIt: nodes of the chunk's architecture leave its audit to a
// free node of another architecture only if that node would take it. An emulated arm64 board
// more than auditSlowdown times slower than an amd64 node refuses a long audit (speedFitsLocked);
// before, the amd64 nodes still left it the audit because it was free (archFitsLocked), so no
// node took it and the job never finished (TestSystem_MixedArchitectureExact hung at 318 of 480
// rows cleared). The same for a paused node of another architecture: it takes no work.
func TestAuditNotLeftToANodeThatRefusesIt(t *testing.T) {
	audits := &fakeAudits{tasks: []compute.AuditTask{piTask(1, "amd-a"), piTask(2, "amd-a")}}
	c := auditLeadership(t, audits, slog.New(slog.DiscardHandler))
	c.leaseAt = time.Now().Add(-time.Second)
	now := time.Now()
	// 2²⁰ samples in 10 ms on amd-b, in 1 s on the board: an audit of 2²² takes the board 4 s.
	measureRates(t, c, piTask(0, "").Spec, now, map[string]time.Duration{"amd-b": 10 * time.Millisecond, "arm-c": time.Second})
	c.refreshAuditsLocked(now)
	for node, arch := range map[string]string{"amd-a": "amd64", "amd-b": "amd64", "arm-c": "arm64"} {
		c.lastSeen[nodeID(node)], c.arch[nodeID(node)] = now, arch
	}
	if got := syncAs(t, c, "arm-c", "arm64"); len(got) != 0 {
		t.Fatalf("the slow board was leased audit %v while a node 100 times faster was live", got)
	}
	if got := syncAs(t, c, "amd-b", "amd64"); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("amd-b was leased %v, want audit 1: the free arm64 node would not take it", got)
	}

	// A paused node of another architecture holds no audit back either.
	audits2 := &fakeAudits{tasks: []compute.AuditTask{piTask(1, "amd-a")}}
	c2 := auditLeadership(t, audits2, slog.New(slog.DiscardHandler))
	c2.leaseAt = time.Now().Add(-time.Second)
	c2.refreshAuditsLocked(time.Now())
	for node, arch := range map[string]string{"amd-a": "amd64", "amd-b": "amd64", "arm-c": "arm64"} {
		c2.lastSeen[nodeID(node)], c2.arch[nodeID(node)] = time.Now(), arch
	}
	c2.mu.Lock()
	c2.paused[nodeID("arm-c")] = true // its owner is busy: it takes no work
	c2.mu.Unlock()
	if got := syncAs(t, c2, "amd-b", "amd64"); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("with the arm64 node paused, amd-b was leased %v, want audit 1", got)
	}
}

// TestLoneNodesAuditsWaived: once a node has been the only live one for waiveAfter, the
// coordinator proposes an AuditWaive for the open block audits of its chunks (no other node may
// run them: the other machine left); not before, not while a second node is live, not for a
// node with only a dispute open, and the wait starts again when another node comes and goes.
func TestLoneNodesAuditsWaived(t *testing.T) {
	dispute := piTask(2, "a")
	dispute.Full, dispute.Auditor = true, nodeID("b")
	audits := &fakeAudits{tasks: []compute.AuditTask{piTask(1, "a"), dispute}}
	c := auditLeadership(t, audits, slog.New(slog.DiscardHandler))
	start := c.began.Add(workerSilence)
	c.lastSeen[nodeID("a")], c.lastSeen[nodeID("b")] = start, start
	waives := func() (n int) {
		audits.mu.Lock()
		defer audits.mu.Unlock()
		for _, cmd := range audits.applied {
			if w, ok := cmd.(compute.AuditWaive); ok {
				if w.Node != nodeID("a") {
					t.Fatalf("waived %+v, want node a's", w)
				}
				n++
			}
		}
		return n
	}
	ctx := context.Background()
	c.waiveLoneAudits(ctx, start.Add(time.Hour)) // two live nodes
	delete(c.lastSeen, nodeID("b"))              // b left
	c.waiveLoneAudits(ctx, start)
	c.waiveLoneAudits(ctx, start.Add(waiveAfter-time.Second))
	if n := waives(); n != 0 {
		t.Fatalf("%d waives before a was alone for %v", n, waiveAfter)
	}
	c.lastSeen[nodeID("b")] = start // b back, then gone again: the wait starts again
	c.waiveLoneAudits(ctx, start.Add(waiveAfter-time.Second/2))
	delete(c.lastSeen, nodeID("b"))
	c.waiveLoneAudits(ctx, start.Add(waiveAfter))
	if n := waives(); n != 0 {
		t.Fatalf("%d waives right after b left again", n)
	}
	c.waiveLoneAudits(ctx, start.Add(2*waiveAfter))
	if n := waives(); n != 1 {
		t.Fatalf("%d waives after a was alone for %v, want 1", n, waiveAfter)
	}
	audits.mu.Lock()
	audits.tasks = []compute.AuditTask{dispute} // the block audit was waived; the dispute waits
	audits.mu.Unlock()
	c.waiveLoneAudits(ctx, start.Add(3*waiveAfter))
	if n := waives(); n != 1 {
		t.Fatalf("%d waives with only a dispute open, want still 1", n)
	}
}

// measureRates gives the nodes of took a measured rate for spec's kind: each one's probe
// lease completes took after now.
func measureRates(t *testing.T, c *leadership, spec compute.JobSpec, now time.Time, took map[string]time.Duration) {
	t.Helper()
	if err := c.sched.AddJob("rates", spec, []compute.Range{{Start: 0, End: spec.TotalUnits()}}, true); err != nil {
		t.Fatal(err)
	}
	for node, d := range took {
		l, ok := c.sched.Lease(nodeID(node), now)
		if !ok {
			t.Fatal("no probe lease")
		}
		c.sched.Complete(l.ID, now.Add(d))
		c.sched.Accepted("rates", l.Range)
	}
	c.sched.RemoveJob("rates")
}
