package compute

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute/audit"
)

func TestAuditHonestChunkCountsOnlyAfterItsAudit(t *testing.T) {
	st := newTestState(t)
	auditJob(t, st, "pi", 2)
	total := uint64(2*audit.PiBlock + 7)
	out := st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{
		committedPi(t, "pi", auditSeed, Range{0, total}, "a", false),
	}}).(*ResultsOutcome)
	if out.Accepted != 1 || len(out.Finished) != 0 {
		t.Fatalf("results: %+v", out)
	}
	if r, _ := st.PiResult("pi"); r.Samples != 0 {
		t.Fatalf("an unaudited result counts: %+v", r)
	}
	if u := st.Unchallenged(10); len(u) != 1 || u[0] != (ChunkRef{"pi", 0}) {
		t.Fatalf("unchallenged %v", u)
	}
	co := st.mustApply(t, Challenge{Time: t0, Seed: seedN(1), Items: st.Unchallenged(10)}).(*AuditOutcome)
	if co.Audited != 1 {
		t.Fatalf("a new node's chunk was not audited: %+v", co)
	}
	tasks := st.AuditTasks()
	if len(tasks) != 1 || tasks[0].Full || len(tasks[0].Spans) != 1 || tasks[0].Spans[0] != (Range{0, total}) {
		t.Fatalf("a new node's audit is not every block: %+v", tasks)
	}
	// The node itself may not audit its chunk.
	if r := st.ApplyCommand(answer(t, tasks[0], "a", false), 0); r == nil {
		t.Fatal("a node audited its own chunk")
	} else if _, isErr := r.(error); !isErr {
		t.Fatalf("self-audit: %v", r)
	}
	ao := st.mustApply(t, answer(t, tasks[0], "b", false)).(*AuditOutcome)
	if !reflect.DeepEqual(ao.Passed, []string{"a"}) || len(ao.Finished) != 1 {
		t.Fatalf("audit outcome %+v", ao)
	}
	r, _ := st.PiResult("pi")
	if r.Samples != total || r.Hits != PiHits(auditSeed, 0, total) {
		t.Fatalf("result %+v", r)
	}
	j, _ := st.Job("pi")
	if j.State != StateDone || j.AuditedUnits != total || j.RedoneUnits != 0 {
		t.Fatalf("job %+v", j)
	}
	if na := st.NodeAudit("a"); na.Passed != 1 || na.Failed != 0 || na.State != audit.StateNew {
		t.Fatalf("node a %+v", na)
	}
	// A second answer for the same audit changes nothing.
	if ao := st.mustApply(t, answer(t, tasks[0], "c", false)).(*AuditOutcome); ao.Reason == "" {
		t.Fatalf("a stale audit was applied: %+v", ao)
	}
}

func TestAuditCommitmentChecked(t *testing.T) {
	st := newTestState(t)
	auditJob(t, st, "pi", 2)
	c := committedPi(t, "pi", auditSeed, Range{0, 100}, "a", false)
	c.Root[0] ^= 1
	noRoot := piChunk("pi", auditSeed, Range{100, 200}, "a") // format 1: no blocks
	// The coordinator refuses both before proposing them (CheckResults)...
	spec := func(id string) (JobSpec, bool) { j, ok := st.Job(id); return j.Spec, ok }
	if ok, _, refused := CheckResults([]ChunkResult{c, noRoot}, spec); len(ok) != 0 || len(refused) != 2 {
		t.Fatalf("results without a valid commitment passed: %+v", refused)
	}
	// ...and the job state still refuses a payload it cannot count.
	out := st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{noRoot}}).(*ResultsOutcome)
	if out.Accepted != 0 || len(out.Rejected) != 1 {
		t.Fatalf("a result without blocks accepted: %+v", out)
	}
}

