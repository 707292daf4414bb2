package compute

import (
	"slices"
	"testing"

	"github.com/hydra-compute/hydra/compute/audit"
)

// The rules of docs/audits.md that span several commands: what counts in an answer, what a
// failure takes back, and when a mismatch is a determinism bug.

// earnTrust has node pass audits of honest one-block chunks of job, starting at block *next,
// until it is trusted, each audited by auditor.
func earnTrust(t *testing.T, st testState, job, node, auditor string, next *uint64) {
	t.Helper()
	B := uint64(audit.PiBlock)
	for i := 0; st.NodeAudit(node).State != audit.StateTrusted; i++ {
		if i > 20 {
			t.Fatalf("%s not trusted after 20 chunks: %+v", node, st.NodeAudit(node))
		}
		st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{
			committedPi(t, job, auditSeed, Range{*next * B, (*next + 1) * B}, node, false)}})
		*next++
		st.mustApply(t, Challenge{Time: t0, Seed: seedN(byte(200 + i)), Items: st.Unchallenged(10)})
		for _, tk := range tasksFor(st, node) {
			st.mustApply(t, answer(t, tk, auditor, false))
		}
	}
}

// TestAuditFailureTakesBackSampledOutResults: a trusted node's chunks are audited only now and
// then; the ones sampled out count at once. When it then fails an audit, every result of it
// accepted since its last passed audit is taken back — the sampled-out honest one and the
// sampled-out wrong ones alike — and computed again, so the answer ends exact.
func TestAuditFailureTakesBackSampledOutResults(t *testing.T) {
	st := newTestState(t)
	st.mustApply(t, AuditPolicy{Policy: audit.Policy{TrustAfter: 2, Floor: 0.01, TrustedShare: 1, QuarantineAfter: 3}})
	const blocks = 12
	auditJob(t, st, "pi", blocks)
	B := uint64(audit.PiBlock)
	var next uint64
	earnTrust(t, st, "pi", "a", "b", &next)

	// Three chunks of the trusted node, challenged with seeds that (the same on every replica)
	// sample out the first two and audit the third: an honest chunk and a wrong one count
	// unaudited, the next wrong one is caught.
	pol := audit.Policy{TrustAfter: 2, Floor: 0.01, TrustedShare: 1, QuarantineAfter: 3}
	streak := st.NodeAudit("a").Passed
	seedFor := func(r Range, audited bool) audit.Seed {
		for n := range 256 {
			if chosen, _ := pol.Choose(seedN(byte(n)), "pi", r.Start, audit.Standing{Passed: streak, Streak: streak}, 1); chosen == audited {
				return seedN(byte(n))
			}
		}
		t.Fatalf("no seed %v audited=%v", r, audited)
		return audit.Seed{}
	}
	var sampledOut []Range
	for i, cheat := range []bool{false, true, true} {
		r := Range{next * B, (next + 1) * B}
		next++
		st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{committedPi(t, "pi", auditSeed, r, "a", cheat)}})
		co := st.mustApply(t, Challenge{Time: t0, Seed: seedFor(r, i == 2), Items: st.Unchallenged(10)}).(*AuditOutcome)
		if i < 2 {
			if co.SampledOut != 1 {
				t.Fatalf("chunk %v not sampled out: %+v", r, co)
			}
			sampledOut = append(sampledOut, r)
		} else if co.Audited != 1 {
			t.Fatalf("chunk %v not audited: %+v", r, co)
		}
	}
	caught := tasksFor(st, "a")[0]
	before, _ := st.PiResult("pi")
	if before.Samples != (next-1)*B {
		// Everything but the chunk under audit counts: the sampled-out wrong ones too, for now.
		t.Fatalf("counted %d samples before the failure, want %d", before.Samples, (next-1)*B)
	}
	if ao := st.mustApply(t, answer(t, caught, "b", false)).(*AuditOutcome); !ao.Mismatch {
		t.Fatalf("the wrong chunk's audit passed: %+v", ao)
	}
	var dispute AuditTask
	for _, tk := range st.AuditTasks() {
		if tk.Full {
			dispute = tk
		}
	}
	ao := st.mustApply(t, answer(t, dispute, "c", false)).(*AuditOutcome)
	if !slices.Equal(ao.Failed, []string{"a"}) {
		t.Fatalf("the third node did not side with the auditor: %+v", ao)
	}
	var requeued []Range
	for _, c := range ao.Requeued {
		requeued = append(requeued, c.Range)
	}
	if !slices.Equal(requeued, sampledOut) {
		t.Fatalf("requeued %v, want every sampled-out chunk since the last pass %v", requeued, sampledOut)
	}
	after, _ := st.PiResult("pi")
	if want := before.Samples + B - uint64(len(sampledOut))*B; after.Samples != want {
		t.Fatalf("counted %d samples after the failure, want %d (the sampled-out ones taken back)", after.Samples, want)
	}
	if j, _ := st.Job("pi"); j.RedoneUnits != uint64(len(sampledOut))*B {
		t.Fatalf("redone %d units, want %d", j.RedoneUnits, uint64(len(sampledOut))*B)
	}
	finish(t, st, "pi", []string{"b", "c"})
	if r, _ := st.PiResult("pi"); r.Hits != PiHits(auditSeed, 0, blocks*B+7) || r.Samples != blocks*B+7 {
		t.Fatalf("result %+v, want exact", r)
	}
	for _, n := range []string{"b", "c"} {
		if na := st.NodeAudit(n); na.Failed != 0 {
			t.Fatalf("honest node %s: %+v", n, na)
		}
	}
}

