package work

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/audit"
)

// fakeAudits is the audit part of a job state: open audits, closed by an Audit command.
type fakeAudits struct {
	mu      sync.Mutex
	tasks   []compute.AuditTask
	waiting []compute.ChunkRef // chunks waiting for a challenge
	applied []any              // every command applied
	groups  [][]any            // the commands of every ApplyGroup call
}

func (f *fakeAudits) Unchallenged(int) []compute.ChunkRef {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.waiting)
}
func (f *fakeAudits) Quarantined(string) bool   { return false }
func (f *fakeAudits) AuditPolicy() audit.Policy { return audit.DefaultPolicy }
func (f *fakeAudits) AuditTasks() []compute.AuditTask {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.tasks)
}

// apply closes the audit an Audit command answers.
func (f *fakeAudits) apply(_ context.Context, cmd any) (json.RawMessage, error) {
	f.mu.Lock()
	f.applied = append(f.applied, cmd)
	f.mu.Unlock()
	if a, ok := cmd.(compute.Audit); ok {
		f.mu.Lock()
		f.tasks = slices.DeleteFunc(f.tasks, func(t compute.AuditTask) bool { return t.ID == a.ID })
		f.mu.Unlock()
		return json.Marshal(compute.AuditOutcome{Passed: []string{"x"}})
	}
	return json.Marshal(compute.AuditOutcome{})
}

func auditLeadership(t *testing.T, audits *fakeAudits, log *slog.Logger) *leadership {
	t.Helper()
	return auditLeadershipJobs(t, audits, fakeJobs{}, log)
}

// auditLeadershipJobs is auditLeadership with jobs whose chunks may be leased.
func auditLeadershipJobs(t *testing.T, audits *fakeAudits, jobs fakeJobs, log *slog.Logger) *leadership {
	t.Helper()
	co := NewCoordinator(CoordinatorConfig{Jobs: jobs, Audits: audits, Apply: audits.apply, ApplyGroup: audits.applyGroup, Logger: log})
	c := co.newLeadership(context.Background(), 3, time.Second)
	c.leaseAt, c.repairAt = time.Time{}, time.Now().Add(time.Hour) // leases at once; no reconcile
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.committer(ctx) }() // results and audit answers go through it
	t.Cleanup(func() { cancel(); <-done })
	return c
}

// applyGroup applies cmds one by one, recording them as one group.
func (f *fakeAudits) applyGroup(ctx context.Context, cmds []any) ([]json.RawMessage, []error) {
	f.mu.Lock()
	f.groups = append(f.groups, slices.Clone(cmds))
	f.mu.Unlock()
	raws, errs := make([]json.RawMessage, len(cmds)), make([]error, len(cmds))
	for i, cmd := range cmds {
		raws[i], errs[i] = f.apply(ctx, cmd)
	}
	return raws, errs
}

// nodeID is the node string the coordinator knows a test peer by.
func nodeID(name string) string { return peer.ID(name).String() }

func piTask(id uint64, node string) compute.AuditTask {
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 30, Seed: 1}}
	r := compute.Range{Start: id << 22, End: (id + 1) << 22}
	return compute.AuditTask{ID: id, Job: "j", Spec: spec, Chunk: r, Node: nodeID(node), Spans: []compute.Range{r}}
}

// syncAs makes node (of architecture arch) sync asking for one chunk; it returns the audit IDs
// it was leased.
func syncAs(t *testing.T, c *leadership, node, arch string, results ...result) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.sync(ctx, peer.ID(node), &syncRequest{Want: 1, Term: c.term, Arch: arch, Results: results})
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, l := range resp.Leases {
		if l.Audit != nil {
			ids = append(ids, l.Audit.ID)
		}
	}
	return ids
}

