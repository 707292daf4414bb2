//go:build linux

package main

// Standalone rates of the hetero phase, measured in rounds interleaved with the cluster jobs.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/scripts/internal/procluster"
)

// stripsPerRound is how many strips of the Mandelbrot job each node computes in a standalone
// round, one after the other, together about -standalone at its rate.
const stripsPerRound = 4

// soloSet is one single-node cluster per limit, kept up for the whole phase: each is a node
// alone under its limit, and its rates are measured in rounds (all nodes at the same time, as
// they compute in the cluster) between the cluster jobs; the baseline is each node's median.
type soloSet struct {
	limits []int
	nodes  []*procluster.Cluster
	pi, m  [][]float64 // per round, per node: π samples/s, Mandelbrot iterations/s
	// img is the cluster's Mandelbrot job, fixed by calibrate before the first round, so that
	// every round measures the nodes on rows of that job; rowCost estimates each of its rows'
	// iterations (from a low-resolution render here), to cut strips of about equal cost.
	img     mandelImg
	rowCost []float64
	cal     []float64 // each node's Mandelbrot rate in the calibration: the first round's guess
	checked int       // strip rows compared bit for bit with compute.MandelRows of the job's rows
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

// calibrateStrips is how many strips of the provisional job a node computes in the calibration.
const calibrateStrips = 2

// calibrate fixes the Mandelbrot job before the first round: it is sized for about jobSecs at
// Σ of the nodes' rates measured here, all at the same time, the way the rounds measure them
// (mandelStrips), on calibrateStrips strips of a provisional job of about the same size (sized
// on a guess, 1.4 G iterations/s per core for the vector kernels), about -standalone ÷ 2 in all.
// A whole low-resolution view, as the rounds measured before, would size it 20–30 % short: its
// narrow rows keep the kernels' lanes waiting for the slowest pixel of each run more often than
// the job's rows do. The calibration also gives each node its first Mandelbrot rate estimate,
// so no round's strip starts with a probe.
func (s *soloSet) calibrate(jobSecs float64) {
	n := len(s.limits)
	guess := make([]float64, n)
	for i, l := range s.limits {
		guess[i] = 1.4e9 * float64(l) / 100
	}
	s.img = pickImage(sum(guess) * jobSecs).gridded()
	s.rowCost = rowCosts(s.img, 640)
	cal := make([]float64, n)
	runs := make([]*stripRun, n)
	var wg sync.WaitGroup
	for i, c := range s.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := c.Nodes[0]
			runs[i] = s.mandelStrips(p, token(p), guess[i]*flagStandalone.Seconds()/2, calibrateStrips, float64(i)/float64(n))
		}()
	}
	wg.Wait()
	var per []string
	for i, c := range s.nodes {
		cal[i] = runs[i].measure(c.Nodes[0], s)
		if cal[i] == 0 {
			fatalf("standalone calibration of node %d: too few chunks", i+1)
		}
		per = append(per, fmt.Sprintf("%s %.4g", c.Nodes[0].Name, cal[i]))
	}
	w0, h0 := s.img.Width, s.img.Height
	s.cal = cal
	s.img = pickImage(sum(cal) * jobSecs).gridded()
	s.rowCost = rowCosts(s.img, 640)
	g := s.img.MandelParams
	fmt.Printf("  standalone calibration (sizes the Mandelbrot job, fixed for every round): Σ Mandelbrot %.4g iterations/s on %d strips a node of a %dx%d job (%s); the job %dx%d max_iter %d, centre (%.10g, %.10g), span %.10g (pixel %g: 8 significant bits, so a strip's rows are the job's bit for bit); load average %s\n",
		sum(cal), calibrateStrips, w0, h0, strings.Join(per, ", "), g.Width, g.Height, g.MaxIter, g.CenterX, g.CenterY, g.Span, g.Span/float64(g.Width), procluster.LoadAvg())
}

