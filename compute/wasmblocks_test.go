package compute

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hydra-compute/hydra/compute/audit"
)

// modulePayload is what a worker running a module with item value i·i (and, for concat, output
// "i;") commits to for items r of a job of items items: one block result per commitment block.
func modulePayload(t testing.TB, items uint64, red Reduce, r Range) []byte {
	t.Helper()
	ranges, err := WasmBlocks(items, r)
	if err != nil {
		t.Fatal(err)
	}
	blocks := make([]WasmBlock, len(ranges))
	for i, b := range ranges {
		blocks[i].Value = red.Identity()
		for x := b.Start; x < b.End; x++ {
			blocks[i].Value = red.Combine(blocks[i].Value, x*x)
			if red == ReduceConcat {
				blocks[i].Out = fmt.Appendf(blocks[i].Out, "%d;", x)
			}
		}
	}
	return EncodeWasmBlocksPayload(red, blocks)
}

// TestWasmBlocksIndependentOfChunking: blocks are aligned to item 0 and a job has at most
// WasmJobBlocks of them; a chunk's leaves are the same whether it was computed whole or as two
// chunks split at a block boundary, and its value and output are the reduction of its blocks'.
func TestWasmBlocksIndependentOfChunking(t *testing.T) {
	for _, c := range []struct{ items, size uint64 }{{1, 1}, {4096, 1}, {4097, 2}, {40960, 10}, {1e9, 244141}} {
		if got := WasmBlockItems(c.items); got != c.size {
			t.Errorf("%d items: blocks of %d, want %d", c.items, got, c.size)
		}
		all, err := WasmBlocks(c.items, Range{0, c.items})
		if err != nil || len(all) > WasmJobBlocks || all[len(all)-1].End != c.items {
			t.Errorf("%d items: %d blocks, %v", c.items, len(all), err)
		}
	}
	for _, red := range []Reduce{ReduceSum, ReduceMin, ReduceXor, ReduceConcat} {
		spec := JobSpec{Kind: KindWasm, Wasm: &WasmParams{Module: testModule, Items: 40960, Reduce: red}}
		whole, a, b := Range{95, 1003}, Range{95, 500}, Range{500, 1003}
		lw, vw, err := ChunkLeaves(spec, whole, modulePayload(t, 40960, red, whole))
		if err != nil {
			t.Fatal(err)
		}
		la, va, _ := ChunkLeaves(spec, a, modulePayload(t, 40960, red, a))
		lb, vb, _ := ChunkLeaves(spec, b, modulePayload(t, 40960, red, b))
		if len(lw) != 92 || !slices.Equal(lw, append(la, lb...)) || vw != red.Combine(va, vb) {
			t.Fatalf("%s: %d leaves, not those of its halves (%d, %d)", red, len(lw), len(la), len(lb))
		}
		if blocks, _ := ChunkBlocks(spec, whole); len(blocks) != len(lw) || blocks[0] != (Range{95, 100}) || blocks[91] != (Range{1000, 1003}) {
			t.Fatalf("%s: blocks %v", red, blocks)
		}
		v, out, err := DecodeWasmPayload(modulePayload(t, 40960, red, whole), red)
		_, outA, _ := DecodeWasmPayload(modulePayload(t, 40960, red, a), red)
		_, outB, _ := DecodeWasmPayload(modulePayload(t, 40960, red, b), red)
		if err != nil || v != vw || string(out) != string(outA)+string(outB) || (red == ReduceConcat) != (len(out) > 0) {
			t.Fatalf("%s: value %d output %.20q…: %v", red, v, out, err)
		}
	}
}

