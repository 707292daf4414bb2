//go:build unix

package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/webui"
)

// TestSystem_WasmExamplesExactThroughLeaderKill: the three examples (primes and montecarlo in
// Go, collatz in C), uploaded once to a cluster of 3 `hydra node` processes, run as jobs over
// their full ranges while the leader is SIGKILLed midway; every surviving node's result is the
// value the same code computes natively (the examples' Go builds, run here).
func TestSystem_WasmExamplesExactThroughLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	examples := []struct {
		dir, module, reduce, params string
		items                       uint64
	}{
		{"primes", "primes.wasm", "sum", `{"k":2}`, 10_000_000},
		{"montecarlo", "montecarlo.wasm", "sum", `{"s0":100,"strike":110,"r":0.05,"sigma":0.2,"t":1,"seed":7}`, 2_000_000},
		{"collatz", "collatz.wasm", "max", "", 3_000_000},
	}
	// The native references, built and run while the cluster starts.
	native := make([]string, len(examples))
	done := make(chan error, 1)
	go func() {
		bin := t.TempDir()
		for i, ex := range examples {
			exe := filepath.Join(bin, ex.dir)
			if out, err := goRelease("build", []string{"-o", exe, "../examples/" + ex.dir}).CombinedOutput(); err != nil {
				done <- fmt.Errorf("go build %s: %w: %s", ex.dir, err, out)
				return
			}
			args := []string{"-hi", strconv.FormatUint(ex.items, 10)}
			if ex.params != "" {
				args = append(args, "-params", ex.params)
			}
			out, err := exec.Command(exe, args...).Output()
			if err != nil {
				done <- err
				return
			}
			native[i] = strings.Fields(string(out))[0]
		}
		done <- nil
	}()

	ps, token := startProcCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := ps[0].client(token)
	ids := make([]string, len(examples))
	for i, ex := range examples {
		code, err := os.ReadFile("../examples/" + ex.dir + "/" + ex.module)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.UploadModule(ctx, code)
		if err != nil {
			t.Fatalf("upload %s: %v", ex.module, err)
		}
		body := map[string]any{"kind": "wasm", "module": info.SHA256, "items": ex.items, "reduce": ex.reduce}
		if ex.params != "" {
			body["params"] = ex.params
		}
		ids[i] = submitJob(t, ps[1], token, body)
	}
	waitProgress(t, ps, ids[0], 0.2, 120*time.Second)
	leaderOf(t, ps).kill()
	if err := <-done; err != nil {
		t.Fatalf("native reference: %v", err)
	}
	for i, ex := range examples {
		waitDone(t, alive(ps), ids[i], 240*time.Second)
		for _, p := range alive(ps) {
			var r webui.ResultView
			if err := p.client("").Do(ctx, "GET", "/api/v1/jobs/"+ids[i]+"/result", nil, &r); err != nil {
				t.Fatal(err)
			}
			if r.WasmResult == nil || r.Value != native[i] || !r.Complete {
				t.Fatalf("%s on %s: %+v, native %s", ex.dir, p.name, r.WasmResult, native[i])
			}
		}
		t.Logf("%s over %d items: %s on every live node, as natively", ex.dir, ex.items, native[i])
	}
}
