package work

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
)

// storeCluster is a coordinator term over a real job state whose commands the test may also
// apply by hand (to set up audits, disputes and faults without running the exchanges for them).
type storeCluster struct {
	store *compute.JobStore
	c     *leadership
	index uint64
}

func newStoreCluster(t *testing.T, audited bool) *storeCluster {
	t.Helper()
	sc := &storeCluster{store: compute.NewJobStore(compute.NewMemResults())}
	t.Cleanup(func() { sc.store.Close() })
	cfg := CoordinatorConfig{Jobs: sc.store, Apply: sc.apply, Logger: discardLogger()}
	if audited {
		cfg.Audits = sc.store
	}
	co := NewCoordinator(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	c := co.newLeadership(ctx, 4, time.Second)
	c.leaseAt, c.repairAt = time.Time{}, time.Now().Add(time.Hour) // leases at once; the test reconciles
	c.auditWait = time.Millisecond
	done := make(chan struct{})
	go func() { defer close(done); c.committer(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	co.cur.Store(c)
	sc.c = c
	return sc
}

// apply applies cmd to the job state as raft would; a refusal is an error.
func (sc *storeCluster) apply(_ context.Context, cmd any) (json.RawMessage, error) {
	sc.index++
	res := sc.store.ApplyCommand(cmd, sc.index)
	if err, ok := res.(error); ok {
		return nil, err
	}
	return json.Marshal(res)
}

// must applies cmd by hand and fails the test if the state refuses it.
func (sc *storeCluster) must(t *testing.T, cmd any) json.RawMessage {
	t.Helper()
	raw, err := sc.apply(context.Background(), cmd)
	if err != nil {
		t.Fatalf("%T: %v", cmd, err)
	}
	return raw
}

// sync makes node exchange req with the coordinator.
func (sc *storeCluster) sync(t *testing.T, node string, req *syncRequest) *syncResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req.Term = sc.c.term
	resp, err := sc.c.sync(ctx, peer.ID(node), req)
	if err != nil {
		t.Fatalf("sync of %s: %v", node, err)
	}
	return resp
}

// piResult is node's result for r of a π job (with wrong hits when lie is set), committed to.
func piResult(t *testing.T, job string, spec compute.JobSpec, r compute.Range, node string, lie bool) compute.ChunkResult {
	t.Helper()
	hits, err := compute.PiBlocksHits(spec.Pi.Seed, r)
	if err != nil {
		t.Fatal(err)
	}
	if lie {
		hits[0]++
	}
	payload := compute.EncodePiBlocksPayload(hits)
	root, err := compute.Commitment(spec, r, payload)
	if err != nil {
		t.Fatal(err)
	}
	return compute.ChunkResult{Chunk: compute.Chunk{Job: job, Range: r}, Node: nodeID(node), ComputeSeconds: 0.1, Payload: payload, Root: root}
}

// TestJobReopenedByAFailedAuditIsLeasedAgain: a failed audit requeues the failed node's results
// that no audit cleared, in done jobs too, which run again. The dispute that cleared a job's
// last chunk also failed that chunk's node and took back its other chunk, sampled out before:
// the job was done and running again in one command. The coordinator requeued the chunk in its
// scheduler, then removed the job as finished; with no other job scheduled no reconcile ran,
// so the job stayed running with a chunk nobody was ever leased, every node idle.
func TestJobReopenedByAFailedAuditIsLeasedAgain(t *testing.T) {
	sc := newStoreCluster(t, true)
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 17, Seed: 5}}
	first, last := compute.Range{Start: 0, End: 1 << 16}, compute.Range{Start: 1 << 16, End: 1 << 17}
	now := time.Now()
	sc.must(t, compute.Submit{ID: "j", Spec: spec, Submitter: "t", Time: now})
	// b computes both chunks: the first is sampled out (counted unaudited), the second, wrong,
	// is audited; a's audit disagrees, and the dispute waits for a third node.
	sc.must(t, compute.Results{Time: now, Audited: true, Items: []compute.ChunkResult{piResult(t, "j", spec, first, "b", false)}})
	sc.must(t, compute.Challenge{Time: now, Items: []compute.ChunkRef{{Job: "j", Start: first.Start}}, Unaudited: true})
	sc.must(t, compute.Results{Time: now, Audited: true, Items: []compute.ChunkResult{piResult(t, "j", spec, last, "b", true)}})
	sc.must(t, compute.Challenge{Time: now, Items: []compute.ChunkRef{{Job: "j", Start: last.Start}}})
	tasks := sc.store.AuditTasks()
	if len(tasks) != 1 || tasks[0].Chunk != last {
		t.Fatalf("audit tasks %+v, want the last chunk's", tasks)
	}
	right := piResult(t, "j", spec, last, "a", false)
	leaves, _, err := compute.ChunkLeaves(spec, last, right.Payload)
	if err != nil {
		t.Fatal(err)
	}
	sc.must(t, compute.Audit{Time: now, Job: "j", ID: tasks[0].ID, Auditor: nodeID("a"), Leaves: leaves, Seconds: 0.1})
	if tasks = sc.store.AuditTasks(); len(tasks) != 1 || !tasks[0].Full {
		t.Fatalf("audit tasks %+v, want the dispute", tasks)
	}

	c := sc.c
	c.reconcile(time.Now())
	for _, n := range []string{"a", "b", "c"} {
		sc.sync(t, n, &syncRequest{})
	}
	resp := sc.sync(t, "c", &syncRequest{Want: 1})
	if len(resp.Leases) != 1 || resp.Leases[0].Audit == nil || !resp.Leases[0].Audit.Full {
		t.Fatalf("c was leased %+v, want the dispute", resp.Leases)
	}
	// c settles it for a: the last chunk clears (the job is done), b fails, and b's first
	// chunk, sampled out, is computed again (the job runs again).
	l := resp.Leases[0]
	sc.sync(t, "c", &syncRequest{Results: results(l, l.Range)})
	j, _ := sc.store.Job("j")
	if j.State != compute.StateRunning {
		t.Fatalf("job %s after the dispute, want running again", j.State)
	}
	c.reconcileIfChanged(time.Now().Add(time.Minute)) // the coordinator's periodic pass

	var got []string
	for _, n := range []string{"a", "c"} {
		for _, l := range sc.sync(t, n, &syncRequest{Want: 1}).Leases {
			got = append(got, fmt.Sprintf("%s: %s %v", n, l.Job, l.Range))
		}
	}
	if len(got) == 0 {
		t.Fatalf("the job runs again for %v, but no node is leased it (scheduled jobs %v)", first, c.jobs)
	}
	t.Logf("leased: %v", got)
}

