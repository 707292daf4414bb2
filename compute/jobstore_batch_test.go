package compute

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hydra-compute/hydra/compute/audit"
)

// countingResults is a ResultStore that counts its write transactions (Put calls) and can be
// made to fail them, as a full disk would.
type countingResults struct {
	*MemResults
	puts int
	fail bool
}

func (c *countingResults) Put(recs []StoredResult) error {
	if c.fail {
		return errors.New("disk full")
	}
	c.puts++
	return c.MemResults.Put(recs)
}

// entryCommands is a run of commands as raft entries: each inner slice one entry, several of
// them with more than one Results command, and one that deletes a job after storing its results
// in the same entry.
func entryCommands() [][]any {
	pi := func(id string, n uint64) Submit {
		return Submit{ID: id, Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: n, Seed: 3}}}
	}
	res := func(job string, rs ...Range) Results {
		c := Results{Time: t0}
		for _, r := range rs {
			c.Items = append(c.Items, piChunk(job, 3, r, "n1"))
		}
		return c
	}
	return [][]any{
		{pi("a", 1000), pi("b", 1000), pi("gone", 1000)},
		{res("a", Range{0, 100}), res("b", Range{0, 500}), res("a", Range{100, 300}, Range{250, 400})}, // the last overlaps: rejected
		{res("gone", Range{0, 1000}), Delete{Job: "gone"}, res("a", Range{300, 1000})},
		{res("b", Range{500, 1000}), Cancel{Job: "a", Time: t0}, res("nope", Range{0, 1})},
	}
}

// An entry applied with ApplyBatch gives each command the result Apply gives it in order, leaves
// the same state, and stores its accepted results in one write transaction.
func TestApplyBatchIsApplyInOrder(t *testing.T) {
	one := NewJobStore(NewMemResults())
	batched := &countingResults{MemResults: NewMemResults()}
	many := NewJobStore(batched)
	index := uint64(10)
	for e, cmds := range entryCommands() {
		ops, payloads := make([]byte, len(cmds)), make([][]byte, len(cmds))
		var want []any
		for i, c := range cmds {
			op, p, err := EncodeCommand(c)
			if err != nil {
				t.Fatal(err)
			}
			ops[i], payloads[i] = op, p
			ix := index
			if i > 0 {
				ix = 0
			}
			want = append(want, one.Apply(op, p, ix))
		}
		puts := batched.puts
		got, err := many.ApplyBatch(ops, payloads, index)
		if err != nil {
			t.Fatalf("entry %d: %v", e, err)
		}
		if show(got) != show(want) {
			t.Fatalf("entry %d: results\n%+v\nwant (Apply one by one)\n%+v", e, got, want)
		}
		if n := batched.puts - puts; n > 1+countDeletes(cmds) {
			t.Fatalf("entry %d: %d store transactions for its results", e, n)
		}
		index++
	}
	if a, b := stateDigest(t, one), stateDigest(t, many); a != b {
		t.Fatalf("states differ:\none by one %s\nbatched    %s", a, b)
	}
	if recs := batched.jobs["gone"]; len(recs) != 0 {
		t.Fatalf("a job deleted in the entry that stored its result still has %d stored", len(recs))
	}
	if batched.puts >= 6 { // 6 Results commands accepted something
		t.Fatalf("%d store transactions for 4 entries", batched.puts)
	}
}

// show prints results as JSON, as consensus hands them to proposers.
func show(rs []any) string {
	var b strings.Builder
	for _, r := range rs {
		if err, ok := r.(error); ok {
			fmt.Fprintf(&b, "error %v; ", err)
			continue
		}
		js, err := json.Marshal(r)
		fmt.Fprintf(&b, "%s %v; ", js, err)
	}
	return b.String()
}

// countDeletes is how many commands store what waits before they run (a delete must not find
// the job's results stored after it).
func countDeletes(cmds []any) int {
	n := 0
	for _, c := range cmds {
		if _, ok := c.(Delete); ok {
			n++
		}
	}
	return n
}

// A store that fails while an entry's results wait fails the whole entry with a StorageError
// (the node then stops applying the log), and the next entry starts clean.
func TestApplyBatchStoreFailure(t *testing.T) {
	store := &countingResults{MemResults: NewMemResults()}
	s := NewJobStore(store)
	if r := s.ApplyCommand(Submit{ID: "a", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 1000, Seed: 3}}}, 1); r != nil {
		t.Fatal(r)
	}
	var ops []byte
	var payloads [][]byte
	for _, r := range []Range{{0, 100}, {100, 200}} {
		op, p, err := EncodeCommand(Results{Time: t0, Items: []ChunkResult{piChunk("a", 3, r, "n1")}})
		if err != nil {
			t.Fatal(err)
		}
		ops, payloads = append(ops, op), append(payloads, p)
	}
	store.fail = true
	out, err := s.ApplyBatch(ops, payloads, 2)
	var se *StorageError
	if !errors.As(err, &se) || !se.LocalFailure() || out != nil {
		t.Fatalf("ApplyBatch with a failing store: %v, %v", out, err)
	}
	if s.payloads.on || len(s.payloads.recs) != 0 {
		t.Fatal("the failed entry left records waiting")
	}
	store.fail = false
	if _, err := s.ApplyBatch(ops[:1], payloads[:1], 3); err != nil {
		t.Fatalf("the next entry: %v", err)
	}
}

