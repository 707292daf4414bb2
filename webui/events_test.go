package webui

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// evBackend is a mutable Backend + JobBackend + ChunkSource + Watcher for the event tests.
type evBackend struct {
	*fakeJobs
	mu      sync.Mutex
	status  Status
	act     Activity
	chunks  map[string][]compute.ChunkRecord
	changed chan struct{}
	noWatch bool
}

func newEvBackend() *evBackend {
	return &evBackend{
		fakeJobs: newFakeJobs(),
		status: Status{Self: NodeRef{ID: "p1", Name: "a"}, Leader: "p1", Term: 1, Nodes: []NodeStatus{
			{ID: "p1", Name: "a", Role: RoleLeader, Online: true, State: StateIdle},
			{ID: "p2", Name: "b", Role: RoleVoter, Online: true, State: StateIdle},
		}},
		chunks:  map[string][]compute.ChunkRecord{},
		changed: make(chan struct{}),
	}
}

func (b *evBackend) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.status
	st.Nodes = append([]NodeStatus(nil), st.Nodes...)
	return st
}
func (b *evBackend) Token() string                   { return "tok" }
func (b *evBackend) Healthy() error                  { return nil }
func (b *evBackend) Leave(ctx context.Context) error { return nil }
func (b *evBackend) Activity() Activity {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.act
}

func (b *evBackend) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// update changes the state under the locks and wakes the hub.
func (b *evBackend) update(fn func(b *evBackend)) {
	b.mu.Lock()
	b.fakeJobs.mu.Lock()
	fn(b)
	b.fakeJobs.mu.Unlock()
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

func (b *evBackend) Chunks(id string, from uint64, max int) (compute.ChunkPage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.fakeJobs.Job(id); !ok {
		return compute.ChunkPage{}, fmt.Errorf("chunks %s: %w", id, compute.ErrNoSuchJob)
	}
	recs := b.chunks[id]
	p := compute.ChunkPage{Next: uint64(len(recs))}
	for i := from; i < uint64(len(recs)) && len(p.Records) < max; i++ {
		p.Records = append(p.Records, recs[i])
	}
	return p, nil
}

// noWatchBackend hides the Watcher, so the hub polls.
type noWatchBackend struct{ *evBackend }

func (noWatchBackend) Changed() {}

type sseEvent struct {
	name string
	data string
	at   time.Time
}

// openEvents connects to /api/v1/events and streams its events into a channel.
func openEvents(t *testing.T, url string) (<-chan sseEvent, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/v1/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ch := make(chan sseEvent, 1024)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); resp.Body.Close(); <-done })
	go func() {
		defer close(done)
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					ev.at = time.Now()
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			case strings.HasPrefix(line, "retry: "):
				ch <- sseEvent{name: "retry", data: line[7:]}
			}
		}
	}()
	return ch, resp
}

// waitEvent returns the first event named name for which ok holds, failing after 5 s.
func waitEvent(t *testing.T, ch <-chan sseEvent, name string, ok func(data string) bool) sseEvent {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev, open := <-ch:
			if !open {
				t.Fatalf("stream closed waiting for %s", name)
			}
			if ev.name == name && (ok == nil || ok(ev.data)) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event within 5 s", name)
		}
	}
}

