package compute

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

type testState struct {
	*JobStore
	revs map[string]jobRev // what checkRevs saw last (nil: no check)
}

// jobRev is a job's view (as JSON) and its head's revision.
type jobRev struct {
	view string
	rev  uint64
}

func newTestState(tb testing.TB) testState {
	tb.Helper()
	s := NewJobStore(NewMemResults())
	tb.Cleanup(func() { s.Close() })
	return testState{JobStore: s, revs: map[string]jobRev{}}
}

// mustApply applies cmd, fails on an error, and checks the jobs' revisions (checkRevs): every
// command of every test of the package so checks JobHead.Rev against the views.
func (s testState) mustApply(tb testing.TB, cmd any) any {
	tb.Helper()
	r := s.ApplyCommand(cmd, 0)
	if err, ok := r.(error); ok {
		tb.Fatalf("apply %T: %v", cmd, err)
	}
	s.checkRevs(tb, cmd)
	return r
}

// checkRevs checks that a job's head revision (JobHead.Rev) changed exactly when its view did
// since the last check: the event stream reads a job's view only when its revision changed.
func (s testState) checkRevs(tb testing.TB, cmd any) {
	tb.Helper()
	if s.revs == nil {
		return
	}
	views := map[string]string{}
	for _, j := range s.Jobs() {
		b, err := json.Marshal(j)
		if err != nil {
			tb.Fatal(err)
		}
		views[j.ID] = string(b)
	}
	for _, h := range s.JobHeads() {
		now, was := jobRev{view: views[h.ID], rev: h.Rev}, s.revs[h.ID]
		if was.view != "" && (now.view != was.view) != (now.rev != was.rev) {
			tb.Fatalf("after %T, job %s: view changed %v, revision changed %v\nwas %s\nnow %s", cmd, h.ID,
				now.view != was.view, now.rev != was.rev, was.view, now.view)
		}
		s.revs[h.ID] = now
	}
}

func piChunk(job string, seed uint64, r Range, node string) ChunkResult {
	return ChunkResult{Chunk: Chunk{Job: job, Range: r}, Node: node, ComputeSeconds: 0.5, Payload: EncodePiPayload(PiHits(seed, r.Start, r.End))}
}

func TestResultsNeverCountedTwice(t *testing.T) {
	st := newTestState(t)
	st.mustApply(t, Submit{ID: "pi", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 10_000, Seed: 7}}})
	out := st.mustApply(t, Results{Time: t0, Items: []ChunkResult{
		piChunk("pi", 7, Range{0, 3000}, "a"),
		piChunk("pi", 7, Range{0, 3000}, "b"),     // duplicate in the same batch
		piChunk("pi", 7, Range{2000, 4000}, "b"),  // overlaps the first
		piChunk("pi", 7, Range{3000, 5000}, "b"),  // adjacent: fine
		piChunk("pi", 7, Range{9000, 10001}, "c"), // past the end
		piChunk("nope", 7, Range{0, 1}, "c"),      // unknown job
	}}).(*ResultsOutcome)
	if out.Accepted != 2 || len(out.Rejected) != 4 {
		t.Fatalf("accepted %d rejected %+v", out.Accepted, out.Rejected)
	}
	// A resubmission after a leader change: the same chunks again, and an overlapping one.
	out = st.mustApply(t, Results{Time: t0, Items: []ChunkResult{
		piChunk("pi", 7, Range{0, 3000}, "a"),
		piChunk("pi", 7, Range{4999, 6000}, "a"),
		piChunk("pi", 7, Range{5000, 10_000}, "c"),
	}}).(*ResultsOutcome)
	if out.Accepted != 1 || len(out.Finished) != 1 || out.Finished[0] != "pi" {
		t.Fatalf("second batch: %+v", out)
	}
	res, err := st.PiResult("pi")
	if err != nil {
		t.Fatal(err)
	}
	if want := PiHits(7, 0, 10_000); res.Hits != want || res.Samples != 10_000 {
		t.Fatalf("hits %d samples %d, want %d 10000", res.Hits, res.Samples, want)
	}
	j, _ := st.Job("pi")
	if j.State != StateDone || j.DoneUnits != 10_000 {
		t.Fatalf("job %+v", j)
	}
	units := map[string]uint64{}
	for _, n := range j.Nodes {
		units[n.Node] = n.Units
	}
	if !reflect.DeepEqual(units, map[string]uint64{"a": 3000, "b": 2000, "c": 5000}) {
		t.Fatalf("contributions %v", units)
	}
	// A done job accepts nothing more.
	out = st.mustApply(t, Results{Time: t0, Items: []ChunkResult{piChunk("pi", 7, Range{0, 1}, "a")}}).(*ResultsOutcome)
	if out.Accepted != 0 {
		t.Fatal("result accepted for a finished job")
	}
}

