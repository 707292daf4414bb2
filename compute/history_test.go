package compute

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

func TestChunkHistoryRecordsAcceptedChunks(t *testing.T) {
	st := newTestState(t)
	st.mustApply(t, Submit{ID: "pi", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 1000, Seed: 1}}})
	t1, t2 := t0.Add(time.Second), t0.Add(2*time.Second)
	st.mustApply(t, Results{Time: t1, Items: []ChunkResult{piChunk("pi", 1, Range{0, 100}, "a"), piChunk("pi", 1, Range{100, 300}, "b")}})
	// A duplicate (rejected) is not recorded; the next accepted one is.
	st.mustApply(t, Results{Time: t2, Items: []ChunkResult{piChunk("pi", 1, Range{0, 100}, "b"), piChunk("pi", 1, Range{300, 400}, "a")}})
	p, err := st.Chunks("pi", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []ChunkRecord{
		{Seq: 0, Range: Range{0, 100}, Hits: PiHits(1, 0, 100), Node: "a", ComputeSeconds: 0.5, Committed: t1},
		{Seq: 1, Range: Range{100, 300}, Hits: PiHits(1, 100, 300), Node: "b", ComputeSeconds: 0.5, Committed: t1},
		{Seq: 2, Range: Range{300, 400}, Hits: PiHits(1, 300, 400), Node: "a", ComputeSeconds: 0.5, Committed: t2},
	}
	if p.First != 0 || p.Next != 3 || !reflect.DeepEqual(p.Records, want) {
		t.Fatalf("chunks: %+v", p)
	}
	p, _ = st.Chunks("pi", 2, 10)
	if len(p.Records) != 1 || p.Records[0].Seq != 2 {
		t.Fatalf("from 2: %+v", p)
	}
	p, _ = st.Chunks("pi", 1, 1)
	if len(p.Records) != 1 || p.Records[0].Seq != 1 {
		t.Fatalf("from 1, max 1: %+v", p)
	}
	for _, from := range []uint64{3, 99, ^uint64(0)} {
		if p, _ := st.Chunks("pi", from, 10); len(p.Records) != 0 || p.Next != 3 {
			t.Fatalf("from %d: %+v", from, p)
		}
	}
	if p, _ := st.Chunks("pi", 0, -1); len(p.Records) != 0 {
		t.Fatalf("negative max: %+v", p)
	}
	if _, err := st.Chunks("nope", 0, 1); err == nil {
		t.Fatal("unknown job: no error")
	}
}

func TestChunkHistoryIsBounded(t *testing.T) {
	var h chunkHistory
	n := MaxChunkHistory*2 + 5
	for i := range n {
		h.add(Range{uint64(i), uint64(i + 1)}, uint64(i%2), []string{"a", "b"}[i%2], 1, t0)
	}
	if len(h.recs) > MaxChunkHistory || h.next() != uint64(n) || h.recs[0].start != h.first {
		t.Fatalf("len %d first %d next %d", len(h.recs), h.first, h.next())
	}
	// Round trip through the snapshot encoding.
	got, err := decodeHistory(h.encode(), Range{0, uint64(n)})
	if err != nil {
		t.Fatal(err)
	}
	if got.first != h.first || !reflect.DeepEqual(got.recs, h.recs) || !reflect.DeepEqual(got.nodes, h.nodes) {
		t.Fatal("history differs after a round trip")
	}
	// A record outside the job's range is refused.
	if _, err := decodeHistory(h.encode(), Range{0, 10}); err == nil {
		t.Fatal("out-of-range record accepted")
	}
}

func TestChunkHistorySurvivesSnapshotAndReadsVersion1(t *testing.T) {
	st := newTestState(t)
	st.mustApply(t, Submit{ID: "pi", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 1000, Seed: 1}}})
	for i := range 10 {
		st.mustApply(t, Results{Time: t0.Add(time.Duration(i) * time.Second), Items: []ChunkResult{piChunk("pi", 1, Range{uint64(i * 10), uint64(i*10 + 10)}, "n")}})
	}
	var snap bytes.Buffer
	if err := st.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	r := newTestState(t)
	if err := r.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	a, _ := st.Chunks("pi", 0, 100)
	b, _ := r.Chunks("pi", 0, 100)
	if !reflect.DeepEqual(a, b) || len(a.Records) != 10 {
		t.Fatalf("history after restore:\n%+v\n%+v", a, b)
	}
	// A version-1 snapshot (no histories) still restores, with an empty history.
	st1 := newTestState(t)
	st1.mustApply(t, Submit{ID: "q", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 10, Seed: 1}}})
	snap.Reset()
	st1.Snapshot(&snap)
	v1 := snap.Bytes()
	v1[len(snapMagic)] = 1
	if err := r.Restore(bytes.NewReader(v1)); err != nil {
		t.Fatal(err)
	}
	if p, err := r.Chunks("q", 0, 10); err != nil || p.Next != 0 {
		t.Fatalf("v1: %+v %v", p, err)
	}
}

func FuzzDecodeHistory(f *testing.F) {
	var h chunkHistory
	h.add(Range{0, 5}, 3, "a", 0.25, t0)
	h.add(Range{5, 9}, 0, "b", 1, t0)
	f.Add(h.encode())
	f.Add([]byte{1, 0, 1, 1, 'a', 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeHistory(b, Range{0, 100})
		if err != nil {
			return
		}
		if len(got.recs) > MaxChunkHistory {
			t.Fatal("too many records")
		}
		for _, r := range got.recs {
			if int(r.node) >= len(got.nodes) {
				t.Fatal("bad node index")
			}
		}
	})
}