func newEvServer(t *testing.T, b Backend, j JobBackend) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(New(Config{Backend: b, Jobs: j}))
	srv.Config.WriteTimeout = 300 * time.Millisecond // the stream must outlive it
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func TestEventsSnapshotThenChanges(t *testing.T) {
	b := newEvBackend()
	b.add(compute.Job{ID: "old", Kind: compute.KindPi, State: compute.StateDone, SubmittedAt: t0, TotalUnits: 10, DoneUnits: 10,
		Spec: compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 10}}})
	srv := newEvServer(t, b, b)
	ch, resp := openEvents(t, srv.URL)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	if ev := <-ch; ev.name != "retry" || ev.data != "1000" {
		t.Fatalf("first line %+v, want retry: 1000", ev)
	}
	waitEvent(t, ch, "status", func(d string) bool { return strings.Contains(d, `"leader":"p1"`) })
	waitEvent(t, ch, "activity", nil)
	waitEvent(t, ch, "jobs", func(d string) bool { return strings.Contains(d, `"id":"old"`) })

	// A leader change arrives at once.
	b.update(func(b *evBackend) {
		b.status.Leader, b.status.Term = "p2", 2
		b.status.Nodes[0].Role, b.status.Nodes[1].Role = RoleVoter, RoleLeader
	})
	waitEvent(t, ch, "status", func(d string) bool { return strings.Contains(d, `"leader":"p2"`) })

	// A new job: the list; then its chunks (from sequence 0, it is new) and progress.
	mj := compute.Job{ID: "m1", Kind: compute.KindMandelbrot, State: compute.StateRunning, SubmittedAt: t0.Add(time.Hour), TotalUnits: 100,
		Spec: compute.JobSpec{Kind: compute.KindMandelbrot, Mandel: &compute.MandelParams{Width: 4, Height: 100, Span: 3, MaxIter: 10}}}
	b.update(func(b *evBackend) { b.jobs = append(b.jobs, mj) })
	waitEvent(t, ch, "jobs", func(d string) bool {
		var vs []JobView
		return json.Unmarshal([]byte(d), &vs) == nil && len(vs) == 2 && vs[0].ID == "m1" // newest first
	})
	commit := time.Now().Truncate(time.Millisecond)
	b.update(func(b *evBackend) {
		b.chunks["m1"] = append(b.chunks["m1"],
			compute.ChunkRecord{Seq: 0, Range: compute.Range{Start: 0, End: 10}, Node: "p1", ComputeSeconds: 0.25, Committed: commit},
			compute.ChunkRecord{Seq: 1, Range: compute.Range{Start: 10, End: 30}, Node: "p2", ComputeSeconds: 0.5, Committed: commit})
		b.jobs[len(b.jobs)-1].DoneUnits = 30
	})
	ev := waitEvent(t, ch, "chunks", nil)
	var ce struct {
		Job    string      `json:"job"`
		Next   uint64      `json:"next"`
		Nodes  []string    `json:"nodes"`
		Chunks [][]float64 `json:"chunks"`
	}
	if err := json.Unmarshal([]byte(ev.data), &ce); err != nil {
		t.Fatalf("chunks event %s: %v", ev.data, err)
	}
	if ce.Job != "m1" || ce.Next != 2 || len(ce.Chunks) != 2 || ce.Nodes[int(ce.Chunks[1][3])] != "p2" ||
		ce.Chunks[1][1] != 10 || ce.Chunks[1][2] != 30 || int64(ce.Chunks[0][5]) != commit.UnixMilli() {
		t.Fatalf("chunks event: %s", ev.data)
	}
	// The 300 ms WriteTimeout of the server has long passed: the stream still works.
	<-time.After(400 * time.Millisecond)
	b.update(func(b *evBackend) {
		b.jobs[len(b.jobs)-1].DoneUnits, b.jobs[len(b.jobs)-1].State = 100, compute.StateDone
	})
	waitEvent(t, ch, "job", func(d string) bool { return strings.Contains(d, `"state":"done"`) })
}

func TestEventsAreCoalesced(t *testing.T) {
	b := newEvBackend()
	srv := newEvServer(t, b, b)
	ch, _ := openEvents(t, srv.URL)
	waitEvent(t, ch, "jobs", nil)
	// Change the leader as fast as possible for a second: at most ~10 frames come out.
	start := time.Now()
	for i := 0; time.Since(start) < time.Second; i++ {
		b.update(func(b *evBackend) { b.status.Term = uint64(i + 10) })
	}
	var n int
	last := time.After(500 * time.Millisecond)
	for counting := true; counting; {
		select {
		case ev := <-ch:
			if ev.name == "status" && ev.at.Before(start.Add(time.Second)) {
				n++
			}
		case <-last:
			counting = false
		}
	}
	if n < 3 || n > 12 {
		t.Fatalf("%d status events in a second of constant change, want about 10", n)
	}
}

func TestEventsPollWithoutWatcher(t *testing.T) {
	b := newEvBackend()
	srv := newEvServer(t, noWatchBackend{b}, b.fakeJobs)
	ch, _ := openEvents(t, srv.URL)
	waitEvent(t, ch, "jobs", nil)
	b.mu.Lock()
	b.status.Nodes = append(b.status.Nodes, NodeStatus{ID: "p3", Name: "c", Role: RoleNonvoter, Online: true})
	b.mu.Unlock()
	waitEvent(t, ch, "status", func(d string) bool { return strings.Contains(d, `"id":"p3"`) })
	// Without a ChunkSource, newly accepted Mandelbrot rows still come as chunks events.
	b.add(compute.Job{ID: "m", Kind: compute.KindMandelbrot, State: compute.StateRunning, SubmittedAt: t0, TotalUnits: 8,
		Spec: compute.JobSpec{Kind: compute.KindMandelbrot, Mandel: &compute.MandelParams{Width: 2, Height: 8, Span: 3, MaxIter: 5}}})
	waitEvent(t, ch, "jobs", func(d string) bool { return strings.Contains(d, `"id":"m"`) })
	b.fakeJobs.mu.Lock()
	b.acc["m"] = []compute.Range{{Start: 2, End: 5}}
	b.fakeJobs.mu.Unlock()
	waitEvent(t, ch, "chunks", func(d string) bool { return strings.Contains(d, `[-1,2,5,-1,0,`) })
}

