package compute

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

// heapWatch is a writer that discards what it gets and records the most
// live heap (after a collection) it saw above base at any write.
type heapWatch struct {
	base, most int64
}

func (h *heapWatch) Write(p []byte) (int, error) {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	h.most = max(h.most, int64(m.HeapAlloc)-h.base)
	return len(p), nil
}

// TestSnapshotHeaderStreamed: the jobs' JSON header (76 MB at the largest
// max-jobs) is written a job at a time, never whole in memory (json.Marshal
// of it held the header and its buffer, several hundred MB at the peak of a
// snapshot at max-jobs), and the bytes are exactly what marshalling it whole
// gives, so restore and earlier builds read it as before.
func TestSnapshotHeaderStreamed(t *testing.T) {
	st := newTestState(t)
	st.revs = nil // no view checks: 5,000 jobs
	name := strings.Repeat("N", MaxJobName)
	for i := range 5_000 {
		id := fmt.Sprintf("%016x", i)
		st.mustApply(t, Submit{ID: id, Time: t0, Submitter: "node-1", Spec: JobSpec{Kind: KindPi, Name: name, Pi: &PiParams{Samples: 64, Seed: uint64(i)}}})
		st.mustApply(t, Results{Time: t0, Items: []ChunkResult{piChunk(id, uint64(i), Range{0, 64}, "12D3KooWN6aQVRwWFyPDQJMEiQ3DsXwMszgGxkXzyjWXuu5nNrE5")}})
	}

	snap, err := st.captureSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	whole, err := json.Marshal(snap.h)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := snap.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	br := bufio.NewReader(&out)
	if _, err := io.CopyN(io.Discard, br, int64(len(snapMagic)+1)); err != nil {
		t.Fatal(err)
	}
	hdr, err := readBytes(br, maxSnapHeader)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hdr, whole) {
		t.Fatalf("the written header (%d bytes) differs from the marshalled one (%d bytes)", len(hdr), len(whole))
	}
	out, whole, hdr = bytes.Buffer{}, nil, nil

	snap, err = st.captureSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	w := &heapWatch{base: int64(m.HeapAlloc)}
	if _, err := snap.WriteTo(w); err != nil {
		t.Fatal(err)
	}
	size := int64(len(hdrOf(t, snap)))
	t.Logf("header %d bytes; at most %d bytes more live heap while writing", size, w.most)
	if w.most > size/4 {
		t.Fatalf("writing the snapshot held %d bytes more heap, the header is %d bytes: it was buffered whole", w.most, size)
	}
}

func hdrOf(t *testing.T, snap *JobSnapshot) []byte {
	t.Helper()
	b, err := json.Marshal(snap.h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
