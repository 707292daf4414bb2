package compute

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"testing"

	"github.com/hydra-compute/hydra/compute/audit"
)

// fuzzSnapshot is a job state with something in every part of a snapshot: jobs of each kind,
// accepted and cleared ranges, stored payloads, chunk history, audits (a dispute among them),
// credibility and a fault.
func fuzzSnapshot(tb testing.TB) []byte {
	st := newTestState(tb)
	for _, c := range sampleCommands() {
		st.ApplyCommand(c, 0)
	}
	auditJob(tb, st, "a", 6)
	B := uint64(audit.PiBlock)
	st.mustApply(tb, Results{Time: t0, Audited: true, Items: []ChunkResult{
		committedPi(tb, "a", auditSeed, Range{0, B}, "x", false),
		committedPi(tb, "a", auditSeed, Range{B, 2 * B}, "x", true),
	}})
	st.mustApply(tb, Challenge{Time: t0, Seed: seedN(1), Items: st.Unchallenged(10)})
	for _, tk := range tasksFor(st, "x") {
		if tk.Chunk.Start == B { // a dispute: the auditor disagrees
			st.mustApply(tb, answer(tb, tk, "y", false))
		}
	}
	var b bytes.Buffer
	if err := st.Snapshot(&b); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// splitSnapshot parses a snapshot of this build into its header and payload records.
func splitSnapshot(tb testing.TB, b []byte) (snapHeader, []StoredResult) {
	br := bufio.NewReader(bytes.NewReader(b[len(snapMagic)+1:]))
	hdr, err := readBytes(br, maxSnapHeader)
	if err != nil {
		tb.Fatal(err)
	}
	var h snapHeader
	if err := json.Unmarshal(hdr, &h); err != nil {
		tb.Fatal(err)
	}
	jobs := map[string]*job{}
	for _, j := range h.Jobs {
		jobs[j.ID] = &job{accepted: NewRangeSet(j.Accepted...)}
	}
	var recs []StoredResult
	for {
		tag, err := br.ReadByte()
		if err != nil {
			tb.Fatal(err)
		}
		if tag == snapRecordEnd {
			return h, recs
		}
		rec, err := readRecord(br, tag, jobs)
		if err != nil {
			tb.Fatal(err)
		}
		recs = append(recs, rec)
	}
}

// joinSnapshot writes a header and records in the snapshot format, whatever they hold.
func joinSnapshot(tb testing.TB, h snapHeader, recs []StoredResult) []byte {
	hdr, err := json.Marshal(h)
	if err != nil {
		tb.Fatal(err)
	}
	e := &encoder{b: []byte(snapMagic)}
	e.byte1(snapVersion)
	e.bytes(hdr)
	for _, r := range recs {
		e.byte1(snapRecordMore)
		e.str(r.Job)
		e.uvarint(r.Range.Start)
		e.uvarint(uint64(8 + len(r.Payload)))
		e.b = binary.BigEndian.AppendUint64(e.b, r.Range.End)
		e.b = append(e.b, r.Payload...)
	}
	e.byte1(snapRecordEnd)
	return e.b
}

// FuzzRestoreFields: a snapshot whose framing and JSON are sound but whose fields contradict
// each other or the jobs (a bug in the build that wrote it, or in a leader that sent it: raft's
// checksum only catches damage on disk). Restore must refuse it, or load a state on which
// every read the API and the coordinator make, the next commands and the next snapshot work:
// no panic. The fuzzer's bytes are a list of field edits applied to a full snapshot.
func FuzzRestoreFields(f *testing.F) {
	good := fuzzSnapshot(f)
	f.Add([]byte{})
	for op := range byte(16) {
		f.Add([]byte{op, 0, 0, 3, 9})
		f.Add([]byte{op, 1, 1, 0xff, 0xff, 2})
	}
	f.Fuzz(func(t *testing.T, edits []byte) {
		h, recs := splitSnapshot(t, good)
		next := func() uint64 {
			if len(edits) == 0 {
				return 0
			}
			v := uint64(edits[0])
			edits = edits[1:]
			if v >= 0xf0 { // large values: past the end of any job
				return 1<<40 + v<<32
			}
			return v
		}
		pick := func(n int) int {
			if n == 0 {
				return 0
			}
			return int(next() % uint64(n))
		}
		for len(edits) > 0 && len(h.Jobs) > 0 {
			op := next() % 16
			j := &h.Jobs[pick(len(h.Jobs))]
			switch op {
			case 0:
				j.Accepted = append(j.Accepted, Range{next(), next()})
			case 1:
				j.Cleared = append(j.Cleared, Range{next(), next()})
			case 2:
				j.State = []JobState{"", "bogus", StateQueued, StateRunning, StateDone, StateCancelled, StateFailed}[pick(7)]
			case 3:
				h.Jobs = append(h.Jobs, *j) // a duplicate ID
			case 4, 5, 6:
				if len(j.Audits) == 0 {
					continue
				}
				a := &j.Audits[pick(len(j.Audits))]
				switch op {
				case 4:
					a.Range = Range{next(), next()}
				case 5:
					a.ID = next()
				case 6:
					a.Step = auditStep(next() % 5)
				}
			case 7:
				j.Audits = append(j.Audits, j.Audits...)
			case 8, 9:
				if len(recs) == 0 {
					continue
				}
				r := &recs[pick(len(recs))]
				if op == 8 {
					r.Range = Range{next(), next()}
				} else {
					r.Job = h.Jobs[pick(len(h.Jobs))].ID
				}
			case 10:
				j.Nodes = append(j.Nodes, NodeContribution{Node: "z", Units: next(), Chunks: next()})
			case 11:
				j.PayloadBytes, h.TotalPayload = -int64(next()), int64(next())
			case 12:
				j.Seq = next()
			case 13:
				j.Hits = next()
			case 14:
				j.History = append(j.History, byte(next()))
			case 15:
				h.Creds = append(h.Creds, snapCred{Node: "x", Quarantined: next()%2 == 0, Seq: next(), LastPass: next()})
			}
		}
		st := newTestState(t)
		if err := st.Restore(bytes.NewReader(joinSnapshot(t, h, recs))); err != nil {
			return
		}
		exerciseState(t, st)
	})
}

// exerciseState runs every read of the job state, answers its audits, applies more commands
// and takes a snapshot, which must restore.
func exerciseState(t *testing.T, st testState) {
	st.JobHeads()
	st.Count()
	st.Unfinished()
	st.UnfinishedSince(0)
	st.Evictable(Evict{Now: t0, Retention: 1})
	st.NodeAudits()
	st.Unchallenged(100)
	seen := map[string]bool{}
	for _, j := range st.Jobs() {
		if seen[j.ID] {
			t.Fatalf("job %s twice in the restored state", j.ID)
		}
		seen[j.ID] = true
		if !j.State.Valid() {
			t.Fatalf("job %s restored in state %q", j.ID, j.State)
		}
		if j.DoneUnits > j.TotalUnits || j.ClearedUnits > j.DoneUnits {
			t.Fatalf("job %s restored with %d of %d units done, %d cleared", j.ID, j.DoneUnits, j.TotalUnits, j.ClearedUnits)
		}
		st.Job(j.ID)
		st.Pending(j.ID)
		st.Accepted(j.ID)
		st.Chunks(j.ID, 0, 100)
		switch j.Kind {
		case KindPi:
			st.PiResult(j.ID)
		case KindMandelbrot:
			st.MandelImage(j.ID)
			st.MandelChunk(j.ID, 0)
		case KindWasm:
			st.WasmResult(j.ID)
			st.WasmOutput(j.ID, io.Discard)
		}
	}
	for _, tk := range st.AuditTasks() {
		if tk.Spec.Pi != nil {
			st.ApplyCommand(answer(t, tk, "auditor", false), 0)
		}
	}
	st.ApplyCommand(Challenge{Time: t0, Seed: seedN(3), Items: st.Unchallenged(100)}, 0)
	for _, c := range sampleCommands() {
		st.ApplyCommand(c, 0)
	}
	var out bytes.Buffer
	if err := st.Snapshot(&out); err != nil {
		t.Fatalf("a restored state cannot be snapshotted: %v", err)
	}
	if err := newTestState(t).Restore(&out); err != nil {
		t.Fatalf("a restored state's snapshot does not restore: %v", err)
	}
}