// TestAuditLeasesGoToAnotherNodeAndArchitecture: an audit never goes to the chunk's own node;
// a node of another architecture gets it first while it is free, and one of the same
// architecture takes it when the other is busy with an audit (a slow board must not hold up
// every audit).
func TestAuditLeasesGoToAnotherNodeAndArchitecture(t *testing.T) {
	audits := &fakeAudits{tasks: []compute.AuditTask{piTask(1, "amd-a"), piTask(2, "amd-a")}}
	c := auditLeadership(t, audits, slog.New(slog.DiscardHandler))
	c.leaseAt = time.Now().Add(-time.Second)
	c.refreshAuditsLocked(time.Now())
	for node, arch := range map[string]string{"amd-a": "amd64", "amd-b": "amd64", "arm-c": "arm64"} {
		c.lastSeen[nodeID(node)], c.arch[nodeID(node)] = time.Now(), arch
	}
	if got := syncAs(t, c, "amd-a", "amd64"); len(got) != 0 {
		t.Fatalf("the chunk's own node was leased its audit %v", got)
	}
	if got := syncAs(t, c, "amd-b", "amd64"); len(got) != 0 {
		t.Fatalf("a node of the same architecture took audit %v while arm64 was free", got)
	}
	if got := syncAs(t, c, "arm-c", "arm64"); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("the arm64 node was leased %v, want audit 1", got)
	}
	if got := syncAs(t, c, "amd-b", "amd64"); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("with arm64 busy, amd-b was leased %v, want audit 2", got)
	}
}

// TestAnsweredAuditNotLeasedAgain: once an audit's answer is committed, it is not handed out
// again from the coordinator's copy of the open audits (before the fix, an answered audit was
// leased and answered in a loop until the next repair pass reread the state).
func TestAnsweredAuditNotLeasedAgain(t *testing.T) {
	audits := &fakeAudits{tasks: []compute.AuditTask{piTask(1, "a")}}
	c := auditLeadership(t, audits, slog.New(slog.DiscardHandler))
	c.leaseAt = time.Now().Add(-time.Second)
	c.refreshAuditsLocked(time.Now())
	if got := syncAs(t, c, "b", "amd64"); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("leased %v, want audit 1", got)
	}
	tk := audits.tasks[0]
	ans := result{Lease: auditLeaseBase + 1, Term: c.term, Chunk: compute.Chunk{Job: tk.Job, Range: tk.Chunk},
		Audit: &auditAnswer{ID: 1, Leaves: []audit.Hash{{}}}}
	if got := syncAs(t, c, "b", "amd64", ans); len(got) != 0 {
		t.Fatalf("an answered audit was leased again: %v", got)
	}
	if got := syncAs(t, c, "c", "amd64"); len(got) != 0 {
		t.Fatalf("an answered audit was leased to another node: %v", got)
	}
}

// TestAuditAnswersCommittedWithResults: an exchange's audit answers go to the committer with its
// results and are proposed together (one group: they share raft entries), each acknowledged.
func TestAuditAnswersCommittedWithResults(t *testing.T) {
	audits := &fakeAudits{tasks: []compute.AuditTask{piTask(1, "a"), piTask(2, "a")}}
	c := auditLeadership(t, audits, slog.New(slog.DiscardHandler))
	c.leaseAt = time.Now().Add(-time.Second)
	c.refreshAuditsLocked(time.Now())
	var answers []result
	for _, tk := range audits.tasks {
		c.auditLeases[tk.ID] = &auditLease{node: nodeID("b"), deadline: time.Now().Add(time.Minute)}
		answers = append(answers, result{Lease: auditLeaseBase + tk.ID, Term: c.term, Chunk: compute.Chunk{Job: tk.Job, Range: tk.Chunk},
			Audit: &auditAnswer{ID: tk.ID, Leaves: []audit.Hash{{}}}})
	}
	// A result of a lease from an earlier term that nobody holds now: committed.
	res := result{Lease: 7, Term: c.term - 1, Chunk: compute.Chunk{Job: "r", Range: compute.Range{Start: 0, End: 100}}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.sync(ctx, peer.ID("b"), &syncRequest{Term: c.term, Results: append([]result{answers[0], res}, answers[1])})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resp.AckedAudits, []uint64{1, 2}) || len(resp.Acked) != 1 {
		t.Fatalf("acked audits %v and results %v, want audits 1, 2 and the result", resp.AckedAudits, resp.Acked)
	}
	audits.mu.Lock()
	defer audits.mu.Unlock()
	if len(audits.groups) != 1 || len(audits.groups[0]) != 3 {
		t.Fatalf("proposed %d groups (%v), want one of the results and both answers", len(audits.groups), audits.groups)
	}
	if _, ok := audits.groups[0][0].(compute.Results); !ok {
		t.Fatalf("the group starts with %T, want the Results", audits.groups[0][0])
	}
	if len(c.auditLeases) != 0 || len(c.auditTasks) != 0 {
		t.Fatalf("answered audits still leased %v or listed %v", c.auditLeases, c.auditTasks)
	}
}

