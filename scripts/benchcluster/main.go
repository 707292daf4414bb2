// Command benchcluster measures the job figures of issue 3 on a cluster of
// real `hydra node` processes on loopback (--mdns=false --dht=false, every
// node given every other one with --join, ports on 127.0.0.1).
// scripts/bench-cluster builds it and runs it; see there for the invocation.
// Phases (-phases, comma-separated, default all):
//
//   - hetero: heterogeneous efficiency. Baseline: -limits (default
//     75,40,20,15) single-node clusters, --cpus 1 --cpu-limit L each, run at
//     the same time (so each standalone rate is measured under the same
//     oversubscription of this machine as the cluster run), each computing a
//     big π job and then the Mandelbrot image for -standalone (12 s) before
//     it is cancelled; this is done before and after the cluster jobs, and
//     the mean is the baseline (the efficiency against each is printed too,
//     for the noise). A node's standalone rate is its steady state: the
//     units of its accepted chunks after the first (the probe) divided by the
//     time between the first and last commits (GET …/chunks, committed_ms).
//     For Mandelbrot the unit is an iteration (Σ of the result.raw counts of
//     a chunk's rows), because rows differ in cost. Then the four nodes form
//     one cluster and run one π and one Mandelbrot job (the same view) sized
//     for about -job-seconds: efficiency = (units ÷ Σ standalone rates) ÷
//     (finished_at − submitted_at). The fixed-equal-chunk policy of the old
//     prototype is not in the node, so it is simulated here (not run): the
//     measured standalone rates, N equal chunks (by units: π samples,
//     Mandelbrot rows with their real iteration counts from the cluster
//     run's result), each node taking the next chunk when it is free, no
//     coordination cost at all (an upper bound for that policy).
//   - overhead: per-chunk overhead. 3 nodes (3 voters, --cpus 1,
//     --chunk-target 100ms). One job cannot have tiny chunks (chunks are
//     rate × target, ≥ 100 ms of work), so -tiny-jobs (default 3000) π jobs
//     of 65536 samples (= one chunk each, below the 2²⁰-sample probe) are
//     submitted to the leader by 16 clients at once; figure = chunks
//     accepted ÷ wall time from the first submit to the last job done (each
//     chunk is leased, computed, committed through raft, acked, and each job
//     also costs a submit and a finish entry). The leader's CPU over that
//     window is reported per chunk, and with -perf a `perf record` of the
//     leader is summarised.
//   - failover: cost of a leader kill. 3 coordinator nodes (--compute=false
//     --voter prefer) and 2 workers (--voter never --cpus 1): killing the
//     leader then removes no compute capacity, so the extra time is the
//     coordination cost alone. A π job sized for -kill-seconds (calibrated
//     on the cluster) is run -kill-runs times without and with a SIGKILL of
//     the leader once 40 % is done (alternating); the victim is restarted
//     (same data dir) after the job. Extra = kill run − median of no-kill
//     runs, and kill run − the no-kill run just before it (paired, less
//     sensitive to the load of a shared machine drifting); the chunk history
//     around the kill is printed (commit gap, chunks after it).
//   - dask: with -dask SCRIPT, /usr/bin/python3 SCRIPT -dask-tasks runs
//     no-op tasks on a LocalCluster of 2 processes; tasks/s beside Hydra's
//     chunks/s.
//
// The load average is printed at the start and end of every phase (the
// machine is shared). Every process started is SIGKILLed on exit.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

var (
	flagHydra      = flag.String("hydra", "", "path to the hydra binary (required)")
	flagWork       = flag.String("work", "", "work directory (default: a new temporary one, removed at the end)")
	flagKeep       = flag.Bool("keep", false, "keep the work directory")
	flagPhases     = flag.String("phases", "hetero,overhead,failover,dask", "phases to run")
	flagLimits     = flag.String("limits", "75,40,20,15", "hetero: --cpu-limit of each node")
	flagStandalone = flag.Duration("standalone", 12*time.Second, "hetero: how long each standalone rate is measured")
	flagJobSecs    = flag.Float64("job-seconds", 20, "hetero: target duration of the cluster jobs")
	flagMandelIter = flag.Int("max-iter", 2000, "hetero: Mandelbrot max_iter")
	flagFixed      = flag.String("fixed-chunks", "4,16,64", "hetero: chunk counts of the simulated fixed equal-chunk policy")
	flagTinyJobs   = flag.Int("tiny-jobs", 3000, "overhead: number of one-chunk π jobs")
	flagPerf       = flag.Bool("perf", false, "overhead: perf record the leader during the tiny-job run")
	flagKillSecs   = flag.Float64("kill-seconds", 25, "failover: target duration of the π job")
	flagKillRuns   = flag.Int("kill-runs", 3, "failover: runs without and with a leader kill")
	flagDask       = flag.String("dask", "", "dask: path of the no-op task script (skipped if empty)")
	flagDaskTasks  = flag.Int("dask-tasks", 20000, "dask: no-op tasks")
)

