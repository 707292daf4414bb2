package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/wasm"
	"github.com/hydra-compute/hydra/node/child"
	"github.com/hydra-compute/hydra/webui"
)

// TestCluster_WasmJobInProcess: a module uploaded through the API (raw bytes, application/wasm)
// on one node is held by another member when the upload answers, and runs as a wasm job on a
// 3-node cluster, a node whose copy was removed fetching it for its chunks; every replica has the exact result
// (the sum of item indices has a closed form, the C example's maximum is known). A forbidden
// module is refused at upload with its reason, an unknown module at submit, a module in use
// cannot be deleted, one no job uses is deleted on every member.
func TestCluster_WasmJobInProcess(t *testing.T) {
	nodes := startCluster(t, 3)
	waitLeaderAndTokens(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sum, err := os.ReadFile("../compute/wasm/testdata/sum.wasm")
	if err != nil {
		t.Fatal(err)
	}
	collatz, err := os.ReadFile("../examples/collatz/collatz.wasm")
	if err != nil {
		t.Fatal(err)
	}
	bad, err := os.ReadFile("../compute/wasm/testdata/readfile.wasm")
	if err != nil {
		t.Fatal(err)
	}
	// One upload on one node: it answers once another member holds the module; the members fetch
	// it over the module protocol, not through the raft log.
	up := webui.NewClient(nodes[0].HTTPURL(), nodes[0].APIToken())
	var shaSum, shaCollatz string
	for _, code := range [][]byte{sum, collatz, sum} { // the same bytes twice is fine
		info, err := up.UploadModule(ctx, code)
		if err != nil {
			t.Fatal(err)
		}
		if info.Size != int64(len(code)) || len(info.SHA256) != 64 {
			t.Fatalf("upload answer %+v", info)
		}
		held := 0
		for _, n := range nodes {
			if n.hasModule(info.SHA256) {
				held++
			}
		}
		if held < 2 {
			t.Fatalf("upload answered with the module on %d members, want at least 2", held)
		}
		if &code[0] == &sum[0] {
			shaSum = info.SHA256
		} else {
			shaCollatz = info.SHA256
		}
	}
	var ae *webui.APIError
	if _, err := up.UploadModule(ctx, bad); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Msg, "path_open") {
		t.Fatalf("forbidden module: %v", err)
	}
	// A node that lacks a module (as one that joined later) fetches it for its chunks.
	waitFor(t, 30*time.Second, "every member holds the modules", func() error {
		for _, n := range nodes {
			if !n.hasModule(shaSum) || !n.hasModule(shaCollatz) {
				return errors.New(n.cfg.Name + " lacks one")
			}
		}
		return nil
	})
	for _, sha := range []string{shaSum, shaCollatz} {
		if err := os.Remove(filepath.Join(nodes[2].modulesDir(), sha)); err != nil {
			t.Fatal(err)
		}
	}
	c := webui.NewClient(nodes[1].HTTPURL(), nodes[1].APIToken())
	const items = 2_000_000_000
	sj, err := c.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: shaSum, Items: items, Reduce: compute.ReduceSum}})
	if err != nil {
		t.Fatal(err)
	}
	cj, err := c.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: shaCollatz, Items: 1_000_000, Reduce: compute.ReduceMax}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, http.MethodDelete, "/api/v1/modules/"+shaSum, nil, nil); !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Fatalf("delete a module in use: %v", err)
	}
	if _, err := c.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: strings.Repeat("ab", 32), Items: 5, Reduce: compute.ReduceSum}}); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Fatalf("unknown module: %v", err)
	}
	doneEverywhere := func(id string) {
		t.Helper()
		waitFor(t, 120*time.Second, "job "+id+" done everywhere", func() error {
			for _, n := range nodes {
				if j, ok := n.Job(id); !ok || j.State != compute.StateDone {
					return fmt.Errorf("%s: %v %+v %s", n.cfg.Name, ok, j.State, j.Reason)
				}
			}
			return nil
		})
	}
	doneEverywhere(sj.ID)
	doneEverywhere(cj.ID)
	n2Units := func(id string) uint64 {
		j, _ := nodes[0].Job(id)
		for _, c := range j.Nodes {
			if c.Node == nodes[2].ID().String() {
				return c.Units
			}
		}
		return 0
	}
	// The other two may finish a sum job before n2's first chunk comes back (n2 fetches the
	// module first, and its compute child runs at idle priority on a busy machine; a backup copy
	// of its chunk wins then): the job is sized to take the cluster a few seconds (300 million
	// items took well under one, and a fetch 2 s late left n2 out), and a few jobs, each after
	// n2's copy was removed again, make sure it takes part in one.
	n2, jobs := n2Units(sj.ID), 1
	for ; n2 == 0 && jobs < 4; jobs++ {
		if err := os.Remove(filepath.Join(nodes[2].modulesDir(), shaSum)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if sj, err = c.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: shaSum, Items: items, Reduce: compute.ReduceSum}}); err != nil {
			t.Fatal(err)
		}
		doneEverywhere(sj.ID)
		n2 = n2Units(sj.ID)
	}
	if n2 == 0 || !nodes[2].hasModule(shaSum) {
		t.Fatalf("n2 (module removed) computed %d items of the last of %d sum jobs, holds the module again: %v", n2, jobs, nodes[2].hasModule(shaSum))
	}
	wantSum := fmt.Sprint(uint64(items) * (items - 1) / 2)
	wantMax := fmt.Sprint(uint64(524)<<40 | 837799)
	for _, n := range nodes {
		var res webui.ResultView
		if err := webui.NewClient(n.HTTPURL(), "").Do(ctx, http.MethodGet, "/api/v1/jobs/"+sj.ID+"/result", nil, &res); err != nil {
			t.Fatal(err)
		}
		if res.WasmResult == nil || res.Reduce != compute.ReduceSum || res.Value != wantSum || !res.Complete {
			t.Fatalf("%s: sum result %+v, want %s", n.cfg.Name, res.WasmResult, wantSum)
		}
		r, err := n.WasmResult(cj.ID)
		if err != nil || r.Value != wantMax {
			t.Fatalf("%s: collatz %+v %v, want %s", n.cfg.Name, r, err, wantMax)
		}
	}
	if err := c.Do(ctx, http.MethodDelete, "/api/v1/modules/"+shaSum, nil, nil); err != nil {
		t.Fatalf("delete a module no job uses: %v", err)
	}
	for _, n := range nodes {
		if n.hasModule(shaSum) {
			t.Fatalf("%s still holds the deleted module", n.cfg.Name)
		}
	}
	var mods []webui.ModuleInfo
	if err := c.Do(ctx, http.MethodGet, "/api/v1/modules", nil, &mods); err != nil || len(mods) != 1 || mods[0].SHA256 != shaCollatz {
		t.Fatalf("modules after delete: %+v %v", mods, err)
	}
}