// quarantining is a job state in which some nodes are quarantined.
type quarantining struct {
	*compute.JobStore
	out map[string]bool
}

func (q quarantining) Quarantined(node string) bool { return q.out[node] }

// TestModuleFaultsNotWaitingForAQuarantinedNode: a job whose module failed on every node that
// may take work fails. A node that saw the module fail is leased none of the job's chunks while
// a working node has not tried it, and the job fails once FaultNodes nodes (or every working
// node) saw it fail; a quarantined node, which is leased nothing, counted as one that had not
// tried it: with a and b faulted and q quarantined, nobody was leased the job's chunks, no
// fault came to fail it, and it stayed running for ever.
func TestModuleFaultsNotWaitingForAQuarantinedNode(t *testing.T) {
	store := compute.NewJobStore(compute.NewMemResults())
	defer store.Close()
	failed := make(chan compute.Fail, 1)
	var index uint64
	apply := func(_ context.Context, cmd any) (json.RawMessage, error) {
		index++
		res := store.ApplyCommand(cmd, index)
		if err, ok := res.(error); ok {
			return nil, err
		}
		if f, ok := cmd.(compute.Fail); ok {
			failed <- f
		}
		return json.Marshal(res)
	}
	spec := compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: strings.Repeat("ab", 32), Items: 1 << 20, Reduce: compute.ReduceSum}}
	now := time.Now()
	for _, cmd := range []any{
		compute.Submit{ID: "w", Spec: spec, Time: now},
		compute.Fault{Job: "w", Node: nodeID("a"), Msg: "wasm error: unreachable", Time: now},
		compute.Fault{Job: "w", Node: nodeID("b"), Msg: "wasm error: unreachable", Time: now},
	} {
		if _, err := apply(context.Background(), cmd); err != nil {
			t.Fatal(err)
		}
	}
	audits := quarantining{JobStore: store, out: map[string]bool{nodeID("q"): true}}
	co := NewCoordinator(CoordinatorConfig{Jobs: store, Audits: audits, Apply: apply, Logger: discardLogger()})
	c := co.newLeadership(context.Background(), 4, time.Second)
	c.leaseAt, c.repairAt = time.Time{}, time.Now().Add(time.Hour)
	c.auditWait = time.Millisecond
	c.reconcile(now)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	syncs := func(node string, req *syncRequest) *syncResponse {
		t.Helper()
		return syncAt(ctx, t, c, node, req)
	}
	for _, n := range []string{"a", "b", "q"} {
		syncs(n, &syncRequest{})
	}
	var got *lease
	var by string
	for _, n := range []string{"a", "b", "q"} {
		if resp := syncs(n, &syncRequest{Want: 1}); len(resp.Leases) > 0 {
			got, by = &resp.Leases[0], n
			break
		}
	}
	if got == nil {
		t.Fatal("no node was leased the job: a and b saw its module fail, and q is quarantined")
	}
	if by == "q" {
		t.Fatal("the quarantined node was leased a chunk")
	}
	// Its module fails there again: every node that may work saw it fail.
	syncs(by, &syncRequest{Failed: []uint64{got.ID}, Faults: []fault{{Lease: got.ID, Chunk: got.Chunk, Msg: "wasm error: unreachable"}}})
	select {
	case f := <-failed:
		if f.Job != "w" {
			t.Fatalf("failed job %q", f.Job)
		}
	case <-ctx.Done():
		t.Fatal("the job was not failed")
	}
}

