package compute

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const testModule = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func wasmSpec(items uint64, r Reduce) JobSpec {
	return JobSpec{Kind: KindWasm, Wasm: &WasmParams{Module: testModule, Items: items, Reduce: r}}
}

func wasmChunk(job string, r Range, node string, v uint64, out string) ChunkResult {
	return ChunkResult{Chunk: Chunk{Job: job, Range: r}, Node: node, ComputeSeconds: 0.1, Payload: EncodeWasmPayload(v, []byte(out))}
}

func TestWasmSpecValidate(t *testing.T) {
	if err := wasmSpec(10, ReduceSum).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		spec JobSpec
		want string
	}{
		{JobSpec{Kind: KindWasm}, "wasm parameters"},
		{JobSpec{Kind: KindWasm, Wasm: &WasmParams{Module: "abc", Items: 1, Reduce: ReduceSum}}, "module"},
		{JobSpec{Kind: KindWasm, Wasm: &WasmParams{Module: strings.ToUpper(testModule), Items: 1, Reduce: ReduceSum}}, "module"},
		{wasmSpec(0, ReduceSum), "items"},
		{wasmSpec(MaxWasmItems+1, ReduceSum), "items"},
		{wasmSpec(5, "avg"), "reduce"},
		{JobSpec{Kind: KindWasm, Wasm: &WasmParams{Module: testModule, Items: 1, Reduce: ReduceSum, Params: strings.Repeat("x", MaxWasmParams+1)}}, "params"},
		{JobSpec{Kind: KindWasm, Wasm: &WasmParams{Module: testModule, Items: 1, Reduce: ReduceSum}, Pi: &PiParams{Samples: 1}}, "wasm parameters"},
	} {
		if err := c.spec.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.spec.Wasm, err, c.want)
		}
	}
}

// TestWasmReduce: chunk values combine by the job's reducer in any order, an empty job has the
// reducer's identity, and concat output reads back in item order.
func TestWasmReduce(t *testing.T) {
	st := newTestState(t)
	for _, c := range []struct {
		r          Reduce
		want, zero uint64
	}{{ReduceSum, 5 + 9 + 2, 0}, {ReduceMin, 2, ^uint64(0)}, {ReduceMax, 9, 0}, {ReduceXor, 5 ^ 9 ^ 2, 0}} {
		id := string(c.r)
		st.mustApply(t, Submit{ID: id, Time: t0, Spec: wasmSpec(30, c.r)})
		if res, err := st.WasmResult(id); err != nil || res.Value != u64s(c.zero) || res.Complete {
			t.Fatalf("%s empty: %+v %v", c.r, res, err)
		}
		st.mustApply(t, Results{Time: t0, Items: []ChunkResult{wasmChunk(id, Range{20, 30}, "b", 2, ""), wasmChunk(id, Range{0, 10}, "a", 5, "")}})
		st.mustApply(t, Results{Time: t0, Items: []ChunkResult{wasmChunk(id, Range{10, 20}, "a", 9, "")}})
		res, err := st.WasmResult(id)
		if err != nil || res.Value != u64s(c.want) || !res.Complete || res.DoneItems != 30 || res.Reduce != c.r {
			t.Fatalf("%s: %+v %v, want %d", c.r, res, err, c.want)
		}
	}
	st.mustApply(t, Submit{ID: "cat", Time: t0, Spec: wasmSpec(6, ReduceConcat)})
	st.mustApply(t, Results{Time: t0, Items: []ChunkResult{wasmChunk("cat", Range{4, 6}, "b", 2, "ef"), wasmChunk("cat", Range{0, 2}, "a", 2, "ab")}})
	st.mustApply(t, Results{Time: t0, Items: []ChunkResult{wasmChunk("cat", Range{2, 4}, "c", 2, "cd")}})
	var out bytes.Buffer
	if err := st.WasmOutput("cat", &out); err != nil || out.String() != "abcdef" {
		t.Fatalf("concat %q %v", out.String(), err)
	}
	if err := st.WasmOutput("sum", &out); err == nil {
		t.Fatal("output of a sum job")
	}
	// Output bytes are refused for a reducer that has no output.
	o := st.ApplyCommand(Results{Time: t0, Items: []ChunkResult{wasmChunk("sum", Range{0, 1}, "a", 1, "x")}}, 0).(*ResultsOutcome)
	if len(o.Rejected) != 1 {
		t.Fatalf("%+v", o)
	}
}