// TestAuditCheaterCaughtAndRedone: a cheating node's wrong block is found by the auditor, the
// third node sides with the auditor, its result replaces the cheater's, every result of the
// cheater since its last passed audit is requeued, and after three failures it is quarantined.
func TestAuditCheaterCaughtAndRedone(t *testing.T) {
	st := newTestState(t)
	auditJob(t, st, "pi", 6)
	B := uint64(audit.PiBlock)
	// The cheater's first chunk is honest and passes; the next two are sampled out... as a new
	// node it is audited on every chunk, so cheat on the second and leave the third waiting.
	st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{
		committedPi(t, "pi", auditSeed, Range{0, B}, "evil", false),
	}})
	st.mustApply(t, Challenge{Time: t0, Seed: seedN(1), Items: st.Unchallenged(10)})
	st.mustApply(t, answer(t, tasksFor(st, "evil")[0], "b", false))
	st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{
		committedPi(t, "pi", auditSeed, Range{B, 2 * B}, "evil", true),
		committedPi(t, "pi", auditSeed, Range{2 * B, 3 * B}, "evil", false),
	}})
	st.mustApply(t, Challenge{Time: t0, Seed: seedN(2), Items: st.Unchallenged(10)})
	var cheat AuditTask
	for _, tk := range tasksFor(st, "evil") {
		if tk.Chunk.Start == B {
			cheat = tk
		}
	}
	ao := st.mustApply(t, answer(t, cheat, "b", false)).(*AuditOutcome)
	if !ao.Mismatch || ao.Determinism {
		t.Fatalf("mismatch not found: %+v", ao)
	}
	var dispute AuditTask
	for _, tk := range st.AuditTasks() {
		if tk.Full {
			dispute = tk
		}
	}
	if dispute.Chunk != (Range{B, 2 * B}) || dispute.Auditor != "b" || dispute.Node != "evil" {
		t.Fatalf("dispute %+v", dispute)
	}
	if j, _ := st.Job("pi"); j.Disputes != 1 {
		t.Fatalf("the job's view counts %d disputes while one is open", j.Disputes)
	}
	if r := st.ApplyCommand(answer(t, dispute, "b", false), 0); r == nil {
		t.Fatal("the first auditor settled its own dispute")
	}
	ao = st.mustApply(t, answer(t, dispute, "c", false)).(*AuditOutcome)
	if !reflect.DeepEqual(ao.Failed, []string{"evil"}) || len(ao.Requeued) != 1 || ao.Requeued[0].Range != (Range{2 * B, 3 * B}) {
		t.Fatalf("dispute outcome %+v", ao)
	}
	j, _ := st.Job("pi")
	if j.Disputes != 0 {
		t.Fatalf("the job's view counts %d disputes after the third node settled it", j.Disputes)
	}
	if j.RedoneUnits != B || j.AuditedUnits != 2*B+B {
		t.Fatalf("job audited %d redone %d", j.AuditedUnits, j.RedoneUnits)
	}
	if p, _ := st.Pending("pi"); len(p) != 1 || p[0] != (Range{2 * B, 6*B + 7}) {
		t.Fatalf("pending after requeue %v", p)
	}
	for _, n := range j.Nodes {
		if n.Node == "evil" && n.Units != B {
			t.Fatalf("the cheater keeps credit for %d units", n.Units)
		}
	}
	// Two more failures quarantine it; its results are refused from then on.
	for i, r := range []Range{{2 * B, 3 * B}, {3 * B, 4 * B}} {
		st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{committedPi(t, "pi", auditSeed, r, "evil", true)}})
		st.mustApply(t, Challenge{Time: t0, Seed: seedN(byte(3 + i)), Items: st.Unchallenged(10)})
		st.mustApply(t, answer(t, tasksFor(st, "evil")[0], "b", false))
		ao = st.mustApply(t, answer(t, tasksFor(st, "evil")[0], "c", false)).(*AuditOutcome)
	}
	if !reflect.DeepEqual(ao.Quarantined, []string{"evil"}) || !st.Quarantined("evil") {
		t.Fatalf("not quarantined: %+v", ao)
	}
	if na := st.NodeAudit("evil"); na.State != audit.StateQuarantined || na.Failed != 3 || na.Passed != 1 {
		t.Fatalf("node audit %+v", na)
	}
	out := st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{committedPi(t, "pi", auditSeed, Range{4 * B, 5 * B}, "evil", false)}}).(*ResultsOutcome)
	if out.Accepted != 0 {
		t.Fatal("a quarantined node's result accepted")
	}
	// Honest nodes finish the job; the answer is exact.
	finish(t, st, "pi", []string{"a", "b"})
	r, _ := st.PiResult("pi")
	if r.Hits != PiHits(auditSeed, 0, 6*B+7) || r.Samples != 6*B+7 {
		t.Fatalf("result %+v", r)
	}
	for _, n := range []string{"b", "c"} {
		if st.NodeAudit(n).Failed != 0 {
			t.Fatalf("honest node %s failed an audit", n)
		}
	}
	// An admin clears the cheater: new again.
	st.mustApply(t, TrustReset{Node: "evil"})
	if na := st.NodeAudit("evil"); na.State != audit.StateNew || st.Quarantined("evil") || na.Failed != 0 {
		t.Fatalf("after reset %+v", na)
	}
}