func TestBadPayloadRejected(t *testing.T) {
	st := newTestState(t)
	st.mustApply(t, Submit{ID: "m", Time: t0, Spec: JobSpec{Kind: KindMandelbrot, Mandel: &MandelParams{Width: 8, Height: 4, Span: 3, MaxIter: 50}}})
	out := st.mustApply(t, Results{Time: t0, Items: []ChunkResult{
		{Chunk: Chunk{Job: "m", Range: Range{0, 1}}, Node: "a", Payload: EncodeMandelPayload(make([]uint32, 7))},                 // short row
		{Chunk: Chunk{Job: "m", Range: Range{0, 1}}, Node: "a", Payload: EncodeMandelPayload([]uint32{51, 0, 0, 0, 0, 0, 0, 0})}, // > max_iter
		{Chunk: Chunk{Job: "m", Range: Range{0, 1}}, Node: "a", Payload: []byte{1, 2, 3}},
		{Chunk: Chunk{Job: "m", Range: Range{0, 1}}, Node: "a", ComputeSeconds: -1, Payload: EncodeMandelPayload(make([]uint32, 8))},
	}}).(*ResultsOutcome)
	if out.Accepted != 0 || len(out.Rejected) != 4 {
		t.Fatalf("%+v", out)
	}
	if j, _ := st.Job("m"); j.DoneUnits != 0 || j.State != StateQueued {
		t.Fatalf("state changed: %+v", j)
	}
}

func TestLifecycleAndErrors(t *testing.T) {
	st := newTestState(t)
	spec := JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 100, Seed: 1}}
	st.mustApply(t, Submit{ID: "a", Time: t0, Spec: spec})
	if err, _ := st.ApplyCommand(Submit{ID: "a", Time: t0, Spec: spec}, 0).(error); !errors.Is(err, ErrJobExists) {
		t.Fatalf("duplicate submit: %v", err)
	}
	bad := JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 0}}
	if err, _ := st.ApplyCommand(Submit{ID: "b", Time: t0, Spec: bad}, 0).(error); err == nil {
		t.Fatal("invalid spec accepted")
	}
	if j, _ := st.Job("a"); j.State != StateQueued {
		t.Fatalf("state %s", j.State)
	}
	st.mustApply(t, Started{Job: "a", Time: t0.Add(time.Second)})
	if j, _ := st.Job("a"); j.State != StateRunning || !j.StartedAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("after started: %+v", j)
	}
	st.mustApply(t, Cancel{Job: "a", Time: t0.Add(2 * time.Second)})
	out := st.mustApply(t, Results{Time: t0, Items: []ChunkResult{piChunk("a", 1, Range{0, 100}, "n")}}).(*ResultsOutcome)
	if out.Accepted != 0 {
		t.Fatal("result accepted for a cancelled job")
	}
	if p, _ := st.Pending("a"); len(p) != 0 {
		t.Fatalf("cancelled job has pending work %v", p)
	}
	st.mustApply(t, Delete{Job: "a"})
	if _, ok := st.Job("a"); ok {
		t.Fatal("deleted job still there")
	}
	// Replayed log index is refused.
	st.ApplyCommand(Submit{ID: "c", Time: t0, Spec: spec}, 10)
	if err, _ := st.ApplyCommand(Submit{ID: "d", Time: t0, Spec: spec}, 10).(error); !errors.Is(err, ErrStaleIndex) {
		t.Fatalf("stale index: %v", err)
	}
}