// TestWasmBlocksPayloadRejected: a payload whose blocks do not reduce to its value, do not add
// up to its output or do not match its range's blocks is refused; one without blocks (written
// before block commitments) is a single leaf.
func TestWasmBlocksPayloadRejected(t *testing.T) {
	w := &WasmParams{Module: testModule, Items: 40960, Reduce: ReduceSum}
	r := Range{0, 100}
	good := modulePayload(t, w.Items, ReduceSum, r)
	blocks, err := DecodeWasmBlocks(good, ReduceSum)
	if err != nil || len(blocks) != 10 {
		t.Fatal(len(blocks), err)
	}
	wrongTotal := append([]byte(nil), good...)
	wrongTotal[1] ^= 1
	concat := modulePayload(t, w.Items, ReduceConcat, r)
	for name, c := range map[string]struct {
		p    []byte
		red  Reduce
		want string
	}{
		"total":     {wrongTotal, ReduceSum, "do not reduce"},
		"truncated": {good[:len(good)-1], ReduceSum, "truncated"},
		"trailing":  {append(slices.Clone(good), 0), ReduceSum, "trailing"},
		"output":    {concat[:len(concat)-1], ReduceConcat, "output bytes"},
		"no blocks": {[]byte{wasmPayloadBlocks, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ReduceSum, "blocks in"},
		"too many":  {append([]byte{wasmPayloadBlocks, 0, 0, 0, 0, 0, 0, 0, 0}, 0xff, 0xff, 0xff, 0xff, 0x0f), ReduceSum, "blocks in"},
	} {
		if _, _, err := DecodeWasmPayload(c.p, c.red); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	if _, _, err := wasmLeaves(w, Range{0, 110}, good, true); err == nil || !strings.Contains(err.Error(), "has 11") {
		t.Errorf("10 blocks for a range of 11: %v", err)
	}
	legacy := EncodeWasmPayload(4950, nil)
	if l, v, err := wasmLeaves(w, r, legacy, true); err != nil || len(l) != 1 || v != 4950 || l[0] != audit.WasmLeaf(0, 100, legacy) {
		t.Errorf("a payload without blocks: %d leaves, %d, %v", len(l), v, err)
	}
}

// TestAuditWasmBlocks: an audit of a trusted node's WebAssembly chunk recomputes a share of its
// blocks, not the whole chunk, and passes when the blocks' values match.
func TestAuditWasmBlocks(t *testing.T) {
	st := newTestState(t)
	pol := audit.Policy{TrustAfter: 1, Floor: 1, TrustedShare: 0.25, QuarantineAfter: 3}
	st.mustApply(t, AuditPolicy{Policy: pol})
	const items = 40960 // blocks of 10 items
	spec := JobSpec{Kind: KindWasm, Wasm: &WasmParams{Module: testModule, Items: items, Reduce: ReduceSum}}
	st.mustApply(t, Submit{ID: "w", Time: t0, Spec: spec})
	var audited uint64
	for i, start := range []uint64{0, 1000} {
		r := Range{start, start + 1000}
		p := modulePayload(t, items, ReduceSum, r)
		root, err := Commitment(spec, r, p)
		if err != nil {
			t.Fatal(err)
		}
		st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{{Chunk: Chunk{Job: "w", Range: r}, Node: "n", Payload: p, Root: root}}})
		st.mustApply(t, Challenge{Time: t0, Seed: seedN(byte(i)), Items: st.Unchallenged(10)})
		tasks := tasksFor(st, "n")
		if len(tasks) != 1 {
			t.Fatalf("chunk %v: %d audits", r, len(tasks))
		}
		tk := tasks[0]
		var units uint64
		var payloads [][]byte
		for _, sp := range tk.Spans {
			if sp.Start%10 != 0 || sp.End%10 != 0 || sp.Start < r.Start || sp.End > r.End {
				t.Fatalf("span %v of chunk %v is not made of its blocks", sp, r)
			}
			units += sp.Len()
			payloads = append(payloads, modulePayload(t, items, ReduceSum, sp))
		}
		if i == 0 && units != 1000 || i == 1 && (units < 10 || units > 500) {
			t.Fatalf("chunk %d: its audit recomputes %d of 1000 items", i, units)
		}
		leaves, err := SpanLeaves(spec, tk.Spans, payloads)
		if err != nil {
			t.Fatal(err)
		}
		ao := st.mustApply(t, Audit{Time: t0, Job: "w", ID: tk.ID, Auditor: "b", Leaves: leaves}).(*AuditOutcome)
		if ao.Mismatch || len(ao.Passed) != 1 {
			t.Fatalf("chunk %d: %+v", i, ao)
		}
		audited += units
	}
	j, _ := st.Job("w")
	if j.AuditedUnits != audited || j.ClearedUnits != 2000 {
		t.Fatalf("audited %d (want %d), cleared %d", j.AuditedUnits, audited, j.ClearedUnits)
	}
	if v, _ := st.WasmResult("w"); v.Value != fmt.Sprint(uint64(1999*2000*3999/6)) {
		t.Fatalf("value %+v", v)
	}
}

