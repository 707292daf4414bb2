//go:build linux

package main

// API helpers: jobs, chunk history, raw results, coordinator rates; Mandelbrot views and the fixed-chunk simulation.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/scripts/internal/procluster"
	"github.com/hydra-compute/hydra/webui"
)

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

// jobView is the API's view of a job, with the figures the benchmarks read.
type jobView struct{ webui.JobView }

func (j *jobView) chunks() int {
	n := 0
	for _, x := range j.Nodes {
		n += int(x.Chunks)
	}
	return n
}

func (j *jobView) wall() float64 { return j.FinishedAt.Sub(j.SubmittedAt).Seconds() }

func token(p *procluster.Proc) string {
	end := time.Now().Add(60 * time.Second)
	for time.Now().Before(end) {
		if b, err := os.ReadFile(filepath.Join(p.DataDir, "api-token")); err == nil && len(bytes.TrimSpace(b)) > 0 {
			return string(bytes.TrimSpace(b))
		}
		time.Sleep(100 * time.Millisecond)
	}
	fatalf("%s: no api-token after 60 s", p.Name)
	return ""
}

func submit(p *procluster.Proc, tok string, body map[string]any) string {
	var err error
	for try := 0; try < 20; try++ {
		var b []byte
		b, err = api("POST", p.HTTPURL+"/api/v1/jobs", tok, body)
		if err == nil {
			var v jobView
			if err = json.Unmarshal(b, &v); err == nil {
				return v.ID
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	fatalf("submit to %s: %v", p.Name, err)
	return ""
}

func getJob(p *procluster.Proc, id string) (*jobView, error) {
	b, err := api("GET", p.HTTPURL+"/api/v1/jobs/"+id, "", nil)
	if err != nil {
		return nil, err
	}
	var v jobView
	return &v, json.Unmarshal(b, &v)
}

// waitJob polls the job until done (each poll passed to f).
func waitJob(p *procluster.Proc, id string, timeout time.Duration, f func(*jobView)) *jobView {
	// Figures come from the job's own submitted_at and finished_at, not from when this poll sees
	// it end, so without f a poll every 250 ms loses nothing; every 50 ms it cost the polled node
	// (h1, the 75 % node in hetero) 5–13 % of a core that its compute child lost.
	every := 250 * time.Millisecond
	if f != nil {
		every = 50 * time.Millisecond // f watches the job's progress (a timeline, a kill at 40 %)
	}
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		v, err := getJob(p, id)
		if err == nil {
			if f != nil {
				f(v)
			}
			if v.State.Finished() {
				return v
			}
		}
		time.Sleep(every)
	}
	fatalf("job %s not done within %v", id, timeout)
	return nil
}

func cancel(p *procluster.Proc, tok, id string) {
	api("POST", p.HTTPURL+"/api/v1/jobs/"+id+"/cancel", tok, map[string]any{})
}

type chunk struct {
	seq, start, end uint64
	node            int
	nodeID          string
	secs            float64
	committedMS     int64
}

func getChunks(p *procluster.Proc, id string) []chunk {
	var out []chunk
	from := 0
	for {
		b, err := api("GET", fmt.Sprintf("%s/api/v1/jobs/%s/chunks?from=%d&limit=20000", p.HTTPURL, id, from), "", nil)
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

func getRaw(p *procluster.Proc, id string) []uint32 {
	b, err := api("GET", p.HTTPURL+"/api/v1/jobs/"+id+"/result.raw", "", nil)
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
	u, dt := steadyUnits(cs, cost)
	if dt <= 0 {
		return 0, len(cs)
	}
	return u / dt, len(cs)
}

// steadyUnits is steadyRate's two terms, Σ cost of chunks[1:] and the seconds from the first
// commit to the last (0, 0 with fewer than two chunks), for a rate over several jobs.
func steadyUnits(cs []chunk, cost func(chunk) float64) (units, secs float64) {
	if len(cs) < 2 {
		return 0, 0
	}
	dt := float64(cs[len(cs)-1].committedMS-cs[0].committedMS) / 1000
	if dt <= 0 {
		return 0, 0
	}
	for _, c := range cs[1:] {
		units += cost(c)
	}
	return units, dt
}

func kernelOf(p *procluster.Proc) string {
	f, err := os.Open(p.LogPath)
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

func startStable(c *procluster.Cluster, voters int) string {
	sess.Check(c.StartAll())
	l, _, err := procluster.WaitStable(c, voters, time.Second, 90*time.Second)
	if err != nil {
		c.Tails(20)
		fatalf("%v", err)
	}
	return l
}

// coordinatorRates reads the first activity event of GET /api/v1/events:
// the coordinator's rate estimates (node ID → kind → units/s) and kernels.
func coordinatorRates(p *procluster.Proc) (map[string]map[string]float64, map[string]string) {
	req, _ := http.NewRequest("GET", p.HTTPURL+"/api/v1/events", nil)
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