// TestDeterminismBugLoggedLoudly: a mismatch between two trusted nodes is logged at error level
// as a determinism bug, a plain mismatch as a warning.
func TestDeterminismBugLoggedLoudly(t *testing.T) {
	var buf bytes.Buffer
	c := auditLeadership(t, &fakeAudits{}, slog.New(slog.NewTextHandler(&buf, nil)))
	raw, _ := json.Marshal(compute.AuditOutcome{Mismatch: true, Determinism: true})
	c.auditOutcome(raw, "node-b")
	if out := buf.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "DETERMINISM BUG") || !strings.Contains(out, "node-b") {
		t.Fatalf("log %q", out)
	}
	buf.Reset()
	raw, _ = json.Marshal(compute.AuditOutcome{Mismatch: true})
	c.auditOutcome(raw, "node-b")
	if out := buf.String(); !strings.Contains(out, "level=WARN") || strings.Contains(out, "DETERMINISM") {
		t.Fatalf("log %q", out)
	}
}

// A term holds its challenges back until its nodes have had workerSilence to
// sync; then one live node alone clears its chunks unaudited, and a second
// one brings audits back.
func TestNoAuditor(t *testing.T) {
	c := auditLeadership(t, &fakeAudits{}, slog.New(slog.DiscardHandler))
	now := c.began
	c.lastSeen[nodeID("a")] = now
	if un, wait := c.noAuditor(now.Add(time.Second)); un || wait != workerSilence-time.Second {
		t.Fatalf("early in the term: unaudited %v, wait %v; want a wait of %v", un, wait, workerSilence-time.Second)
	}
	if un, wait := c.noAuditor(now.Add(workerSilence)); !un || wait != 0 {
		t.Fatalf("one node after the wait: unaudited %v, wait %v", un, wait)
	}
	c.lastSeen[nodeID("b")] = now
	for _, at := range []time.Time{now, now.Add(workerSilence)} {
		if un, wait := c.noAuditor(at); un || wait != 0 {
			t.Fatalf("two nodes at %v: unaudited %v, wait %v", at.Sub(now), un, wait)
		}
	}
}

// TestSlowNodeLeavesBigAuditsToFastOnes: a node that would take longer than a chunk target to
// recompute an audit, while a live node more than auditSlowdown times faster may take it, is
// not leased it; the fast node is, and with the fast node paused or gone the slow one takes it.
// A node gone gives its audit back at once.
func TestSlowNodeLeavesBigAuditsToFastOnes(t *testing.T) {
	audits := &fakeAudits{tasks: []compute.AuditTask{piTask(1, "owner"), piTask(2, "owner")}}
	c := auditLeadership(t, audits, slog.New(slog.DiscardHandler))
	c.leaseAt = time.Now().Add(-time.Second)
	now := time.Now()
	// Probes measure the rates: 2²⁰ samples in 10 ms and in 1 s; an audit of 2²² samples
	// takes the slow node 4 s, four chunk targets (1 s here).
	measureRates(t, c, piTask(0, "").Spec, now, map[string]time.Duration{"fast": 10 * time.Millisecond, "slow": time.Second})
	if f, s := c.sched.Rate(nodeID("fast"), compute.KindPi), c.sched.Rate(nodeID("slow"), compute.KindPi); f < 50*s || s <= 0 {
		t.Fatalf("rates fast %g, slow %g", f, s)
	}
	c.refreshAuditsLocked(now)
	for _, n := range []string{"owner", "fast", "slow"} {
		c.lastSeen[nodeID(n)], c.arch[nodeID(n)] = now, "amd64"
	}
	if got := syncAs(t, c, "slow", "amd64"); len(got) != 0 {
		t.Fatalf("the slow node was leased audit %v while the fast one was live", got)
	}
	if got := syncAs(t, c, "fast", "amd64"); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("the fast node was leased %v, want audit 1", got)
	}
	if got := syncAs(t, c, "slow", "amd64"); len(got) != 0 {
		t.Fatalf("the slow node was leased audit %v while the fast one was live (busy)", got)
	}
	c.mu.Lock()
	c.paused[nodeID("fast")] = true // its owner is busy: it takes no work
	c.mu.Unlock()
	if got := syncAs(t, c, "slow", "amd64"); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("with the fast node paused, the slow one was leased %v, want audit 2", got)
	}
	audits.tasks = append(audits.tasks, piTask(3, "owner"))
	c.refreshAuditsLocked(time.Now())
	c.nodeGone(nodeID("fast"), time.Now())
	c.nodeGone(nodeID("slow"), time.Now()) // its audit goes back
	if got := syncAs(t, c, "slow", "amd64"); len(got) != 1 {
		t.Fatalf("with the fast node gone, the slow one was leased %v, want an audit", got)
	}
}

