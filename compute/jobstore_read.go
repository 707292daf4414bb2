package compute

import (
	"cmp"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"
)

// Job is one job as this replica knows it: a copy, safe to keep. The API
// shapes it as webui.JobView (its JSON is that type's).
type Job struct {
	ID           string             `json:"id"`
	Name         string             `json:"name,omitempty"`
	Kind         Kind               `json:"kind"`
	Spec         JobSpec            `json:"spec"`
	Priority     int                `json:"priority"`
	State        JobState           `json:"state"`
	Submitter    string             `json:"submitter,omitempty"`
	SubmittedAt  time.Time          `json:"submitted_at"`
	StartedAt    time.Time          `json:"started_at,omitzero"`
	FinishedAt   time.Time          `json:"finished_at,omitzero"`
	DoneUnits    uint64             `json:"done_units"`
	TotalUnits   uint64             `json:"total_units"`
	Nodes        []NodeContribution `json:"nodes"`
	PayloadBytes int64              `json:"payload_bytes"`
	Reason       string             `json:"reason,omitempty"` // why a failed job failed
	// Faults are the distinct nodes on which a WebAssembly job's module failed a chunk.
	Faults []JobFault `json:"faults,omitempty"`
	// AuditedUnits is how many units auditors recomputed (docs/design.md §4); RedoneUnits how
	// many were computed again because an audit failed.
	AuditedUnits uint64 `json:"audited_units"`
	RedoneUnits  uint64 `json:"redone_units"`
	// ClearedUnits is how many units count in the answer: sampled out or audited.
	ClearedUnits uint64 `json:"cleared_units"`
	// Disputes is how many of the job's chunks are in dispute: an auditor disagreed with the
	// chunk's node, and a third node, neither of them, must recompute the chunk to settle it.
	// A cluster of two live machines has no such node, so a job with a dispute waits for one;
	// this is how a user learns why (docs/audits.md).
	Disputes int `json:"disputes,omitempty"`
}

func (j *job) view() Job {
	v := Job{
		ID: j.id, Name: j.spec.Name, Kind: j.spec.Kind, Spec: j.spec, Priority: j.spec.EffectivePriority(),
		State: j.state, Submitter: j.submitter, SubmittedAt: j.submitted, StartedAt: j.started,
		FinishedAt: j.finished, DoneUnits: j.accepted.Units(), TotalUnits: j.spec.TotalUnits(),
		PayloadBytes: j.payloadBytes, Nodes: make([]NodeContribution, 0, len(j.nodes)), Reason: j.reason,
		AuditedUnits: j.auditedUnits, RedoneUnits: j.redoneUnits, ClearedUnits: j.cleared.Units(),
		Faults: append([]JobFault(nil), j.faults...),
	}
	v.Disputes = j.disputes()
	for _, n := range j.nodes {
		v.Nodes = append(v.Nodes, *n)
	}
	slices.SortFunc(v.Nodes, func(a, b NodeContribution) int {
		return cmp.Or(cmp.Compare(b.Units, a.Units), cmp.Compare(a.Node, b.Node))
	})
	return v
}

// jobsBatch bounds the jobs Jobs copies under one hold of the state's read lock: a store may
// hold 20,000 jobs (the default max-jobs), and every apply waits for the lock, so one hold for
// all of them stalled the node's applies for tens of milliseconds at each read of the list (the
// event stream's poller reads it up to ten times a second).
const jobsBatch = 256

// Jobs lists every job in submission order. Each job's view is consistent; the list is read in
// batches (inBatches), so a job deleted meanwhile is left out, and jobs may be at different
// indexes of the log.
func (s *JobStore) Jobs() []Job {
	js := s.jobsInOrder()
	out := make([]Job, 0, len(js))
	s.inBatches(js, func(j *job) { out = append(out, j.view()) })
	return out
}

// JobHead is a job's identity, state and revision, without the rest of its view: enough to
// tell whether a job a reader has seen has changed since (the event stream's poller reads the
// heads of 20,000 jobs at each frame, and the views of the few that changed).
type JobHead struct {
	ID          string
	SubmittedAt time.Time
	State       JobState
	// Rev is a fingerprint of everything in the job's view that may change (its units, nodes,
	// faults, times and reason): two views of a job with the same Rev are the same, but for a
	// 64-bit hash collision. Within one process only.
	Rev uint64
}

