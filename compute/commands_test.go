package compute

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute/audit"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func sampleCommands() []any {
	return []any{
		Submit{ID: "j1", Submitter: "alice", Time: t0, Spec: JobSpec{Kind: KindPi, Name: "π", Priority: 3, Pi: &PiParams{Samples: 1e9, Seed: ^uint64(0)}}},
		Submit{ID: "j2", Time: t0, Spec: JobSpec{Kind: KindMandelbrot, Mandel: &MandelParams{Width: 64, Height: 48, CenterX: -0.5, Span: 3, MaxIter: 100}}},
		Submit{ID: "j3", Time: t0, MaxJobs: 20_000, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 10, Seed: 1}}},
		Submit{ID: "j4", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 1 << 30, Seed: 2}, ChunkUnits: 1 << 16}},
		Submit{ID: "j5", Time: t0, Spec: JobSpec{Kind: KindMandelbrot, Mandel: &MandelParams{Width: 64, Height: 48, Span: 3, MaxIter: 100}, ChunkUnits: 5}},
		Results{Time: t0, Items: []ChunkResult{
			{Chunk: Chunk{Job: "j1", Range: Range{0, 100}}, Node: "n1", ComputeSeconds: 1.5, Payload: EncodePiPayload(80)},
			{Chunk: Chunk{Job: "j2", Range: Range{0, 2}}, Node: "n2", Payload: EncodeMandelPayload(make([]uint32, 128))},
		}},
		Started{Job: "j1", Time: t0},
		Cancel{Job: "j1", Time: t0.Add(time.Second)},
		Delete{Job: "j1"},
		Evict{Now: t0, Retention: 7 * 24 * time.Hour, DiskCap: 1 << 30},
		Results{Time: t0, Audited: true, Items: []ChunkResult{
			{Chunk: Chunk{Job: "j1", Range: Range{0, 100}}, Node: "n1", ComputeSeconds: 1.5, Payload: EncodePiBlocksPayload([]uint64{80}), Root: audit.Hash{1, 2}},
		}},
		Challenge{Time: t0, Seed: audit.Seed{9}, Items: []ChunkRef{{Job: "j1", Start: 0}, {Job: "j2", Start: 5}}},
		Results{Time: t0, Audited: true, Items: []ChunkResult{
			{Chunk: Chunk{Job: "j1", Range: Range{100, 200}}, Node: "n2", ComputeSeconds: 1, Payload: EncodePiBlocksPayload([]uint64{79}), Root: audit.Hash{3}},
		}, Challenge: &Challenge{Time: t0, Seed: audit.Seed{8}, Items: []ChunkRef{{Job: "j1", Start: 0}}}},
		Results{Time: t0, Audited: true, Items: []ChunkResult{
			{Chunk: Chunk{Job: "j1", Range: Range{200, 300}}, Node: "n2", Payload: EncodePiBlocksPayload([]uint64{81}), Root: audit.Hash{4}},
		}, Challenge: &Challenge{Time: t0, Seed: audit.Seed{7}, Items: []ChunkRef{{Job: "j1", Start: 100}}, Unaudited: true}},
		Audit{Time: t0, Job: "j1", ID: 3, Auditor: "n2", Leaves: []audit.Hash{{1}, {2}}, Seconds: 0.25},
		Audit{Time: t0, Job: "j1", ID: 4, Auditor: "n3", Payload: EncodePiBlocksPayload([]uint64{80}), Root: audit.Hash{7}},
		TrustReset{Node: "n1"},
		AuditWaive{Node: "n1", Time: t0},
		Submit{ID: "j3", Time: t0, Spec: JobSpec{Kind: KindWasm, Wasm: &WasmParams{Module: testModule, Items: 1e9, Reduce: ReduceConcat, Params: `{"k":3}`}}},
		Fault{Job: "j3", Node: "n2", Msg: "items [0, 64): wasm error: unreachable", Time: t0},
		Fail{Job: "j3", Reason: "hydra_map(0, 64): wasm error: unreachable", Time: t0},
		AuditPolicy{Policy: audit.Policy{TrustAfter: 1000, Floor: 0.1, TrustedShare: 1, QuarantineAfter: 2}},
	}
}

