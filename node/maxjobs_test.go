package node

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/consensus"
)

// TestMaxJobsMemory measures what one job costs the job state every node holds in memory (a
// finished one-chunk π job, its name at MaxJobName: the least a job can hold, so a bound that
// fails here fails for every kind) and checks that a cluster at the largest max-jobs setting
// keeps it within a few hundred MB: the setting allowed a million jobs, 2 GB on every node.
func TestMaxJobsMemory(t *testing.T) {
	st := compute.NewJobStore(compute.NewMemResults())
	defer st.Close()
	const n = 20_000
	name := strings.Repeat("N", compute.MaxJobName)
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	node := "12D3KooWN6aQVRwWFyPDQJMEiQ3DsXwMszgGxkXzyjWXuu5nNrE5"
	apply := func(cmd any) {
		if err, ok := st.ApplyCommand(cmd, 0).(error); ok {
			t.Fatal(err)
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		id := fmt.Sprintf("%016x", i)
		apply(compute.Submit{ID: id, Time: t0, Submitter: "node-1", Spec: compute.JobSpec{
			Kind: compute.KindPi, Name: name, Pi: &compute.PiParams{Samples: 1, Seed: uint64(i)}}})
		apply(compute.Results{Time: t0.Add(time.Second), Items: []compute.ChunkResult{{
			Chunk: compute.Chunk{Job: id, Range: compute.Range{Start: 0, End: 1}}, Node: node, ComputeSeconds: 1,
			Payload: compute.EncodePiPayload(compute.PiHits(uint64(i), 0, 1))}}})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if j, _ := st.Job(fmt.Sprintf("%016x", n-1)); j.State != compute.StateDone {
		t.Fatalf("job %+v", j)
	}
	perJob := int64(after.HeapAlloc-before.HeapAlloc) / n
	atMax := perJob * consensus.MaxMaxJobs
	t.Logf("%d bytes of job state per job: %d MiB at max-jobs %d", perJob, atMax>>20, consensus.MaxMaxJobs)
	if budget := int64(300 << 20); atMax > budget {
		t.Fatalf("max-jobs %d would hold %d MiB of job state on every node, more than %d MiB",
			consensus.MaxMaxJobs, atMax>>20, budget>>20)
	}
	runtime.KeepAlive(st)
}