// JobHeads lists every job's head in submission order, read in batches as Jobs.
func (s *JobStore) JobHeads() []JobHead {
	js := s.jobsInOrder()
	out := make([]JobHead, 0, len(js))
	s.inBatches(js, func(j *job) {
		out = append(out, JobHead{ID: j.id, SubmittedAt: j.submitted, State: j.state, Rev: j.rev()})
	})
	return out
}

// revSeed seeds the fingerprints of JobHead.Rev.
var revSeed = maphash.MakeSeed()

// rev fingerprints what j's view holds that may change (JobHead.Rev), without allocating. The
// nodes' contributions are summed, so the map's order does not matter.
//
// The view's dispute count (disputes) is left out: it walks the job's audit records, and it
// moves only with fields hashed here (a dispute opens with its audit's units counted, and
// closes by clearing or requeueing the chunk).
func (j *job) rev() uint64 {
	h := mix(maphash.String(revSeed, string(j.state)))
	for _, v := range []uint64{uint64(j.started.UnixNano()), uint64(j.finished.UnixNano()), j.accepted.Units(),
		uint64(j.accepted.Count()), j.cleared.Units(), uint64(j.payloadBytes), j.auditedUnits, j.redoneUnits,
		maphash.String(revSeed, j.reason), uint64(len(j.faults)), uint64(len(j.nodes))} {
		h = mix(h ^ v)
	}
	for _, f := range j.faults {
		h = mix(h ^ maphash.String(revSeed, f.Node) ^ mix(maphash.String(revSeed, f.Msg)^uint64(f.Time.UnixNano())))
	}
	var nodes uint64
	for _, n := range j.nodes {
		nodes += mix(mix(mix(maphash.String(revSeed, n.Node)^n.Units)^n.Chunks) ^ math.Float64bits(n.ComputeSeconds))
	}
	return mix(h ^ nodes)
}

// mix is splitmix64's finaliser: every bit of x moves about half of the result's.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// jobsInOrder lists the jobs in submission order.
func (s *JobStore) jobsInOrder() []*job {
	s.mu.RLock()
	js := make([]*job, 0, len(s.jobs))
	for _, j := range s.jobs {
		js = append(js, j)
	}
	s.mu.RUnlock()
	slices.SortFunc(js, func(a, b *job) int { return cmp.Compare(a.seq, b.seq) })
	return js
}

// inBatches calls fn for each job of js, in order, under the state's read lock taken for
// jobsBatch jobs at a time; a job deleted meanwhile is skipped, and one replaced (a snapshot
// restored) is read as it is now.
func (s *JobStore) inBatches(js []*job, fn func(*job)) {
	for len(js) > 0 {
		batch := js[:min(jobsBatch, len(js))]
		js = js[len(batch):]
		s.mu.RLock()
		for _, j := range batch {
			if cur := s.jobs[j.id]; cur != nil { // not deleted since (a restore replaces every job)
				fn(cur)
			}
		}
		s.mu.RUnlock()
	}
}

// Count is the number of jobs the state holds (queued, running and finished).
func (s *JobStore) Count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.jobs)
}

// Job returns one job's view.
func (s *JobStore) Job(id string) (Job, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j, ok := s.jobs[id]
	if !ok {
		return Job{}, false
	}
	return j.view(), true
}

// Pending returns the job's work not yet accepted: all ranges minus accepted ranges. A new
// leader rebuilds its scheduler from this (docs/design.md §2); a finished job has none.
func (s *JobStore) Pending(id string) ([]Range, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j, ok := s.jobs[id]
	if !ok {
		return nil, fmt.Errorf("pending %s: %w", id, ErrNoSuchJob)
	}
	if j.state.Finished() {
		return nil, nil
	}
	c := j.accepted.Complement(j.total())
	return c.Ranges(), nil
}

// Accepted returns the job's accepted ranges (merged).
func (s *JobStore) Accepted(id string) ([]Range, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j, ok := s.jobs[id]
	if !ok {
		return nil, fmt.Errorf("accepted %s: %w", id, ErrNoSuchJob)
	}
	return j.accepted.Ranges(), nil
}

// LastIndex is the raft index of the last command applied (or restored).
func (s *JobStore) LastIndex() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lastIndex
}

// PiResult is a π job's result over its accepted samples: Estimate = 4·hits/samples and
// StdError = 4·√(p(1−p)/samples) with p = hits/samples.
type PiResult struct {
	Hits     uint64  `json:"hits"`
	Samples  uint64  `json:"samples"`
	Estimate float64 `json:"estimate"`
	StdError float64 `json:"std_error"`
}

