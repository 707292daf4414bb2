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
	"github.com/hydra-compute/hydra/webui"
)

// waitLeaderAndTokens waits until nodes agree on a leader, each knows every one of them as a
// server and holds the API token (each node checks uploads against its own replica's token).
func waitLeaderAndTokens(t *testing.T, nodes []*testNode) {
	t.Helper()
	waitFor(t, 20*time.Second, "leader and token", func() error {
		if _, err := agreedLeader(nodes); err != nil {
			return err
		}
		for _, n := range nodes {
			if n.APIToken() == "" || len(n.raft.Servers()) != len(nodes) {
				return errors.New("no token or not every server on " + n.cfg.Name)
			}
		}
		return nil
	})
}

// TestJobWhoseModuleIsGoneFails: a WebAssembly job whose module no member holds any more (every
// copy deleted under it, or every member that held it removed) fails, its reason saying so, once
// the nodes that run its chunks all found it gone. Before, each node's fetch failed, the chunk
// was leased again, and the job stayed running for ever.
func TestJobWhoseModuleIsGoneFails(t *testing.T) {
	nodes := startCluster(t, 2)
	waitLeaderAndTokens(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, err := os.ReadFile("../compute/wasm/testdata/sum.wasm")
	if err != nil {
		t.Fatal(err)
	}
	c := webui.NewClient(nodes[0].HTTPURL(), nodes[0].APIToken())
	info, err := c.UploadModule(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	j, err := c.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: info.SHA256, Items: 1 << 60, Reduce: compute.ReduceSum}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := os.Remove(filepath.Join(n.modulesDir(), info.SHA256)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	// A chunk begun before the removal runs on (its child has the module); the bound is for a
	// job that never fails, not for speed: under the whole suite's load a compute child at idle
	// priority took over a minute.
	waitFor(t, 3*time.Minute, "job "+j.ID+" failed everywhere", func() error {
		for _, n := range nodes {
			v, ok := n.Job(j.ID)
			if !ok || v.State != compute.StateFailed {
				return fmt.Errorf("%s: %v %s", n.cfg.Name, ok, v.State)
			}
			if !strings.Contains(v.Reason, "held by no member") || !strings.Contains(v.Reason, "on 2 nodes") {
				t.Fatalf("job %s: reason %q, want the module held by no member, on 2 nodes", j.ID, v.Reason)
			}
		}
		return nil
	})
}

// TestParamsForAModuleWithoutHydraInitAreRefused: a job with params whose module exports no
// hydra_init is refused at submit (400, saying so). Before, it was committed, every chunk failed
// on every node (the compute child does not drop params silently), and the job failed only once
// three nodes had tried it. Params for a module with hydra_init are taken.
func TestParamsForAModuleWithoutHydraInitAreRefused(t *testing.T) {
	nodes := startCluster(t, 1)
	waitForToken(t, nodes[0].Node)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := webui.NewClient(nodes[0].HTTPURL(), nodes[0].APIToken())
	upload := func(path string) string {
		code, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.UploadModule(ctx, code)
		if err != nil {
			t.Fatal(err)
		}
		return info.SHA256
	}
	sum, monte := upload("../compute/wasm/testdata/sum.wasm"), upload("../examples/montecarlo/montecarlo.wasm")
	var ae *webui.APIError
	_, err := c.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: sum, Items: 10, Reduce: compute.ReduceSum, Params: `{"k":3}`}})
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Msg, "no hydra_init") {
		t.Fatalf("params for a module without hydra_init: %v, want 400 saying it exports no hydra_init", err)
	}
	if len(nodes[0].Jobs()) != 0 {
		t.Fatalf("the refused job was committed: %d jobs", len(nodes[0].Jobs()))
	}
	if _, err := c.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: sum, Items: 10, Reduce: compute.ReduceSum}}); err != nil {
		t.Fatalf("no params for a module without hydra_init: %v", err)
	}
	if _, err := c.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: monte, Items: 10, Reduce: compute.ReduceSum, Params: `{"samples":1000}`}}); err != nil {
		t.Fatalf("params for a module with hydra_init: %v", err)
	}
}