// finish computes the pending ranges of job on the nodes, honestly, and audits them with the
// other node until the job is done.
func finish(t *testing.T, st testState, job string, nodes []string) {
	t.Helper()
	B := uint64(audit.PiBlock)
	for round := 0; round < 50; round++ {
		if j, _ := st.Job(job); j.State == StateDone {
			return
		}
		p, _ := st.Pending(job)
		var items []ChunkResult
		for i, r := range p {
			for s := r.Start; s < r.End; s += B {
				items = append(items, committedPi(t, job, auditSeed, Range{s, min(s+B, r.End)}, nodes[i%len(nodes)], false))
			}
		}
		if len(items) > 0 {
			st.mustApply(t, Results{Time: t0, Audited: true, Items: items})
		}
		st.mustApply(t, Challenge{Time: t0, Seed: seedN(byte(100 + round)), Items: st.Unchallenged(100)})
		for _, tk := range st.AuditTasks() {
			auditor := nodes[0]
			if tk.Node == auditor {
				auditor = nodes[1]
			}
			st.mustApply(t, answer(t, tk, auditor, false))
		}
	}
	t.Fatal("job not done after 50 rounds")
}

// TestAuditWrongAuditorLoses: an auditor with wrong bits opens a dispute; the third node sides
// with the chunk's node, so the auditor fails and the chunk counts.
func TestAuditWrongAuditorLoses(t *testing.T) {
	st := newTestState(t)
	auditJob(t, st, "pi", 1)
	st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{committedPi(t, "pi", auditSeed, Range{0, audit.PiBlock + 7}, "a", false)}})
	st.mustApply(t, Challenge{Time: t0, Seed: seedN(1), Items: st.Unchallenged(10)})
	st.mustApply(t, answer(t, st.AuditTasks()[0], "liar", true))
	ao := st.mustApply(t, answer(t, st.AuditTasks()[0], "c", false)).(*AuditOutcome)
	if !reflect.DeepEqual(ao.Failed, []string{"liar"}) || !reflect.DeepEqual(ao.Passed, []string{"a"}) || len(ao.Finished) != 1 {
		t.Fatalf("outcome %+v", ao)
	}
	// Three different answers: no majority, the chunk is computed again.
	st2 := newTestState(t)
	auditJob(t, st2, "pi", 1)
	st2.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{committedPi(t, "pi", auditSeed, Range{0, audit.PiBlock + 7}, "a", true)}})
	st2.mustApply(t, Challenge{Time: t0, Seed: seedN(1), Items: st2.Unchallenged(10)})
	st2.mustApply(t, answer(t, st2.AuditTasks()[0], "liar", true))
	ao = st2.mustApply(t, answer(t, st2.AuditTasks()[0], "c", false)).(*AuditOutcome)
	if ao.Reason != "no majority" || len(ao.Requeued) != 1 {
		t.Fatalf("three-way outcome %+v", ao)
	}
}

