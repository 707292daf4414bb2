package child

import (
	"context"
	"slices"
	"testing"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/audit"
)

// TestSpansRunAsOneTask: a π task of disjoint spans (a node's audits of one job) comes back as
// one result with a part per span, each exactly what a task of that span alone returns (its
// commitment blocks' hits, and its root); spans out of order are refused before the child sees
// them, and parts that do not match a task's spans are refused.
func TestSpansRunAsOneTask(t *testing.T) {
	r := startRunner(t, "child", 1, 0)
	spec := piSpec(1<<34, 5)
	spans := []compute.Range{
		{Start: 1 << 16, End: 2 << 16},
		{Start: 7 << 16, End: 9 << 16},
		{Start: audit.PiBlock - 100, End: audit.PiBlock + 100}, // across a commitment block
		{Start: 3 * audit.PiBlock, End: 4 * audit.PiBlock},
	}
	cover := compute.Range{Start: spans[0].Start, End: spans[len(spans)-1].End}
	res, err := r.Run(context.Background(), Chunk{ID: 1, Spec: spec, Range: cover, Spans: spans}, nil)
	if err != nil {
		t.Fatal(err)
	}
	parts := append([]Part{{Done: res.Done, Payload: res.Payload, Root: res.Root}}, res.Also...)
	if len(parts) != len(spans) {
		t.Fatalf("%d parts for %d spans", len(parts), len(spans))
	}
	for i, p := range parts {
		if p.Done != spans[i] {
			t.Fatalf("part %d: %s, want %s", i, p.Done, spans[i])
		}
		blocks, _, err := compute.DecodePiBlocks(p.Payload, p.Done)
		if err != nil {
			t.Fatal(err)
		}
		if ref, _ := compute.PiBlocksHits(5, p.Done); !slices.Equal(blocks, ref) {
			t.Fatalf("span %s: block hits %v, want %v", p.Done, blocks, ref)
		}
		if root, err := compute.Commitment(spec, p.Done, p.Payload); err != nil || root != p.Root {
			t.Fatalf("span %s: root %x, want %x (%v)", p.Done, p.Root, root, err)
		}
	}
	if _, err := r.Run(context.Background(), Chunk{ID: 2, Spec: spec, Range: cover, Spans: []compute.Range{spans[1], spans[0]}}, nil); err == nil {
		t.Fatal("spans out of order were run")
	}
}

// TestPartsFit: a result's parts must be a prefix of the task's spans, or consecutive for a task
// without spans.
func TestPartsFit(t *testing.T) {
	sp := []compute.Range{{Start: 0, End: 2}, {Start: 5, End: 9}}
	ph := func(rs ...compute.Range) []partHead {
		var out []partHead
		for _, r := range rs {
			out = append(out, partHead{Range: r})
		}
		return out
	}
	for name, c := range map[string]struct {
		t     Chunk
		parts []partHead
		ok    bool
	}{
		"spans all":        {Chunk{Spans: sp}, ph(sp...), true},
		"spans prefix":     {Chunk{Spans: sp}, ph(sp[0]), true},
		"spans none":       {Chunk{Spans: sp}, nil, true},
		"spans other":      {Chunk{Spans: sp}, ph(sp[0], compute.Range{Start: 5, End: 8}), false},
		"spans too many":   {Chunk{Spans: sp[:1]}, ph(sp...), false},
		"chunks follow on": {Chunk{}, ph(compute.Range{Start: 0, End: 2}, compute.Range{Start: 2, End: 4}), true},
		"chunks gap":       {Chunk{}, ph(sp...), false},
	} {
		if err := partsFit(c.t, c.parts); (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok %v", name, err, c.ok)
		}
	}
}