// TestLongAuditNotCancelledOnTime: an audit lease's deadline allows for the audit's length. It
// was auditDeadline (2 minutes) whatever the audit: at --chunk-target 10m a new node's chunk is
// audited whole, ten minutes on a node as fast as its own, so every auditor's lease expired
// before it could answer, was cancelled in its next exchange and leased again, from the
// start, for ever (and the same with one slow board left to audit a fast node's chunk).
func TestLongAuditNotCancelledOnTime(t *testing.T) {
	const target = 10 * time.Minute
	start := time.Now()
	task := piTask(1, "a")
	rate := 1 << 20 // samples a second, as both nodes measured
	task.Chunk = compute.Range{Start: 0, End: uint64(rate) * uint64(target/time.Second)}
	task.Spans = []compute.Range{task.Chunk}
	audits := &fakeAudits{tasks: []compute.AuditTask{task}}
	c := auditLeadership(t, audits, discardLogger())
	c.chunkTarget = target
	if err := c.sched.AddJob("rates", task.Spec, []compute.Range{{Start: 0, End: 1 << 40}}, true); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b"} {
		id := nodeID(n)
		c.lastSeen[id] = start
		l, _ := c.sched.Lease(id, start)
		c.sched.Complete(l.ID, start.Add(time.Duration(float64(l.Range.Len())/float64(rate)*float64(time.Second))))
	}
	c.sched.RemoveJob("rates")
	c.mu.Lock()
	c.refreshAuditsLocked(start)
	out := c.leaseAuditsLocked(nodeID("b"), start, 1)
	c.mu.Unlock()
	if len(out) != 1 {
		t.Fatalf("b was leased %v, want the audit", out)
	}
	id := out[0].ID
	// b runs it for its ten minutes, and syncs meanwhile; the coordinator drops expired leases
	// whenever it rereads the audits.
	for _, after := range []time.Duration{3 * time.Minute, target + time.Minute} {
		c.mu.Lock()
		c.refreshAuditsLocked(start.Add(after))
		c.mu.Unlock()
		resp, err := c.sync(context.Background(), peer.ID("b"), &syncRequest{Term: c.term, Leases: []uint64{id}})
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(resp.Cancel, id) {
			t.Fatalf("%v into an audit of %v at b's rate, its lease was cancelled", after, target)
		}
	}
	// A lease nobody answers still ends: another node gets the audit.
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refreshAuditsLocked(start.Add(10 * target))
	if l := c.auditLeases[task.ID]; l != nil {
		t.Fatalf("the audit is still leased to %s long after its deadline", l.node)
	}
}