// TestEvictRetentionAndDiskCap: Evict drops the finished jobs past the retention, then the oldest
// finished ones over the disk cap, never an unfinished one; Evictable says beforehand, every time,
// whether it will drop anything (the leader proposes an Evict only then).
func TestEvictRetentionAndDiskCap(t *testing.T) {
	st := newTestState(t)
	for i, id := range []string{"old", "mid", "new", "live"} {
		st.mustApply(t, Submit{ID: id, Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 10, Seed: 1}}})
		r := Range{0, 10}
		if id == "live" {
			r = Range{0, 5} // running, with a stored payload
		}
		st.mustApply(t, Results{Time: t0.Add(time.Duration(i) * time.Hour), Items: []ChunkResult{piChunk(id, 1, r, "n")}})
	}
	jobs := func() int {
		n := 0
		for _, id := range []string{"old", "mid", "new", "live"} {
			if _, ok := st.Job(id); ok {
				n++
			}
		}
		return n
	}
	evict := func(c Evict, want bool) {
		t.Helper()
		if got := st.Evictable(c); got != want {
			t.Fatalf("Evictable(%+v) = %v, want %v", c, got, want)
		}
		before := jobs()
		st.mustApply(t, c)
		if dropped := jobs() < before; dropped != want {
			t.Fatalf("Evict(%+v) dropped a job: %v; Evictable said %v", c, dropped, want)
		}
	}
	evict(Evict{Now: t0.Add(48 * time.Hour)}, false) // no retention, no cap: nothing
	retain := Evict{Now: t0.Add(24*time.Hour + 30*time.Minute), Retention: 24 * time.Hour}
	evict(retain, true)
	if _, ok := st.Job("old"); ok {
		t.Fatal("job past retention kept")
	}
	if _, ok := st.Job("mid"); !ok {
		t.Fatal("job within retention evicted")
	}
	evict(retain, false) // the same clock again: nothing left to drop
	j, _ := st.Job("new")
	l, _ := st.Job("live")
	evict(Evict{Now: t0, DiskCap: j.PayloadBytes + l.PayloadBytes}, true)
	if _, ok := st.Job("mid"); ok {
		t.Fatal("oldest finished job kept over the cap")
	}
	if _, ok := st.Job("new"); !ok {
		t.Fatal("evicted more than needed")
	}
	evict(Evict{Now: t0, DiskCap: j.PayloadBytes + l.PayloadBytes}, false) // within the cap now
	evict(Evict{Now: t0, DiskCap: 1}, true)                                // drops "new"
	evict(Evict{Now: t0, DiskCap: 1}, false)                               // over the cap with only a running job
	if _, ok := st.Job("live"); !ok {
		t.Fatal("unfinished job evicted")
	}
}