func u64s(v uint64) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + v%10)}, b...)
		if v /= 10; v == 0 {
			return string(b)
		}
	}
}

// TestWasmFail: a failed job keeps its reason through a snapshot, refuses results and cancel,
// and is finished (evictable).
func TestWasmFail(t *testing.T) {
	st := newTestState(t)
	st.mustApply(t, Submit{ID: "w", Time: t0, Spec: wasmSpec(100, ReduceSum)})
	st.mustApply(t, Results{Time: t0, Items: []ChunkResult{wasmChunk("w", Range{0, 10}, "a", 1, "")}})
	st.mustApply(t, Fail{Job: "w", Reason: "hydra_map(10, 20): unreachable", Time: t0})
	j, _ := st.Job("w")
	if j.State != StateFailed || j.Reason != "hydra_map(10, 20): unreachable" || !j.State.Finished() {
		t.Fatalf("%+v", j)
	}
	o := st.ApplyCommand(Results{Time: t0, Items: []ChunkResult{wasmChunk("w", Range{10, 20}, "a", 1, "")}}, 0).(*ResultsOutcome)
	if len(o.Rejected) != 1 || o.Rejected[0].Reason != "job failed" {
		t.Fatalf("%+v", o)
	}
	if err, _ := st.ApplyCommand(Cancel{Job: "w", Time: t0}, 0).(error); !errors.Is(err, ErrJobFinished) {
		t.Fatalf("cancel a failed job: %v", err)
	}
	if err, _ := st.ApplyCommand(Fail{Job: "w", Time: t0}, 0).(error); !errors.Is(err, ErrJobFinished) {
		t.Fatalf("fail twice: %v", err)
	}
	var snap bytes.Buffer
	if err := st.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	st2 := newTestState(t)
	if err := st2.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	if j2, _ := st2.Job("w"); j2.State != StateFailed || j2.Reason != j.Reason {
		t.Fatalf("restored %+v", j2)
	}
}

func TestRateClassPerModule(t *testing.T) {
	a, b := wasmSpec(1e9, ReduceSum), wasmSpec(1e9, ReduceSum)
	b.Wasm = &WasmParams{Module: strings.Repeat("f", 64), Items: 1e9, Reduce: ReduceSum}
	if RateClass(a) == RateClass(b) || baseKind(RateClass(a)) != KindWasm || RateClass(JobSpec{Kind: KindPi}) != KindPi {
		t.Fatal(RateClass(a), RateClass(b))
	}
	c := newClock()
	s := NewScheduler(SchedulerConfig{})
	// A first job of module a: a probe, then chunks sized from the node's rate for a.
	if err := s.AddJob("a1", a, []Range{{0, 1e9}}, true); err != nil {
		t.Fatal(err)
	}
	if p := mustLease(t, s, "n", c.now()); !p.Probe || p.Range.Len() != 64 || p.Kind != RateClass(a) {
		t.Fatalf("first lease of module a %+v, want a 64-item probe", p)
	} else {
		complete(t, s, c, p, 1000)
	}
	c.advance(time.Second)
	s.RemoveJob("a1")
	// A second job of the same module on the same node starts from that rate: no probe, ≈ 2 s.
	if err := s.AddJob("a2", a, []Range{{0, 1e9}}, true); err != nil {
		t.Fatal(err)
	}
	if l := mustLease(t, s, "n", c.now()); l.Probe || l.Range.Len() != 2000 {
		t.Fatalf("second job of module a: lease %+v, want 2000 items at the rate learnt", l)
	}
	// Another node has not measured a: it probes.
	if l := mustLease(t, s, "m", c.now()); !l.Probe {
		t.Fatalf("module a on a new node: lease %+v, want a probe", l)
	}
	s.RemoveJob("a2")
	// A different module on the same node starts from a probe again.
	if err := s.AddJob("b1", b, []Range{{0, 1e9}}, true); err != nil {
		t.Fatal(err)
	}
	if l := mustLease(t, s, "n", c.now()); !l.Probe || l.Range.Len() != 64 {
		t.Fatalf("module b: lease %+v, want a probe", l)
	}
	if s.Rate("n", RateClass(a)) != 1000 || s.Rate("n", RateClass(b)) != 0 || s.Rate("m", RateClass(a)) != 0 {
		t.Fatal(s.Rate("n", RateClass(a)), s.Rate("n", RateClass(b)), s.Rate("m", RateClass(a)))
	}
}