func TestCommandsRoundTrip(t *testing.T) {
	for _, c := range sampleCommands() {
		op, p, err := EncodeCommand(c)
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		got, err := DecodeCommand(op, p)
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(c)) {
			t.Errorf("%T: round trip\n got %#v\nwant %#v", c, got, c)
		}
	}
}

// normalize makes empty and nil payload slices compare equal.
func normalize(v any) any {
	if r, ok := v.(Results); ok {
		for i := range r.Items {
			if len(r.Items[i].Payload) == 0 {
				r.Items[i].Payload = nil
			}
		}
		return r
	}
	if a, ok := v.(Audit); ok && len(a.Payload) == 0 {
		a.Payload = nil
		return a
	}
	return v
}

func TestDecodeRejectsTruncatedAndTrailing(t *testing.T) {
	for _, c := range sampleCommands() {
		op, p, _ := EncodeCommand(c)
		for n := 0; n < len(p); n++ {
			if _, err := DecodeCommand(op, p[:n]); err == nil {
				t.Errorf("%T truncated to %d bytes: no error", c, n)
			}
		}
		if _, err := DecodeCommand(op, append(bytes.Clone(p), 0)); err == nil {
			t.Errorf("%T with a trailing byte: no error", c)
		}
	}
	if _, err := DecodeCommand(0x7f, []byte{1}); err == nil {
		t.Error("unknown op accepted")
	}
}