// TestAuditStateSurvivesSnapshot: audits in flight, standings and quarantine are replicated
// state: a restored replica lists the same audits and the same standings and finishes the job.
func TestAuditStateSurvivesSnapshot(t *testing.T) {
	st := newTestState(t)
	auditJob(t, st, "pi", 3)
	B := uint64(audit.PiBlock)
	st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{
		committedPi(t, "pi", auditSeed, Range{0, B}, "a", false),
		committedPi(t, "pi", auditSeed, Range{B, 2 * B}, "evil", true),
		committedPi(t, "pi", auditSeed, Range{2 * B, 3 * B}, "a", false),
	}})
	st.mustApply(t, Challenge{Time: t0, Seed: seedN(1), Items: st.Unchallenged(2)}) // the third waits
	st.mustApply(t, answer(t, tasksFor(st, "evil")[0], "b", false))                 // a dispute
	var snap bytes.Buffer
	if err := st.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	r := newTestState(t)
	if err := r.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	checkAuditIndex(t, st.JobStore)
	checkAuditIndex(t, r.JobStore)
	if !reflect.DeepEqual(r.AuditTasks(), st.AuditTasks()) || !reflect.DeepEqual(r.NodeAudits(), st.NodeAudits()) ||
		!reflect.DeepEqual(r.Unchallenged(10), st.Unchallenged(10)) {
		t.Fatalf("restored audits differ:\n%+v\n%+v", r.AuditTasks(), st.AuditTasks())
	}
	a, _ := st.Job("pi")
	b, _ := r.Job("pi")
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("restored job differs:\n%+v\n%+v", a, b)
	}
	finish(t, r, "pi", []string{"a", "c"})
	res, _ := r.PiResult("pi")
	if res.Hits != PiHits(auditSeed, 0, 3*B+7) {
		t.Fatalf("result %+v", res)
	}
	if r.NodeAudit("evil").Failed != 1 {
		t.Fatalf("evil %+v", r.NodeAudit("evil"))
	}
}

func FuzzDecodePiBlocks(f *testing.F) {
	f.Add(EncodePiBlocksPayload([]uint64{3, 4}), uint64(audit.PiBlock-5), uint64(audit.PiBlock+5))
	f.Add(EncodePiPayload(3), uint64(0), uint64(10))
	f.Add([]byte{2, 0xff, 0xff, 0xff, 0xff, 0x0f}, uint64(0), uint64(1))
	f.Fuzz(func(t *testing.T, b []byte, start, end uint64) {
		bh, total, err := DecodePiBlocks(b, Range{start, end})
		if err != nil {
			return
		}
		var sum uint64
		for _, h := range bh {
			sum += h
		}
		if sum != total || total > end-start {
			t.Fatalf("decoded %d blocks summing to %d, total %d, for %d samples", len(bh), sum, total, end-start)
		}
	})
}

// A cluster of one machine has no other node to audit its chunks: the
// coordinator marks its Challenge unaudited, and the chunks then count as
// sampled-out ones do, so the job finishes instead of waiting forever.
func TestAuditUnauditedChallengeClearsWithoutAuditor(t *testing.T) {
	st := newTestState(t)
	auditJob(t, st, "pi", 2)
	total := uint64(2*audit.PiBlock + 7)
	st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{
		committedPi(t, "pi", auditSeed, Range{0, total}, "a", false),
	}})
	c := Challenge{Time: t0, Seed: seedN(1), Items: st.Unchallenged(10), Unaudited: true}
	op, p, err := EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeCommand(op, p)
	if err != nil || !reflect.DeepEqual(back, c) {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	if _, err := DecodeCommand(op, append(bytes.Clone(p[:len(p)-1]), 2)); err == nil {
		t.Fatal("a challenge flag other than 1 was accepted")
	}
	co := st.mustApply(t, back).(*AuditOutcome)
	if co.Audited != 0 || co.SampledOut != 1 || len(co.Finished) != 1 {
		t.Fatalf("outcome %+v", co)
	}
	if len(st.AuditTasks()) != 0 {
		t.Fatalf("audit tasks left: %+v", st.AuditTasks())
	}
	j, _ := st.Job("pi")
	if r, _ := st.PiResult("pi"); j.State != StateDone || r.Samples != total || j.AuditedUnits != 0 {
		t.Fatalf("job %+v result %+v", j, r)
	}
}

