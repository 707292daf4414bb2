//go:build linux

package main

// Standalone rates of the hetero phase, measured in rounds interleaved with the cluster jobs.

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/scripts/internal/procluster"
)

// soloSet is one single-node cluster per limit, kept up for the whole phase: each is a node
// alone under its limit, and its rates are measured in rounds (all nodes at the same time, as
// they compute in the cluster) between the cluster jobs; the baseline is each node's median.
type soloSet struct {
	limits []int
	nodes  []*procluster.Cluster
	pi, m  [][]float64 // per round, per node: π samples/s, Mandelbrot iterations/s
}

func startSolo(work string, limits []int) *soloSet {
	s := &soloSet{limits: limits}
	for i, l := range limits {
		c := newCluster(filepath.Join(work, fmt.Sprintf("solo-%d", i+1)), fmt.Sprintf("s%d-", l), 1, func(int) []string {
			return []string{"--cpus", "1", "--cpu-limit", strconv.Itoa(l)}
		})
		sess.Check(c.StartAll())
		s.nodes = append(s.nodes, c)
	}
	for _, c := range s.nodes {
		if _, _, err := procluster.WaitStable(c, 1, 500*time.Millisecond, 90*time.Second); err != nil {
			c.Tails(20)
			fatalf("standalone: %v", err)
		}
	}
	return s
}

func (s *soloSet) stop() {
	for _, c := range s.nodes {
		c.Stop()
	}
}

// round measures every node's standalone rates once, all nodes at the same time: π over a
// -standalone window of a job too big to finish (samples cost the same everywhere), then
// Mandelbrot on the whole view of the cluster job at a resolution sized for about -standalone
// at the node's rate (so the rows sampled are the job's mix, not the top of the image),
// computed to the end. A rate is the steady state: the units of the chunks after the first (the
// probe) ÷ the time between the first and last commits.
func (s *soloSet) round(label string) {
	n := len(s.limits)
	pi, m := make([]float64, n), make([]float64, n)
	guess := s.mandelMedian()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lines []string
	for i, c := range s.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := c.Nodes[0]
			tok := token(p)
			id := submit(p, tok, map[string]any{"kind": "pi", "samples": int64(1e14), "seed": 7})
			time.Sleep(*flagStandalone)
			cancel(p, tok, id)
			waitJob(p, id, time.Minute, nil)
			var kp, km int
			pi[i], kp = steadyRate(getChunks(p, id), func(c chunk) float64 { return float64(c.end - c.start) })
			// first round: about 1.4 G iterations/s per core for the vector kernels
			g := 1.4e9 * float64(s.limits[i]) / 100
			if guess != nil {
				g = guess[i]
			}
			img := pickImage(g * flagStandalone.Seconds())
			id = submit(p, tok, img.body())
			v := waitJob(p, id, 4**flagStandalone+time.Minute, nil)
			ri := rowIters(getRaw(p, id), img.Width)
			m[i], km = steadyRate(getChunks(p, id), func(c chunk) float64 {
				var s float64
				for y := c.start; y < c.end; y++ {
					s += ri[y]
				}
				return s
			})
			mu.Lock()
			lines = append(lines, fmt.Sprintf("    %s: π %.4g samples/s (%d chunks); Mandelbrot %.4g iterations/s (%d chunks, %dx%d in %.1f s)",
				p.Name, pi[i], kp, m[i], km, img.Width, img.Height, v.wall()))
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Strings(lines)
	fmt.Printf("  standalone round %d (%s): Σ π %.4g samples/s, Σ Mandelbrot %.4g iterations/s; load average %s\n%s\n",
		len(s.pi)+1, label, sum(pi), sum(m), procluster.LoadAvg(), strings.Join(lines, "\n"))
	for i := range s.limits {
		if pi[i] == 0 || m[i] == 0 {
			fatalf("standalone rate of node %d not measured (too few chunks)", i+1)
		}
	}
	s.pi, s.m = append(s.pi, pi), append(s.m, m)
}

func (s *soloSet) mandelMedian() []float64 { return perNodeMedian(s.m) }
func (s *soloSet) piMedian() []float64     { return perNodeMedian(s.pi) }

// perNodeMedian is each node's median over rounds (nil before the first round).
func perNodeMedian(rounds [][]float64) []float64 {
	if len(rounds) == 0 {
		return nil
	}
	out := make([]float64, len(rounds[0]))
	for i := range out {
		var xs []float64
		for _, r := range rounds {
			xs = append(xs, r[i])
		}
		out[i] = median(xs)
	}
	return out
}

// spread describes the rounds' sums against the sum of the per-node medians: each round's Σ
// as a ratio, and the largest deviation.
func spread(rounds [][]float64) (string, float64) {
	base := sum(perNodeMedian(rounds))
	var parts []string
	dev := 0.0
	for _, r := range rounds {
		x := sum(r) / base
		parts = append(parts, fmt.Sprintf("%.3f", x))
		dev = max(dev, x-1, 1-x)
	}
	return strings.Join(parts, ", "), dev
}