func TestSlowEventClientIsDropped(t *testing.T) {
	b := newEvBackend()
	h := newHub(b, b)
	c, err := h.subscribe()
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	for range clientQueue + 1 {
		h.broadcast([]byte("event: x\ndata: {}\n\n"))
	}
	_, still := h.clients[c]
	h.mu.Unlock()
	if still {
		t.Fatal("a client that fell behind is still subscribed")
	}
	n := 0
	for range c.ch { // drains, then ends: the channel was closed
		n++
	}
	if n != clientQueue {
		t.Fatalf("%d frames queued, want the bound %d", n, clientQueue)
	}
	// With no client left the hub's loop stops by itself.
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		running := h.running
		h.mu.Unlock()
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("hub still running with no client")
		}
		b.update(func(*evBackend) {}) // wake it
	}
}

func TestChunksRoute(t *testing.T) {
	b := newEvBackend()
	b.add(compute.Job{ID: "p", Kind: compute.KindPi, State: compute.StateRunning, SubmittedAt: t0, TotalUnits: 100,
		Spec: compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 100}}})
	for i := range 7 {
		b.chunks["p"] = append(b.chunks["p"], compute.ChunkRecord{Seq: uint64(i), Range: compute.Range{Start: uint64(i * 10), End: uint64(i*10 + 10)}, Hits: 7, Node: "n", Committed: t0})
	}
	srv := newEvServer(t, b, b)
	get := func(q string) (int, map[string]any) {
		resp, err := http.Get(srv.URL + "/api/v1/jobs/" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	code, m := get("p/chunks?from=5&limit=10")
	if code != 200 || m["next"].(float64) != 7 || len(m["chunks"].([]any)) != 2 {
		t.Fatalf("%d %v", code, m)
	}
	code, m = get("p/chunks?limit=3")
	if code != 200 || len(m["chunks"].([]any)) != 3 {
		t.Fatalf("%d %v", code, m)
	}
	for _, q := range []string{"p/chunks?from=x", "p/chunks?limit=0", "p/chunks?limit=999999", "p/chunks?from=-1"} {
		if code, m := get(q); code != 400 || m["error"] == "" {
			t.Errorf("%s: %d %v", q, code, m)
		}
	}
	if code, _ := get("nope/chunks"); code != 404 {
		t.Errorf("unknown job: %d", code)
	}
	// A backend without history answers an empty one, and says so.
	srv2 := newEvServer(t, noWatchBackend{b}, b.fakeJobs)
	resp, err := http.Get(srv2.URL + "/api/v1/jobs/p/chunks")
	if err != nil {
		t.Fatal(err)
	}
	var empty struct{ Chunks []any }
	json.NewDecoder(resp.Body).Decode(&empty)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Hydra-History") != "none" || empty.Chunks == nil || len(empty.Chunks) != 0 {
		t.Fatalf("no history: %d %v %+v", resp.StatusCode, resp.Header, empty)
	}
}