// TestAuditDeterminismBugBetweenTrustedNodes: two trusted nodes disagree on a block. Neither
// is presumed a cheater: the outcome flags a determinism bug (the coordinator logs it at error
// level), and the third node's bits settle it.
func TestAuditDeterminismBugBetweenTrustedNodes(t *testing.T) {
	st := newTestState(t)
	st.mustApply(t, AuditPolicy{Policy: audit.Policy{TrustAfter: 2, Floor: 1, TrustedShare: 1, QuarantineAfter: 3}})
	auditJob(t, st, "pi", 12)
	B := uint64(audit.PiBlock)
	var next uint64
	earnTrust(t, st, "pi", "a", "b", &next)
	earnTrust(t, st, "pi", "b", "a", &next)
	st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{
		committedPi(t, "pi", auditSeed, Range{next * B, (next + 1) * B}, "a", false)}})
	st.mustApply(t, Challenge{Time: t0, Seed: seedN(1), Items: st.Unchallenged(10)}) // Floor 1: audited
	ao := st.mustApply(t, answer(t, tasksFor(st, "a")[0], "b", true)).(*AuditOutcome)
	if !ao.Mismatch || !ao.Determinism {
		t.Fatalf("two trusted nodes disagree: %+v, want a determinism bug", ao)
	}
	ao = st.mustApply(t, answer(t, st.AuditTasks()[0], "c", false)).(*AuditOutcome)
	if !slices.Equal(ao.Passed, []string{"a"}) || !slices.Equal(ao.Failed, []string{"b"}) {
		t.Fatalf("the third node did not settle it: %+v", ao)
	}
}

// TestAuditMandelRowsCountOnlyOnceAudited: a Mandelbrot chunk's rows are stored when accepted
// but read as not there yet (zero in the image, a gap to the reader) until its audit passes.
func TestAuditMandelRowsCountOnlyOnceAudited(t *testing.T) {
	st := newTestState(t)
	m := MandelParams{Width: 8, Height: 6, CenterX: -0.5, Span: 3, MaxIter: 200}
	spec := JobSpec{Kind: KindMandelbrot, Mandel: &m}
	st.mustApply(t, Submit{ID: "m", Time: t0, Spec: spec})
	want := make([]uint32, m.Width*m.Height)
	if err := MandelRows(m, 0, m.Height, want); err != nil {
		t.Fatal(err)
	}
	rows := func(r Range) []byte { return EncodeMandelPayload(want[int(r.Start)*m.Width : int(r.End)*m.Width]) }
	r := Range{1, 4}
	root, err := Commitment(spec, r, rows(r))
	if err != nil {
		t.Fatal(err)
	}
	st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{{Chunk: Chunk{Job: "m", Range: r}, Node: "a", Payload: rows(r), Root: root}}})
	img, _ := st.MandelImage("m")
	if slices.ContainsFunc(img, func(c uint32) bool { return c != 0 }) {
		t.Fatal("an unaudited chunk's rows are in the image")
	}
	if got, counts, _ := st.MandelChunk("m", 2); counts != nil || got != (Range{2, 4}) {
		t.Fatalf("row 2 before its audit: %v %v, want the gap [2,4)", got, counts)
	}
	st.mustApply(t, Challenge{Time: t0, Seed: seedN(1), Items: st.Unchallenged(10)})
	tk := st.AuditTasks()[0]
	var payloads [][]byte
	for _, sp := range tk.Spans {
		payloads = append(payloads, rows(sp))
	}
	leaves, err := SpanLeaves(spec, tk.Spans, payloads)
	if err != nil {
		t.Fatal(err)
	}
	if ao := st.mustApply(t, Audit{Time: t0, Job: "m", ID: tk.ID, Auditor: "b", Leaves: leaves}).(*AuditOutcome); !slices.Equal(ao.Passed, []string{"a"}) {
		t.Fatalf("audit %+v", ao)
	}
	img, _ = st.MandelImage("m")
	if !slices.Equal(img[m.Width:4*m.Width], want[m.Width:4*m.Width]) {
		t.Fatal("the audited rows are not in the image")
	}
	if got, counts, _ := st.MandelChunk("m", 2); got != r || !slices.Equal(counts, want[m.Width:4*m.Width]) {
		t.Fatalf("row 2 after its audit: %v", got)
	}
}