// FuzzApplyBatch: an entry of two arbitrary commands applied with ApplyBatch leaves the state
// that Apply of each in turn leaves, with the same results, and never panics.
func FuzzApplyBatch(f *testing.F) {
	cmds := sampleCommands()
	for i := range cmds {
		op1, p1, err1 := EncodeCommand(cmds[i])
		op2, p2, err2 := EncodeCommand(cmds[(i+5)%len(cmds)])
		if err1 != nil || err2 != nil {
			f.Fatal(err1, err2)
		}
		f.Add(op1, p1, op2, p2)
	}
	prepare := func(s *JobStore) {
		s.ApplyCommand(Submit{ID: "j1", Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 1000, Seed: 1}}}, 1)
		s.ApplyCommand(Results{Time: t0, Items: []ChunkResult{piChunk("j1", 1, Range{0, 100}, "n1")}}, 2)
		s.ApplyCommand(Submit{ID: "j2", Time: t0, Spec: JobSpec{Kind: KindMandelbrot, Mandel: &MandelParams{Width: 64, Height: 48, Span: 3, MaxIter: 100}}}, 3)
	}
	f.Fuzz(func(t *testing.T, op1 byte, p1 []byte, op2 byte, p2 []byte) {
		one, many := NewJobStore(NewMemResults()), NewJobStore(NewMemResults())
		prepare(one)
		prepare(many)
		want := []any{one.Apply(op1, p1, 4), one.Apply(op2, p2, 0)}
		before := stateDigest(t, many)
		got, err := many.ApplyBatch([]byte{op1, op2}, [][]byte{p1, p2}, 4)
		if OpLevel(op1) == 0 || OpLevel(op2) == 0 { // the node stops before applying the entry
			if !errors.Is(err, ErrUnknownOp) || got != nil || stateDigest(t, many) != before {
				t.Fatalf("an entry with an unknown op: %v, %v, or the state changed", got, err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if show(got) != show(want) {
			t.Fatalf("results %s, want %s", show(got), show(want))
		}
		if a, b := stateDigest(t, one), stateDigest(t, many); a != b {
			t.Fatalf("states differ:\none by one %s\nbatched    %s", a, b)
		}
	})
}

// readFailing is a result store whose reads fail while failGet is set (a failing disk).
type readFailing struct {
	*MemResults
	failGet bool
}

func (r *readFailing) Get(job string, start uint64) (StoredResult, bool, error) {
	if r.failGet {
		return StoredResult{}, false, errors.New("input/output error")
	}
	return r.MemResults.Get(job, start)
}

// TestStoreReadFailureIsLocal: a read of this node's store that fails inside an apply fails the
// command with a StorageError (the node stops applying, and applies it again after a restart),
// never passes for what the payload holds: the challenge took a failed read for a payload that no
// longer matched its commitment and requeued the chunk on this replica alone, and a requeue that
// could not read the payload it drops left the disk-cap accounting wrong.
func TestStoreReadFailureIsLocal(t *testing.T) {
	store := &readFailing{MemResults: NewMemResults()}
	st := testState{JobStore: NewJobStore(store), revs: map[string]jobRev{}}
	t.Cleanup(func() { st.Close() })
	auditJob(t, st, "pi", 2)
	total := uint64(2*audit.PiBlock + 7)
	st.mustApply(t, Results{Time: t0, Audited: true, Items: []ChunkResult{committedPi(t, "pi", auditSeed, Range{0, total}, "a", false)}})
	store.failGet = true
	var se *StorageError
	if r := st.ApplyCommand(Challenge{Time: t0, Seed: seedN(1), Items: st.Unchallenged(10)}, 0); !errors.As(asError(r), &se) {
		t.Fatalf("challenge with a failing read: %v, want a StorageError", r)
	}
	store.failGet = false
	if co := st.mustApply(t, Challenge{Time: t0, Seed: seedN(1), Items: st.Unchallenged(10)}).(*AuditOutcome); co.Audited != 1 {
		t.Fatalf("the challenge once the disk reads again: %+v", co)
	}
	// An auditor's wrong answer, then a third node's other wrong one: no majority, so the chunk is
	// computed again (a requeue, which reads and drops its stored payload).
	tasks := st.AuditTasks()
	if len(tasks) != 1 {
		t.Fatalf("tasks %+v", tasks)
	}
	st.mustApply(t, answer(t, tasks[0], "b", true))
	third := st.AuditTasks()
	if len(third) != 1 || !third[0].Full {
		t.Fatalf("dispute tasks %+v", third)
	}
	store.failGet = true
	if r := st.ApplyCommand(answer(t, third[0], "c", true), 0); !errors.As(asError(r), &se) {
		t.Fatalf("a requeue with a failing read: %v, want a StorageError", r)
	}
}

func asError(r any) error {
	err, _ := r.(error)
	return err
}