// TestSnapshotRestoreReplay: a state built by a random sequence of commands, snapshotted midway,
// restored elsewhere and fed the rest of the log, equals the original — views, pending ranges
// and stored images alike. Replaying the whole log into a fresh state gives it too.
func TestSnapshotRestoreReplay(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	mp := MandelParams{Width: 24, Height: 40, CenterX: -0.5, Span: 3, MaxIter: 200}
	img := make([]uint32, mp.Width*mp.Height)
	if err := MandelRows(mp, 0, mp.Height, img); err != nil {
		t.Fatal(err)
	}
	var log []any
	log = append(log,
		Submit{ID: "pi", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 100_000, Seed: 3}}},
		Submit{ID: "m", Time: t0, Spec: JobSpec{Kind: KindMandelbrot, Mandel: &mp}},
		Started{Job: "pi", Time: t0},
	)
	for i := range 60 {
		var items []ChunkResult
		for range 1 + rng.IntN(4) {
			if rng.IntN(2) == 0 {
				a := uint64(rng.IntN(100_000))
				items = append(items, piChunk("pi", 3, Range{a, min(a+uint64(1+rng.IntN(9000)), 100_000)}, []string{"x", "y", "z"}[rng.IntN(3)]))
			} else {
				a := rng.IntN(mp.Height)
				b := min(a+1+rng.IntN(6), mp.Height)
				items = append(items, ChunkResult{Chunk: Chunk{Job: "m", Range: Range{uint64(a), uint64(b)}}, Node: "x", ComputeSeconds: 0.1,
					Payload: EncodeMandelPayload(img[a*mp.Width : b*mp.Width])})
			}
		}
		log = append(log, Results{Time: t0.Add(time.Duration(i) * time.Second), Items: items})
	}
	apply := func(st testState, cmds []any, base int) {
		for i, c := range cmds {
			st.ApplyCommand(c, uint64(base+i+1))
		}
	}
	orig := newTestState(t)
	half := len(log) / 2
	apply(orig, log[:half], 0)
	var snap bytes.Buffer
	if err := orig.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	apply(orig, log[half:], half)

	restored := newTestState(t)
	restored.mustApply(t, Submit{ID: "junk", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 1}}}) // replaced by Restore
	if err := restored.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	if restored.LastIndex() != uint64(half) {
		t.Fatalf("restored last index %d, want %d", restored.LastIndex(), half)
	}
	apply(restored, log[half:], half)
	replayed := newTestState(t)
	apply(replayed, log, 0)

	for name, other := range map[string]testState{"restored": restored, "replayed": replayed} {
		assertSameState(t, name, orig, other)
	}
	// The accepted Mandelbrot rows are exactly the whole-image rows.
	got, err := orig.MandelImage("m")
	if err != nil {
		t.Fatal(err)
	}
	acc, _ := orig.Accepted("m")
	for _, r := range acc {
		for i := int(r.Start) * mp.Width; i < int(r.End)*mp.Width; i++ {
			if got[i] != img[i] {
				t.Fatalf("pixel %d: %d, want %d", i, got[i], img[i])
			}
		}
	}
	pr, _ := orig.PiResult("pi")
	var want uint64
	acc, _ = orig.Accepted("pi")
	for _, r := range acc {
		want += PiHits(3, r.Start, r.End)
	}
	if pr.Hits != want {
		t.Fatalf("pi hits %d, recomputed over accepted ranges %d", pr.Hits, want)
	}
}

func assertSameState(t *testing.T, name string, a, b testState) {
	t.Helper()
	if !reflect.DeepEqual(a.Jobs(), b.Jobs()) {
		t.Fatalf("%s: jobs differ\n%+v\n%+v", name, a.Jobs(), b.Jobs())
	}
	for _, j := range a.Jobs() {
		pa, _ := a.Pending(j.ID)
		pb, _ := b.Pending(j.ID)
		if !reflect.DeepEqual(pa, pb) {
			t.Fatalf("%s: pending of %s differs", name, j.ID)
		}
		if j.Kind == KindMandelbrot {
			ia, _ := a.MandelImage(j.ID)
			ib, _ := b.MandelImage(j.ID)
			if !reflect.DeepEqual(ia, ib) {
				t.Fatalf("%s: image of %s differs", name, j.ID)
			}
		}
	}
	var sa, sb bytes.Buffer
	a.Snapshot(&sa)
	b.Snapshot(&sb)
	if sa.Len() != sb.Len() {
		t.Fatalf("%s: snapshot sizes differ %d %d", name, sa.Len(), sb.Len())
	}
}

func TestRestoreRejectsGarbage(t *testing.T) {
	st := newTestState(t)
	// (An empty input is the empty state: TestRestoreEmptyIsEmptyState.)
	for _, b := range [][]byte{[]byte("H"), []byte("HYDRAJS"), []byte("HYDRAJS\x02"), []byte("HYDRAJS\x01\xff\xff\xff\xff\x0f")} {
		if err := st.Restore(bytes.NewReader(b)); err == nil {
			t.Errorf("restore %q: no error", b)
		}
	}
}