// TestAuditWasmChunks: a WebAssembly chunk without blocks (payload format 1, as written before
// block commitments) is one leaf, recomputed whole by its auditor (block audits:
// TestAuditWasmBlocks). Its
// value counts only once audited or sampled out; a wrong value is caught, the third node's stands,
// and a min job's value is recounted when a sampled-out wrong chunk is taken back (a minimum
// cannot be subtracted).
func TestAuditWasmChunks(t *testing.T) {
	st := newTestState(t)
	st.mustApply(t, AuditPolicy{Policy: audit.Policy{TrustAfter: 2, Floor: 0.01, TrustedShare: 1, QuarantineAfter: 3}})
	spec := JobSpec{Kind: KindWasm, Wasm: &WasmParams{Module: testModule, Items: 500, Reduce: ReduceMin}}
	st.mustApply(t, Submit{ID: "w", Time: t0, Spec: spec})
	truth := map[uint64]uint64{0: 5, 100: 6, 200: 7, 300: 4, 400: 9}
	chunk := func(start uint64, node string, v uint64) ChunkResult {
		r := Range{start, start + 100}
		p := EncodeWasmPayload(v, nil)
		root, err := Commitment(spec, r, p)
		if err != nil {
			t.Fatal(err)
		}
		return ChunkResult{Chunk: Chunk{Job: "w", Range: r}, Node: node, Payload: p, Root: root}
	}
	wasmAnswer := func(tk AuditTask, auditor string) Audit {
		a := Audit{Time: t0, Job: "w", ID: tk.ID, Auditor: auditor}
		p := EncodeWasmPayload(truth[tk.Chunk.Start], nil)
		if tk.Full {
			a.Payload = p
			a.Root, _ = Commitment(spec, tk.Chunk, p)
			return a
		}
		leaves, err := SpanLeaves(spec, tk.Spans, [][]byte{p})
		if err != nil || len(tk.Spans) != 1 || tk.Spans[0] != tk.Chunk {
			t.Fatalf("a wasm audit is the whole chunk: %+v %v", tk, err)
		}
		a.Leaves = leaves
		return a
	}
	value := func() WasmResult { t.Helper(); v, _ := st.WasmResult("w"); return v }
	pol := audit.Policy{TrustAfter: 2, Floor: 0.01, TrustedShare: 1, QuarantineAfter: 3}
	challenge := func(start uint64, audited bool) {
		t.Helper()
		streak := st.NodeAudit("evil").Passed
		for n := range 256 {
			if chosen, _ := pol.Choose(seedN(byte(n)), "w", start, audit.Standing{Passed: streak, Streak: streak}, 1); chosen == audited {
				st.mustApply(t, Challenge{Time: t0, Seed: seedN(byte(n)), Items: st.Unchallenged(10)})
				return
			}
		}
		t.Fatal("no seed")
	}
	// Two honest chunks, audited while the node is new: trusted.
	for _, start := range []uint64{0, 100} {
		st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{chunk(start, "evil", truth[start])}})
		if v := value(); v.DoneItems != start {
			t.Fatalf("an unaudited wasm chunk counts: %+v", v)
		}
		challenge(start, true)
		st.mustApply(t, wasmAnswer(tasksFor(st, "evil")[0], "b"))
	}
	if v := value(); v.Value != "5" || v.DoneItems != 200 {
		t.Fatalf("after two audited chunks %+v", v)
	}
	// A wrong chunk sampled out counts, for now; the next wrong one is caught.
	st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{chunk(200, "evil", 0)}})
	challenge(200, false)
	if v := value(); v.Value != "0" {
		t.Fatalf("the sampled-out chunk does not count: %+v", v)
	}
	st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{chunk(300, "evil", 1)}})
	challenge(300, true)
	if ao := st.mustApply(t, wasmAnswer(tasksFor(st, "evil")[0], "b")).(*AuditOutcome); !ao.Mismatch {
		t.Fatalf("a wrong wasm value passed its audit: %+v", ao)
	}
	ao := st.mustApply(t, wasmAnswer(st.AuditTasks()[0], "c")).(*AuditOutcome)
	if !slices.Equal(ao.Failed, []string{"evil"}) || len(ao.Requeued) != 1 || ao.Requeued[0].Range != (Range{200, 300}) {
		t.Fatalf("dispute %+v", ao)
	}
	if v := value(); v.Value != "4" || v.DoneItems != 300 {
		t.Fatalf("after the failure %+v, want min(5, 6, 4) over 300 items", v)
	}
	// Honest nodes finish: the exact minimum.
	for _, start := range []uint64{200, 400} {
		st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{chunk(start, "b", truth[start])}})
		st.mustApply(t, Challenge{Time: t0, Seed: seedN(1), Items: st.Unchallenged(10)})
		st.mustApply(t, wasmAnswer(tasksFor(st, "b")[0], "c"))
	}
	if v := value(); v.Value != "4" || !v.Complete {
		t.Fatalf("final %+v", v)
	}
}