// TestCluster_WasmModuleFaults: modules that read a file or open a socket are refused at upload
// with the import named; a module that traps and one that loops forever each fail their job (state failed, the reason names the fault and the
// nodes it failed on) once their chunks failed on all three nodes; the nodes are unharmed: a
// job after them is exact.
func TestCluster_WasmModuleFaults(t *testing.T) {
	t.Setenv(child.EnvWasmCallTimeout, "1s") // the compute children inherit it: a stuck call is found after 1 s of CPU
	var nodes []*testNode
	for i := range 3 {
		nodes = append(nodes, newTestNode(t, t.TempDir(), fmt.Sprintf("n%d", i), func(c *Config) { c.CPUs = 1 }))
	}
	connectAll(t, nodes)
	for _, n := range nodes {
		n.start(t)
	}
	waitLeaderAndTokens(t, nodes)
	// Each node's compute child must spend 1 s of CPU in loop.wasm before its call is found
	// stuck, at idle priority: while the other packages' tests fill both cores (CI runs them
	// side by side) that took about three minutes once, where it takes 15 s on a quiet machine.
	// The bounds are for a hang, not for speed.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	c := webui.NewClient(nodes[0].HTTPURL(), nodes[0].APIToken())
	upload := func(name string) (webui.ModuleInfo, error) {
		code, err := os.ReadFile("../compute/wasm/testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return c.UploadModule(ctx, code)
	}
	for name, want := range map[string]string{"readfile.wasm": "path_open", "socket.wasm": "sock_"} {
		var ae *webui.APIError
		if _, err := upload(name); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Msg, want) {
			t.Fatalf("%s: %v, want 400 naming %s", name, err, want)
		}
	}
	jobs := map[string]string{} // job → what its reason must say
	// (A module allocating past the memory cap is a fault like a trap: node/child TestWasmTasks.)
	for name, want := range map[string]string{"trap.wasm": "unreachable", "loop.wasm": wasm.ErrTimeout.Error()} {
		info, err := upload(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		j, err := c.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: info.SHA256, Items: 100_000, Reduce: compute.ReduceSum}})
		if err != nil {
			t.Fatal(err)
		}
		jobs[j.ID] = want
	}
	for id, want := range jobs {
		waitFor(t, 4*time.Minute, "job "+id+" failed everywhere", func() error {
			for _, n := range nodes {
				j, ok := n.Job(id)
				if !ok || j.State != compute.StateFailed {
					return fmt.Errorf("%s: %v %s", n.cfg.Name, ok, j.State)
				}
				if !strings.Contains(j.Reason, want) || !strings.Contains(j.Reason, "on 3 nodes") {
					t.Fatalf("job %s: reason %q, want one naming %q on 3 nodes", id, j.Reason, want)
				}
			}
			return nil
		})
	}
	var v webui.JobView
	for id := range jobs {
		if err := c.Do(ctx, http.MethodGet, "/api/v1/jobs/"+id, nil, &v); err != nil || v.State != compute.StateFailed || v.Reason == "" {
			t.Fatalf("API view of %s: %+v %v", id, v, err)
		}
	}
	sum, err := upload("sum.wasm")
	if err != nil {
		t.Fatal(err)
	}
	const items = 50_000_000
	j, err := c.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: sum.SHA256, Items: items, Reduce: compute.ReduceSum}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the job after the faults done", func() error {
		r, err := nodes[2].WasmResult(j.ID)
		if err != nil || !r.Complete {
			return fmt.Errorf("%+v %v", r, err)
		}
		if r.Value != fmt.Sprint(uint64(items)*(items-1)/2) {
			t.Fatalf("sum after the faults: %s", r.Value)
		}
		return nil
	})
}