// TestMandelChunk walks an image with gaps chunk by chunk: each answer is the stored chunk that
// holds the row (decoded exactly) or the gap up to the next one, never more.
func TestMandelChunk(t *testing.T) {
	st := newTestState(t)
	const w, h = 9, 20
	p := MandelParams{Width: w, Height: h, CenterX: -0.5, Span: 3, MaxIter: 50}
	st.mustApply(t, Submit{ID: "m", Time: t0, Spec: JobSpec{Kind: KindMandelbrot, Mandel: &p}})
	full := make([]uint32, w*h)
	if err := MandelRows(p, 0, h, full); err != nil {
		t.Fatal(err)
	}
	chunk := func(a, b uint64) ChunkResult {
		return ChunkResult{Chunk: Chunk{Job: "m", Range: Range{a, b}}, Node: "n", Payload: EncodeMandelPayload(full[a*w : b*w])}
	}
	st.mustApply(t, Results{Time: t0, Items: []ChunkResult{chunk(2, 5), chunk(5, 6), chunk(10, 14), chunk(19, 20)}})
	want := []Range{{0, 2}, {1, 2}, {2, 5}, {2, 5}, {2, 5}, {5, 6}, {6, 10}, {7, 10}, {8, 10}, {9, 10},
		{10, 14}, {10, 14}, {10, 14}, {10, 14}, {14, 19}, {15, 19}, {16, 19}, {17, 19}, {18, 19}, {19, 20}}
	for row := uint64(0); row < h; row++ {
		r, counts, err := st.MandelChunk("m", row)
		if err != nil {
			t.Fatal(err)
		}
		gap := row < 2 || (row >= 6 && row < 10) || (row >= 14 && row < 19)
		if r != want[row] || gap != (counts == nil) {
			t.Fatalf("row %d: %v (counts %v), want %v (gap %v)", row, r, counts != nil, want[row], gap)
		}
		if counts != nil && !reflect.DeepEqual(counts, full[r.Start*w:r.End*w]) {
			t.Fatalf("row %d: counts differ", row)
		}
	}
	if _, _, err := st.MandelChunk("m", h); err == nil {
		t.Fatal("a row past the image answered")
	}
	if _, _, err := st.MandelChunk("nope", 0); !errors.Is(err, ErrNoSuchJob) {
		t.Fatalf("unknown job: %v", err)
	}
	st.mustApply(t, Submit{ID: "pi", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 10, Seed: 1}}})
	if _, _, err := st.MandelChunk("pi", 0); err == nil {
		t.Fatal("a π job has rows")
	}
}

// TestMaxJobs: a submit that carries the cluster's job cap is refused once the state holds that
// many jobs, finished ones included, and accepted again after a delete.
func TestMaxJobs(t *testing.T) {
	st := newTestState(t)
	spec := JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 10, Seed: 1}}
	for _, id := range []string{"a", "b", "c"} {
		st.mustApply(t, Submit{ID: id, Time: t0, Spec: spec, MaxJobs: 3})
	}
	err, _ := st.ApplyCommand(Submit{ID: "d", Time: t0, Spec: spec, MaxJobs: 3}, 0).(error)
	if !errors.Is(err, ErrTooManyJobs) || !strings.Contains(err.Error(), "max-jobs 3") {
		t.Fatalf("fourth job under max-jobs 3: %v", err)
	}
	if st.Count() != 3 {
		t.Fatalf("%d jobs", st.Count())
	}
	st.mustApply(t, Submit{ID: "d", Time: t0, Spec: spec}) // no cap in the command: accepted
	st.mustApply(t, Delete{Job: "a"})
	st.mustApply(t, Delete{Job: "b"})
	st.mustApply(t, Submit{ID: "e", Time: t0, Spec: spec, MaxJobs: 3})
}