func TestMandelPayloadRoundTripAndBounds(t *testing.T) {
	p := testViews[1]
	img := make([]uint32, p.Width*p.Height)
	if err := MandelRows(p, 0, p.Height, img); err != nil {
		t.Fatal(err)
	}
	enc := EncodeMandelPayload(img)
	t.Logf("%d counts: %d bytes raw, %d encoded", len(img), 4*len(img), len(enc))
	got, err := DecodeMandelPayload(enc, len(img), uint32(p.MaxIter))
	if err != nil || !reflect.DeepEqual(got, img) {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := DecodeMandelPayload(enc, len(img)-1, uint32(p.MaxIter)); err == nil {
		t.Error("wrong count accepted")
	}
	if _, err := DecodeMandelPayload(enc, len(img), 10); err == nil {
		t.Error("count above max_iter accepted")
	}
	if _, err := DecodePiPayload(EncodePiPayload(11), 10); err == nil {
		t.Error("more hits than samples accepted")
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range sampleCommands() {
		op, p, _ := EncodeCommand(c)
		f.Add(op, p)
	}
	f.Fuzz(func(t *testing.T, op byte, p []byte) {
		v, err := DecodeCommand(op, p)
		if err != nil {
			return
		}
		op2, p2, err := EncodeCommand(v)
		if err != nil {
			t.Fatalf("re-encode %T: %v", v, err)
		}
		v2, err := DecodeCommand(op2, p2)
		if err != nil || op2 != op {
			t.Fatalf("decode of re-encoded %T: %v", v, err)
		}
		if !reflect.DeepEqual(normalize(v), normalize(v2)) && !hasNaN(v) {
			t.Fatalf("not stable:\n%#v\n%#v", v, v2)
		}
	})
}

func hasNaN(v any) bool {
	switch c := v.(type) {
	case Results:
		for _, it := range c.Items {
			if it.ComputeSeconds != it.ComputeSeconds {
				return true
			}
		}
	case Audit:
		return c.Seconds != c.Seconds
	case AuditPolicy:
		return c.Policy.Floor != c.Policy.Floor || c.Policy.TrustedShare != c.Policy.TrustedShare
	case Submit:
		if m := c.Spec.Mandel; m != nil {
			return m.CenterX != m.CenterX || m.CenterY != m.CenterY || m.Span != m.Span
		}
	}
	return false
}

func FuzzDecodeMandelPayload(f *testing.F) {
	f.Add(EncodeMandelPayload([]uint32{0, 1, 2, 100, 3}), 5, uint32(100))
	f.Add(EncodeMandelPayload(nil), 0, uint32(1))
	f.Fuzz(func(t *testing.T, p []byte, want int, maxIter uint32) {
		if want < 0 || want > 1<<16 {
			return
		}
		got, err := DecodeMandelPayload(p, want, maxIter)
		if err != nil {
			return
		}
		if len(got) != want {
			t.Fatalf("len %d, want %d", len(got), want)
		}
		for _, v := range got {
			if v > maxIter {
				t.Fatalf("count %d > %d", v, maxIter)
			}
		}
	})
}

// FuzzApply feeds arbitrary commands to a job state that holds a job: nothing may panic, and a
// rejected command must leave the state unchanged.
func FuzzApply(f *testing.F) {
	rejected := []any{ // seeds the state below rejects
		Submit{ID: "j1", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 5, Seed: 2}}}, // duplicate ID
		Started{Job: "nope", Time: t0},
		Cancel{Job: "nope", Time: t0},
		Delete{Job: "nope"},
		Results{Time: t0, Items: []ChunkResult{{Chunk: Chunk{Job: "j1", Range: Range{900, 1001}}, Node: "n1", Payload: EncodePiPayload(1)}}},
	}
	for _, c := range append(sampleCommands(), rejected...) {
		op, p, err := EncodeCommand(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(op, p)
		f.Add(op, p[:len(p)/2])
	}
	st := newTestState(f)
	st.mustApply(f, Submit{ID: "j1", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 1000, Seed: 1}}})
	st.mustApply(f, Results{Time: t0, Items: []ChunkResult{piChunk("j1", 1, Range{0, 100}, "n1")}})
	st.mustApply(f, Submit{ID: "m", Time: t0, Spec: JobSpec{Kind: KindMandelbrot, Mandel: &MandelParams{Width: 4, Height: 3, Span: 3, MaxIter: 10}}})
	f.Fuzz(func(t *testing.T, op byte, p []byte) {
		before := stateDigest(t, st.JobStore)
		r := st.Apply(op, p, 0)
		if err, ok := r.(error); ok {
			if after := stateDigest(t, st.JobStore); after != before {
				t.Fatalf("command %#x rejected (%v) but the state changed:\nbefore %s\nafter  %s", op, err, before, after)
			}
		}
		checkAuditIndex(t, st.JobStore)
		for _, j := range st.Jobs() {
			if j.DoneUnits > j.TotalUnits {
				t.Fatalf("job %s: done %d > total %d", j.ID, j.DoneUnits, j.TotalUnits)
			}
		}
	})
}

// stateDigest describes everything a reader can see of the state: every job's view, accepted and
// pending ranges, chunk history and result, the counters, and the size of a snapshot (which
// holds every stored payload; its bytes are not compared because jobs come in map order).
func stateDigest(t *testing.T, s *JobStore) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "last %d;", s.LastIndex())
	s.mu.RLock()
	fmt.Fprintf(&b, "seq %d, payload %d;", s.seq, s.totalPayload)
	s.mu.RUnlock()
	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "snapshot %d bytes;", snap.Len())
	for _, j := range s.Jobs() {
		v, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		acc, accErr := s.Accepted(j.ID)
		pend, pendErr := s.Pending(j.ID)
		chunks, chErr := s.Chunks(j.ID, 0, 1<<20)
		fmt.Fprintf(&b, "\n%s accepted %v %v pending %v %v chunks %+v %v", v, acc, accErr, pend, pendErr, chunks, chErr)
		switch j.Kind {
		case KindPi:
			r, err := s.PiResult(j.ID)
			fmt.Fprintf(&b, " pi %+v %v", r, err)
		case KindMandelbrot:
			img, err := s.MandelImage(j.ID)
			fmt.Fprintf(&b, " image %v %v", img, err)
		}
	}
	return b.String()
}