// checkAuditIndex checks the indexes Unchallenged and AuditTasks read against every chunk: each
// job's set of chunks waiting for a Challenge, and the audit index (exactly the chunks under
// audit or in dispute).
func checkAuditIndex(t *testing.T, s *JobStore) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	inAudit := 0
	for _, j := range s.jobs {
		committed := 0
		for start, r := range j.recs {
			switch r.step {
			case stepCommitted:
				committed++
				if _, ok := j.waiting[start]; !ok {
					t.Fatalf("job %s chunk %d waits for its challenge but is not in the waiting set", j.id, start)
				}
			case stepAuditing, stepDisputed:
				inAudit++
				if ref, ok := s.auditIx[r.id]; !ok || ref.Job != j.id || ref.Range.Start != start {
					t.Fatalf("job %s chunk %d under audit %d: audit index has %+v, %v", j.id, start, r.id, ref, ok)
				}
			}
		}
		if committed != len(j.waiting) {
			t.Fatalf("job %s: %d chunks wait for their challenge, the waiting set has %d", j.id, committed, len(j.waiting))
		}
		if w, ok := s.waitJobs[j.id]; (committed > 0) != ok || ok && w != j {
			t.Fatalf("job %s: %d chunks wait for their challenge, listed among the waiting jobs: %v", j.id, committed, ok)
		}
	}
	for id := range s.waitJobs {
		if s.jobs[id] == nil {
			t.Fatalf("waiting jobs list %s, which is gone", id)
		}
	}
	if inAudit != len(s.auditIx) {
		t.Fatalf("%d chunks under audit, %d in the audit index", inAudit, len(s.auditIx))
	}
}

// TestAuditChallengeRidesOnResults: a Challenge carried by a Results command challenges the
// chunks of earlier entries (here: audited, as the node is new) once the command's own items
// are stored, and leaves those items waiting for a challenge of their own.
func TestAuditChallengeRidesOnResults(t *testing.T) {
	st := newTestState(t)
	auditJob(t, st, "pi", 2)
	B := uint64(audit.PiBlock)
	st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{committedPi(t, "pi", auditSeed, Range{0, B}, "a", false)}})
	out := st.mustApply(t, Results{Time: t0, Audited: true,
		Items:     []ChunkResult{committedPi(t, "pi", auditSeed, Range{B, 2*B + 7}, "b", false)},
		Challenge: &Challenge{Seed: seedN(1), Items: st.Unchallenged(10)},
	}).(*ResultsOutcome)
	if out.Accepted != 1 || out.Challenge == nil || out.Challenge.Audited != 1 {
		t.Fatalf("outcome %+v, challenge %+v", out, out.Challenge)
	}
	if got := st.Unchallenged(10); len(got) != 1 || got[0].Start != B {
		t.Fatalf("waiting for a challenge: %+v, want the second chunk only", got)
	}
	if tasks := tasksFor(st, "a"); len(tasks) != 1 || tasks[0].Chunk != (Range{0, B}) {
		t.Fatalf("audits of a: %+v", tasks)
	}
	checkAuditIndex(t, st.JobStore)
	if _, _, err := EncodeCommand(Results{Time: t0, Challenge: &Challenge{}}); err == nil {
		t.Fatal("a challenge on unaudited results was encoded")
	}
}

