package work

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/node/child"
	"github.com/hydra-compute/hydra/node/owner"
)

// spansRunner computes π exactly, as the compute child does, and records the tasks it ran.
type spansRunner struct {
	mu    sync.Mutex
	tasks []child.Chunk
}

func (s *spansRunner) Run(_ context.Context, c child.Chunk, _ func(uint64)) (child.Result, error) {
	s.mu.Lock()
	s.tasks = append(s.tasks, c)
	s.mu.Unlock()
	spans := c.Spans
	if len(spans) == 0 {
		spans = []compute.Range{c.Range}
	}
	var parts []child.Part
	for _, sp := range spans {
		pl, err := refPayload(c.Spec, sp)
		if err != nil {
			return child.Result{}, err
		}
		parts = append(parts, child.Part{Done: sp, Payload: pl})
	}
	return child.Result{ID: c.ID, Done: parts[0].Done, Payload: parts[0].Payload, ComputeSeconds: 1, Also: parts[1:]}, nil
}

func (*spansRunner) StopTask() {}

// TestWorker_RunsQueuedAuditsAsOneTask: the π audits a worker holds of one job run as one task
// of the compute child (a span each, in order), and each is answered on its own with the
// leaves of its own spans; an audit of another job runs apart.
func TestWorker_RunsQueuedAuditsAsOneTask(t *testing.T) {
	spec := func(seed uint64) compute.JobSpec {
		return compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 30, Seed: seed}}
	}
	audit := func(id uint64, job string, seed uint64, spans ...compute.Range) lease {
		chunk := compute.Range{Start: spans[0].Start, End: spans[len(spans)-1].End}
		return lease{ID: auditLeaseBase + id, Term: 1, Chunk: compute.Chunk{Job: job, Range: chunk}, Spec: spec(seed),
			Audit: &auditWork{ID: id, Spans: spans}}
	}
	const b = 1 << 22 // a π commitment block
	queue := []lease{
		audit(1, "j", 7, compute.Range{Start: 5 * b, End: 6 * b}),
		audit(2, "k", 9, compute.Range{Start: 0, End: b}),
		audit(3, "j", 7, compute.Range{Start: 0, End: b}, compute.Range{Start: 2 * b, End: 3 * b}),
		audit(4, "j", 7, compute.Range{Start: 9 * b, End: 10 * b}),
	}
	run := &spansRunner{}
	w := NewWorker(WorkerConfig{Runner: run, Owner: func() owner.Decision { return owner.Decision{State: owner.StateRun} }})
	w.term, w.queue = 1, queue
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.computeLoop(ctx) }()
	defer func() { cancel(); <-done }()
	var answers []result
	for end := time.Now().Add(10 * time.Second); ; <-time.After(time.Millisecond) {
		w.mu.Lock()
		answers = slices.Clone(w.results)
		w.mu.Unlock()
		if len(answers) == len(queue) {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("%d answers, want %d", len(answers), len(queue))
		}
	}
	run.mu.Lock()
	tasks := slices.Clone(run.tasks)
	run.mu.Unlock()
	if len(tasks) != 2 {
		t.Fatalf("%d tasks, want 2 (job j's audits together, k's apart)", len(tasks))
	}
	wantSpans := []compute.Range{{Start: 0, End: b}, {Start: 2 * b, End: 3 * b}, {Start: 5 * b, End: 6 * b}, {Start: 9 * b, End: 10 * b}}
	if !slices.Equal(tasks[0].Spans, wantSpans) || tasks[0].Range != (compute.Range{Start: 0, End: 10 * b}) {
		t.Fatalf("first task: %s spans %v, want [0,%d) spans %v", tasks[0].Range, tasks[0].Spans, 10*b, wantSpans)
	}
	for _, a := range answers {
		var l lease
		for _, q := range queue {
			if q.Audit.ID == a.Audit.ID {
				l = q
			}
		}
		var payloads [][]byte
		for _, sp := range l.Audit.Spans {
			hits, _ := compute.PiBlocksHits(l.Spec.Pi.Seed, sp)
			payloads = append(payloads, compute.EncodePiBlocksPayload(hits))
		}
		want, err := compute.SpanLeaves(l.Spec, l.Audit.Spans, payloads)
		if err != nil {
			t.Fatal(err)
		}
		if a.Lease != l.ID || !slices.Equal(a.Audit.Leaves, want) {
			t.Fatalf("audit %d: lease %d leaves %v, want lease %d leaves %v", a.Audit.ID, a.Lease, a.Audit.Leaves, l.ID, want)
		}
	}
}

// stallRunner runs nothing: a task runs until its context ends (the pause stops it) and has
// finished none of its range then. started is closed when the first task starts.
type stallRunner struct {
	once    sync.Once
	started chan struct{}
}

func (s *stallRunner) Run(ctx context.Context, c child.Chunk, _ func(uint64)) (child.Result, error) {
	s.once.Do(func() { close(s.started) })
	<-ctx.Done()
	return child.Result{ID: c.ID, Done: compute.Range{Start: c.Range.Start, End: c.Range.Start}}, nil
}

func (*stallRunner) StopTask() {}

