package work

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// TestModuleFaultsSurviveALeaderChange: a job's module fails on two nodes under one leader and
// on a third under the next; the count lives in the job state, so the second leader fails the
// job (it would count one node afresh if the count were its own). Nodes that saw the module
// fail get none of the job's chunks while another node has not tried it.
func TestModuleFaultsSurviveALeaderChange(t *testing.T) {
	store := compute.NewJobStore(compute.NewMemResults())
	defer store.Close()
	spec := compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: strings.Repeat("ab", 32), Items: 1 << 20, Reduce: compute.ReduceSum}}
	if res := store.ApplyCommand(compute.Submit{ID: "w", Spec: spec, Time: time.Now()}, 0); res != nil {
		t.Fatal(res)
	}
	var faults atomic.Int32
	apply := func(_ context.Context, cmd any) (json.RawMessage, error) {
		if _, ok := cmd.(compute.Fault); ok {
			faults.Add(1)
		}
		res := store.ApplyCommand(cmd, 0)
		if err, ok := res.(error); ok {
			return nil, err
		}
		return json.Marshal(res)
	}
	term := func(n uint64) *leadership {
		c := NewCoordinator(CoordinatorConfig{Jobs: store, Apply: apply, Logger: discardLogger()}).newLeadership(context.Background(), n, time.Second)
		c.leaseAt, c.repairAt = time.Time{}, time.Now().Add(time.Hour) // leases at once; no reconcile
		c.jobs["w"] = true
		if err := c.sched.AddJob("w", spec, []compute.Range{{Start: 0, End: spec.TotalUnits()}}, true); err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	syncs := func(c *leadership, node string, req *syncRequest) *syncResponse {
		t.Helper()
		return syncAt(ctx, t, c, node, req)
	}
	// fails makes node take a chunk and report it failed by the module; it reports whether the
	// node got one.
	fails := func(c *leadership, node string) bool {
		t.Helper()
		resp := syncs(c, node, &syncRequest{Want: 1})
		if len(resp.Leases) == 0 {
			return false
		}
		l := resp.Leases[0]
		syncs(c, node, &syncRequest{Failed: []uint64{l.ID}, Faults: []fault{{Lease: l.ID, Chunk: l.Chunk, Msg: "wasm error: unreachable"}}})
		return true
	}
	faultNodes := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			j, _ := store.Job("w")
			if len(j.Faults) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("job faults %+v, want %d nodes", j.Faults, want)
			}
		}
	}

	first := term(7)
	for _, n := range []string{"a", "b", "c"} {
		syncs(first, n, &syncRequest{}) // three working nodes: the job fails after 3
	}
	if !fails(first, "a") {
		t.Fatal("a got no chunk")
	}
	faultNodes(1)
	if fails(first, "a") {
		t.Fatal("a got another chunk of the job while b and c had not tried it")
	}
	if !fails(first, "b") {
		t.Fatal("b got no chunk")
	}
	faultNodes(2)
	if j, _ := store.Job("w"); j.State.Finished() {
		t.Fatalf("job %s after faults on 2 of 3 nodes", j.State)
	}

	second := term(8) // a new leader: its own memory is empty
	for _, n := range []string{"a", "b", "c"} {
		syncs(second, n, &syncRequest{})
	}
	if fails(second, "a") || fails(second, "b") {
		t.Fatal("the new leader gave the job to a node that had seen its module fail")
	}
	if !fails(second, "c") {
		t.Fatal("c got no chunk")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		j, _ := store.Job("w")
		if j.State == compute.StateFailed {
			if !strings.Contains(j.Reason, "failed on 3 nodes") || !strings.Contains(j.Reason, "unreachable") {
				t.Fatalf("reason %q", j.Reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s with faults %+v, want failed", j.State, j.Faults)
		}
	}
	if faults.Load() != 3 {
		t.Fatalf("%d Fault commands, want one per node (3)", faults.Load())
	}
}

// TestFailReasonCountsNodes: a module job failed on one node (a one-machine cluster) says
// "1 node"; it said "1 nodes".
func TestFailReasonCountsNodes(t *testing.T) {
	if got, want := failReason([]string{"a"}, "trap"), "the module failed on 1 node (a): trap"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	if got, want := failReason([]string{"a", "b"}, "trap"), "the module failed on 2 nodes (a, b): trap"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}