// TestAuditCancelledJobHasNoAudits: once a job is cancelled (or failed), its chunks chosen for
// audit are no longer audit tasks and its chunks waiting for a challenge are not offered for one,
// while another job's audit stays listed; workers lease audits ahead of new chunks, so a stopped
// job's audits would take nodes from the jobs still running.
func TestAuditCancelledJobHasNoAudits(t *testing.T) {
	st := newTestState(t)
	total := uint64(2*audit.PiBlock + 7)
	for _, id := range []string{"stop", "fail", "keep"} {
		auditJob(t, st, id, 2)
		st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{
			committedPi(t, id, auditSeed, Range{0, total}, "a", false),
		}})
	}
	st.mustApply(t, Challenge{Time: t0, Seed: seedN(1), Items: st.Unchallenged(10)})
	if n := len(st.AuditTasks()); n != 3 {
		t.Fatalf("%d audit tasks, want 3", n)
	}
	// A second round of results, waiting for their challenge.
	for _, id := range []string{"stop", "fail", "keep"} {
		st.mustApply(t, Submit{ID: id + "2", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: total, Seed: auditSeed}}})
		st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{
			committedPi(t, id+"2", auditSeed, Range{0, total}, "a", false),
		}})
	}
	st.mustApply(t, Cancel{Job: "stop", Time: t0})
	st.mustApply(t, Cancel{Job: "stop2", Time: t0})
	st.mustApply(t, Fail{Job: "fail", Time: t0, Reason: "test"})
	st.mustApply(t, Fail{Job: "fail2", Time: t0, Reason: "test"})
	if tasks := st.AuditTasks(); len(tasks) != 1 || tasks[0].Job != "keep" {
		t.Fatalf("audit tasks after cancel and fail: %+v", tasks)
	}
	if u := st.Unchallenged(10); len(u) != 1 || u[0] != (ChunkRef{"keep2", 0}) {
		t.Fatalf("unchallenged after cancel and fail: %v", u)
	}
	checkAuditIndex(t, st.JobStore)
}

// The jobs with chunks waiting for their challenge are kept apart from the others (the
// coordinator asks with every commit): listed in submission order, and forgotten with a deleted
// job or once their chunks are challenged.
func TestUnchallengedReadsOnlyWaitingJobs(t *testing.T) {
	st := newTestState(t)
	B := uint64(audit.PiBlock)
	for _, id := range []string{"j2", "j1", "j3"} {
		auditJob(t, st, id, 2)
	}
	for _, id := range []string{"j3", "j1", "j2"} {
		st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{
			committedPi(t, id, auditSeed, Range{B, 2 * B}, "a", false),
			committedPi(t, id, auditSeed, Range{0, B}, "a", false),
		}})
	}
	want := []ChunkRef{{"j2", 0}, {"j2", B}, {"j1", 0}, {"j1", B}, {"j3", 0}, {"j3", B}}
	if u := st.Unchallenged(10); !reflect.DeepEqual(u, want) {
		t.Fatalf("unchallenged %v, want %v", u, want)
	}
	if u := st.Unchallenged(3); !reflect.DeepEqual(u, want[:3]) {
		t.Fatalf("unchallenged(3) %v", u)
	}
	st.mustApply(t, Delete{Job: "j2"})
	st.mustApply(t, Challenge{Time: t0, Seed: seedN(1), Items: []ChunkRef{{"j1", 0}, {"j1", B}}})
	checkAuditIndex(t, st.JobStore)
	if u := st.Unchallenged(10); !reflect.DeepEqual(u, want[4:]) {
		t.Fatalf("after a delete and a challenge: unchallenged %v, want %v", u, want[4:])
	}
}

// TestAuditAfterFailKeepsJobFailed: an audit leased before the job failed and answered after
// it clears its chunk, but a failed job stays failed even once every unit is cleared.
func TestAuditAfterFailKeepsJobFailed(t *testing.T) {
	st := newTestState(t)
	auditJob(t, st, "pi", 1)
	st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{committedPi(t, "pi", auditSeed, Range{0, audit.PiBlock + 7}, "a", false)}})
	st.mustApply(t, Challenge{Time: t0, Seed: seedN(1), Items: st.Unchallenged(10)})
	tk := st.AuditTasks()[0]
	st.mustApply(t, Fail{Job: "pi", Reason: "failed elsewhere", Time: t0})
	ao := st.mustApply(t, answer(t, tk, "b", false)).(*AuditOutcome)
	if j, _ := st.Job("pi"); j.State != StateFailed || j.Reason != "failed elsewhere" || len(ao.Finished) != 0 {
		t.Fatalf("after a late audit the failed job is %s (%+v)", j.State, ao)
	}
}

