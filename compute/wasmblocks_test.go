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
	if _, _, err := wasmLeaves(w, Range{0, 110}, good); err == nil || !strings.Contains(err.Error(), "has 11") {
		t.Errorf("10 blocks for a range of 11: %v", err)
	}
	legacy := EncodeWasmPayload(4950, nil)
	if l, v, err := wasmLeaves(w, r, legacy); err != nil || len(l) != 1 || v != 4950 || l[0] != audit.WasmLeaf(0, 100, legacy) {
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
		wasmLeaves(w, Range{5, 95}, p) // bounded and total
	})
}
