package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

func TestCluster_JobsExactInProcess(t *testing.T) {
	nodes := startCluster(t, 3)
	pi := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 50_000_000, Seed: 3}}
	mb := compute.JobSpec{Kind: compute.KindMandelbrot, Mandel: &compute.MandelParams{Width: 200, Height: 120, CenterX: -0.5, CenterY: 0, Span: 3, MaxIter: 500}}
	pj, mj := runPiAndMandel(t, nodes, pi, mb)
	for _, id := range []string{pj, mj} {
		// Every node is new: each of its chunks was audited before it counted.
		if j, _ := nodes[0].Job(id); j.AuditedUnits == 0 || j.RedoneUnits != 0 {
			t.Fatalf("job %s: audited %d units, redone %d; want every chunk audited, none redone", id, j.AuditedUnits, j.RedoneUnits)
		}
	}
	checkExactEverywhere(t, nodes, pi, pj, mb, mj)
}

// runPiAndMandel submits a π job through nodes[1] and a Mandelbrot job through nodes[2] once the
// cluster has a leader and a token, and waits until both are done on every node.
func runPiAndMandel(t *testing.T, nodes []*testNode, pi, mb compute.JobSpec) (piID, mbID string) {
	t.Helper()
	waitFor(t, 20*time.Second, "leader", func() error { _, err := agreedLeader(nodes); return err })
	waitForToken(t, nodes[1].Node)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
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
	return pj.ID, mj.ID
}

// checkExactEverywhere checks the π job's hits and the Mandelbrot job's image on every node
// against the reference definitions.
func checkExactEverywhere(t *testing.T, nodes []*testNode, pi compute.JobSpec, piID string, mb compute.JobSpec, mbID string) {
	t.Helper()
	want := compute.PiHits(pi.Pi.Seed, 0, pi.Pi.Samples)
	m := *mb.Mandel
	wantImg := make([]uint32, m.Width*m.Height)
	if err := compute.MandelRows(m, 0, m.Height, wantImg); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		r, err := n.PiResult(piID)
		if err != nil || r.Hits != want {
			t.Fatalf("%s: π hits %d (%v), want %d", n.cfg.Name, r.Hits, err, want)
		}
		img, err := n.MandelImage(mbID)
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

// waitForToken waits until n has made its API token, which a test needs to submit through it.
func waitForToken(t *testing.T, n *Node) {
	t.Helper()
	waitFor(t, 20*time.Second, "token", func() error {
		if n.APIToken() == "" {
			return errors.New("no token")
		}
		return nil
	})
}
