package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// A job with chunk_units runs through the real coordinator, raft and compute children: leases
// are runs of whole chunks, and each chunk comes back as a result of its own (the job's
// contributions count exactly one chunk per chunk_units), while the answer stays exact.
func TestCluster_ChunkUnitsExactInProcess(t *testing.T) {
	nodes := startCluster(t, 3)
	waitFor(t, 20*time.Second, "leader", func() error { _, err := agreedLeader(nodes); return err })
	waitFor(t, 20*time.Second, "token", func() error {
		if nodes[1].APIToken() == "" {
			return errors.New("no token")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const cu = compute.MinPiChunkUnits
	pi := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 700*cu + 1234, Seed: 5}, ChunkUnits: cu}
	mb := compute.JobSpec{Kind: compute.KindMandelbrot, Mandel: &compute.MandelParams{Width: 120, Height: 90, CenterX: -0.5, Span: 3, MaxIter: 300}, ChunkUnits: 4}
	pj, err := nodes[1].SubmitJob(ctx, pi)
	if err != nil {
		t.Fatal(err)
	}
	mj, err := nodes[2].SubmitJob(ctx, mb)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{pj.ID, mj.ID} {
		waitFor(t, 120*time.Second, "job "+id+" done everywhere", func() error {
			for _, n := range nodes {
				j, ok := n.Job(id)
				if !ok || j.State != compute.StateDone {
					return fmt.Errorf("%s: %v %+v", n.cfg.Name, ok, j.State)
				}
			}
			return nil
		})
	}
	for _, c := range []struct {
		id     string
		chunks int64
	}{{pj.ID, 701}, {mj.ID, 23}} {
		j, _ := nodes[0].Job(c.id)
		var n int64
		for _, nc := range j.Nodes {
			n += int64(nc.Chunks)
		}
		if n != c.chunks || j.Spec.ChunkUnits == 0 {
			t.Fatalf("job %s (chunk_units %d): %d chunks accepted, want %d: one result per chunk", c.id, j.Spec.ChunkUnits, n, c.chunks)
		}
	}
	want := compute.PiHits(5, 0, pi.Pi.Samples)
	wantImg := make([]uint32, 120*90)
	if err := compute.MandelRows(*mb.Mandel, 0, 90, wantImg); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		r, err := n.PiResult(pj.ID)
		if err != nil || r.Hits != want {
			t.Fatalf("%s: π hits %d (%v), want %d", n.cfg.Name, r.Hits, err, want)
		}
		img, err := n.MandelImage(mj.ID)
		if err != nil {
			t.Fatal(err)
		}
		for i := range wantImg {
			if img[i] != wantImg[i] {
				t.Fatalf("%s: pixel %d = %d, want %d", n.cfg.Name, i, img[i], wantImg[i])
			}
		}
	}
}
