package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/webui"
)

// TestCluster_WasmJobInProcess: a module uploaded through the API (raw bytes, application/wasm)
// on every node runs as a wasm job on a 3-node cluster; every replica has the exact result
// (the sum of item indices has a closed form, the C example's maximum is known). A forbidden
// module is refused at upload with its reason, an unknown module at submit, a module in use
// cannot be deleted.
func TestCluster_WasmJobInProcess(t *testing.T) {
	nodes := startCluster(t, 3)
	waitFor(t, 20*time.Second, "leader and token", func() error {
		if _, err := agreedLeader(nodes); err != nil {
			return err
		}
		for _, n := range nodes { // each node checks uploads against its own replica's token
			if n.APIToken() == "" {
				return errors.New("no token on " + n.cfg.Name)
			}
		}
		return nil
	})
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
	var shaSum, shaCollatz string
	for _, n := range nodes { // no module transfer between nodes yet: each node gets the upload
		c := webui.NewClient(n.HTTPURL(), n.APIToken())
		info, err := c.UploadModule(ctx, sum)
		if err != nil {
			t.Fatal(err)
		}
		shaSum = info.SHA256
		if info.Size != int64(len(sum)) || len(info.SHA256) != 64 {
			t.Fatalf("upload answer %+v", info)
		}
		if info, err = c.UploadModule(ctx, collatz); err != nil {
			t.Fatal(err)
		}
		shaCollatz = info.SHA256
		var ae *webui.APIError
		if _, err := c.UploadModule(ctx, bad); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Msg, "path_open") {
			t.Fatalf("forbidden module: %v", err)
		}
	}
	c := webui.NewClient(nodes[1].HTTPURL(), nodes[1].APIToken())
	const items = 300_000_000
	sj, err := c.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: shaSum, Items: items, Reduce: compute.ReduceSum}})
	if err != nil {
		t.Fatal(err)
	}
	cj, err := c.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: shaCollatz, Items: 1_000_000, Reduce: compute.ReduceMax}})
	if err != nil {
		t.Fatal(err)
	}
	var ae *webui.APIError
	if err := c.Do(ctx, http.MethodDelete, "/api/v1/modules/"+shaSum, nil, nil); !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Fatalf("delete a module in use: %v", err)
	}
	if _, err := c.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: strings.Repeat("ab", 32), Items: 5, Reduce: compute.ReduceSum}}); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Fatalf("unknown module: %v", err)
	}
	for _, id := range []string{sj.ID, cj.ID} {
		waitFor(t, 120*time.Second, "job "+id+" done everywhere", func() error {
			for _, n := range nodes {
				if j, ok := n.Job(id); !ok || j.State != compute.StateDone {
					return fmt.Errorf("%s: %v %+v %s", n.cfg.Name, ok, j.State, j.Reason)
				}
			}
			return nil
		})
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
	var mods []webui.ModuleInfo
	if err := c.Do(ctx, http.MethodGet, "/api/v1/modules", nil, &mods); err != nil || len(mods) != 1 || mods[0].SHA256 != shaCollatz {
		t.Fatalf("modules after delete: %+v %v", mods, err)
	}
}
