//go:build linux

package main

// Phase 2: per-chunk overhead (chunks leased, computed, committed and acked per second).

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/scripts/internal/procluster"
)

func overhead(work string) {
	c := newCluster(filepath.Join(work, "overhead"), "o", 3, func(int) []string {
		return []string{"--cpus", "1", "--chunk-target", "100ms"}
	})
	leader := startStable(c, 3)
	lp := c.ByID(leader)
	tok := token(lp)
	fmt.Printf("overhead: 3 voters up, leader %s; %d one-chunk π jobs (65536 samples) by 16 clients; load average %s\n", lp.Name, *flagTinyJobs, procluster.LoadAvg())
	// warm up: every node's first chunk of a kind
	warm := submit(lp, tok, map[string]any{"kind": "pi", "samples": 1 << 22, "seed": 1})
	waitJob(lp, warm, time.Minute, nil)

	perf := startPerf(lp, filepath.Join(work, "perf.data"))
	cpu0 := ownTicks(lp)
	var cpuF0 []int64
	for _, p := range c.Nodes {
		cpuF0 = append(cpuF0, ownTicks(p))
	}
	ids := make([]string, *flagTinyJobs)
	next := make(chan int)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				ids[i] = submit(lp, tok, map[string]any{"kind": "pi", "samples": 65536, "seed": i + 100})
			}
		}()
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	submitted := time.Since(start)
	// Wait for all of them, polling one job at a time in submit order on a
	// follower (a big GET /api/v1/jobs list every 200 ms cost the leader a
	// quarter of its CPU in a first version), then read the list once.
	var follower *procluster.Proc
	for _, p := range c.Nodes {
		if p != lp {
			follower = p
			break
		}
	}
	for i := 0; i < len(ids) && time.Since(start) < 10*time.Minute; {
		if v, err := getJob(follower, ids[i]); err == nil && v.State == compute.StateDone {
			i++
			continue
		}
		time.Sleep(20 * time.Millisecond)
	}
	var views []jobView
	if b, err := api("GET", follower.HTTPURL+"/api/v1/jobs", "", nil); err == nil {
		json.Unmarshal(b, &views)
	}
	// the last finish, from the replica's own times
	var fin []time.Time
	chunks := 0
	for _, v := range views {
		if v.ID == warm {
			continue
		}
		fin = append(fin, v.FinishedAt)
		chunks += v.chunks()
	}
	sort.Slice(fin, func(i, j int) bool { return fin[i].Before(fin[j]) })
	wall := fin[len(fin)-1].Sub(start).Seconds()
	cpu := float64(ownTicks(lp)-cpu0) / procluster.ClockTick
	var cpuAll float64
	for i, p := range c.Nodes {
		cpuAll += float64(ownTicks(p)-cpuF0[i]) / procluster.ClockTick
	}
	lo, hi := fin[len(fin)/10], fin[len(fin)*9/10]
	mid := float64(len(fin)*9/10-len(fin)/10) / hi.Sub(lo).Seconds()
	hydraChunksPerS = float64(chunks) / wall
	fmt.Printf("  %d jobs, %d chunks; submits took %.2f s; last done at %.2f s; load average %s\n", len(fin), chunks, submitted.Seconds(), wall, procluster.LoadAvg())
	addReport("per-chunk overhead (3 voters, %d one-chunk π jobs of 65536 samples): %.0f chunks/s end to end (%d chunks in %.2f s; %.0f/s between the 10th and 90th percentile of finishes); leader node process CPU %.2f ms per chunk (%.2f s over the window; compute children excluded), all 3 node processes %.2f ms per chunk",
		len(fin), float64(chunks)/wall, chunks, wall, mid, cpu*1000/float64(chunks), cpu, cpuAll*1000/float64(chunks))
	perf.report()
	// One big job at --chunk-target 100ms: the chunk path alone (no per-job
	// entries), at the rate the policy allows (about one chunk per node per
	// 100 ms).
	{
		id := submit(lp, tok, map[string]any{"kind": "pi", "samples": int64(1e14), "seed": 5})
		time.Sleep(3 * time.Second)
		v0, _ := getJob(lp, id)
		l0 := ownTicks(lp)
		var a0 int64
		for _, p := range c.Nodes {
			a0 += ownTicks(p)
		}
		t0 := time.Now()
		time.Sleep(10 * time.Second)
		v1, _ := getJob(lp, id)
		dt := time.Since(t0).Seconds()
		l1 := ownTicks(lp)
		var a1 int64
		for _, p := range c.Nodes {
			a1 += ownTicks(p)
		}
		cancel(lp, tok, id)
		n := v1.chunks() - v0.chunks()
		if n > 0 {
			addReport("one π job at --chunk-target 100ms (3 nodes, 10 s): %.0f chunks/s (%d chunks; the policy sizes chunks to 100 ms of work, so about 3 nodes x 10/s at most), leader node process CPU %.2f ms per chunk, all 3 node processes %.2f ms per chunk",
				float64(n)/dt, n, float64(l1-l0)*1000/procluster.ClockTick/float64(n), float64(a1-a0)*1000/procluster.ClockTick/float64(n))
		}
	}
	c.Stop()
}

// ---- failover