// round measures every node's standalone rates once, all nodes at the same time: π over a
// -standalone window of a job too big to finish (samples cost the same everywhere), then
// Mandelbrot on rows of the cluster's own job (s.img; see mandelStrips). A rate is the steady
// state: the units of the chunks after a job's first ÷ the time between its first and last
// commits.
func (s *soloSet) round(label string) {
	n := len(s.limits)
	pi, m := make([]float64, n), make([]float64, n)
	kp := make([]int, n)
	guess := s.mandelMedian()
	if guess == nil {
		guess = s.cal
	}
	rnd := len(s.pi)
	runs := make([]*stripRun, n)
	var wg sync.WaitGroup
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
			pi[i], kp[i] = steadyRate(getChunks(p, id), func(c chunk) float64 { return float64(c.end - c.start) })
			u := rand.New(rand.NewPCG(uint64(rnd+1), uint64(i+1))).Float64() // a new offset each round
			runs[i] = s.mandelStrips(p, tok, guess[i]*flagStandalone.Seconds(), stripsPerRound, u)
		}()
	}
	wg.Wait()
	// The strips' chunks and counts are read once every node is done: a strip's result.raw is up
	// to tens of MB, and reading it costs CPU that nodes still measuring would lose.
	var lines []string
	for i, c := range s.nodes {
		p := c.Nodes[0]
		m[i] = runs[i].measure(p, s)
		lines = append(lines, fmt.Sprintf("    %s: π %.4g samples/s (%d chunks); Mandelbrot %.4g iterations/s (%d chunks, %d strips of the %dx%d job, rows %s, in %.1f s)",
			p.Name, pi[i], kp[i], m[i], runs[i].chunks, len(runs[i].ids), s.img.Width, s.img.Height, runs[i].rows(), runs[i].wall))
	}
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

// stripRun is one node's strips of one round: the jobs, computed one after the other.
type stripRun struct {
	bounds [][2]int // rows [y0, y1) of the job, per strip
	ids    []string
	wall   float64 // seconds from the first submit to the last strip done
	chunks int
}

func (r *stripRun) rows() string {
	var parts []string
	for _, b := range r.bounds {
		parts = append(parts, fmt.Sprintf("%d–%d", b[0], b[1]))
	}
	return strings.Join(parts, ", ")
}

// mandelStrips computes k strips of the cluster's Mandelbrot job on single-node cluster p, about
// iters iterations in all, and returns them for measure. The job's rows are cut into strips of
// about iters ÷ k estimated iterations each; k of them are computed, in
// an order spread over the image (van der Corput) from offset u, each as a job of its own: the
// job's width, pixel and centre_x, its rows' height and centre_y (stripView: the same pixels,
// bit for bit). A Mandelbrot row's cost per iteration depends on the image's width (a vector
// kernel computes a run of adjacent pixels in lanes until all of them have escaped, so a narrow
// image wastes more lane-iterations) and on the in-set pixels it holds: only the job's own rows
// have the job's mix.
func (s *soloSet) mandelStrips(p *procluster.Proc, tok string, iters float64, k int, u float64) *stripRun {
	total := sum(s.rowCost)
	nStrips := min(len(s.rowCost), max(k, int(math.Round(total/iters*float64(k)))))
	bounds := splitByCost(s.rowCost, nStrips)
	r := &stripRun{}
	t0 := time.Now()
	for _, j := range spreadOrder(nStrips, u)[:min(k, nStrips)] {
		y0, y1 := bounds[j], bounds[j+1]
		r.bounds = append(r.bounds, [2]int{y0, y1})
		id := submit(p, tok, mandelImg{stripView(s.img.MandelParams, y0, y1)}.body())
		waitJob(p, id, 4**flagStandalone+time.Minute, nil)
		r.ids = append(r.ids, id)
	}
	r.wall = time.Since(t0).Seconds()
	return r
}

// measure reads the strips' chunks and counts from p and returns the node's rate in iterations
// per second: Σ over the strips of the iterations of the chunks after each strip's first ÷ Σ of
// the time from its first commit to its last. A strip is a job of its own, and each job starts
// with an exchange the cluster's job pays once (the submit, its raft entry, the first lease, the
// child's first task); counting from each strip's first commit leaves that out, as the whole-view
// method left out its one job's probe, and the rest is the node's steady state: chunks of the
// job's size (a lease is at most 2¹⁹ pixels, about 40 rows at this width, as in the cluster),
// the next lease already in hand. (In the rounds the node knows its Mandelbrot rate from the
// calibration, so no strip starts with a probe; the calibration's first strip does, and leaves
// it out.) It also compares each strip's first and last rows with
// compute.MandelRows of the same rows of the job (s.checked).
func (r *stripRun) measure(p *procluster.Proc, s *soloSet) float64 {
	var units, secs float64
	w := s.img.Width
	ref := make([]uint32, w)
	for k, id := range r.ids {
		raw := getRaw(p, id)
		ri := rowIters(raw, w)
		cs := getChunks(p, id)
		r.chunks += len(cs)
		u, dt := steadyUnits(cs, func(c chunk) float64 { return sum(ri[c.start:c.end]) })
		units, secs = units+u, secs+dt
		y0, y1 := r.bounds[k][0], r.bounds[k][1]
		for _, y := range []int{y0, y1 - 1} {
			if err := compute.MandelRows(s.img.MandelParams, y, y+1, ref); err != nil {
				fatalf("reference row %d: %v", y, err)
			}
			got := raw[(y-y0)*w : (y-y0+1)*w]
			diff := 0
			for x := range ref {
				if got[x] != ref[x] {
					diff++
				}
			}
			if diff > 0 {
				fatalf("strip rows %d–%d of %s: row %d differs from the job's in %d of %d pixels", y0, y1, p.Name, y, diff, w)
			}
			s.checked++
		}
	}
	if secs <= 0 {
		return 0
	}
	return units / secs
}