// TestResultsCarryTheChallenge: a Results entry carries the Challenge of the chunks earlier
// entries committed (fresh randomness, no entry of its own), and none when nothing waits.
func TestResultsCarryTheChallenge(t *testing.T) {
	audits := &fakeAudits{waiting: []compute.ChunkRef{{Job: "j", Start: 0}, {Job: "j", Start: 100}}}
	c := auditLeadership(t, audits, slog.New(slog.DiscardHandler))
	c.lastSeen[nodeID("a")], c.lastSeen[nodeID("b")] = time.Now(), time.Now()
	item := compute.ChunkResult{Chunk: compute.Chunk{Job: "j", Range: compute.Range{Start: 200, End: 300}}, Node: nodeID("a")}
	if _, _, err := c.applyResults(context.Background(), []compute.ChunkResult{item}, nil); err != nil {
		t.Fatal(err)
	}
	audits.waiting = nil
	if _, _, err := c.applyResults(context.Background(), []compute.ChunkResult{item}, nil); err != nil {
		t.Fatal(err)
	}
	if len(audits.applied) != 2 {
		t.Fatalf("applied %d commands, want 2 Results", len(audits.applied))
	}
	first, _ := audits.applied[0].(compute.Results)
	if ch := first.Challenge; ch == nil || len(ch.Items) != 2 || ch.Seed == (audit.Seed{}) || ch.Unaudited {
		t.Fatalf("first Results carries %+v, want a challenge of the 2 waiting chunks", first.Challenge)
	}
	if second, _ := audits.applied[1].(compute.Results); second.Challenge != nil {
		t.Fatalf("with nothing waiting, the Results carries %+v", second.Challenge)
	}
}

// TestShortAuditsLeasedSeveralAtOnce: a node whose audits are short at its measured rate holds
// several at once (up to maxAuditsHeld, in one exchange), never its own chunk's; one that is not
// short is leased alone, and nothing more while it is in hand.
func TestShortAuditsLeasedSeveralAtOnce(t *testing.T) {
	var tasks []compute.AuditTask
	for id := uint64(1); id <= 12; id++ {
		owner := "owner"
		if id == 2 {
			owner = "fast" // its own chunk: never its audit
		}
		tk := piTask(id, owner)
		tk.Spans = []compute.Range{{Start: tk.Chunk.Start, End: tk.Chunk.Start + 1<<16}}
		tasks = append(tasks, tk)
	}
	tasks = append(tasks, piTask(13, "owner")) // 2²² samples: 40 ms at the fast node's rate
	audits := &fakeAudits{tasks: tasks}
	c := auditLeadership(t, audits, slog.New(slog.DiscardHandler))
	now := time.Now()
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 30, Seed: 1}}
	if err := c.sched.AddJob("rates", spec, []compute.Range{{Start: 0, End: 1 << 30}}, true); err != nil {
		t.Fatal(err)
	}
	l, ok := c.sched.Lease(nodeID("fast"), now) // a probe of 2²⁰ samples in 10 ms
	if !ok {
		t.Fatal("no probe lease")
	}
	c.sched.Complete(l.ID, now.Add(10*time.Millisecond))
	c.sched.Accepted("rates", l.Range)
	c.sched.RemoveJob("rates")
	c.refreshAuditsLocked(now)
	for _, n := range []string{"owner", "fast", "new"} {
		c.lastSeen[nodeID(n)], c.arch[nodeID(n)] = now, "amd64"
	}
	want := func(node string, n int) []uint64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := c.sync(ctx, peer.ID(node), &syncRequest{Want: n, Term: c.term, Arch: "amd64"})
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint64
		for _, l := range resp.Leases {
			if l.Audit == nil {
				t.Fatalf("leased a chunk %v, want audits only", l.Chunk)
			}
			ids = append(ids, l.Audit.ID)
		}
		return ids
	}
	if got := want("fast", 8); !slices.Equal(got, []uint64{1, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("the fast node was leased %v, want 8 short audits, not its own chunk's (2)", got)
	}
	if got := want("fast", 8); len(got) != 0 {
		t.Fatalf("with %d audits in hand the fast node was leased %v more", maxAuditsHeld, got)
	}
	if got := want("new", 8); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("a node of unknown rate was leased %v, want one audit (2)", got)
	}
	if got := want("new", 8); len(got) != 0 {
		t.Fatalf("a node of unknown rate holding an audit was leased %v more", got)
	}
}

