package compute

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkJobs: the job list (views, and heads: JobHeads) of a store holding 20,000 finished π jobs (the default max-jobs),
// which GET /api/v1/jobs and the event stream's poller read; it holds the state's read lock,
// which every apply waits for, while it copies.
func BenchmarkJobs(b *testing.B) {
	st := newTestState(b)
	const n = 20000
	for i := range n {
		id := fmt.Sprintf("j%05d", i)
		st.mustApply(b, Submit{ID: id, Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: 1000, Seed: uint64(i)}}})
		st.mustApply(b, Results{Time: t0.Add(time.Second), Items: []ChunkResult{
			{Chunk: Chunk{Job: id, Range: Range{0, 600}}, Node: "n1", ComputeSeconds: 1, Payload: EncodePiPayload(PiHits(uint64(i), 0, 600))},
			{Chunk: Chunk{Job: id, Range: Range{600, 1000}}, Node: "n2", ComputeSeconds: 1, Payload: EncodePiPayload(PiHits(uint64(i), 600, 1000))},
		}})
	}
	if j, _ := st.Job("j00000"); j.State != StateDone {
		b.Fatalf("job %+v", j)
	}
	b.Run("views", func(b *testing.B) {
		for range b.N {
			if len(st.Jobs()) != n {
				b.Fatal("jobs")
			}
		}
	})
	b.Run("heads", func(b *testing.B) {
		for range b.N {
			if len(st.JobHeads()) != n {
				b.Fatal("heads")
			}
		}
	})
}
