package webui

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// workBackend is an evBackend that sums every job's contributions (NodeWorkSource), as
// compute.JobStore.NodeWork does, and counts the calls.
type workBackend struct {
	*evBackend
	calls int
}

func (w *workBackend) NodeWork() []compute.NodeContribution {
	w.calls++
	sums := map[string]*compute.NodeContribution{}
	var order []string
	for _, j := range w.Jobs() {
		for _, n := range j.Nodes {
			s := sums[n.Node]
			if s == nil {
				s = &compute.NodeContribution{Node: n.Node}
				sums[n.Node] = s
				order = append(order, n.Node)
			}
			s.Units += n.Units
			s.Chunks += n.Chunks
			s.ComputeSeconds += n.ComputeSeconds
		}
	}
	out := []compute.NodeContribution{}
	for _, id := range order {
		out = append(out, *sums[id])
	}
	return out
}

// workOf decodes the "work" event of frame f; ok is false when f has none.
func workOf(t *testing.T, f string) (map[string]compute.NodeContribution, bool) {
	t.Helper()
	_, data, ok := strings.Cut(f, "event: work\ndata: ")
	if !ok {
		return nil, false
	}
	data, _, _ = strings.Cut(data, "\n\n")
	var ws []compute.NodeContribution
	if err := json.Unmarshal([]byte(data), &ws); err != nil {
		t.Fatalf("work event %.200q: %v", data, err)
	}
	m := map[string]compute.NodeContribution{}
	for _, w := range ws {
		m[w.Node] = w
	}
	return m, true
}

// TestHubWorkCountsEveryJob: a node's work done on the page is summed over every job, not over
// the newest maxListedJobs the stream lists (the page summed the listed views, so a long-lived
// cluster's nodes showed the work of their last 200 jobs). A new client's snapshot carries the
// sums; a change to a job beyond the list moves them, read again at most every statusMinorGap
// and only when a job changed (summing walks every job).
func TestHubWorkCountsEveryJob(t *testing.T) {
	b := &workBackend{evBackend: newEvBackend()}
	n := maxListedJobs + 50
	manyDone(b.evBackend, n)
	h := newHub(b, b)
	h.st = hubState{jobs: map[string]*jobSent{}}
	tick := startTicks(h)
	w, ok := workOf(t, string(h.snapshot()))
	if !ok || w["p1"].Chunks != uint64(n) || w["p1"].Units != uint64(10*n) {
		t.Fatalf("snapshot's work: %+v (present %v), want p1 with %d chunks and %d units: every job's", w, ok, n, 10*n)
	}
	calls := b.calls
	if f := tick(time.Second); strings.Contains(f, "event: work") || b.calls != calls {
		t.Fatalf("nothing changed, yet the sums were read again (%d calls) or sent: %.200q", b.calls-calls, f)
	}
	// The oldest job, beyond the list, gets a second node's chunk.
	b.update(func(b *evBackend) {
		b.jobs[0].Nodes = append(b.jobs[0].Nodes, compute.NodeContribution{Node: "p2", Units: 4, Chunks: 1, ComputeSeconds: 2})
	})
	f := tick(statusMinorGap)
	w, ok = workOf(t, f)
	if !ok || w["p2"].Units != 4 || w["p2"].ComputeSeconds != 2 || w["p1"].Chunks != uint64(n) {
		t.Fatalf("after a chunk of an unlisted job, the frame's work: %+v (present %v), want p2 4 units: %.200q", w, ok, f)
	}
	// A change within statusMinorGap of the last read waits for it.
	b.update(func(b *evBackend) { b.jobs[1].Nodes[0].Chunks++ })
	if f := tick(100 * time.Millisecond); strings.Contains(f, "event: work") {
		t.Fatalf("work read again %s after the last: %.200q", 100*time.Millisecond, f)
	}
	if w, ok := workOf(t, tick(statusMinorGap)); !ok || w["p1"].Chunks != uint64(n)+1 {
		t.Fatalf("the change that waited: %+v (present %v), want p1 %d chunks", w, ok, n+1)
	}
}

// A backend without NodeWork sends no work event: the page sums the listed jobs' views.
func TestHubWithoutWorkSource(t *testing.T) {
	b := newEvBackend()
	manyDone(b, 3)
	h := newHub(b, b)
	h.st = hubState{jobs: map[string]*jobSent{}}
	startTicks(h)
	if _, ok := workOf(t, string(h.snapshot())); ok {
		t.Fatal("a work event from a backend that does not sum")
	}
}