var (
	report          []string
	hydraChunksPerS float64 // from the overhead phase, for the Dask ratio
)

func addReport(format string, args ...any) {
	l := fmt.Sprintf(format, args...)
	report = append(report, l)
	fmt.Println("  => " + l)
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// ---- API

var apic = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}

func api(method, url, token string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := apic.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return b, fmt.Errorf("%s %s: HTTP %d: %s", method, url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return b, nil
}

type jobNode struct {
	Node           string  `json:"node"`
	Name           string  `json:"name"`
	Units          uint64  `json:"units"`
	Chunks         int     `json:"chunks"`
	ComputeSeconds float64 `json:"compute_seconds"`
}

type jobView struct {
	ID          string    `json:"id"`
	State       string    `json:"state"`
	SubmittedAt time.Time `json:"submitted_at"`
	StartedAt   time.Time `json:"started_at"`
	FinishedAt  time.Time `json:"finished_at"`
	DoneUnits   uint64    `json:"done_units"`
	TotalUnits  uint64    `json:"total_units"`
	Nodes       []jobNode `json:"nodes"`
}

func (j *jobView) chunks() int {
	n := 0
	for _, x := range j.Nodes {
		n += x.Chunks
	}
	return n
}

func (j *jobView) wall() float64 { return j.FinishedAt.Sub(j.SubmittedAt).Seconds() }

func token(p *proc) string {
	end := time.Now().Add(60 * time.Second)
	for time.Now().Before(end) {
		if b, err := os.ReadFile(filepath.Join(p.dataDir, "api-token")); err == nil && len(bytes.TrimSpace(b)) > 0 {
			return string(bytes.TrimSpace(b))
		}
		time.Sleep(100 * time.Millisecond)
	}
	fatalf("%s: no api-token after 60 s", p.name)
	return ""
}

func submit(p *proc, tok string, body map[string]any) string {
	var err error
	for try := 0; try < 20; try++ {
		var b []byte
		b, err = api("POST", p.httpURL+"/api/v1/jobs", tok, body)
		if err == nil {
			var v jobView
			if err = json.Unmarshal(b, &v); err == nil {
				return v.ID
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	fatalf("submit to %s: %v", p.name, err)
	return ""
}

func getJob(p *proc, id string) (*jobView, error) {
	b, err := api("GET", p.httpURL+"/api/v1/jobs/"+id, "", nil)
	if err != nil {
		return nil, err
	}
	var v jobView
	return &v, json.Unmarshal(b, &v)
}

// waitJob polls the job every 50 ms until done (each poll passed to f).
func waitJob(p *proc, id string, timeout time.Duration, f func(*jobView)) *jobView {
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		v, err := getJob(p, id)
		if err == nil {
			if f != nil {
				f(v)
			}
			if v.State == "done" || v.State == "cancelled" {
				return v
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	fatalf("job %s not done within %v", id, timeout)
	return nil
}

func cancel(p *proc, tok, id string) {
	api("POST", p.httpURL+"/api/v1/jobs/"+id+"/cancel", tok, map[string]any{})
}

type chunk struct {
	seq, start, end uint64
	node            int
	nodeID          string
	secs            float64
	committedMS     int64
}

func getChunks(p *proc, id string) []chunk {
	var out []chunk
	from := 0
	for {
		b, err := api("GET", fmt.Sprintf("%s/api/v1/jobs/%s/chunks?from=%d&limit=20000", p.httpURL, id, from), "", nil)
		if err != nil {
			fatalf("chunks: %v", err)
		}
		var r struct {
			Next   int               `json:"next"`
			Chunks [][]any           `json:"chunks"`
			Nodes  []json.RawMessage `json:"nodes"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			fatalf("chunks: %v", err)
		}
		for _, c := range r.Chunks {
			f := func(i int) float64 { x, _ := c[i].(float64); return x }
			ch := chunk{seq: uint64(f(0)), start: uint64(f(1)), end: uint64(f(2)), node: int(f(3)), secs: f(4), committedMS: int64(f(5))}
			if ch.node >= 0 && ch.node < len(r.Nodes) {
				json.Unmarshal(r.Nodes[ch.node], &ch.nodeID)
			}
			out = append(out, ch)
		}
		if len(r.Chunks) == 0 || r.Next <= from+len(r.Chunks) && len(r.Chunks) < 20000 {
			break
		}
		from = r.Next
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

func getRaw(p *proc, id string) []uint32 {
	b, err := api("GET", p.httpURL+"/api/v1/jobs/"+id+"/result.raw", "", nil)
	if err != nil {
		fatalf("raw: %v", err)
	}
	out := make([]uint32, len(b)/4)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return out
}

// steadyRate is Σ cost of chunks[1:] ÷ (last commit − first commit): the
// throughput after the probe chunk, per-chunk overhead included.
func steadyRate(cs []chunk, cost func(chunk) float64) (float64, int) {
	if len(cs) < 2 {
		return 0, len(cs)
	}
	var u float64
	for _, c := range cs[1:] {
		u += cost(c)
	}
	dt := float64(cs[len(cs)-1].committedMS-cs[0].committedMS) / 1000
	if dt <= 0 {
		return 0, len(cs)
	}
	return u / dt, len(cs)
}

func kernelOf(p *proc) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return "?"
	}
	defer f.Close()
	k := "?"
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if i := strings.Index(l, "kernel="); i >= 0 {
			k = strings.TrimPrefix(strings.Fields(l[i:])[0], "kernel=")
		}
	}
	return k
}

func startStable(c *cluster, voters int) string {
	c.startAll()
	l, _, err := waitStable(c, voters, time.Second, 90*time.Second)
	if err != nil {
		c.tails(20)
		fatalf("%v", err)
	}
	return l
}

// coordinatorRates reads the first activity event of GET /api/v1/events:
// the coordinator's rate estimates (node ID → kind → units/s) and kernels.
func coordinatorRates(p *proc) (map[string]map[string]float64, map[string]string) {
	req, _ := http.NewRequest("GET", p.httpURL+"/api/v1/events", nil)
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		return nil, nil
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	ev := ""
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "event: ") {
			ev = strings.TrimPrefix(l, "event: ")
		}
		if ev == "activity" && strings.HasPrefix(l, "data: ") {
			var a struct {
				Nodes map[string]struct {
					Rates  map[string]float64 `json:"rates"`
					Kernel string             `json:"kernel"`
				} `json:"nodes"`
			}
			if json.Unmarshal([]byte(strings.TrimPrefix(l, "data: ")), &a) != nil {
				return nil, nil
			}
			r, k := map[string]map[string]float64{}, map[string]string{}
			for id, n := range a.Nodes {
				r[id], k[id] = n.Rates, n.Kernel
			}
			return r, k
		}
	}
	return nil, nil
}

// ---- hetero

type mandelImg struct {
	compute.MandelParams
}

func (m mandelImg) body() map[string]any {
	return map[string]any{"kind": "mandelbrot", "width": m.Width, "height": m.Height,
		"center_x": m.CenterX, "center_y": m.CenterY, "span": m.Span, "max_iter": m.MaxIter}
}

// pickImage sizes a 16:9 view of the seahorse valley so that it has about
// iters iterations, from a 320×180 estimate computed here.
func pickImage(iters float64) mandelImg {
	p := compute.MandelParams{Width: 320, Height: 180, CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.02, MaxIter: *flagMandelIter}
	out := make([]uint32, p.Width*p.Height)
	if err := compute.MandelRows(p, 0, p.Height, out); err != nil {
		fatalf("mandel estimate: %v", err)
	}
	var s float64
	for _, x := range out {
		s += float64(x)
	}
	perPixel := s / float64(len(out))
	scale := math.Sqrt(iters / perPixel / float64(p.Width*p.Height))
	p.Width = min(16384, max(16, int(float64(p.Width)*scale)))
	p.Height = min(16384, max(9, p.Width*9/16))
	return mandelImg{p}
}

func rowIters(raw []uint32, w int) []float64 {
	h := len(raw) / w
	out := make([]float64, h)
	for y := 0; y < h; y++ {
		var s float64
		for _, x := range raw[y*w : (y+1)*w] {
			s += float64(x)
		}
		out[y] = s
	}
	return out
}

// simFixed: n equal chunks of len(cost) units, each node (rate in cost/s)
// takes the next chunk as soon as it is free; no coordination cost. Returns
// the makespan in seconds.
func simFixed(cost []float64, rates []float64, n int) float64 {
	// prefix sums so a chunk's cost is O(1)
	pre := make([]float64, len(cost)+1)
	for i, c := range cost {
		pre[i+1] = pre[i] + c
	}
	free := make([]float64, len(rates))
	units := len(cost)
	for k := 0; k < n; k++ {
		a, b := k*units/n, (k+1)*units/n
		best := 0
		for i := range free {
			if free[i] < free[best] {
				best = i
			}
		}
		free[best] += (pre[b] - pre[a]) / rates[best]
	}
	m := 0.0
	for _, f := range free {
		m = math.Max(m, f)
	}
	return m
}

func parseInts(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			fatalf("bad list %q", s)
		}
		out = append(out, v)
	}
	return out
}

// standalone measures each limit's standalone rates (π samples/s,
// Mandelbrot iterations/s on img) on single-node clusters run at the same
// time; tag names this measurement.
func standalone(work, tag string, limits []int, img mandelImg) (piRate, mRate []float64, kern string) {
	n := len(limits)
	fmt.Printf("hetero: standalone rates of %d single-node clusters at --cpu-limit %v, measured at the same time for %v each (π, then Mandelbrot %dx%d max_iter %d)\n",
		n, limits, *flagStandalone, img.Width, img.Height, img.MaxIter)
	var solo []*cluster
	for i, l := range limits {
		c := newCluster(filepath.Join(work, fmt.Sprintf("solo-%s-%d", tag, i+1)), fmt.Sprintf("s%s%d-", tag, l), 1, func(int) []string {
			return []string{"--cpus", "1", "--cpu-limit", strconv.Itoa(l)}
		})
		c.startAll()
		solo = append(solo, c)
	}
	for _, c := range solo {
		if _, _, err := waitStable(c, 1, 500*time.Millisecond, 90*time.Second); err != nil {
			c.tails(20)
			fatalf("standalone: %v", err)
		}
	}
	piRate = make([]float64, n)
	mRate = make([]float64, n)
	var wg sync.WaitGroup
	for i, c := range solo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := c.nodes[0]
			tok := token(p)
			id := submit(p, tok, map[string]any{"kind": "pi", "samples": int64(1e14), "seed": 7})
			time.Sleep(*flagStandalone)
			cancel(p, tok, id)
			cs := getChunks(p, id)
			var k int
			piRate[i], k = steadyRate(cs, func(c chunk) float64 { return float64(c.end - c.start) })
			fmt.Printf("  %s: π %.4g samples/s (%d chunks)\n", p.name, piRate[i], k)
			id = submit(p, tok, img.body())
			time.Sleep(*flagStandalone)
			cancel(p, tok, id)
			time.Sleep(300 * time.Millisecond)
			cs = getChunks(p, id)
			ri := rowIters(getRaw(p, id), img.Width)
			mRate[i], k = steadyRate(cs, func(c chunk) float64 {
				var s float64
				for y := c.start; y < c.end; y++ {
					s += ri[y]
				}
				return s
			})
			fmt.Printf("  %s: Mandelbrot %.4g iterations/s (%d chunks)\n", p.name, mRate[i], k)
		}()
	}
	wg.Wait()
	kern = kernelOf(solo[0].nodes[0])
	for _, c := range solo {
		c.stop()
	}
	var sumPi, sumM float64
	for i := range limits {
		sumPi += piRate[i]
		sumM += mRate[i]
		if piRate[i] == 0 || mRate[i] == 0 {
			fatalf("standalone rate of node %d not measured (too few chunks)", i+1)
		}
	}
	fmt.Printf("hetero: Σ standalone π %.4g samples/s, Mandelbrot %.4g iterations/s; load average %s\n", sumPi, sumM, loadavg())

	return piRate, mRate, kern
}

func sum(xs []float64) float64 {
	var t float64
	for _, x := range xs {
		t += x
	}
	return t
}

func hetero(work string) {
	limits := parseInts(*flagLimits)
	n := len(limits)
	fmt.Printf("hetero: load average %s\n", loadavg())
	// The image is sized from a guess of the rates (about 0.7 G iterations/s
	// per core for the AVX2 kernel, scaled by the limits), then the cluster
	// job is resized from the measured ones; standalone rates are measured
	// on this image, before and after the cluster jobs (the machine is
	// shared: the load may change), and the efficiency is given against
	// their mean, with the range against either.
	img := pickImage(1e10)
	piA, mA, kern := standalone(work, "a", limits, img)
	c := newCluster(filepath.Join(work, "hetero"), "h", n, func(i int) []string {
		return []string{"--cpus", "1", "--cpu-limit", strconv.Itoa(limits[i])}
	})
	startStable(c, min(3, n))
	p := c.nodes[0]
	tok := token(p)
	fmt.Printf("hetero: %d-node cluster up (kernel %s); load average %s\n", n, kern, loadavg())

	samples := int64(sum(piA) * *flagJobSecs)
	id := submit(p, tok, map[string]any{"kind": "pi", "samples": samples, "seed": 11})
	v := waitJob(p, id, 10*time.Minute, nil)
	fmt.Printf("  π %d samples: %.2f s, %d chunks; load average %s\n", samples, v.wall(), v.chunks(), loadavg())
	tailPi := shares(c, v, limits, piA, sum(piA))
	if cr, ks := coordinatorRates(p); cr != nil {
		for i, q := range c.nodes {
			fmt.Printf("    %s: coordinator's π rate estimate %.4g samples/s = %.2f x the standalone rate before (kernel %s)\n",
				q.name, cr[q.id]["pi"], cr[q.id]["pi"]/piA[i], ks[q.id])
		}
	}
	piCost := make([]float64, 1024) // π units are uniform: 1024 equal slices
	for i := range piCost {
		piCost[i] = float64(v.TotalUnits) / 1024
	}

	// the Mandelbrot job: same view, resized for about -job-seconds
	big := pickImage(sum(mA) * *flagJobSecs)
	id = submit(p, tok, big.body())
	mv := waitJob(p, id, 10*time.Minute, nil)
	ri := rowIters(getRaw(p, id), big.Width)
	iters := sum(ri)
	fmt.Printf("  Mandelbrot %dx%d max_iter %d (%.4g iterations): %.2f s, %d chunks; load average %s\n",
		big.Width, big.Height, big.MaxIter, iters, mv.wall(), mv.chunks(), loadavg())
	tailM := shares(c, mv, limits, nil, 0)
	c.stop()

	piB, mB, _ := standalone(work, "b", limits, img)
	piRate, mRate := make([]float64, n), make([]float64, n)
	for i := range limits {
		piRate[i], mRate[i] = (piA[i]+piB[i])/2, (mA[i]+mB[i])/2
	}
	eff := func(units, rate, wall float64) float64 { return units / rate / wall }
	effPi := eff(float64(v.TotalUnits), sum(piRate), v.wall())
	effM := eff(iters, sum(mRate), mv.wall())
	addReport("hetero efficiency (4 nodes --cpus 1 --cpu-limit %v, kernel %s), against the mean of the standalone rates measured before and after [against before only, after only]: π %.3f [%.3f, %.3f] (%.2f s vs ideal %.2f s, %d chunks); Mandelbrot %.3f [%.3f, %.3f] (%.2f s vs ideal %.2f s, %d chunks, %dx%d max_iter %d, units = iterations)",
		limits, kern, effPi, eff(float64(v.TotalUnits), sum(piA), v.wall()), eff(float64(v.TotalUnits), sum(piB), v.wall()),
		v.wall(), float64(v.TotalUnits)/sum(piRate), v.chunks(),
		effM, eff(iters, sum(mA), mv.wall()), eff(iters, sum(mB), mv.wall()),
		mv.wall(), iters/sum(mRate), mv.chunks(), big.Width, big.Height, big.MaxIter)
	addReport("hetero tail efficiency (capacity idle after each node's last commit, weighted by its share; needs no baseline): π %.3f, Mandelbrot %.3f", tailPi, tailM)
	var fx []string
	for _, k := range parseInts(*flagFixed) {
		mp := simFixed(piCost, piRate, k)
		mm := simFixed(ri, mRate, k)
		fx = append(fx, fmt.Sprintf("%d chunks: π %.3f, Mandelbrot %.3f", k, float64(v.TotalUnits)/sum(piRate)/mp, iters/sum(mRate)/mm))
	}
	addReport("hetero fixed equal chunks (SIMULATED with the same mean standalone rates, zero coordination cost, greedy pull; Mandelbrot rows with their real iteration counts): %s", strings.Join(fx, "; "))
}

// shares prints each node's part of the job and when its last chunk was
// committed, and returns the tail efficiency: 1 − Σ (node's share of the
// units × the fraction of the job's wall time after its last commit), i.e.
// the capacity left idle at the end, weighted by what each node delivered;
// it does not depend on a baseline measured at another time (the machine's
// load moves the standalone rates by ±30 % between phases).
func shares(c *cluster, v *jobView, limits []int, rates []float64, sum float64) float64 {
	last := map[string]int64{}
	for _, ch := range getChunks(c.nodes[0], v.ID) {
		last[ch.nodeID] = max(last[ch.nodeID], ch.committedMS)
	}
	tail := 1.0
	for _, x := range v.Nodes {
		if t, ok := last[x.Node]; ok && v.TotalUnits > 0 {
			idle := v.FinishedAt.Sub(time.UnixMilli(t)).Seconds() / v.wall()
			tail -= float64(x.Units) / float64(v.TotalUnits) * max(idle, 0)
		}
	}
	defer fmt.Printf("    tail efficiency %.3f\n", tail)
	for i, p := range c.nodes {
		if t, ok := last[p.id]; ok {
			fmt.Printf("    %s: last chunk committed at %.2f s of %.2f s\n", p.name, time.UnixMilli(t).Sub(v.SubmittedAt).Seconds(), v.wall())
		}
		for _, x := range v.Nodes {
			if x.Node == p.id {
				exp := ""
				if rates != nil {
					exp = fmt.Sprintf(" (rate share %.3f)", rates[i]/sum)
				}
				fmt.Printf("    %s (limit %d%%): %.3f of the units%s, %d chunks, %.1f compute s\n",
					p.name, limits[i], float64(x.Units)/float64(v.TotalUnits), exp, x.Chunks, x.ComputeSeconds)
			}
		}
	}
	return tail
}

// ---- overhead

// ownTicks is the CPU time of the node process alone (not its compute child).
func ownTicks(p *proc) int64 {
	st, err := readStat(p.cmd.Process.Pid)
	if err != nil {
		return 0
	}
	return st.utime + st.stime
}

func overhead(work string) {
	c := newCluster(filepath.Join(work, "overhead"), "o", 3, func(int) []string {
		return []string{"--cpus", "1", "--chunk-target", "100ms"}
	})
	leader := startStable(c, 3)
	lp := c.byID(leader)
	tok := token(lp)
	fmt.Printf("overhead: 3 voters up, leader %s; %d one-chunk π jobs (65536 samples) by 16 clients; load average %s\n", lp.name, *flagTinyJobs, loadavg())
	// warm up: every node's first chunk of a kind
	warm := submit(lp, tok, map[string]any{"kind": "pi", "samples": 1 << 22, "seed": 1})
	waitJob(lp, warm, time.Minute, nil)

	var perfCmd *exec.Cmd
	perfData := filepath.Join(work, "perf.data")
	if *flagPerf {
		perfCmd = exec.Command("perf", "record", "-F", "999", "-g", "-o", perfData, "-p", strconv.Itoa(lp.cmd.Process.Pid))
		perfCmd.Stdout, perfCmd.Stderr = io.Discard, io.Discard
		if err := startCmd(perfCmd); err != nil {
			fmt.Printf("  perf: %v\n", err)
			perfCmd = nil
		}
		time.Sleep(300 * time.Millisecond)
	}
	cpu0 := ownTicks(lp)
	var cpuF0 []int64
	for _, p := range c.nodes {
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
	var follower *proc
	for _, p := range c.nodes {
		if p != lp {
			follower = p
			break
		}
	}
	for i := 0; i < len(ids) && time.Since(start) < 10*time.Minute; {
		if v, err := getJob(follower, ids[i]); err == nil && v.State == "done" {
			i++
			continue
		}
		time.Sleep(20 * time.Millisecond)
	}
	var views []jobView
	if b, err := api("GET", follower.httpURL+"/api/v1/jobs", "", nil); err == nil {
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
	cpu := float64(ownTicks(lp)-cpu0) / clkTck
	var cpuAll float64
	for i, p := range c.nodes {
		cpuAll += float64(ownTicks(p)-cpuF0[i]) / clkTck
	}
	lo, hi := fin[len(fin)/10], fin[len(fin)*9/10]
	mid := float64(len(fin)*9/10-len(fin)/10) / hi.Sub(lo).Seconds()
	hydraChunksPerS = float64(chunks) / wall
	fmt.Printf("  %d jobs, %d chunks; submits took %.2f s; last done at %.2f s; load average %s\n", len(fin), chunks, submitted.Seconds(), wall, loadavg())
	addReport("per-chunk overhead (3 voters, %d one-chunk π jobs of 65536 samples): %.0f chunks/s end to end (%d chunks in %.2f s; %.0f/s between the 10th and 90th percentile of finishes); leader node process CPU %.2f ms per chunk (%.2f s over the window; compute children excluded), all 3 node processes %.2f ms per chunk",
		len(fin), float64(chunks)/wall, chunks, wall, mid, cpu*1000/float64(chunks), cpu, cpuAll*1000/float64(chunks))
	if perfCmd != nil {
		perfCmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { perfCmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			perfCmd.Process.Kill()
		}
		track(perfCmd, false)
		for _, mode := range []string{"--no-children", "--children"} {
			out, err := exec.Command("perf", "report", "-i", perfData, "--stdio", mode, "--sort", "symbol", "-g", "none", "--percent-limit", "1.5").Output()
			if err != nil {
				fmt.Printf("  perf report: %v\n", err)
				break
			}
			fmt.Printf("  perf report %s (leader node process, top symbols):\n", mode)
			k, h := 0, 0
			for _, l := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(strings.TrimSpace(l), "#") || strings.TrimSpace(l) == "" {
					continue
				}
				l = strings.TrimRight(strings.TrimRight(l, " -"), " ")
				if k < 30 {
					fmt.Println("    " + l)
				} else if strings.Contains(l, "hydra-compute/hydra/") && h < 25 {
					fmt.Println("    (hydra) " + l)
					h++
				}
				k++
			}
		}
	}
	// One big job at --chunk-target 100ms: the chunk path alone (no per-job
	// entries), at the rate the policy allows (about one chunk per node per
	// 100 ms).
	{
		id := submit(lp, tok, map[string]any{"kind": "pi", "samples": int64(1e14), "seed": 5})
		time.Sleep(3 * time.Second)
		v0, _ := getJob(lp, id)
		l0 := ownTicks(lp)
		var a0 int64
		for _, p := range c.nodes {
			a0 += ownTicks(p)
		}
		t0 := time.Now()
		time.Sleep(10 * time.Second)
		v1, _ := getJob(lp, id)
		dt := time.Since(t0).Seconds()
		l1 := ownTicks(lp)
		var a1 int64
		for _, p := range c.nodes {
			a1 += ownTicks(p)
		}
		cancel(lp, tok, id)
		n := v1.chunks() - v0.chunks()
		if n > 0 {
			addReport("one π job at --chunk-target 100ms (3 nodes, 10 s): %.0f chunks/s (%d chunks; the policy sizes chunks to 100 ms of work, so about 3 nodes x 10/s at most), leader node process CPU %.2f ms per chunk, all 3 node processes %.2f ms per chunk",
				float64(n)/dt, n, float64(l1-l0)*1000/clkTck/float64(n), float64(a1-a0)*1000/clkTck/float64(n))
		}
	}
	c.stop()
}

// ---- failover

func failoverCost(work string) {
	c := newCluster(filepath.Join(work, "kill"), "k", 5, func(i int) []string {
		if i < 3 {
			return []string{"--compute=false", "--voter", "prefer", "--voters", "3"}
		}
		return []string{"--voter", "never", "--cpus", "1", "--voters", "3"}
	})
	startStable(c, 3)
	w := c.nodes[3] // a worker: never the leader, never killed
	tok := token(w)
	fmt.Printf("failover: 3 coordinators (--compute=false) + 2 workers (--cpus 1) up; load average %s\n", loadavg())
	// calibrate
	id := submit(w, tok, map[string]any{"kind": "pi", "samples": int64(1e14), "seed": 3})
	time.Sleep(4 * time.Second)
	v0, _ := getJob(w, id)
	t0 := time.Now()
	time.Sleep(4 * time.Second)
	v1, _ := getJob(w, id)
	rate := float64(v1.DoneUnits-v0.DoneUnits) / time.Since(t0).Seconds()
	cancel(w, tok, id)
	samples := int64(rate * *flagKillSecs)
	fmt.Printf("  cluster rate %.4g samples/s -> jobs of %d samples\n", rate, samples)
	var base, kill []float64
	for run := 1; run <= *flagKillRuns; run++ {
		for _, doKill := range []bool{false, true} {
			leader, _, err := waitStable(c, 3, time.Second, 90*time.Second)
			if err != nil {
				c.tails(20)
				fatalf("failover: %v", err)
			}
			id := submit(w, tok, map[string]any{"kind": "pi", "samples": samples, "seed": 20 + run})
			var victim *proc
			var killAt time.Time
			v := waitJob(w, id, 10*time.Minute, func(v *jobView) {
				if doKill && victim == nil && v.TotalUnits > 0 && float64(v.DoneUnits) >= 0.4*float64(v.TotalUnits) {
					victim = c.byID(leader)
					if st, _, err := getStatus(context.Background(), w.httpURL); err == nil && st.Leader != "" {
						victim = c.byID(st.Leader)
					}
					killAt = time.Now()
					victim.kill()
				}
			})
			if v.State != "done" {
				fatalf("job %s: %s", id, v.State)
			}
			if doKill {
				kill = append(kill, v.wall())
				fmt.Printf("  run %d kill: %.2f s (killed leader %s at %.2f s), %d chunks; load average %s\n", run, v.wall(), victim.name, killAt.Sub(v.SubmittedAt).Seconds(), v.chunks(), loadavg())
				timeline(w, v, killAt)
				if err := victim.start(); err != nil {
					fatalf("restart: %v", err)
				}
			} else {
				base = append(base, v.wall())
				fmt.Printf("  run %d no kill: %.2f s, %d chunks; load average %s\n", run, v.wall(), v.chunks(), loadavg())
			}
		}
	}
	c.stop()
	mb := median(base)
	var extra []string
	for _, k := range kill {
		extra = append(extra, fmt.Sprintf("%+.2f", k-mb))
	}
	var paired []float64
	for i := range kill {
		paired = append(paired, kill[i]-base[i])
	}
	addReport("leader kill (π job of %d samples on 2 workers, leader = a --compute=false coordinator SIGKILLed at 40%%): no kill %s s (median %.2f); kill %s s; extra seconds vs the no-kill median: %s (median %+.2f); kill run minus the no-kill run just before it: %s (median %+.2f)",
		samples, fmtList(base), mb, fmtList(kill), strings.Join(extra, ", "), median(kill)-mb, fmtList(paired), median(paired))
}

// timeline prints what the chunk history says about a kill: the commit gap
// around it and the chunks after it.
func timeline(p *proc, v *jobView, killAt time.Time) {
	cs := getChunks(p, v.ID)
	k := killAt.UnixMilli()
	var before, after int64 = 0, 0
	nAfter := 0
	last := map[string]int64{}
	for _, c := range cs {
		if c.committedMS <= k {
			before = max(before, c.committedMS)
		} else {
			if after == 0 || c.committedMS < after {
				after = c.committedMS
			}
			nAfter++
		}
		last[c.nodeID] = max(last[c.nodeID], c.committedMS)
	}
	rel := func(ms int64) float64 { return time.UnixMilli(ms).Sub(v.SubmittedAt).Seconds() }
	var ls []string
	for id, t := range last {
		ls = append(ls, fmt.Sprintf("%.12s… %.2f s", id, rel(t)))
	}
	sort.Strings(ls)
	fmt.Printf("    timeline: kill at %.2f s; last commit before %.2f s, first after %.2f s (gap %.2f s); %d chunks after the kill; each worker's last commit: %s\n",
		rel(k), rel(before), rel(after), float64(after-before)/1000, nAfter, strings.Join(ls, ", "))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtList(xs []float64) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprintf("%.2f", x))
	}
	return strings.Join(s, ", ")
}

// ---- dask

func dask() {
	if *flagDask == "" {
		fmt.Println("dask: no -dask script, skipped")
		return
	}
	fmt.Printf("dask: %d no-op tasks on a LocalCluster of 2 processes; load average %s\n", *flagDaskTasks, loadavg())
	cmd := exec.Command("/usr/bin/python3", *flagDask, strconv.Itoa(*flagDaskTasks))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := startCmd(cmd); err != nil {
		addReport("dask: %v", err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Minute):
		for _, d := range descendants(cmd.Process.Pid) {
			syscall.Kill(d, syscall.SIGKILL)
		}
		cmd.Process.Kill()
		err = <-done
	}
	track(cmd, false)
	var res string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "RESULT ") {
			res = strings.TrimPrefix(l, "RESULT ")
			if f := strings.Fields(res); len(f) > 0 && hydraChunksPerS > 0 {
				if r, err := strconv.ParseFloat(f[0], 64); err == nil && r > 0 {
					res += fmt.Sprintf("; Hydra chunks/s ÷ Dask tasks/s = %.2f", hydraChunksPerS/r)
				}
			}
		}
	}
	if res == "" {
		tail := out.String()
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		addReport("dask: no result (%v): %s", err, tail)
		return
	}
	addReport("dask distributed no-op tasks: %s", res)
}

// ---- main

var (
	workDir string
	ownWork bool
)

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchcluster: "+format+"\n", args...)
	cleanup()
	os.Exit(1)
}

func cleanup() {
	killAll()
	time.Sleep(100 * time.Millisecond)
	switch {
	case workDir == "":
	case *flagKeep:
		fmt.Fprintf(os.Stderr, "work directory kept: %s\n", workDir)
	case ownWork:
		os.RemoveAll(workDir)
	}
}

func main() {
	flag.Parse()
	if *flagHydra == "" {
		fmt.Fprintln(os.Stderr, "benchcluster: -hydra is required")
		os.Exit(2)
	}
	if abs, err := filepath.Abs(*flagHydra); err == nil {
		*flagHydra = abs
	}
	var err error
	workDir = *flagWork
	if workDir == "" {
		if workDir, err = os.MkdirTemp("", "hydra-benchcluster-"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		ownWork = true
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "benchcluster: %v, stopping\n", s)
		cleanup()
		os.Exit(130)
	}()
	probeFlags()
	fmt.Printf("benchcluster: %s, %d CPUs, load average %s (--dedicated: %v)\n", *flagHydra, runtime.NumCPU(), loadavg(), hasDedicated)
	for _, ph := range strings.Split(*flagPhases, ",") {
		switch strings.TrimSpace(ph) {
		case "hetero":
			hetero(workDir)
		case "overhead":
			overhead(workDir)
		case "failover":
			failoverCost(workDir)
		case "dask":
			dask()
		default:
			fatalf("unknown phase %q", ph)
		}
	}
	fmt.Println("\n==== report (load average now " + loadavg() + ")")
	for _, l := range report {
		fmt.Println(l)
	}
	cleanup()
}