// TestExpiredLeaseOfALiveNodeRunsOn: a lease that expires while its node still runs it (and
// says so in every exchange) goes back to the pending work, but the node is not told to drop
// it. A WebAssembly job's probe (its node's first chunk of the module: 64 items, deadline 30 s)
// whose first item takes longer than that, and a module call may take 60 s, made no progress
// before its deadline; its node was told to drop it at its next exchange, nothing was learnt,
// and the same probe was leased again, for ever: the job never finished.
func TestExpiredLeaseOfALiveNodeRunsOn(t *testing.T) {
	c, l := expiredProbe(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.sync(ctx, peer.ID("node-a"), &syncRequest{Term: c.term, Leases: []uint64{l.ID}, Progress: []leaseProgress{{Lease: l.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(resp.Cancel, l.ID) {
		t.Fatalf("a was told to drop %v, which it is running, once its deadline passed", l.Range)
	}
	// Its result, when it comes, is committed.
	go func() {
		req := <-c.commits
		req.done <- commitRes{outcome: &compute.ResultsOutcome{Accepted: len(req.items)}}
	}()
	resp, err = c.sync(ctx, peer.ID("node-a"), &syncRequest{Term: c.term, Results: []result{{Lease: l.ID, Term: l.Term, Chunk: l.Chunk, Payload: []byte{1}}}})
	if err != nil || len(resp.Acked) != 1 {
		t.Fatalf("the expired lease's result: %+v, %v", resp, err)
	}
	// A lease cancelled for another reason (its job removed) is still dropped.
	resp, err = c.sync(ctx, peer.ID("node-b"), &syncRequest{Want: 1, Term: c.term})
	if err != nil || len(resp.Leases) != 1 {
		t.Fatalf("lease to b: %+v, %v", resp, err)
	}
	lb := resp.Leases[0]
	c.tick(time.Now().Add(time.Hour))
	c.mu.Lock()
	c.sched.RemoveJob("j1")
	delete(c.jobs, "j1")
	c.mu.Unlock()
	resp, err = c.sync(ctx, peer.ID("node-b"), &syncRequest{Term: c.term, Leases: []uint64{lb.ID}})
	if err != nil || !slices.Contains(resp.Cancel, lb.ID) {
		t.Fatalf("b's lease of a removed job: cancel %v, %v", resp.Cancel, err)
	}
}

// TestExpiredLeaseDroppedOnceItsRangeCameBack: a straggler runs on with its expired lease only
// while the range is still to be done; once another node's result for it came back, the
// straggler is told to drop it (it kept recomputing it until the job ended: up to a chunk
// target of wasted work).
func TestExpiredLeaseDroppedOnceItsRangeCameBack(t *testing.T) {
	c, la := expiredProbe(t) // a's lease expired: its range is pending again
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.sync(ctx, peer.ID("node-b"), &syncRequest{Want: 1, Term: c.term})
	if err != nil || len(resp.Leases) != 1 || !resp.Leases[0].Range.Overlaps(la.Range) {
		t.Fatalf("b is leased %+v, %v; want a's range again", resp.Leases, err)
	}
	lb := resp.Leases[0]
	if resp, err = c.sync(ctx, peer.ID("node-a"), &syncRequest{Term: c.term, Leases: []uint64{la.ID}}); err != nil || slices.Contains(resp.Cancel, la.ID) {
		t.Fatalf("a told to drop its expired lease while b runs the range too: %+v, %v", resp.Cancel, err)
	}
	go func() {
		req := <-c.commits
		req.done <- commitRes{outcome: &compute.ResultsOutcome{Accepted: len(req.items)}}
	}()
	resp, err = c.sync(ctx, peer.ID("node-b"), &syncRequest{Term: c.term, Results: []result{{Lease: lb.ID, Term: lb.Term, Chunk: lb.Chunk, Payload: []byte{1}}}})
	if err != nil || len(resp.Acked) != 1 {
		t.Fatalf("b's result: %+v, %v", resp, err)
	}
	if !lb.Range.Contains(la.Range) {
		t.Fatalf("b's lease %v does not cover a's %v: the test needs it to", lb.Range, la.Range)
	}
	resp, err = c.sync(ctx, peer.ID("node-a"), &syncRequest{Term: c.term, Leases: []uint64{la.ID}})
	if err != nil || !slices.Contains(resp.Cancel, la.ID) {
		t.Fatalf("a was not told to drop its expired lease once b's result for its range came back: cancel %v, %v", resp.Cancel, err)
	}
}

// expiredProbe leases node-a the first chunk (a probe) of a WebAssembly job and lets its
// deadline pass while node-a stays live (its first item is still running, and it syncs all
// along): the lease has expired, its range is pending again.
func expiredProbe(t *testing.T) (*leadership, lease) {
	t.Helper()
	spec := compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: strings.Repeat("ab", 32), Items: 1 << 10, Reduce: compute.ReduceSum}}
	c := newTestLeadership(t, spec)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.sync(ctx, peer.ID("node-a"), &syncRequest{Want: 1, Term: c.term})
	if err != nil || len(resp.Leases) != 1 {
		t.Fatalf("lease to a: %+v, %v", resp, err)
	}
	later := time.Now().Add(45 * time.Second)
	c.mu.Lock()
	c.lastSeen[peer.ID("node-a").String()] = later
	c.mu.Unlock()
	c.tick(later)
	return c, resp.Leases[0]
}