// stripView is rows [y0, y1) of image p as an image of its own: the same width, span (pixel) and
// centre_x, height y1−y0, centre_y moved to the strip's centre. compute places row py at
// cy − (py − H/2 + 0.5)·s, so the strip's row py−y0 is the job's row py when cy' = cy −
// (y0 + y1 − H)·s/2: exactly, and so bit for bit, when s and the centre are on a coarse binary
// grid (mandelImg.gridded).
func stripView(p compute.MandelParams, y0, y1 int) compute.MandelParams {
	s := p.Span / float64(p.Width)
	q := p
	q.Height = y1 - y0
	q.CenterY = p.CenterY - float64(y0+y1-p.Height)*s/2
	return q
}

// gridded moves the view by less than a pixel and its zoom by under 0.2 % so that every pixel's
// coordinate is computed exactly in float64: the pixel s = span ÷ width gets 8 significant
// bits, the centre becomes a multiple of s/2. Then cx + (px − W/2 + 0.5)·s and the like need no
// rounding (a 9-bit mantissa times integers under 2²²), and a strip of the image (stripView)
// computes exactly the image's pixels, whatever rows it holds.
func (m mandelImg) gridded() mandelImg {
	fr, e := math.Frexp(m.Span / float64(m.Width))
	s := math.Ldexp(math.Round(fr*256), e-8)
	m.Span = s * float64(m.Width)
	half := s / 2
	m.CenterX = math.Round(m.CenterX/half) * half
	m.CenterY = math.Round(m.CenterY/half) * half
	return m
}

// rowCosts estimates the iterations of each row of img from a render estW pixels wide computed
// here (each of img's rows gets the estimate of the render's row it lies in, scaled by the
// widths): enough to cut strips of about equal cost, not a measurement.
func rowCosts(img mandelImg, estW int) []float64 {
	e := img.MandelParams
	e.Width = min(estW, img.Width)
	e.Height = max(1, img.Height*e.Width/img.Width)
	out := make([]uint32, e.Width*e.Height)
	if err := compute.MandelRows(e, 0, e.Height, out); err != nil {
		fatalf("row cost estimate: %v", err)
	}
	er := rowIters(out, e.Width)
	scale := float64(img.Width) / float64(e.Width)
	cost := make([]float64, img.Height)
	for y := range cost {
		cost[y] = (er[min(e.Height-1, y*e.Height/img.Height)] + float64(e.Width)) * scale // a pixel costs ≥ 1
	}
	return cost
}

// splitByCost cuts rows of the given costs into n strips of about equal Σ cost, each at least one
// row (n is clamped to 1…len(cost)); it returns the n+1 boundaries, 0 first and len(cost) last.
func splitByCost(cost []float64, n int) []int {
	h := len(cost)
	n = max(1, min(n, h))
	pre := make([]float64, h+1) // pre[y]: Σ cost of rows [0, y)
	for y, c := range cost {
		pre[y+1] = pre[y] + c
	}
	b := make([]int, n+1)
	b[n] = h
	for j := 1; j < n; j++ {
		target := pre[h] * float64(j) / float64(n)
		y := sort.SearchFloat64s(pre, target) // the first boundary at or past target
		if y > 0 && target-pre[y-1] < pre[min(y, h)]-target {
			y--
		}
		b[j] = min(max(y, b[j-1]+1), h-(n-j))
	}
	return b
}

// spreadOrder is 0…n−1 in an order whose every prefix is spread evenly over them, from offset u
// in [0, 1): the van der Corput sequence shifted by u (as dask_hetero.py's spread_order). A
// node that computes only a few strips of a round samples the whole image, not a clump of it,
// and over a random u each strip is as likely as any other to be among the first k.
func spreadOrder(n int, u float64) []int {
	out := make([]int, 0, n)
	seen := make([]bool, n)
	for i := 0; len(out) < n && i < 4*n; i++ {
		x, f := 0.0, 0.5
		for k := i; k > 0; k >>= 1 {
			if k&1 == 1 {
				x += f
			}
			f /= 2
		}
		j := min(n-1, int(math.Mod(u+x, 1)*float64(n)))
		if !seen[j] {
			seen[j] = true
			out = append(out, j)
		}
	}
	for j := range n {
		if !seen[j] {
			out = append(out, j)
		}
	}
	return out
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