// TestHubTickThrottles drives the hub's diff directly with a controlled clock.
func TestHubTickThrottles(t *testing.T) {
	b := newEvBackend()
	h := newHub(b, b)
	h.st = hubState{jobs: map[string]*jobSent{}}
	tick := startTicks(h)
	if f := tick(100 * time.Millisecond); f != "" {
		t.Fatalf("nothing changed, frame %q", f)
	}
	// A load change waits for statusMinorGap; a role change does not.
	b.update(func(b *evBackend) { b.status.Nodes[0].Load = 0.5 })
	if f := tick(100 * time.Millisecond); strings.Contains(f, "event: status") {
		t.Fatal("a load change was sent at once")
	}
	if f := tick(statusMinorGap); !strings.Contains(f, "event: status") {
		t.Fatal("a load change was never sent")
	}
	b.update(func(b *evBackend) { b.status.Nodes[1].State = StateWorking })
	if f := tick(100 * time.Millisecond); !strings.Contains(f, "event: status") {
		t.Fatal("a state change was not sent at once")
	}
	// A running π job: the list, then progress (with the estimate) between full views.
	b.update(func(b *evBackend) {
		b.jobs = append(b.jobs, compute.Job{ID: "pi", Kind: compute.KindPi, State: compute.StateRunning, SubmittedAt: t0, TotalUnits: 1000,
			Spec: compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1000}}})
		b.pi["pi"] = compute.PiResult{Hits: 79, Samples: 100, Estimate: 3.16}
	})
	if f := tick(100 * time.Millisecond); !strings.Contains(f, "event: jobs") {
		t.Fatalf("new job: %q", f)
	}
	b.update(func(b *evBackend) { b.jobs[0].DoneUnits = 100 })
	f := tick(100 * time.Millisecond)
	if !strings.Contains(f, "event: progress") || strings.Contains(f, "event: job\n") || !strings.Contains(f, `"estimate":3.16`) {
		t.Fatalf("progress: %q", f)
	}
	b.update(func(b *evBackend) { b.jobs[0].DoneUnits = 200 })
	if f := tick(jobFullGap); !strings.Contains(f, "event: job\n") {
		t.Fatalf("full view after jobFullGap: %q", f)
	}
	b.update(func(b *evBackend) { b.jobs[0].DoneUnits, b.jobs[0].State = 1000, compute.StateDone })
	if f := tick(10 * time.Millisecond); !strings.Contains(f, "event: job\n") || !strings.Contains(f, `"state":"done"`) {
		t.Fatalf("state change: %q", f)
	}
	// New clients get the views last sent.
	if snap := string(h.snapshot()); !strings.Contains(snap, `"state":"done"`) {
		t.Fatalf("snapshot: %q", snap)
	}
	// Removal: the list again.
	b.update(func(b *evBackend) { b.jobs = nil })
	if f := tick(100 * time.Millisecond); !strings.Contains(f, "event: jobs\ndata: []") {
		t.Fatalf("removal: %q", f)
	}
}

// TestHubSendsEveryChunkOfAFinishedJob: more chunks than a frame takes (maxChunksPerFrame) can be
// accepted between two ticks, the job's last among them; the rest follows in the next frames
// although the finished job's view no longer changes (they were dropped: the UI's picture kept
// holes until a reload).
func TestHubSendsEveryChunkOfAFinishedJob(t *testing.T) {
	b := newEvBackend()
	h := newHub(b, b)
	h.st = hubState{jobs: map[string]*jobSent{}}
	const n = maxChunksPerFrame + 904
	b.add(compute.Job{ID: "p", Kind: compute.KindPi, State: compute.StateRunning, SubmittedAt: t0, TotalUnits: n,
		Spec: compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: n}}})
	now := t0
	h.tick(now, true)
	b.update(func(b *evBackend) {
		for i := range n {
			b.chunks["p"] = append(b.chunks["p"], compute.ChunkRecord{Seq: uint64(i), Range: compute.Range{Start: uint64(i), End: uint64(i + 1)}, Node: "n", Committed: t0})
		}
		b.jobs[0].DoneUnits, b.jobs[0].State = n, compute.StateDone
	})
	sent := 0
	for range 4 {
		now = now.Add(100 * time.Millisecond)
		for _, ev := range strings.Split(string(h.tick(now, false)), "\n\n") {
			data, ok := strings.CutPrefix(ev, "event: chunks\ndata: ")
			if !ok {
				continue
			}
			var c struct{ Chunks []json.RawMessage }
			if err := json.Unmarshal([]byte(data), &c); err != nil {
				t.Fatalf("chunks event %q: %v", data, err)
			}
			sent += len(c.Chunks)
		}
	}
	if sent != n {
		t.Fatalf("%d chunks sent of %d", sent, n)
	}
}

