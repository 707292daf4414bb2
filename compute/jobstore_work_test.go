package compute

import (
	"reflect"
	"testing"
)

// TestNodeWorkSumsEveryJob: NodeWork sums each node's contribution over every job, finished or
// running, and forgets a deleted job's share: what the page shows as a node's work done (it
// summed the listed jobs' views, the newest 200 only).
func TestNodeWorkSumsEveryJob(t *testing.T) {
	st := newTestState(t)
	if w := st.NodeWork(); len(w) != 0 {
		t.Fatalf("an empty state's work: %+v", w)
	}
	st.mustApply(t, Submit{ID: "p1", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 10_000, Seed: 7}}})
	st.mustApply(t, Submit{ID: "p2", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 10_000, Seed: 8}}})
	st.mustApply(t, Results{Time: t0, Items: []ChunkResult{
		piChunk("p1", 7, Range{0, 3000}, "a"),
		piChunk("p1", 7, Range{3000, 10_000}, "b"), // p1 done
		piChunk("p2", 8, Range{0, 1000}, "a"),      // p2 running
	}})
	want := []NodeContribution{
		{Node: "a", Units: 4000, Chunks: 2, ComputeSeconds: 1},
		{Node: "b", Units: 7000, Chunks: 1, ComputeSeconds: 0.5},
	}
	if w := st.NodeWork(); !reflect.DeepEqual(w, want) {
		t.Fatalf("work %+v, want %+v", w, want)
	}
	st.mustApply(t, Delete{Job: "p1"})
	want = []NodeContribution{{Node: "a", Units: 1000, Chunks: 1, ComputeSeconds: 0.5}}
	if w := st.NodeWork(); !reflect.DeepEqual(w, want) {
		t.Fatalf("after p1 was deleted: work %+v, want %+v", w, want)
	}
}
