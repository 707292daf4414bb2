package work

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
)

// TestModuleFaultsForgottenWithTheirJobs: a leader that leads for weeks sees many WebAssembly
// jobs whose module failed on a node and that were then cancelled or deleted; its record of each
// job's faults goes with the job at the next reconcile. Before, every such job kept its entry
// for the whole term, so the coordinator's memory grew with the jobs that ever faulted.
func TestModuleFaultsForgottenWithTheirJobs(t *testing.T) {
	c := leadWhileJobsGo(t, 40)
	c.mu.Lock()
	left := len(c.faults)
	c.mu.Unlock()
	if left != 0 {
		t.Fatalf("the coordinator still holds the faults of %d of 40 cancelled or deleted jobs", left)
	}
}

// TestGrantsForgottenWithTheirJobs: the ranges a term leased (or adopted) to each node for a job
// go once the job is cancelled or deleted, as they did only when it finished. Before, every
// lease of every cancelled, failed or deleted job stayed for the whole term (a cancelled long
// π job: thousands), and each result a node handed in was checked against all of them.
func TestGrantsForgottenWithTheirJobs(t *testing.T) {
	c := leadWhileJobsGo(t, 40)
	c.mu.Lock()
	defer c.mu.Unlock()
	for node, gs := range c.granted {
		t.Errorf("node %s still has %d grants of cancelled or deleted jobs", node, len(gs))
	}
}

// TestAdoptionsForgottenWithTheirJobs: the chunks a new leader adopted from its predecessor's
// workers are forgotten with their job (here cancelled), as grants are.
func TestAdoptionsForgottenWithTheirJobs(t *testing.T) {
	store := compute.NewJobStore(compute.NewMemResults())
	defer store.Close()
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1 << 30, Seed: 1}}
	if res := store.ApplyCommand(compute.Submit{ID: "p", Spec: spec, Time: time.Now()}, 0); res != nil {
		t.Fatal(res)
	}
	c := NewCoordinator(CoordinatorConfig{Jobs: store, Logger: discardLogger()}).newLeadership(context.Background(), 5, time.Second)
	c.leaseAt, c.repairAt = time.Time{}, time.Now().Add(time.Hour)
	c.reconcile(time.Now())
	hand := []held{{ID: 9, Term: 4, Chunk: compute.Chunk{Job: "p", Range: compute.Range{Start: 0, End: 1 << 20}}}}
	resp, err := c.sync(context.Background(), peer.ID("a"), &syncRequest{Term: 4, Held: hand})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Adopted) != 1 {
		t.Fatalf("adopted %+v, want the held chunk", resp.Adopted)
	}
	if res := store.ApplyCommand(compute.Cancel{Job: "p", Time: time.Now()}, 0); res != nil {
		if err, ok := res.(error); ok {
			t.Fatal(err)
		}
	}
	c.reconcile(time.Now())
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.adopted) != 0 || len(c.granted) != 0 {
		t.Fatalf("the cancelled job's adoption stayed: adopted %v, granted %v", c.adopted, c.granted)
	}
}

// leadWhileJobsGo runs one term through jobs WebAssembly jobs, each leased to node a, failed by
// its module there, then cancelled or deleted, with a reconcile after each change.
func leadWhileJobsGo(t *testing.T, jobs int) *leadership {
	store := compute.NewJobStore(compute.NewMemResults())
	defer store.Close()
	apply := func(_ context.Context, cmd any) (json.RawMessage, error) {
		res := store.ApplyCommand(cmd, 0)
		if err, ok := res.(error); ok {
			return nil, err
		}
		return json.Marshal(res)
	}
	c := NewCoordinator(CoordinatorConfig{Jobs: store, Apply: apply, Logger: discardLogger()}).newLeadership(context.Background(), 3, time.Second)
	c.leaseAt, c.repairAt = time.Time{}, time.Now().Add(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	syncs := func(node string, req *syncRequest) *syncResponse {
		t.Helper()
		return syncAt(ctx, t, c, node, req)
	}
	for _, n := range []string{"a", "b", "c"} {
		syncs(n, &syncRequest{}) // three working nodes: one fault fails no job
	}
	for i := range jobs {
		id := fmt.Sprintf("w%d", i)
		spec := compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: strings.Repeat("ab", 32), Items: 1 << 20, Reduce: compute.ReduceSum}}
		if res := store.ApplyCommand(compute.Submit{ID: id, Spec: spec, Time: time.Now()}, 0); res != nil {
			t.Fatal(res)
		}
		c.reconcile(time.Now())
		resp := syncs("a", &syncRequest{Want: 1})
		if len(resp.Leases) == 0 || resp.Leases[0].Job != id {
			t.Fatalf("job %s: a got leases %+v", id, resp.Leases)
		}
		l := resp.Leases[0]
		syncs("a", &syncRequest{Failed: []uint64{l.ID}, Faults: []fault{{Lease: l.ID, Chunk: l.Chunk, Msg: "wasm error: unreachable"}}})
		var end any = compute.Delete{Job: id}
		if i%2 == 0 {
			end = compute.Cancel{Job: id, Time: time.Now()}
		}
		if res := store.ApplyCommand(end, 0); res != nil {
			if err, ok := res.(error); ok {
				t.Fatal(err)
			}
		}
		c.reconcile(time.Now())
	}
	return c
}