// TestEmptyHandedWorkerWaitsForComingAudits: a worker that holds nothing, while chunks wait for
// their Challenge, is answered when their audits appear, with them, not after its next exchange
// (the end of a job waited for that).
func TestEmptyHandedWorkerWaitsForComingAudits(t *testing.T) {
	audits := &fakeAudits{waiting: []compute.ChunkRef{{Job: "j", Start: 1 << 22}}}
	c := auditLeadership(t, audits, slog.New(slog.DiscardHandler))
	// Not auditWait (250 ms): a test goroutine descheduled that long (-race, packages in
	// parallel on 2 cores) found the wait over, its exchange answered empty; and an audit that
	// came during the wait's last look passed without the wake-up. Only the audits' arrival may
	// end this wait.
	c.auditWait = time.Hour
	type answer struct {
		resp *syncResponse
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := c.sync(context.Background(), peer.ID("b"), &syncRequest{Want: 8, Term: c.term, Arch: "amd64"})
		got <- answer{resp, err}
	}()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		c.auditsDirty.mu.Lock()
		waiting := c.auditsDirty.wake != nil
		c.auditsDirty.mu.Unlock()
		if waiting {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the exchange did not wait for the coming audits")
		}
	}
	audits.mu.Lock()
	audits.tasks, audits.waiting = []compute.AuditTask{piTask(1, "a")}, nil
	audits.mu.Unlock()
	c.auditsDirty.Store(true) // the Challenge committed
	var a answer
	select {
	case a = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting exchange was not woken by the coming audits within 10 s")
	}
	if a.err != nil {
		t.Fatal(a.err)
	}
	if len(a.resp.Leases) != 1 || a.resp.Leases[0].Audit == nil || a.resp.Leases[0].Audit.ID != 1 {
		t.Fatalf("the waiting exchange was leased %+v, want audit 1", a.resp.Leases)
	}
}

// TestWaitForAuditsNeverHoldsAChunk: an exchange of a worker with nothing in hand waits for
// coming audits only while there is no chunk to lease it, and a submitted job ends the wait (the
// worker's next exchange takes its chunk) instead of holding the job up for auditWait.
func TestWaitForAuditsNeverHoldsAChunk(t *testing.T) {
	store := compute.NewJobStore(compute.NewMemResults())
	defer store.Close()
	audits := &fakeAudits{waiting: []compute.ChunkRef{{Job: "old", Start: 1 << 22}}} // audits may come
	co := NewCoordinator(CoordinatorConfig{Jobs: store, Audits: audits, Apply: audits.apply, Logger: discardLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := co.newLeadership(ctx, 3, time.Second)
	c.leaseAt = time.Time{}
	c.auditWait = time.Hour // a wait that should end early and does not hangs the test
	co.cur.Store(c)
	exchange := func() <-chan *syncResponse {
		got := make(chan *syncResponse, 1)
		go func() {
			resp, err := c.sync(ctx, peer.ID("b"), &syncRequest{Want: 8, Term: c.term, Arch: "amd64"})
			if err != nil {
				t.Error(err)
			}
			got <- resp
		}()
		return got
	}
	answer := func(got <-chan *syncResponse, what string) *syncResponse {
		t.Helper()
		select {
		case resp := <-got:
			return resp
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the exchange still waits after 10 s", what)
			return nil
		}
	}

	got := exchange() // no job, no audit yet: it waits
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		c.jobsSignal.mu.Lock()
		waiting := c.jobsSignal.wake != nil
		c.jobsSignal.mu.Unlock()
		if waiting {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the exchange did not wait for the coming audits")
		}
	}
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 16, Seed: 1}}
	if res := store.ApplyCommand(compute.Submit{ID: "j", Spec: spec, Time: time.Now()}, 0); res != nil {
		t.Fatal(res)
	}
	co.JobSubmitted()
	if resp := answer(got, "after a submit"); len(resp.Leases) != 0 {
		t.Fatalf("the waiting exchange was leased %+v, want nothing (its next exchange takes the chunk)", resp.Leases)
	}
	resp := answer(exchange(), "with a chunk to lease")
	if len(resp.Leases) != 1 || resp.Leases[0].Audit != nil || resp.Leases[0].Job != "j" {
		t.Fatalf("the next exchange was leased %+v, want the chunk of j", resp.Leases)
	}
}