// TestPausedWorkerGivesItsStoppedAuditBack: an owner's pause that stops an audit in the child
// gives the audit back to the coordinator, which leases it to another node at once. The
// audit's give-back comes after the exchange that reported the pause, so the next, paused,
// exchange must carry it; it used to be dropped there, and the audit stayed with the paused
// node until its deadline (2 minutes: a job with all its units done waited that long for it).
func TestPausedWorkerGivesItsStoppedAuditBack(t *testing.T) {
	audits := &fakeAudits{tasks: []compute.AuditTask{piTask(9, "owner")}}
	c := auditLeadership(t, audits, slog.New(slog.DiscardHandler))
	c.leaseAt = time.Now().Add(-time.Second)
	c.refreshAuditsLocked(time.Now())
	for _, n := range []string{"owner", "laptop", "other"} {
		c.lastSeen[nodeID(n)], c.arch[nodeID(n)] = time.Now(), "amd64"
	}
	var paused atomic.Bool
	run := &stallRunner{started: make(chan struct{})}
	laptop := peer.ID("laptop")
	w := NewWorker(WorkerConfig{
		Self:   laptop,
		Leader: func() (peer.ID, bool) { return "leader", true },
		Call: func(ctx context.Context, _ peer.ID, req, resp any) error {
			r := *req.(*syncRequest)
			r.Arch = "amd64"
			out, err := c.sync(ctx, laptop, &r)
			if err != nil {
				return err
			}
			b, _ := json.Marshal(out)
			return json.Unmarshal(b, resp)
		},
		Runner: run,
		Owner: func() owner.Decision {
			if paused.Load() {
				return owner.Decision{State: owner.StatePaused, Reason: owner.ReasonOnBattery}
			}
			return owner.Decision{State: owner.StateRun}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-run.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the laptop never started the audit")
	}
	if got := syncAs(t, c, "other", "amd64"); len(got) != 0 {
		t.Fatalf("another node was leased %v while the laptop ran audit 9", got)
	}
	paused.Store(true)
	w.Wake() // the owner loop wakes the worker on a decision
	for end := time.Now().Add(10 * time.Second); ; <-time.After(5 * time.Millisecond) {
		got := syncAs(t, c, "other", "amd64")
		if slices.Equal(got, []uint64{9}) {
			break
		}
		if len(got) != 0 || time.Now().After(end) {
			t.Fatalf("10 s after the pause another node was leased %v, want audit 9 (given back by the paused laptop)", got)
		}
	}
}

// TestWorker_RefusesMalformedAudits: audit leases the worker cannot run as given (no spans, an
// empty span, a span outside the chunk, spans out of order, a full audit of part of the chunk)
// are refused with an error and given back, never run, and never crash the node (a bundle of π
// audits without spans indexed an empty slice); a good audit bundled with them is answered.
func TestWorker_RefusesMalformedAudits(t *testing.T) {
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 30, Seed: 7}}
	const b = 1 << 22 // a π commitment block
	chunk := compute.Range{Start: 4 * b, End: 8 * b}
	audit := func(id uint64, full bool, spans ...compute.Range) lease {
		return lease{ID: auditLeaseBase + id, Term: 1, Chunk: compute.Chunk{Job: "j", Range: chunk}, Spec: spec,
			Audit: &auditWork{ID: id, Full: full, Spans: spans}}
	}
	bad := map[string][]lease{
		"no spans":                  {audit(1, false), audit(2, false)},
		"empty span":                {audit(1, false, compute.Range{Start: 5 * b, End: 5 * b}), audit(2, false, compute.Range{Start: 6 * b, End: 6 * b})},
		"outside the chunk":         {audit(1, false, compute.Range{Start: 8 * b, End: 9 * b})},
		"out of order":              {audit(1, false, compute.Range{Start: 6 * b, End: 7 * b}, compute.Range{Start: 4 * b, End: 5 * b})},
		"overlapping":               {audit(1, false, compute.Range{Start: 4 * b, End: 6 * b}, compute.Range{Start: 5 * b, End: 7 * b})},
		"part of the chunk as full": {audit(1, true, compute.Range{Start: 4 * b, End: 5 * b})},
	}
	for name, bundle := range bad {
		t.Run(name, func(t *testing.T) {
			good := audit(9, false, compute.Range{Start: 7 * b, End: 8 * b})
			for _, ls := range [][]lease{bundle, append(slices.Clone(bundle), good), bundle[:1]} {
				run := &spansRunner{}
				w := NewWorker(WorkerConfig{Runner: run, Owner: func() owner.Decision { return owner.Decision{State: owner.StateRun} }})
				w.term = 1
				answers, errs := w.runAudits(context.Background(), ls)
				for i, l := range ls {
					if l.Audit.ID == good.Audit.ID {
						if errs[i] != nil || answers[i].Audit == nil || len(answers[i].Audit.Leaves) != 1 {
							t.Fatalf("the good audit bundled with bad ones: %+v, %v", answers[i], errs[i])
						}
						continue
					}
					if errs[i] == nil {
						t.Fatalf("audit %d %v (full %v) of chunk %v: answered, want refused", l.Audit.ID, l.Audit.Spans, l.Audit.Full, chunk)
					}
				}
				for _, task := range run.tasks {
					for _, sp := range task.Spans {
						if !chunk.Contains(sp) || sp.Empty() {
							t.Fatalf("ran span %v of a refused audit", sp)
						}
					}
				}
				// Refused audits go back to the coordinator.
				w.running = &ls[0]
				w.finishAudits(ls, answers, errs, time.Millisecond)
				refused := slices.DeleteFunc(slices.Clone(ls), func(l lease) bool { return l.Audit.ID == good.Audit.ID })
				if len(w.failed) != len(refused) {
					t.Fatalf("given back %v, want the %d refused audits", w.failed, len(refused))
				}
			}
		})
	}
}
