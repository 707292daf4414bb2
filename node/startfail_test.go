//go:build unix

package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/node/child"
	"github.com/hydra-compute/hydra/p2p"
)

// A Run whose start fails after the compute process and the HTTP server started releases all
// that New opened and Run started: the compute process, the HTTP port, raft, the libp2p host,
// the job state and the data directory's lock. It returned with all of them open, which
// `hydra node` does not notice (it exits), but a program embedding the node kept them. The
// failure is a real one: discovery already runs on the node's host, so Run's start of it
// fails.
func TestRunFailedStartReleasesAll(t *testing.T) {
	dir := t.TempDir()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	listen := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freeTCPPort(t))
	fixed := func(c *Config) { c.HTTPAddr, c.Listen = httpAddr, []string{listen} }
	n := newTestNode(t, dir, "n0", fixed)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := n.host.StartDiscovery(ctx, p2p.DiscoveryConfig{}); err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- n.Run(ctx) }()
	select {
	case err := <-ran:
		if !errors.Is(err, p2p.ErrDiscoveryStarted) {
			t.Fatalf("Run: %v, want its discovery start to fail", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not return after its start failed")
	}
	if n.runner == nil {
		t.Fatal("the compute process never started: the start failed before the step under test")
	}
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 20, Seed: 1}}
	if _, err := n.runner.Run(ctx, child.Chunk{ID: 1, Spec: spec, Range: compute.Range{Start: 0, End: 1 << 20}}, nil); !errors.Is(err, child.ErrClosed) {
		t.Errorf("the compute process after the failed start: %v, want it closed", err)
	}
	cmd, err := consensus.NewCommand(consensus.OpAdmit, consensus.AdmitMode{Mode: consensus.AdmitLAN})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.raft.Apply(ctx, cmd); !errors.Is(err, consensus.ErrShutdown) {
		t.Errorf("raft after the failed start: %v, want it shut down", err)
	}
	if c, err := net.Dial("tcp", httpAddr); err == nil {
		c.Close()
		t.Errorf("the HTTP port %s still answers after the failed start", httpAddr)
	}
	// The same data directory (its lock, the raft and job stores), HTTP port and libp2p port
	// open again.
	again := newTestNode(t, dir, "n0", fixed)
	again.Close()
}