// TestHubSettledJobs: a finished job's view is made once, not at every tick (BenchmarkHubTick:
// 20,000 of them made the poller take a quarter of a second per frame), yet what changes it is
// still sent: a node's new name (after jobFullGap), the job running again after a quarantine, and
// new clients get the views last sent.
func TestHubSettledJobs(t *testing.T) {
	b := newEvBackend()
	h := newHub(b, b)
	h.st = hubState{jobs: map[string]*jobSent{}}
	b.add(compute.Job{ID: "d", Kind: compute.KindPi, State: compute.StateDone, SubmittedAt: t0, FinishedAt: t0.Add(time.Second),
		DoneUnits: 1000, TotalUnits: 1000, Spec: compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1000}},
		Nodes: []compute.NodeContribution{{Node: b.status.Nodes[0].ID, Units: 1000, Chunks: 1}}})
	tick := startTicks(h)
	if f := tick(100 * time.Millisecond); f != "" {
		t.Fatalf("nothing changed, frame %q", f)
	}
	if !h.st.jobs["d"].settled(headOf(b.Jobs()[0]), h.st.namesGen) {
		t.Fatal("a finished job sent as it is is not settled: its view is made at every tick")
	}
	b.update(func(b *evBackend) { b.status.Nodes[0].Name = "renamed" })
	tick(100 * time.Millisecond) // too soon after the last full view: not sent yet
	if f := tick(jobFullGap); !strings.Contains(f, "event: job\n") || !strings.Contains(f, `"renamed"`) {
		t.Fatalf("a node's new name in a finished job's view: %q", f)
	}
	if f := tick(100 * time.Millisecond); strings.Contains(f, "event: job\n") {
		t.Fatalf("sent again: %q", f)
	}
	b.update(func(b *evBackend) { b.jobs[0].State, b.jobs[0].DoneUnits = compute.StateRunning, 900 })
	if f := tick(100 * time.Millisecond); !strings.Contains(f, "event: job\n") || !strings.Contains(f, `"state":"running"`) {
		t.Fatalf("a finished job that runs again: %q", f)
	}
	b.update(func(b *evBackend) {
		b.jobs[0].State, b.jobs[0].DoneUnits, b.jobs[0].FinishedAt = compute.StateDone, 1000, t0.Add(time.Hour)
	})
	if f := tick(100 * time.Millisecond); !strings.Contains(f, "event: job\n") || !strings.Contains(f, `"state":"done"`) {
		t.Fatalf("done again: %q", f)
	}
	if snap := string(h.snapshot()); !strings.Contains(snap, `"renamed"`) || !strings.Contains(snap, t0.Add(time.Hour).Format(time.RFC3339)) {
		t.Fatalf("snapshot: %q", snap)
	}
}

// JobHeads makes the fake a JobHeadSource, as node.Node is: the hub tests read heads, then the
// views of the jobs that changed.
func (b *evBackend) JobHeads() []compute.JobHead {
	var out []compute.JobHead
	for _, j := range b.Jobs() {
		out = append(out, headOf(j))
	}
	return out
}

// TestHubStoppedJobChangesAreSent: a cancelled job's view may still change (an audit leased
// before the cancel is answered after it; a failed node's results are requeued in stopped jobs
// too), and the change reaches clients and new clients' snapshot, also when it came within
// jobFullGap of the last full view and went out as a progress event first.
func TestHubStoppedJobChangesAreSent(t *testing.T) {
	b := newEvBackend()
	h := newHub(b, b)
	h.st = hubState{jobs: map[string]*jobSent{}}
	b.add(compute.Job{ID: "c", Kind: compute.KindPi, State: compute.StateCancelled, SubmittedAt: t0, FinishedAt: t0.Add(time.Second),
		DoneUnits: 600, ClearedUnits: 500, AuditedUnits: 100, TotalUnits: 1000, Spec: compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1000}}})
	tick := startTicks(h)
	tick(100 * time.Millisecond)
	b.update(func(b *evBackend) { b.jobs[0].DoneUnits = 400 }) // a failed node's results requeued
	if f := tick(100 * time.Millisecond); !strings.Contains(f, "event: progress") {
		t.Fatalf("requeue: %q", f)
	}
	tick(100 * time.Millisecond)
	if f := tick(jobFullGap); !strings.Contains(f, "event: job\n") || !strings.Contains(f, `"done_units":400`) {
		t.Fatalf("the full view after a progress event: %q", f)
	}
	b.update(func(b *evBackend) { b.jobs[0].AuditedUnits, b.jobs[0].ClearedUnits = 300, 400 }) // a late audit answer
	if f := tick(jobFullGap); !strings.Contains(f, "event: job\n") || !strings.Contains(f, `"audited_units":300`) {
		t.Fatalf("a late audit answer of a cancelled job: %q", f)
	}
	if snap := string(h.snapshot()); !strings.Contains(snap, `"audited_units":300`) || !strings.Contains(snap, `"done_units":400`) {
		t.Fatalf("snapshot: %q", snap)
	}
}

// startTicks starts h's state at t0 (nothing sent) and returns a function that moves the clock
// on by d and returns the frame of that tick.
func startTicks(h *hub) func(d time.Duration) string {
	now := t0
	h.tick(now, true)
	return func(d time.Duration) string {
		now = now.Add(d)
		return string(h.tick(now, false))
	}
}
