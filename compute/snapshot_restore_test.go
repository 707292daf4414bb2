package compute

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// bigState is a state of n finished one-chunk π jobs, names at their limit, as at the largest
// max-jobs, plus every part fuzzSnapshot has (audits, a dispute, credibility, faults).
func bigState(t *testing.T, n int) []byte {
	st := newTestState(t)
	if err := st.Restore(bytes.NewReader(fuzzSnapshot(t))); err != nil {
		t.Fatal(err)
	}
	st.revs = nil // no view checks: thousands of jobs
	name := strings.Repeat("N", MaxJobName)
	for i := range n {
		id := fmt.Sprintf("%016x", i)
		st.mustApply(t, Submit{ID: id, Time: t0, Submitter: "node-1", Spec: JobSpec{Kind: KindPi, Name: name, Pi: &PiParams{Samples: 64, Seed: uint64(i)}}})
		st.mustApply(t, Results{Time: t0, Items: []ChunkResult{piChunk(id, uint64(i), Range{0, 64}, "12D3KooWN6aQVRwWFyPDQJMEiQ3DsXwMszgGxkXzyjWXuu5nNrE5")}})
	}
	var b bytes.Buffer
	if err := st.Snapshot(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// canonical rewrites a snapshot with its jobs, credibility and records in a fixed order: a
// snapshot lists them in the order of the state's maps.
func canonical(t *testing.T, b []byte) []byte {
	h, recs := splitSnapshot(t, b)
	slices.SortFunc(h.Jobs, func(a, b snapJob) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(h.Creds, func(a, b snapCred) int { return strings.Compare(a.Node, b.Node) })
	slices.SortFunc(recs, func(a, b StoredResult) int {
		return cmp.Or(strings.Compare(a.Job, b.Job), cmp.Compare(a.Range.Start, b.Range.Start))
	})
	return joinSnapshot(t, h, recs)
}

// TestSnapshotRoundTripThousands: a state of thousands of jobs, with audits, credibility and
// faults, snapshotted, restored and snapshotted again gives the same bytes (in a fixed order of
// its jobs) and the same views.
func TestSnapshotRoundTripThousands(t *testing.T) {
	snap := bigState(t, 3_000)
	st := newTestState(t)
	if err := st.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := st.Snapshot(&again); err != nil {
		t.Fatal(err)
	}
	a, b := canonical(t, snap), canonical(t, again.Bytes())
	if !bytes.Equal(a, b) {
		t.Fatalf("the snapshot of the restored state differs: %d bytes, then %d", len(a), len(b))
	}
	other := newTestState(t)
	if err := other.Restore(bytes.NewReader(again.Bytes())); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st.Jobs(), other.Jobs()) || len(st.Jobs()) != 3_000+len(splitJobs(t, fuzzSnapshot(t))) {
		t.Fatalf("the jobs differ after a second round trip (%d jobs)", len(other.Jobs()))
	}
}

func splitJobs(t *testing.T, b []byte) []snapJob {
	h, _ := splitSnapshot(t, b)
	return h.Jobs
}

// sampler is the snapshot being restored: it hands it out in small reads and, at each read of
// the header's bytes, records how much more live heap (after a collection) there is than at the
// start, with the offset read up to.
type sampler struct {
	b             []byte
	off           int
	base          int64
	hdrStart, end int // the header's bytes
	samples       []heapSample
}

type heapSample struct {
	off  int
	heap int64
}

func (s *sampler) Read(p []byte) (int, error) {
	if s.off >= len(s.b) {
		return 0, fmt.Errorf("read past the snapshot")
	}
	n := copy(p[:min(len(p), 32<<10)], s.b[s.off:])
	s.off += n
	if s.off-n < s.end {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		s.samples = append(s.samples, heapSample{off: min(s.off, s.end) - s.hdrStart, heap: int64(m.HeapAlloc) - s.base})
	}
	return n, nil
}

// TestRestoreHeaderStreamed: restoring reads the jobs' JSON header (76 MB at the largest
// max-jobs) a job at a time. It read the header whole, then unmarshalled it into every job's
// snapJob before building the jobs, and held all three (550–750 MiB more at the peak of a
// restore at max-jobs). At each read of the header, the live heap beyond the jobs built so far
// (the state restored, in proportion to the header read) must stay under a quarter of the
// header: reading it whole held all of it from the first read on.
func TestRestoreHeaderStreamed(t *testing.T) {
	snap := bigState(t, 5_000)
	n, k := binary.Uvarint(snap[len(snapMagic)+1:])
	hdrStart := len(snapMagic) + 1 + k
	size := int64(n)

	st := newTestState(t)
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	s := &sampler{b: snap, base: int64(m.HeapAlloc), hdrStart: hdrStart, end: hdrStart + int(n)}
	if err := st.Restore(s); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&m)
	state := int64(m.HeapAlloc) - s.base // the restored state
	runtime.KeepAlive(st)
	if len(s.samples) < 10 {
		t.Fatalf("%d reads of the header", len(s.samples))
	}
	most := int64(math.MinInt64)
	for _, x := range s.samples {
		most = max(most, x.heap-state*int64(x.off)/size)
	}
	t.Logf("header %d bytes, state %d bytes; at most %d bytes of live heap beyond the jobs built while reading the header", size, state, most)
	if most > size/4 {
		t.Fatalf("restoring held %d bytes beyond the jobs built so far, the header is %d bytes: it was read whole", most, size)
	}
}

// reorder rewrites a header's top-level fields in the given order of their names (the others
// after them), with the jobs field's name as jobsName.
func reorder(t *testing.T, hdr []byte, jobsName string, names ...string) []byte {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, k := range names {
		if _, ok := m[k]; ok {
			keys = append(keys, k)
		}
	}
	for k := range m {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	b := []byte("{ ")
	for i, k := range keys {
		if i > 0 {
			b = append(b, " ,\n"...)
		}
		name := k
		if k == "jobs" {
			name = jobsName
		}
		b = fmt.Appendf(b, "%q : %s", name, m[k])
	}
	return append(b, " }\t\n"...)
}

// withHeader is snap with its header replaced by hdr.
func withHeader(t testing.TB, snap, hdr []byte) []byte {
	n, k := binary.Uvarint(snap[len(snapMagic)+1:])
	rest := snap[len(snapMagic)+1+k+int(n):]
	out := append([]byte(nil), snap[:len(snapMagic)+1]...)
	out = binary.AppendUvarint(out, uint64(len(hdr)))
	return append(append(out, hdr...), rest...)
}

func headerOf(t testing.TB, snap []byte) []byte {
	br := bufio.NewReader(bytes.NewReader(snap[len(snapMagic)+1:]))
	hdr, err := readBytes(br, maxSnapHeader)
	if err != nil {
		t.Fatal(err)
	}
	return hdr
}

// TestRestoreHeaderAnyOrder: a header restores to the same state whatever the order of its
// fields (json.Unmarshal took any; the checks against seq and audit_seq, which this build writes
// after the jobs, wait for them), the case of the jobs field's name, white space and unknown
// fields.
func TestRestoreHeaderAnyOrder(t *testing.T) {
	snap := fuzzSnapshot(t)
	hdr := headerOf(t, snap)
	want := canonical(t, snap)
	fields := []string{"last_index", "seq", "total_payload", "jobs", "creds", "audit_seq", "audit_policy"}
	for i := range fields {
		order := append(slices.Clone(fields[i:]), fields[:i]...)
		for _, order := range [][]string{order, slicesBackward(order)} {
			for _, jobs := range []string{"jobs", "JOBS", "Jobs"} {
				h := reorder(t, hdr, jobs, order...)
				if i == 0 {
					h = append(h[:len(h)-4], `, "unknown": [1, {"jobs": 2}] }`...)
				}
				st := newTestState(t)
				if err := st.Restore(bytes.NewReader(withHeader(t, snap, h))); err != nil {
					t.Fatalf("header %s: %v", h[:min(len(h), 80)], err)
				}
				var out bytes.Buffer
				if err := st.Snapshot(&out); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(canonical(t, out.Bytes()), want) {
					t.Fatalf("fields in the order %v (jobs as %q): another state", order, jobs)
				}
			}
		}
	}
}

func slicesBackward(s []string) []string {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}