func FuzzDecodeWasmPayload(f *testing.F) {
	for _, red := range []Reduce{ReduceSum, ReduceConcat} {
		f.Add(modulePayload(f, 40960, red, Range{5, 95}), red == ReduceConcat)
	}
	f.Add(EncodeWasmPayload(3, []byte("x")), true)
	f.Fuzz(func(t *testing.T, p []byte, concat bool) {
		red := ReduceSum
		if concat {
			red = ReduceConcat
		}
		w := &WasmParams{Module: testModule, Items: 40960, Reduce: red}
		v, out, err := DecodeWasmPayload(p, red)
		if err != nil {
			return
		}
		if blocks, err := DecodeWasmBlocks(p, red); err == nil {
			again := EncodeWasmBlocksPayload(red, blocks)
			if v2, out2, err := DecodeWasmPayload(again, red); err != nil || v2 != v || string(out2) != string(out) {
				t.Fatalf("re-encoded: %d %q %v, was %d %q", v2, out2, err, v, out)
			}
		}
		wasmLeaves(w, Range{5, 95}, p, false) // bounded and total
	})
}

// applyNoPanic applies cmd and turns a panic inside Apply into a test failure, so that a test
// of a hostile entry reports what it found instead of ending the test binary.
func applyNoPanic(t *testing.T, st testState, cmd any) (r any) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("apply %T panicked: %v", cmd, p)
		}
	}()
	return st.ApplyCommand(cmd, 0)
}

// wasmDispute submits a sum job of 40960 items (blocks of 10), has node "evil" commit items
// [0, 100) (10 leaves) with block 3's value set to wrong, and auditor "b" answer it honestly:
// the chunk is in dispute, its full recomputation the returned task.
func wasmDispute(t *testing.T, st testState, wrong uint64) (JobSpec, AuditTask) {
	t.Helper()
	const items = 40960
	spec := JobSpec{Kind: KindWasm, Wasm: &WasmParams{Module: testModule, Items: items, Reduce: ReduceSum}}
	st.mustApply(t, Submit{ID: "w", Time: t0, Spec: spec})
	r := Range{0, 100}
	blocks, err := DecodeWasmBlocks(modulePayload(t, items, ReduceSum, r), ReduceSum)
	if err != nil {
		t.Fatal(err)
	}
	blocks[3].Value = wrong
	p := EncodeWasmBlocksPayload(ReduceSum, blocks)
	root, err := Commitment(spec, r, p)
	if err != nil {
		t.Fatal(err)
	}
	st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{{Chunk: Chunk{Job: "w", Range: r}, Node: "evil", ComputeSeconds: 1, Payload: p, Root: root}}})
	st.mustApply(t, Challenge{Time: t0, Seed: seedN(1), Items: st.Unchallenged(10)})
	tk := tasksFor(st, "evil")[0]
	var payloads [][]byte
	for _, sp := range tk.Spans {
		payloads = append(payloads, modulePayload(t, items, ReduceSum, sp))
	}
	leaves, err := SpanLeaves(spec, tk.Spans, payloads)
	if err != nil {
		t.Fatal(err)
	}
	if ao := st.mustApply(t, Audit{Time: t0, Job: "w", ID: tk.ID, Auditor: "b", Leaves: leaves}).(*AuditOutcome); !ao.Mismatch {
		t.Fatalf("no dispute: %+v", ao)
	}
	tasks := st.AuditTasks()
	if len(tasks) != 1 || !tasks[0].Full {
		t.Fatalf("dispute tasks %+v", tasks)
	}
	return spec, tasks[0]
}

// TestAuditDisputeRefusesWrongLeafCount: a third node's full result in the single-value wasm
// format is one leaf whatever the range, while the disputed chunk committed to 10; comparing
// the auditor's blocks with it once indexed past its end and panicked Apply on every replica.
// The answer is refused, changes nothing, and an honest answer still settles the dispute.
func TestAuditDisputeRefusesWrongLeafCount(t *testing.T) {
	st := newTestState(t)
	spec, tk := wasmDispute(t, st, 1)
	p := EncodeWasmPayload(1, nil) // format 1: one leaf
	root, err := Commitment(spec, tk.Chunk, p)
	if err != nil {
		t.Fatal(err)
	}
	before := stateDigest(t, st.JobStore)
	r := applyNoPanic(t, st, Audit{Time: t0, Job: "w", ID: tk.ID, Auditor: "c", Payload: p, Root: root})
	if err, ok := r.(error); !ok || !strings.Contains(err.Error(), "leaves") {
		t.Fatalf("a one-leaf answer to a 10-leaf chunk: %v", r)
	}
	if after := stateDigest(t, st.JobStore); after != before {
		t.Fatalf("the refused answer changed the state:\n%s\n%s", before, after)
	}
	good := modulePayload(t, spec.Wasm.Items, ReduceSum, tk.Chunk)
	root, _ = Commitment(spec, tk.Chunk, good)
	ao := st.mustApply(t, Audit{Time: t0, Job: "w", ID: tk.ID, Auditor: "c", Payload: good, Root: root}).(*AuditOutcome)
	if !slices.Equal(ao.Failed, []string{"evil"}) {
		t.Fatalf("honest answer: %+v", ao)
	}
}

