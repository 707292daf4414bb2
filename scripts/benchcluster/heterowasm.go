//go:build linux

package main

// Phase hetero-wasm: a WebAssembly job's balance on the heterogeneous cluster, beside a π job.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hydra-compute/hydra/scripts/internal/procluster"
)

// uploadModule posts a module file's raw bytes (POST /api/v1/modules) and returns its hash.
func uploadModule(p *procluster.Proc, tok, path string) string {
	code, err := os.ReadFile(path)
	sess.Check(err)
	req, err := http.NewRequest("POST", p.HTTPURL+"/api/v1/modules", bytes.NewReader(code))
	sess.Check(err)
	req.Header.Set("Content-Type", "application/wasm")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	sess.Check(err)
	defer resp.Body.Close()
	var info struct {
		SHA256 string `json:"sha256"`
		Error  string `json:"error"`
	}
	sess.Check(json.NewDecoder(resp.Body).Decode(&info))
	if resp.StatusCode != http.StatusOK {
		fatalf("upload %s: %d %s", path, resp.StatusCode, info.Error)
	}
	return info.SHA256
}

// heteroWasm runs, on one cluster of -limits nodes, a π job and a WebAssembly job (the Monte-Carlo
// example) each sized for about -job-seconds from a probe job, and reports for both each
// node's share of the units against its share of the CPU limits and the tail efficiency (the
// capacity idle after each node's last commit: needs no baseline measured at another time).
func heteroWasm(work string) {
	limits := parseInts(*flagLimits)
	n := len(limits)
	c := newCluster(filepath.Join(work, "hetero-wasm"), "w", n, func(i int) []string {
		return []string{"--cpus", "1", "--cpu-limit", strconv.Itoa(limits[i])}
	})
	startStable(c, min(3, n))
	defer c.Stop()
	p := c.Nodes[0]
	tok := token(p)
	rates := make([]float64, n)
	for i, l := range limits {
		rates[i] = float64(l)
	}
	// The Monte-Carlo example: every item (a path) costs the same, as π's samples do.
	sha := uploadModule(p, tok, "examples/montecarlo/montecarlo.wasm")
	wasmJob := func(items int64) map[string]any {
		return map[string]any{"kind": "wasm", "module": sha, "items": items, "reduce": "sum", "params": `{"seed":7}`}
	}
	// Probes size the jobs: grown until one lasts 3 s (a short job is mostly start-up), its
	// rate then sizes the measured job.
	probe := func(body func(units int64) map[string]any, units int64) float64 {
		for {
			v := waitJob(p, submit(p, tok, body(units)), 10*time.Minute, nil)
			if v.wall() >= 3 {
				return float64(units) / v.wall()
			}
			units *= 4
		}
	}
	piRate := probe(func(u int64) map[string]any { return map[string]any{"kind": "pi", "samples": u, "seed": 3} }, 2e8)
	probe(wasmJob, 2e6) // warm-up: every node fetches and compiles the module for its first chunk
	wRate := probe(wasmJob, 2e6)
	fmt.Printf("hetero-wasm: %d nodes --cpus 1 --cpu-limit %v; probe rates π %.4g samples/s, montecarlo.wasm %.4g items/s; load average %s\n",
		n, limits, piRate, wRate, procluster.LoadAvg())
	for _, j := range []struct {
		name string
		body map[string]any
	}{
		{"π", map[string]any{"kind": "pi", "samples": int64(piRate * *flagJobSecs), "seed": 11}},
		{"montecarlo.wasm", wasmJob(int64(wRate * *flagJobSecs))},
	} {
		v := waitJob(p, submit(p, tok, j.body), 10*time.Minute, nil)
		fmt.Printf("  %s, %d units: %.2f s, %d chunks; load average %s\n", j.name, v.TotalUnits, v.wall(), v.chunks(), procluster.LoadAvg())
		tail := shares(c, v, limits, rates, sum(rates))
		addReport("hetero-wasm %s (4 nodes --cpus 1 --cpu-limit %v): tail efficiency %.3f, %.2f s, %d chunks", j.name, limits, tail, v.wall(), v.chunks())
	}
}