// An empty snapshot section is the empty state (consensus.App's contract:
// a snapshot without an App section restores to nothing).
func TestRestoreEmptyIsEmptyState(t *testing.T) {
	st := newTestState(t)
	st.mustApply(t, Submit{ID: "pi", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 10, Seed: 1}}})
	st.mustApply(t, Results{Time: t0, Items: []ChunkResult{piChunk("pi", 1, Range{0, 10}, "a")}})
	if err := st.Restore(bytes.NewReader(nil)); err != nil {
		t.Fatal(err)
	}
	if js := st.Jobs(); len(js) != 0 {
		t.Fatalf("%d jobs after restoring an empty section", len(js))
	}
	var snap bytes.Buffer
	if err := st.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	r := newTestState(t)
	if err := r.Restore(bytes.NewReader(snap.Bytes())); err != nil || len(r.Jobs()) != 0 {
		t.Fatalf("restore of the emptied state: %v, %d jobs", err, len(r.Jobs()))
	}
}

// TestUnfinishedSince: the unfinished jobs submitted after a job number, in submission order, and
// the newest number; 0 gives what Unfinished gives.
func TestUnfinishedSince(t *testing.T) {
	s := NewJobStore(NewMemResults())
	defer s.Close()
	for _, id := range []string{"a", "b", "c"} {
		if res := s.ApplyCommand(Submit{ID: id, Spec: piJob(1 << 20), Time: time.Now()}, 0); res != nil {
			t.Fatal(res)
		}
	}
	if res := s.ApplyCommand(Cancel{Job: "c", Time: time.Now()}, 0); res != nil {
		t.Fatal(res)
	}
	all, newest := s.UnfinishedSince(0)
	if newest != 3 || len(all) != 2 || all[0].ID != "a" || all[1].ID != "b" || len(all[0].Pending) != 1 {
		t.Fatalf("UnfinishedSince(0) = %+v, %d; want a and b (all pending), 3", all, newest)
	}
	if u := s.Unfinished(); len(u) != 2 || u[0].ID != "a" || u[1].ID != "b" {
		t.Fatalf("Unfinished = %+v, want a and b", u)
	}
	later, newest := s.UnfinishedSince(1)
	if newest != 3 || len(later) != 1 || later[0].ID != "b" {
		t.Fatalf("UnfinishedSince(1) = %+v, %d; want b, 3", later, newest)
	}
}

// snapHeaderV2 and snapJobV2 are the snapshot header as version 2 wrote it (git show
// 811d952^:compute/snapshot.go): no audits, credibility, policy, cleared ranges, reasons or
// faults.
type snapHeaderV2 struct {
	LastIndex    uint64      `json:"last_index"`
	Seq          uint64      `json:"seq"`
	TotalPayload int64       `json:"total_payload"`
	Jobs         []snapJobV2 `json:"jobs"`
}

type snapJobV2 struct {
	ID           string             `json:"id"`
	Seq          uint64             `json:"seq"`
	Spec         JobSpec            `json:"spec"`
	Submitter    string             `json:"submitter"`
	State        JobState           `json:"status"`
	Submitted    int64              `json:"submitted"`
	Started      int64              `json:"started"`
	Finished     int64              `json:"finished"`
	Accepted     []Range            `json:"accepted"`
	Hits         uint64             `json:"hits"`
	Nodes        []NodeContribution `json:"nodes"`
	PayloadBytes int64              `json:"payload_bytes"`
	History      []byte             `json:"history,omitempty"`
}

