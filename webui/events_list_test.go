package webui

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// The bounded job list of the event stream: the newest maxListedJobs, the jobcount event, and
// the job events of jobs beyond the list spread over frames.

// manyDone adds n finished π jobs to b, the i-th submitted i seconds after t0, IDs d00000….
func manyDone(b *evBackend, n int) {
	for i := range n {
		b.add(compute.Job{ID: fmt.Sprintf("d%05d", i), Kind: compute.KindPi, State: compute.StateDone, SubmittedAt: t0.Add(time.Duration(i) * time.Second),
			FinishedAt: t0.Add(time.Duration(i+1) * time.Second), DoneUnits: 10, TotalUnits: 10,
			Spec:  compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 10}},
			Nodes: []compute.NodeContribution{{Node: "p1", Units: 10, Chunks: 1}}})
	}
}

// listedIDs decodes a "jobs" event's data into its jobs' IDs.
func listedIDs(t *testing.T, data string) []string {
	t.Helper()
	var vs []JobView
	if err := json.Unmarshal([]byte(data), &vs); err != nil {
		t.Fatalf("jobs event %.200q: %v", data, err)
	}
	ids := make([]string, len(vs))
	for i, v := range vs {
		ids[i] = v.ID
	}
	return ids
}

// wantNewest checks that ids are the newest len(ids) of manyDone's jobs d00000…d{n-1}, newest first.
func wantNewest(t *testing.T, ids []string, n int) {
	t.Helper()
	if len(ids) != maxListedJobs {
		t.Fatalf("the jobs event lists %d jobs, want the newest %d", len(ids), maxListedJobs)
	}
	for i, id := range ids {
		if want := fmt.Sprintf("d%05d", n-1-i); id != want {
			t.Fatalf("listed job %d is %s, want %s (newest first)", i, id, want)
		}
	}
}

// The stream's job list is bounded: a new client's snapshot lists the newest maxListedJobs jobs,
// newest first, and a jobcount event says how many there are; a submit sends the bounded list
// again; a job beyond the list still sends its job event when it changes (a page may show it).
// Without the bound every client got every job (50 MB at 100,000 jobs), at each submit too.
func TestEventsJobListIsBounded(t *testing.T) {
	b := newEvBackend()
	n := maxListedJobs + 50
	manyDone(b, n)
	srv := newEvServer(t, b, b)
	ch, _ := openEvents(t, srv.URL)
	waitEvent(t, ch, "jobcount", func(d string) bool { return d == fmt.Sprintf(`{"total":%d}`, n) })
	wantNewest(t, listedIDs(t, waitEvent(t, ch, "jobs", nil).data), n)

	b.update(func(b *evBackend) {
		b.jobs = append(b.jobs, compute.Job{ID: "new", Kind: compute.KindPi, State: compute.StateQueued, SubmittedAt: t0.Add(time.Duration(n) * time.Second),
			TotalUnits: 10, Spec: compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 10}}})
	})
	waitEvent(t, ch, "jobcount", func(d string) bool { return d == fmt.Sprintf(`{"total":%d}`, n+1) })
	ids := listedIDs(t, waitEvent(t, ch, "jobs", nil).data)
	if len(ids) != maxListedJobs || ids[0] != "new" || ids[1] != fmt.Sprintf("d%05d", n-1) {
		t.Fatalf("after a submit the list is %d jobs from %v, want %d from new", len(ids), ids[:2], maxListedJobs)
	}

	// The oldest job, far beyond the list, runs again: its view is sent.
	b.update(func(b *evBackend) { b.jobs[0].State, b.jobs[0].DoneUnits = compute.StateRunning, 5 })
	waitEvent(t, ch, "job", func(d string) bool {
		return strings.Contains(d, `"id":"d00000"`) && strings.Contains(d, `"state":"running"`)
	})
}

// TestHubJobListChanges drives the hub directly: removing a job beyond the list changes the
// count only (retention deleting old jobs one by one sent the whole list each time); removing a
// listed one brings the next into the list, with its view; the hub keeps the views of the
// listed jobs only.
func TestHubJobListChanges(t *testing.T) {
	b := newEvBackend()
	n := maxListedJobs + 50
	manyDone(b, n)
	h := newHub(b, b)
	h.st = hubState{jobs: map[string]*jobSent{}}
	tick := startTicks(h)
	held := func() int {
		k := 0
		for _, js := range h.st.jobs {
			if js.full != nil {
				k++
			}
		}
		return k
	}
	if k := held(); k != maxListedJobs {
		t.Fatalf("the hub holds %d job views, want the %d listed", k, maxListedJobs)
	}
	snap := string(h.snapshot())
	if !strings.Contains(snap, fmt.Sprintf("event: jobcount\ndata: {\"total\":%d}\n\n", n)) {
		t.Fatalf("snapshot without the count: %.300q", snap)
	}
	_, list, _ := strings.Cut(snap, "event: jobs\ndata: ")
	wantNewest(t, listedIDs(t, strings.TrimSuffix(list, "\n\n")), n)

	b.update(func(b *evBackend) { b.jobs = b.jobs[1:] }) // the oldest, not listed
	f := tick(100 * time.Millisecond)
	if strings.Contains(f, "event: jobs\n") || !strings.Contains(f, fmt.Sprintf(`event: jobcount`+"\ndata: {\"total\":%d}", n-1)) {
		t.Fatalf("an unlisted job removed: %.300q", f)
	}
	b.update(func(b *evBackend) { b.jobs = b.jobs[:len(b.jobs)-1] }) // the newest, listed
	f = tick(100 * time.Millisecond)
	_, list, ok := strings.Cut(f, "event: jobs\ndata: ")
	if !ok {
		t.Fatalf("a listed job removed, no jobs event: %.300q", f)
	}
	list, _, _ = strings.Cut(list, "\n\n")
	wantNewest(t, listedIDs(t, list), n-1)
	if k := held(); k != maxListedJobs {
		t.Fatalf("the hub holds %d job views, want the %d listed", k, maxListedJobs)
	}
}

// TestHubUnlistedJobsSpreadOverFrames: a node renamed changes every job's view; the job events
// of the jobs beyond the list go out at most maxUnlistedPerFrame a frame (one frame held every
// job's view before), and all of them are sent.
func TestHubUnlistedJobsSpreadOverFrames(t *testing.T) {
	b := newEvBackend()
	n := maxListedJobs + maxUnlistedPerFrame + 100
	manyDone(b, n)
	h := newHub(b, b)
	h.st = hubState{jobs: map[string]*jobSent{}}
	tick := startTicks(h)
	b.update(func(b *evBackend) { b.status.Nodes[0].Name = "renamed" })
	got := map[string]bool{}
	for i := range 3 {
		f := tick(jobFullGap)
		k := strings.Count(f, "event: job\n")
		if k > maxListedJobs+maxUnlistedPerFrame {
			t.Fatalf("frame %d holds %d job events, want at most %d", i, k, maxListedJobs+maxUnlistedPerFrame)
		}
		for _, ev := range strings.Split(f, "\n\n") {
			if data, ok := strings.CutPrefix(ev, "event: job\ndata: "); ok {
				var v JobView
				if err := json.Unmarshal([]byte(data), &v); err != nil || !strings.Contains(data, `"renamed"`) {
					t.Fatalf("job event %q: %v", data, err)
				}
				got[v.ID] = true
			}
		}
	}
	if len(got) != n {
		t.Fatalf("%d jobs' views sent after the rename, want all %d", len(got), n)
	}
}
