package webui

import (
	"fmt"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// BenchmarkHubTick: one frame of the event stream's poller over a cluster holding many
// finished jobs and one running (the default max-jobs is 20,000): what every commit of the
// running job costs the node that serves the UI, up to ten times a second.
func BenchmarkHubTick(b *testing.B) {
	for _, heads := range []bool{false, true} {
		for _, n := range []int{100, 20000} {
			b.Run(fmt.Sprintf("heads=%v/jobs=%d", heads, n), func(b *testing.B) { benchHubTick(b, n, heads) })
		}
	}
}

// headJobs is fakeJobs with JobHeads (as node.Node): heads read without copying the views.
type headJobs struct{ *fakeJobs }

func (f headJobs) JobHeads() []compute.JobHead {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]compute.JobHead, len(f.jobs))
	for i, j := range f.jobs {
		out[i] = headOf(j)
	}
	return out
}

func benchHubTick(b *testing.B, n int, heads bool) {
	fj := newFakeJobs()
	for i := range n {
		fj.add(compute.Job{ID: fmt.Sprintf("j%05d", i), Kind: compute.KindPi, Spec: piSpec(1000, uint64(i)), State: compute.StateDone,
			SubmittedAt: t0.Add(time.Duration(i) * time.Second), FinishedAt: t0.Add(time.Duration(i+1) * time.Second),
			DoneUnits: 1000, TotalUnits: 1000,
			Nodes: []compute.NodeContribution{{Node: "peerA", Units: 750, Chunks: 3, ComputeSeconds: 6}, {Node: "peerB", Units: 250, Chunks: 1, ComputeSeconds: 2}}})
	}
	fj.add(compute.Job{ID: "run", Kind: compute.KindPi, Spec: piSpec(1<<40, 1), State: compute.StateRunning, SubmittedAt: t0.Add(time.Duration(n) * time.Second), TotalUnits: 1 << 40})
	be := &fakeBackend{token: testToken, status: Status{Nodes: []NodeStatus{{ID: "peerA", Name: "alpha"}, {ID: "peerB", Name: "beta"}}}}
	var jobs JobBackend = fj
	if heads {
		jobs = headJobs{fj}
	}
	h := newHub(be, jobs)
	h.st.jobs = map[string]*jobSent{}
	now := time.Now()
	h.tick(now, true)
	b.ResetTimer()
	for i := range b.N {
		fj.mu.Lock()
		fj.jobs[len(fj.jobs)-1].DoneUnits += 1000 // a commit of the running job
		fj.mu.Unlock()
		h.tick(now.Add(time.Duration(i+1)*minFrameGap), false)
	}
}

// BenchmarkEventsFirstFrame: what a new client of the event stream costs at a large max-jobs
// (20,000 and the largest, 100,000 finished π jobs): the snapshot frame a client opening the
// page gets from a running hub (made again, as it is after any listed job's view changed), and
// the frame every client gets when one job is submitted. bytes/frame is the frame's size.
func BenchmarkEventsFirstFrame(b *testing.B) {
	for _, n := range []int{20000, 100000} {
		b.Run(fmt.Sprintf("snapshot/jobs=%d", n), func(b *testing.B) {
			h, _ := bigHub(b, n)
			var size int
			b.ResetTimer()
			for range b.N {
				h.st.jobsJSON = nil // as after a listed job's view changed
				size = len(h.snapshot())
			}
			b.ReportMetric(float64(size), "bytes/frame")
			b.ReportMetric(float64(h.heldViews()), "held-view-bytes")
		})
		b.Run(fmt.Sprintf("submit/jobs=%d", n), func(b *testing.B) {
			h, fj := bigHub(b, n)
			now := time.Now()
			var size int
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				fj.submit(compute.Job{ID: fmt.Sprintf("new%06d", i), Kind: compute.KindPi, Spec: piSpec(1000, 1), State: compute.StateQueued,
					SubmittedAt: t0.Add(time.Duration(n+i) * time.Second), TotalUnits: 1000})
				b.StartTimer()
				size = len(h.tick(now.Add(time.Duration(i+1)*minFrameGap), false))
			}
			b.ReportMetric(float64(size), "bytes/frame")
		})
	}
}

// bigJobs is a JobBackend + JobHeadSource over many jobs whose heads are kept, not hashed at
// each read (as node.Node's are): a tick then costs what the hub does, not the fake.
type bigJobs struct {
	*fakeJobs
	heads []compute.JobHead
	byID  map[string]int
}

func (f *bigJobs) JobHeads() []compute.JobHead { return append([]compute.JobHead(nil), f.heads...) }

func (f *bigJobs) Job(id string) (compute.Job, bool) {
	i, ok := f.byID[id]
	if !ok {
		return compute.Job{}, false
	}
	return f.jobs[i], true
}

func (f *bigJobs) submit(j compute.Job) {
	f.byID[j.ID] = len(f.jobs)
	f.jobs = append(f.jobs, j)
	f.heads = append(f.heads, headOf(j))
}

// bigHub is a started hub (its state made, as for its first client) over n finished π jobs.
func bigHub(b *testing.B, n int) (*hub, *bigJobs) {
	fj := &bigJobs{fakeJobs: newFakeJobs(), byID: make(map[string]int, n)}
	for i := range n {
		fj.submit(compute.Job{ID: fmt.Sprintf("j%06d", i), Name: fmt.Sprintf("nightly batch %06d", i), Kind: compute.KindPi, Spec: piSpec(1000, uint64(i)),
			State: compute.StateDone, SubmittedAt: t0.Add(time.Duration(i) * time.Second), FinishedAt: t0.Add(time.Duration(i+1) * time.Second),
			DoneUnits: 1000, TotalUnits: 1000,
			Nodes: []compute.NodeContribution{{Node: "peerA", Units: 750, Chunks: 3, ComputeSeconds: 6}, {Node: "peerB", Units: 250, Chunks: 1, ComputeSeconds: 2}}})
	}
	be := &fakeBackend{token: testToken, status: Status{Nodes: []NodeStatus{{ID: "peerA", Name: "alpha"}, {ID: "peerB", Name: "beta"}}}}
	h := newHub(be, fj)
	h.st = hubState{jobs: map[string]*jobSent{}}
	h.tick(time.Now(), true)
	return h, fj
}

// heldViews is the size of the job views the hub keeps (what clients were last sent).
func (h *hub) heldViews() int {
	n := len(h.st.jobsJSON)
	for _, js := range h.st.jobs {
		n += len(js.full)
	}
	return n
}