// PiResult returns the π reducer's result so far (complete when the job is done).
func (s *JobStore) PiResult(id string) (PiResult, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j, ok := s.jobs[id]
	if !ok {
		return PiResult{}, fmt.Errorf("pi result %s: %w", id, ErrNoSuchJob)
	}
	if j.spec.Kind != KindPi {
		return PiResult{}, fmt.Errorf("pi result %s: job is %s", id, j.spec.Kind)
	}
	return newPiResult(j.hits, j.cleared.Units()), nil
}

func newPiResult(hits, n uint64) PiResult {
	r := PiResult{Hits: hits, Samples: n}
	if n > 0 {
		p := float64(hits) / float64(n)
		r.Estimate = 4 * p
		r.StdError = 4 * math.Sqrt(p*(1-p)/float64(n))
	}
	return r
}

// MandelImage returns a Mandelbrot job's counts, W×H row-major, top row first, read from the
// store; rows that do not count yet (not accepted, or accepted and waiting for their audit:
// docs/audits.md) are zero. It allocates the whole image: the API reads rows with MandelChunk
// instead.
func (s *JobStore) MandelImage(id string) ([]uint32, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j, ok := s.jobs[id]
	if !ok {
		return nil, fmt.Errorf("mandelbrot image %s: %w", id, ErrNoSuchJob)
	}
	if j.spec.Kind != KindMandelbrot {
		return nil, fmt.Errorf("mandelbrot image %s: job is %s", id, j.spec.Kind)
	}
	m := j.spec.Mandel
	img := make([]uint32, m.Width*m.Height)
	err := s.eachResult(id, func(rec StoredResult) error {
		r, rows, err := decodeMandelRecord(j, rec)
		if err != nil {
			return err
		}
		if j.cleared.Covers(r) {
			copy(img[int(r.Start)*m.Width:], rows)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mandelbrot image %s: %w", id, err)
	}
	return img, nil
}

// MandelChunk reads the stored rows around row of a Mandelbrot job: the counted chunk that
// holds row, decoded (its range and its rows' counts, row-major), or, when row does not count
// yet, the gap from row to the next accepted chunk (or the image's end, or the end of the
// accepted chunk holding row while it waits for its audit) with nil counts. A
// reader walks an image chunk by chunk this way, holding one chunk in memory and the state's
// lock only while it reads that chunk from the store.
func (s *JobStore) MandelChunk(id string, row uint64) (Range, []uint32, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j, ok := s.jobs[id]
	if !ok {
		return Range{}, nil, fmt.Errorf("mandelbrot rows %s: %w", id, ErrNoSuchJob)
	}
	if j.spec.Kind != KindMandelbrot {
		return Range{}, nil, fmt.Errorf("mandelbrot rows %s: job is %s", id, j.spec.Kind)
	}
	total := j.total()
	if row >= total.End {
		return Range{}, nil, fmt.Errorf("mandelbrot rows %s: row %d outside the image's %d rows", id, row, total.End)
	}
	var (
		got  Range
		rows []uint32
		next uint64
	)
	err := s.withResults(func(v ResultView) error {
		rec, found, n, err := v.Around(id, row)
		next = n
		if err != nil || !found {
			return err
		}
		r, counts, err := decodeMandelRecord(j, rec)
		switch {
		case err != nil || r.End <= row:
		case j.cleared.Covers(r):
			got, rows = r, counts
		default: // accepted, not counted yet: a gap to its end
			next = r.End
		}
		return err
	})
	if err != nil {
		return Range{}, nil, fmt.Errorf("mandelbrot rows %s: %w", id, err)
	}
	if rows != nil {
		return got, rows, nil
	}
	return Range{row, min(next, total.End)}, nil, nil // up to the next chunk, or the image's end
}

// decodeMandelRecord checks and decodes one stored record of Mandelbrot job j.
func decodeMandelRecord(j *job, rec StoredResult) (Range, []uint32, error) {
	r := rec.Range
	if !j.total().Contains(r) || r.Empty() {
		return Range{}, nil, fmt.Errorf("corrupt range %v", r)
	}
	m := j.spec.Mandel
	rows, err := DecodeMandelPayload(rec.Payload, int(r.Len())*m.Width, uint32(m.MaxIter))
	if err != nil {
		return Range{}, nil, fmt.Errorf("rows %v: %w", r, err)
	}
	return r, rows, nil
}

// withResults calls fn with a view of the result store, released after (s.mu held for reading).
func (s *JobStore) withResults(fn func(ResultView) error) error {
	v, err := s.payloads.View()
	if err != nil {
		return err
	}
	defer v.Release()
	return fn(v)
}

// eachResult calls fn for each of job's stored results in order of range start (s.mu held for
// reading).
func (s *JobStore) eachResult(job string, fn func(StoredResult) error) error {
	return s.withResults(func(v ResultView) error { return v.Each(job, fn) })
}

// UnfinishedJob is what the scheduler needs of a queued or running job.
type UnfinishedJob struct {
	ID      string
	Spec    JobSpec
	State   JobState
	Pending []Range
}

// UnfinishedSince is Unfinished restricted to the jobs submitted after the job numbered after
// (jobs are numbered in submission order from 1; 0 gives every unfinished job), with the number
// of the newest job: a coordinator that holds the older jobs takes in the new ones without
// reading every unfinished job's pending ranges again.
func (s *JobStore) UnfinishedSince(after uint64) ([]UnfinishedJob, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	type numbered struct {
		seq uint64
		u   UnfinishedJob
	}
	var found []numbered
	for _, j := range s.jobs {
		if j.seq <= after || j.state.Finished() {
			continue
		}
		c := j.accepted.Complement(j.total())
		found = append(found, numbered{j.seq, UnfinishedJob{ID: j.id, Spec: j.spec, State: j.state, Pending: c.Ranges()}})
	}
	sort.Slice(found, func(a, b int) bool { return found[a].seq < found[b].seq })
	out := make([]UnfinishedJob, len(found))
	for i, f := range found {
		out[i] = f.u
	}
	return out, s.seq
}

// Evictable reports whether applying c would drop a job: one finished past the retention, or a
// finished one while the stored payloads exceed the disk cap. The leader proposes an Evict only
// then, so an idle cluster does not append (and every replica fsync) an entry a minute that
// changes nothing.
func (s *JobStore) Evictable(c Evict) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	over := c.DiskCap > 0 && s.totalPayload > c.DiskCap
	for _, j := range s.jobs {
		if j.expired(c) || over && j.state.Finished() {
			return true
		}
	}
	return false
}

// Unfinished lists queued and running jobs with their pending ranges, in submission order: the
// new leader's scheduler is built from it.
func (s *JobStore) Unfinished() []UnfinishedJob {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []UnfinishedJob
	for _, j := range s.jobs {
		if j.state.Finished() {
			continue
		}
		c := j.accepted.Complement(j.total())
		out = append(out, UnfinishedJob{ID: j.id, Spec: j.spec, State: j.state, Pending: c.Ranges()})
	}
	sort.Slice(out, func(a, b int) bool { return s.jobs[out[a].ID].seq < s.jobs[out[b].ID].seq })
	return out
}

// ChunkRecord is one accepted chunk of a job: its range, the node that computed it, for how
// long, and when it was committed (the leader's time in the Results command).
type ChunkRecord struct {
	Seq            uint64    `json:"seq"` // 0 for the job's first accepted chunk, then 1, 2, …
	Range          Range     `json:"range"`
	Hits           uint64    `json:"hits,omitempty"` // π: the chunk's hits
	Node           string    `json:"node"`
	ComputeSeconds float64   `json:"compute_seconds"`
	Committed      time.Time `json:"committed"`
}

// ChunkPage is a part of a job's chunk history.
type ChunkPage struct {
	Records []ChunkRecord // in commit order
	First   uint64        // the oldest sequence number still kept (older ones were dropped)
	Next    uint64        // the sequence number the job's next accepted chunk will get
}

// Chunks returns up to maxN records of a job's chunk history, from sequence number from on
// (records older than the history keeps are skipped: see First). Seq, Range and Node of every
// replica's history agree, whatever snapshots and restarts happened in between.
func (s *JobStore) Chunks(id string, from uint64, maxN int) (ChunkPage, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j, ok := s.jobs[id]
	if !ok {
		return ChunkPage{}, fmt.Errorf("chunks %s: %w", id, ErrNoSuchJob)
	}
	h := &j.hist
	p := ChunkPage{First: h.first, Next: h.next()}
	from = min(max(from, h.first), p.Next)
	n := min(uint64(max(maxN, 0)), p.Next-from)
	if n == 0 {
		return p, nil
	}
	p.Records = make([]ChunkRecord, 0, n)
	for i := from - h.first; i < from-h.first+n; i++ {
		r := h.recs[i]
		p.Records = append(p.Records, ChunkRecord{
			Seq: h.first + i, Range: Range{r.start, r.end}, Hits: r.hits, Node: h.nodes[r.node],
			ComputeSeconds: float64(r.secs), Committed: nanosTime(r.at),
		})
	}
	return p, nil
}

// WasmResult is a WebAssembly job's result so far: the reduced value of its accepted items as a
// decimal string (a u64 does not survive JSON numbers in JavaScript), complete when DoneItems
// equals Items. For concat, the output bytes are read with [JobState.WasmOutput].
type WasmResult struct {
	Reduce    Reduce `json:"reduce"`
	Value     string `json:"value"`
	Items     uint64 `json:"items"`
	DoneItems uint64 `json:"done_items"`
	Complete  bool   `json:"complete"`
}

// WasmResult returns a WebAssembly job's reduced value so far.
func (s *JobStore) WasmResult(id string) (WasmResult, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j, ok := s.jobs[id]
	if !ok {
		return WasmResult{}, fmt.Errorf("wasm result %s: %w", id, ErrNoSuchJob)
	}
	if j.spec.Kind != KindWasm {
		return WasmResult{}, fmt.Errorf("wasm result %s: job is %s", id, j.spec.Kind)
	}
	w := j.spec.Wasm
	v := j.hits
	if j.cleared.Units() == 0 {
		v = w.Reduce.Identity()
	}
	done := j.cleared.Units()
	return WasmResult{Reduce: w.Reduce, Value: strconv.FormatUint(v, 10), Items: w.Items, DoneItems: done, Complete: done == w.Items}, nil
}

// WasmOutput writes a concat job's counted output bytes to w in item order (the gaps of
// ranges not counted yet, unaccepted or waiting for their audit, are skipped: compare DoneItems
// with Items), streaming from the store. w is usually a client's connection, which may be slow
// or stop reading, so nothing is held while writing: each batch of about wasmOutputBatch bytes
// is read under the job state's lock and a view of the store, both released before the batch
// is written (a view held through the writes would hold up the store's writers, and with them
// raft's applies, as long as the client).
func (s *JobStore) WasmOutput(id string, w io.Writer) error {
	from := uint64(0)
	for {
		out, next, more, err := s.wasmOutputRead(id, from, wasmOutputBatch)
		if err != nil {
			return err
		}
		if len(out) > 0 {
			if _, err := w.Write(out); err != nil {
				return err
			}
		}
		if !more {
			return nil
		}
		from = next
	}
}

// wasmOutputBatch is about how many bytes of a concat job's output WasmOutput reads at a time.
const wasmOutputBatch = 1 << 20

// errBatchFull stops wasmOutputRead's walk of the store.
var errBatchFull = errors.New("batch full")

// wasmOutputRead reads the counted output of the job's results from the one starting at from
// on, until about limit bytes; more says whether results from next on are left.
func (s *JobStore) wasmOutputRead(id string, from uint64, limit int) (out []byte, next uint64, more bool, err error) {
	cleared, view, err := s.wasmOutputView(id)
	if err != nil {
		return nil, 0, false, err
	}
	defer view.Release()
	err = view.Each(id, func(rec StoredResult) error { // in range order: item order
		if rec.Range.Start < from {
			return nil
		}
		if len(out) >= limit {
			next, more = rec.Range.Start, true
			return errBatchFull
		}
		if !cleared.Covers(rec.Range) {
			return nil // waiting for its audit: not counted yet
		}
		_, o, err := DecodeWasmPayload(rec.Payload, ReduceConcat)
		if err != nil {
			return fmt.Errorf("wasm output %s: %w", id, err)
		}
		out = append(out, o...)
		return nil
	})
	if errors.Is(err, errBatchFull) {
		err = nil
	}
	return out, next, more, err
}

// wasmOutputView is what WasmOutput needs under the lock: a copy of the job's counted ranges and
// a view of the store as of the same moment (release it).
func (s *JobStore) wasmOutputView(id string) (RangeSet, ResultView, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j, ok := s.jobs[id]
	if !ok {
		return RangeSet{}, nil, fmt.Errorf("wasm output %s: %w", id, ErrNoSuchJob)
	}
	if j.spec.Kind != KindWasm || j.spec.Wasm.Reduce != ReduceConcat {
		return RangeSet{}, nil, fmt.Errorf("wasm output %s: not a concat job", id)
	}
	v, err := s.payloads.View()
	if err != nil {
		return RangeSet{}, nil, fmt.Errorf("wasm output %s: %w", id, err)
	}
	return j.cleared.Clone(), v, nil
}