// TestRestoreEmptyResetsAuditPolicy: restoring a snapshot without a job section is the empty
// state, audit policy included, as on a node that never applied the policy.
func TestRestoreEmptyResetsAuditPolicy(t *testing.T) {
	st := newTestState(t)
	st.mustApply(t, AuditPolicy{Policy: audit.Policy{TrustAfter: 2, Floor: 0.5, TrustedShare: 1, QuarantineAfter: 7}})
	if err := st.Restore(bytes.NewReader(nil)); err != nil {
		t.Fatal(err)
	}
	if p := st.AuditPolicy(); p != audit.DefaultPolicy {
		t.Fatalf("policy after restoring the empty state %+v, want %+v", p, audit.DefaultPolicy)
	}
}

// TestAuditWaiveClearsALoneNodesAudits: AuditWaive clears, unaudited, the open block audits of
// the node it names (the only node left: nobody else may audit its chunks), so its job finishes
// with the chunks counted; another node's audit and a dispute stay open, and a node's name is
// validated. It decodes as it was encoded.
func TestAuditWaiveClearsALoneNodesAudits(t *testing.T) {
	st := newTestState(t)
	auditJob(t, st, "pi", 4)
	auditJob(t, st, "other", 4)
	half := uint64(2 * audit.PiBlock)
	total := uint64(4*audit.PiBlock + 7)
	st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{
		committedPi(t, "pi", auditSeed, Range{0, half}, "a", false),
		committedPi(t, "pi", auditSeed, Range{half, total}, "a", false),
		committedPi(t, "other", auditSeed, Range{0, half}, "a", false),
		committedPi(t, "other", auditSeed, Range{half, total}, "b", false),
	}})
	if co := st.mustApply(t, Challenge{Time: t0, Seed: seedN(1), Items: st.Unchallenged(10)}).(*AuditOutcome); co.Audited != 4 {
		t.Fatalf("new nodes' chunks not all audited: %+v", co)
	}
	// other's chunk of a goes to a dispute: b disagrees.
	for _, task := range tasksFor(st, "a") {
		if task.Job == "other" {
			if ao := st.mustApply(t, answer(t, task, "b", true)).(*AuditOutcome); !ao.Mismatch {
				t.Fatalf("no dispute: %+v", ao)
			}
		}
	}
	w := AuditWaive{Node: "a", Time: t0.Add(time.Minute)}
	op, p, err := EncodeCommand(w)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := DecodeCommand(op, p); err != nil || !reflect.DeepEqual(back, w) {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	out := st.mustApply(t, w).(*AuditOutcome)
	if out.Waived != 2 || !reflect.DeepEqual(out.Finished, []string{"pi"}) {
		t.Fatalf("waive: %+v, want a's 2 audits of pi waived and pi finished", out)
	}
	j, _ := st.Job("pi")
	if r, _ := st.PiResult("pi"); j.State != StateDone || r.Samples != total || r.Hits != PiHits(auditSeed, 0, total) || j.AuditedUnits != 0 {
		t.Fatalf("job %+v result %+v", j, r)
	}
	var left []string
	for _, task := range st.AuditTasks() {
		left = append(left, fmt.Sprintf("%s/%s/full=%v", task.Job, task.Node, task.Full))
	}
	if !reflect.DeepEqual(left, []string{"other/a/full=true", "other/b/full=false"}) {
		t.Fatalf("audits left %v: want a's dispute and b's audit", left)
	}
	checkAuditIndex(t, st.JobStore)
	for _, bad := range []AuditWaive{{}, {Node: "a\xff"}} {
		if r := st.ApplyCommand(bad, 0); r == nil {
			t.Errorf("%+v was applied", bad)
		} else if _, isErr := r.(error); !isErr {
			t.Errorf("%+v: %v", bad, r)
		}
	}
}