// TestDisputeReplacementKeepsPayloadAccounting: when the third node's result replaces the
// chunk's, the payload bytes the job and the store count (the disk cap's measure) follow the
// stored payload: deleting the job brings the total back to 0.
func TestDisputeReplacementKeepsPayloadAccounting(t *testing.T) {
	st := newTestState(t)
	spec, tk := wasmDispute(t, st, 1<<60) // a wrong value 8 bytes longer than the true one
	good := modulePayload(t, spec.Wasm.Items, ReduceSum, tk.Chunk)
	root, _ := Commitment(spec, tk.Chunk, good)
	st.mustApply(t, Audit{Time: t0, Job: "w", ID: tk.ID, Auditor: "c", Payload: good, Root: root})
	var stored int64
	st.mu.RLock()
	err := st.eachResult("w", func(rec StoredResult) error { stored += int64(len(rec.Payload)) + 16; return nil })
	st.mu.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	if j, _ := st.Job("w"); j.PayloadBytes != stored || stored != int64(len(good))+16 {
		t.Fatalf("job counts %d payload bytes, the store holds %d (want %d)", j.PayloadBytes, stored, len(good)+16)
	}
	st.mustApply(t, Delete{Job: "w"})
	if st.totalPayload != 0 {
		t.Fatalf("no job left, %d payload bytes counted", st.totalPayload)
	}
}

// TestWasmValueWithoutBlocksOnlyForOneBlock: a WebAssembly result without blocks (format 1) is
// one leaf whatever its range, so its audit recomputes the whole chunk; but an auditor computes
// the chunk's blocks and answers one leaf per block, which the Audit command refuses as the
// wrong count. Such a result over several blocks could never be audited and its job never
// finished: a worker sending them stalled every WebAssembly job for good, unchecked. The
// coordinator refuses it; over a single block it is the block's own leaf, and passes.
func TestWasmValueWithoutBlocksOnlyForOneBlock(t *testing.T) {
	st := newTestState(t)
	const items = 40960 // blocks of 10
	spec := JobSpec{Kind: KindWasm, Wasm: &WasmParams{Module: testModule, Items: items, Reduce: ReduceSum}}
	st.mustApply(t, Submit{ID: "w", Time: t0, Spec: spec})
	value := func(r Range) uint64 {
		v, _, err := DecodeWasmPayload(modulePayload(t, items, ReduceSum, r), ReduceSum)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	r := Range{0, 100}
	legacy := EncodeWasmPayload(value(r), nil) // the right value, without its ten blocks
	root, err := Commitment(spec, r, legacy)
	if err != nil {
		t.Fatal(err)
	}
	// Let into the log, its audit cannot be answered.
	st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{{Chunk: Chunk{Job: "w", Range: r}, Node: "n", Payload: legacy, Root: root}}})
	st.mustApply(t, Challenge{Time: t0, Seed: seedN(1), Items: st.Unchallenged(10)})
	tasks := tasksFor(st, "n")
	if len(tasks) != 1 {
		t.Fatalf("audits %+v", tasks)
	}
	leaves, err := SpanLeaves(spec, tasks[0].Spans, [][]byte{modulePayload(t, items, ReduceSum, tasks[0].Spans[0])})
	if err != nil {
		t.Fatal(err)
	}
	if res := applyNoPanic(t, st, Audit{Time: t0, Job: "w", ID: tasks[0].ID, Auditor: "b", Leaves: leaves}); res == nil {
		t.Fatal("an auditor's block leaves answered a one-leaf chunk")
	} else if _, isErr := res.(error); !isErr {
		t.Fatalf("audit answer: %+v", res)
	}
	// The coordinator does not let it in; a value without blocks for one block passes.
	if err := CheckCommitment(spec, r, legacy, root); err == nil {
		t.Fatal("a value without blocks for 10 blocks passed the coordinator's check")
	}
	for _, c := range []struct {
		r  Range
		ok bool
	}{{Range{20, 30}, true}, {Range{23, 27}, true}, {Range{25, 35}, false}} {
		p := EncodeWasmPayload(value(c.r), nil)
		root, err := Commitment(spec, c.r, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckCommitment(spec, c.r, p, root); (err == nil) != c.ok {
			t.Errorf("%v: %v, want passing %v", c.r, err, c.ok)
		}
	}
}