// TestRateClassesBounded: a node keeps at most maxRateClasses rates, dropping the least recently
// credited module's; the kinds in use keep theirs.
func TestRateClassesBounded(t *testing.T) {
	c := newClock()
	s := NewScheduler(SchedulerConfig{})
	module := func(i int) JobSpec {
		return JobSpec{Kind: KindWasm, Wasm: &WasmParams{Module: fmt.Sprintf("%064x", i), Items: 1e6, Reduce: ReduceSum}}
	}
	run := func(id string, spec JobSpec) {
		t.Helper()
		if err := s.AddJob(id, spec, []Range{{0, 1e6}}, true); err != nil {
			t.Fatal(err)
		}
		complete(t, s, c, mustLease(t, s, "n", c.now()), 100)
		c.advance(time.Second)
		s.RemoveJob(id)
	}
	run("pi", JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 1e9, Seed: 1}})
	for i := range 3 * maxRateClasses {
		run(fmt.Sprint(i), module(i))
		if i%4 == 0 {
			run(fmt.Sprint("pi", i), JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 1e9, Seed: 1}})
		}
	}
	if n := len(s.nodes["n"].rates); n != maxRateClasses {
		t.Fatalf("%d rate classes kept, want %d", n, maxRateClasses)
	}
	if s.Rate("n", KindPi) == 0 || s.Rate("n", RateClass(module(3*maxRateClasses-1))) == 0 || s.Rate("n", RateClass(module(0))) != 0 {
		t.Fatal("wrong classes kept")
	}
}

// blockingWriter blocks its first Write until release is closed, signalling entered first: a
// client that stops reading.
type blockingWriter struct {
	entered, release chan struct{}
	buf              bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	if w.entered != nil {
		close(w.entered)
		w.entered = nil
		<-w.release
	}
	return w.buf.Write(p)
}

// viewCounting is a result store that counts its open views.
type viewCounting struct {
	*MemResults
	open atomic.Int32
}

func (v *viewCounting) View() (ResultView, error) {
	rv, err := v.MemResults.View()
	if err != nil {
		return nil, err
	}
	v.open.Add(1)
	return &countedView{ResultView: rv, n: &v.open}, nil
}

type countedView struct {
	ResultView
	n    *atomic.Int32
	once sync.Once
}

func (c *countedView) Release() { c.once.Do(func() { c.n.Add(-1) }); c.ResultView.Release() }

// TestWasmOutputDoesNotHoldTheLockWhileWriting: a concat job's output goes to a client's
// connection, which may stop reading; raft's applies must go on meanwhile (with the job state's
// lock held through the writes, a stuck reader of result.bin stalled every apply on its node),
// and no view of the store may stay open either (a bbolt view held through the writes holds up
// the store's writers when the file grows).
func TestWasmOutputDoesNotHoldTheLockWhileWriting(t *testing.T) {
	store := &viewCounting{MemResults: NewMemResults()}
	st := testState{JobStore: NewJobStore(store), revs: map[string]jobRev{}}
	t.Cleanup(func() { st.Close() })
	st.mustApply(t, Submit{ID: "cat", Time: t0, Spec: wasmSpec(4, ReduceConcat)})
	st.mustApply(t, Results{Time: t0, Items: []ChunkResult{wasmChunk("cat", Range{0, 2}, "a", 2, "ab"), wasmChunk("cat", Range{2, 4}, "b", 2, "cd")}})
	w := &blockingWriter{entered: make(chan struct{}), release: make(chan struct{})}
	entered := w.entered
	done := make(chan error, 1)
	go func() { done <- st.WasmOutput("cat", w) }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("WasmOutput never wrote")
	}
	applied := make(chan any, 1)
	go func() { applied <- st.ApplyCommand(Submit{ID: "next", Time: t0, Spec: wasmSpec(4, ReduceSum)}, 0) }()
	select {
	case r := <-applied:
		if err, ok := r.(error); ok {
			t.Errorf("submit: %v", err)
		}
	case <-time.After(10 * time.Second):
		close(w.release)
		t.Fatal("an apply waited for a stuck reader of a job's output")
	}
	if n := store.open.Load(); n != 0 {
		t.Errorf("%d views of the store open while the output waits for its reader", n)
	}
	close(w.release)
	if err := <-done; err != nil || w.buf.String() != "abcd" {
		t.Fatalf("output %q, %v", w.buf.String(), err)
	}
}

