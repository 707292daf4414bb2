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