// TestRestoreVersion2Snapshot: a node upgraded from a build that wrote version-2 snapshots
// restores them. The fixture is this build's snapshot of a state made without audits (as every
// state then was) rewritten in the version-2 form: the header keeps only version 2's fields
// (histories were already in format 2 when version 2 was last written), the records stay as
// they are. Every accepted range counts, as it did then.
func TestRestoreVersion2Snapshot(t *testing.T) {
	st := newTestState(t)
	st.mustApply(t, Submit{ID: "pi", Time: t0, Submitter: "u", Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 10_000, Seed: 7}}})
	st.mustApply(t, Submit{ID: "done", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 100, Seed: 7}}})
	st.mustApply(t, Results{Time: t0, Items: []ChunkResult{piChunk("pi", 7, Range{0, 3000}, "a"), piChunk("pi", 7, Range{5000, 6000}, "b"), piChunk("done", 7, Range{0, 100}, "a")}})
	var snap bytes.Buffer
	if err := st.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	b := snap.Bytes()[len(snapMagic)+1:]
	n, k := binary.Uvarint(b)
	if k <= 0 {
		t.Fatal("snapshot header length")
	}
	var h snapHeaderV2
	if err := json.Unmarshal(b[k:k+int(n)], &h); err != nil {
		t.Fatal(err)
	}
	hdr, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, v3 := range []string{`"cleared"`, `"audit`, `"creds"`, `"reason"`, `"faults"`} {
		if bytes.Contains(hdr, []byte(v3)) {
			t.Fatalf("the version-2 header holds %s", v3)
		}
	}
	v2 := append([]byte(snapMagic), 2)
	v2 = binary.AppendUvarint(v2, uint64(len(hdr)))
	v2 = append(append(v2, hdr...), b[k+int(n):]...)

	r := newTestState(t)
	if err := r.Restore(bytes.NewReader(v2)); err != nil {
		t.Fatalf("restore a version-2 snapshot: %v", err)
	}
	if !reflect.DeepEqual(r.Jobs(), st.Jobs()) {
		t.Fatalf("jobs restored from version 2 differ:\n%+v\n%+v", r.Jobs(), st.Jobs())
	}
	for _, id := range []string{"pi", "done"} {
		a, _ := st.PiResult(id)
		b, _ := r.PiResult(id)
		ca, _ := st.Chunks(id, 0, 10)
		cb, _ := r.Chunks(id, 0, 10)
		if a != b || !reflect.DeepEqual(ca, cb) {
			t.Fatalf("%s: result %+v, want %+v; history %+v, want %+v", id, b, a, cb, ca)
		}
	}
}

// TestComputeSecondsBounded: a result's or an audit's compute seconds above the coordinator's
// cap (MaxComputeSeconds) are refused like negative or NaN ones. Accepted, 1e39 became +Inf in
// the float32 history, which restore refuses, and two of 1e308 summed to +Inf in the node's
// contribution, which a snapshot cannot encode: no snapshot could be written or restored again.
func TestComputeSecondsBounded(t *testing.T) {
	st := newTestState(t)
	st.mustApply(t, Submit{ID: "pi", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 10_000, Seed: 7}}})
	chunk := func(r Range, secs float64) ChunkResult {
		c := piChunk("pi", 7, r, "a")
		c.ComputeSeconds = secs
		return c
	}
	out := st.mustApply(t, Results{Time: t0, Items: []ChunkResult{
		chunk(Range{0, 10}, 1e39), chunk(Range{10, 20}, 1e308), chunk(Range{20, 30}, 1e308),
		chunk(Range{30, 40}, MaxComputeSeconds*1.5), chunk(Range{40, 50}, MaxComputeSeconds),
	}}).(*ResultsOutcome)
	if out.Accepted != 1 || len(out.Rejected) != 4 {
		t.Fatalf("accepted %d, rejected %+v", out.Accepted, out.Rejected)
	}
	for _, rj := range out.Rejected {
		if !strings.Contains(rj.Reason, "compute seconds") {
			t.Fatalf("rejection %+v", rj)
		}
	}
	var snap bytes.Buffer
	if err := st.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if err := newTestState(t).Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	// An audit's seconds count to its auditor when its result replaces the chunk's: the same cap.
	au := newTestState(t)
	auditJob(t, au, "pi", 1)
	au.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{committedPi(t, "pi", auditSeed, Range{0, 100}, "a", false)}})
	au.mustApply(t, Challenge{Time: t0, Seed: seedN(1), Items: au.Unchallenged(10)})
	a := answer(t, au.AuditTasks()[0], "b", false)
	a.Seconds = 1e39
	if r := au.ApplyCommand(a, 0); r == nil || !strings.Contains(fmt.Sprint(r), "compute seconds") {
		t.Fatalf("an audit of 1e39 s: %v", r)
	}
}
