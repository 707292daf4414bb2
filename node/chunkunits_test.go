package node

import (
	"testing"

	"github.com/hydra-compute/hydra/compute"
)

// A job with chunk_units runs through the real coordinator, raft and compute children: leases
// are runs of whole chunks, and each chunk comes back as a result of its own (the job's
// contributions count exactly one chunk per chunk_units), while the answer stays exact.
func TestCluster_ChunkUnitsExactInProcess(t *testing.T) {
	nodes := startCluster(t, 3)
	const cu = compute.MinPiChunkUnits
	pi := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 700*cu + 1234, Seed: 5}, ChunkUnits: cu}
	mb := compute.JobSpec{Kind: compute.KindMandelbrot, Mandel: &compute.MandelParams{Width: 120, Height: 90, CenterX: -0.5, Span: 3, MaxIter: 300}, ChunkUnits: 4}
	pj, mj := runPiAndMandel(t, nodes, pi, mb)
	for _, c := range []struct {
		id     string
		chunks int64
	}{{pj, 701}, {mj, 23}} {
		j, _ := nodes[0].Job(c.id)
		var n int64
		for _, nc := range j.Nodes {
			n += int64(nc.Chunks)
		}
		if n != c.chunks || j.Spec.ChunkUnits == 0 {
			t.Fatalf("job %s (chunk_units %d): %d chunks accepted, want %d: one result per chunk", c.id, j.Spec.ChunkUnits, n, c.chunks)
		}
	}
	checkExactEverywhere(t, nodes, pi, pj, mb, mj)
}
