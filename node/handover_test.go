package node

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/node/child"
	"github.com/hydra-compute/hydra/webui"
)

// TestLeaderHandsOverBeforeItsWorkStops: a leader stopped gracefully (SIGTERM) while its compute
// child is in a WebAssembly call that runs on (the call cannot be interrupted: the child hands in
// only once it returns, or is killed at its stop timeout, 30 s) stopped its work first and
// handed leadership over only then. A service manager's grace (systemd's 30 s) ends before:
// the leader was killed without handing over, and the cluster waited for an election. The
// leader now hands over first; the work stops after.
func TestLeaderHandsOverBeforeItsWorkStops(t *testing.T) {
	t.Setenv(child.EnvWasmCallTimeout, "5m") // the stuck call is not cut short: only the stop ends it
	// n0 founds the cluster and leads; only it computes, so the stuck item is its own.
	n0 := newTestNode(t, t.TempDir(), "n0", func(c *Config) { c.CPUs = 1 })
	others := []*testNode{
		newTestNode(t, t.TempDir(), "n1", func(c *Config) { c.Compute = false }),
		newTestNode(t, t.TempDir(), "n2", func(c *Config) { c.Compute = false }),
	}
	n0.start(t)
	waitFor(t, 30*time.Second, "n0 leads alone", func() error {
		if l, ok := n0.raft.Leader(); !ok || l != n0.ID() {
			return fmt.Errorf("leader %v %v", l, ok)
		}
		return nil
	})
	nodes := append([]*testNode{n0}, others...)
	connectAll(t, nodes)
	for _, n := range others {
		n.start(t)
	}
	waitFor(t, 60*time.Second, "three voters under n0", func() error {
		if l, err := agreedLeader(nodes); err != nil || l != n0.ID().String() {
			return fmt.Errorf("leader %s: %v", l, err)
		}
		return wantVoters(n0, 3)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := webui.NewClient(n0.HTTPURL(), n0.APIToken())
	code, err := os.ReadFile("../compute/wasm/testdata/loop.wasm") // item 1000 never returns
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.UploadModule(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: info.SHA256, Items: 100_000, Reduce: compute.ReduceSum}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "n0 computing the chunk that holds item 1000", func() error {
		if r, _, ok := n0.worker.InHand(); !ok || r.Start > 1000 || r.End <= 1000 {
			return fmt.Errorf("in hand: %v %v", r, ok)
		}
		return nil
	})
	stopped := time.Now()
	n0.cancel() // SIGTERM
	n0.cancel = nil
	// Well inside the child's 30 s stop timeout, which the old order waited out first.
	waitFor(t, 15*time.Second, "another node leads while n0 still stops its work", func() error {
		select {
		case err := <-n0.done:
			t.Fatalf("n0 stopped (%v) after %s before another node led", err, time.Since(stopped))
		default:
		}
		l, err := agreedLeader(others)
		if err != nil || l == n0.ID().String() {
			return fmt.Errorf("leader %s: %v", l, err)
		}
		return nil
	})
	select {
	case <-n0.done:
	case <-time.After(time.Minute): // the child's stop timeout, then the rest of the stop
		t.Fatal("n0 did not stop")
	}
}