// TestInvalidUTF8Refused: a string a snapshot keeps in its JSON header (a wasm job's params, a
// job's ID and submitter, a failed job's reason, node IDs) must be valid UTF-8, or a node
// restored from a snapshot (JSON turns each bad byte into U+FFFD) would hold other bytes than
// one that replayed the log. Such commands are refused and change nothing.
func TestInvalidUTF8Refused(t *testing.T) {
	const bad = "x\xffy"
	st := newTestState(t)
	auditJob(t, st, "pi", 1)
	st.mustApply(t, Submit{ID: "w", Time: t0, Spec: wasmSpec(10, ReduceSum)})
	st.mustApply(t, Submit{ID: "f", Time: t0, Spec: wasmSpec(10, ReduceSum)})
	st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{committedPi(t, "pi", auditSeed, Range{0, 100}, "a", false)}})
	st.mustApply(t, Challenge{Time: t0, Seed: seedN(1), Items: st.Unchallenged(10)})
	badParams := wasmSpec(10, ReduceSum)
	badParams.Wasm.Params = bad
	if err := badParams.Validate(); err == nil || !strings.Contains(err.Error(), "params") {
		t.Errorf("params %q: %v", bad, err)
	}
	badAuditor := answer(t, st.AuditTasks()[0], bad, false)
	for _, cmd := range []any{
		Submit{ID: "w2", Time: t0, Spec: badParams},
		Submit{ID: bad, Time: t0, Spec: wasmSpec(10, ReduceSum)},
		Submit{ID: "w3", Submitter: bad, Time: t0, Spec: wasmSpec(10, ReduceSum)},
		Fail{Job: "f", Reason: bad, Time: t0},
		Fault{Job: "w", Node: bad, Msg: "trap", Time: t0},
		TrustReset{Node: bad},
		AuditWaive{Node: bad, Time: t0},
		badAuditor,
	} {
		before := stateDigest(t, st.JobStore)
		if r := st.ApplyCommand(cmd, 0); !isError(r) || !strings.Contains(fmt.Sprint(r), "UTF-8") {
			t.Errorf("%T with %q: %v", cmd, bad, r)
		}
		if after := stateDigest(t, st.JobStore); after != before {
			t.Errorf("refused %T changed the state", cmd)
		}
	}
	out := st.mustApply(t, Results{Time: t0, Items: []ChunkResult{wasmChunk("w", Range{0, 10}, bad, 1, "")}}).(*ResultsOutcome)
	if out.Accepted != 0 || len(out.Rejected) != 1 || !strings.Contains(out.Rejected[0].Reason, "UTF-8") {
		t.Fatalf("a result of node %q: %+v", bad, out)
	}
}

func isError(r any) bool { _, ok := r.(error); return ok }

// TestWasmOutputInBatches: an output longer than a batch (wasmOutputBatch) reads back whole and
// in item order, the uncounted ranges left out.
func TestWasmOutputInBatches(t *testing.T) {
	st := newTestState(t)
	const n = 40
	st.mustApply(t, Submit{ID: "cat", Time: t0, Spec: wasmSpec(n+1, ReduceConcat)})
	var want bytes.Buffer
	var items []ChunkResult
	for i := range uint64(n) {
		out := strings.Repeat(string(rune('a'+i%26)), wasmOutputBatch/7)
		items = append(items, wasmChunk("cat", Range{i, i + 1}, "a", 1, out))
		want.WriteString(out)
		if len(items) == 10 { // a command stays under its size limit
			st.mustApply(t, Results{Time: t0, Items: items})
			items = nil
		}
	}
	var got bytes.Buffer
	if err := st.WasmOutput("cat", &got); err != nil || !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("output of %d bytes (want %d): %v", got.Len(), want.Len(), err)
	}
}
