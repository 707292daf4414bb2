package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/consensus"
)

// TestCluster_ForwardedResultsCheckedAgainstCommitments: the replicas trust the log's chunk
// results to match their commitments (compute.ResultLeaves), so the leader refuses a Results
// command a member forwards whose payload differs from its root, and accepts the same result
// sent with its payload's root.
func TestCluster_ForwardedResultsCheckedAgainstCommitments(t *testing.T) {
	nodes := startClusterWith(t, 2, func(c *Config) { c.Compute = false }) // the job waits for us
	// The member is a node the wait saw follow. A second look after the wait could fail (an
	// election in between), and with its error dropped the member was nodes[0], perhaps the
	// leader, whose own proposals the leader's check (CheckForwarded) never sees: the result
	// that differs from its commitment would have been accepted, a failure of the test.
	member := without(nodes, waitLeader(t, nodes, 20*time.Second))[0]
	waitForToken(t, member.Node)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := compute.MandelParams{Width: 16, Height: 8, CenterX: -0.5, Span: 3, MaxIter: 100}
	job, err := member.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindMandelbrot, Mandel: &p})
	if err != nil {
		t.Fatal(err)
	}
	r := compute.Range{Start: 0, End: 2}
	counts := make([]uint32, 2*p.Width)
	if _, err := compute.MandelPixels(p, 0, len(counts), counts, 1, nil); err != nil {
		t.Fatal(err)
	}
	root, err := compute.MandelRoot(r.Start, p.Width, counts)
	if err != nil {
		t.Fatal(err)
	}
	forward := func(payload []byte) error {
		item := compute.ChunkResult{Chunk: compute.Chunk{Job: job.ID, Range: r}, Node: member.ID().String(), Payload: payload, Root: root}
		op, b, err := compute.EncodeCommand(compute.Results{Time: time.Now(), Audited: true, Items: []compute.ChunkResult{item}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = member.Raft().Apply(ctx, consensus.Command{Op: consensus.Op(op), Payload: b})
		return err
	}
	changed := append([]uint32(nil), counts...)
	changed[5]++ // committed to the right rows, sent others
	if err := forward(compute.EncodeMandelPayload(changed)); !errors.Is(err, consensus.ErrRejected) || !strings.Contains(err.Error(), "commitment") {
		t.Fatalf("a forwarded result that differs from its commitment: %v", err)
	}
	if err := forward(compute.EncodeMandelPayload(counts)); err != nil {
		t.Fatalf("a forwarded result that matches its commitment: %v", err)
	}
	waitFor(t, 20*time.Second, "the matching result counted", func() error {
		for _, n := range nodes {
			if j, ok := n.Job(job.ID); !ok || j.DoneUnits != r.Len() {
				return fmt.Errorf("%s: %d units done", n.cfg.Name, j.DoneUnits)
			}
		}
		return nil
	})
}
