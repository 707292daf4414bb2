package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/webui"
)

// fakeCluster is a node's API backend in memory: webui.Backend (the methods
// the job routes use; any other one panics through the nil embedded
// interface) and webui.JobBackend. A job advances one step each time it is
// read: queued → running (half done) → done (or cancelled, when cancelOnPoll).
type fakeCluster struct {
	webui.Backend
	mu           sync.Mutex
	jobs         []*compute.Job
	submitted    []compute.JobSpec
	cancelOnPoll bool
}

const token = "tok"

func (f *fakeCluster) Token() string { return token }
func (f *fakeCluster) Status() webui.Status {
	return webui.Status{Nodes: []webui.NodeStatus{{ID: "peerA", Name: "alpha"}, {ID: "peerB", Name: "beta"}}}
}

func (f *fakeCluster) SubmitJob(ctx context.Context, spec compute.JobSpec) (compute.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submitted = append(f.submitted, spec)
	j := &compute.Job{ID: fmt.Sprintf("job%d", len(f.jobs)+1), Name: spec.Name, Kind: spec.Kind, Spec: spec,
		Priority: spec.EffectivePriority(), State: compute.StateQueued, SubmittedAt: time.Now(),
		TotalUnits: spec.TotalUnits(), Nodes: []compute.NodeContribution{}}
	f.jobs = append(f.jobs, j)
	return *j, nil
}

func (f *fakeCluster) find(id string) *compute.Job {
	for _, j := range f.jobs {
		if j.ID == id {
			return j
		}
	}
	return nil
}

func (f *fakeCluster) Jobs() []compute.Job {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []compute.Job
	for _, j := range f.jobs {
		out = append(out, *j)
	}
	return out
}

func (f *fakeCluster) Job(id string) (compute.Job, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.find(id)
	if j == nil {
		return compute.Job{}, false
	}
	switch j.State {
	case compute.StateQueued:
		j.State, j.StartedAt = compute.StateRunning, j.SubmittedAt.Add(time.Second)
	case compute.StateRunning:
		if f.cancelOnPoll {
			j.State = compute.StateCancelled
		} else if j.DoneUnits == 0 {
			j.DoneUnits = j.TotalUnits / 2
		} else {
			j.State, j.DoneUnits, j.FinishedAt = compute.StateDone, j.TotalUnits, j.SubmittedAt.Add(5*time.Second)
		}
	}
	if j.DoneUnits > 0 {
		a := j.DoneUnits * 3 / 4
		j.Nodes = []compute.NodeContribution{{Node: "peerA", Units: a, Chunks: 6, ComputeSeconds: 3}, {Node: "peerB", Units: j.DoneUnits - a, Chunks: 2, ComputeSeconds: 1}}
	}
	return *j, true
}

func (f *fakeCluster) CancelJob(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.find(id)
	switch {
	case j == nil:
		return compute.ErrNoSuchJob
	case j.State.Finished():
		return compute.ErrJobFinished
	}
	j.State = compute.StateCancelled
	return nil
}

func (f *fakeCluster) DeleteJob(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, j := range f.jobs {
		if j.ID == id {
			f.jobs = append(f.jobs[:i], f.jobs[i+1:]...)
			return nil
		}
	}
	return compute.ErrNoSuchJob
}

// done returns the units a job has done, for results.
func (f *fakeCluster) done(id string) (*compute.Job, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.find(id)
	if j == nil {
		return nil, 0, compute.ErrNoSuchJob
	}
	return j, j.DoneUnits, nil
}

func (f *fakeCluster) PiResult(id string) (compute.PiResult, error) {
	j, n, err := f.done(id)
	if err != nil {
		return compute.PiResult{}, err
	}
	hits := compute.PiHits(j.Spec.Pi.Seed, 0, n)
	p := float64(hits) / float64(n)
	return compute.PiResult{Hits: hits, Samples: n, Estimate: 4 * p, StdError: 4 * math.Sqrt(p*(1-p)/float64(n))}, nil
}

func (f *fakeCluster) MandelChunk(id string, row uint64) (compute.Range, []uint32, error) {
	j, n, err := f.done(id)
	if err != nil {
		return compute.Range{}, nil, err
	}
	m := *j.Spec.Mandel
	if row >= n {
		return compute.Range{Start: row, End: uint64(m.Height)}, nil, nil
	}
	img := make([]uint32, m.Width*int(n))
	return compute.Range{Start: 0, End: n}, img, compute.MandelRows(m, 0, int(n), img)
}

func (f *fakeCluster) AcceptedRanges(id string) ([]compute.Range, error) {
	_, n, err := f.done(id)
	return []compute.Range{{Start: 0, End: n}}, err
}

// newAPI serves the real webui handler over a fake cluster.
func newAPI(t *testing.T) (*fakeCluster, []string) {
	t.Helper()
	return newAPIThrough(t, func(h http.Handler) http.Handler { return h })
}

// newAPIThrough is newAPI with the handler wrapped by wrap (a test that breaks some answers).
func newAPIThrough(t *testing.T, wrap func(http.Handler) http.Handler) (*fakeCluster, []string) {
	t.Helper()
	f := &fakeCluster{}
	srv := httptest.NewServer(wrap(webui.New(webui.Config{Backend: f, Jobs: f})))
	t.Cleanup(srv.Close)
	oldPoll, oldPlain := pollEvery, plainEvery
	pollEvery, plainEvery = time.Millisecond, 0
	t.Cleanup(func() { pollEvery, plainEvery = oldPoll, oldPlain })
	return f, []string{"--api", srv.URL, "--token", token}
}

func TestSubmitPiExactParams(t *testing.T) {
	f, api := newAPI(t)
	code, out, errs := run(append([]string{"submit", "pi", "--samples", "1e11", "--seed", "18446744073709551615", "--name", "big", "--priority", "7"}, api...)...)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want := compute.JobSpec{Kind: compute.KindPi, Name: "big", Priority: 7, Pi: &compute.PiParams{Samples: 1e11, Seed: math.MaxUint64}}
	if len(f.submitted) != 1 || !reflect.DeepEqual(f.submitted[0], want) {
		t.Fatalf("submitted %+v", f.submitted)
	}
	if !strings.Contains(out, "job1") || !strings.Contains(out, "18446744073709551615") {
		t.Fatalf("output %q", out)
	}
	// --json prints the job view.
	code, out, _ = run(append([]string{"submit", "pi", "--samples", "1000", "--seed", "3", "--json"}, api...)...)
	var v map[string]any
	if code != ExitOK || json.Unmarshal([]byte(out), &v) != nil || v["id"] != "job2" || v["seed"] != "3" {
		t.Fatalf("json: %d %q", code, out)
	}
}

func TestSubmitPiWaitPrintsEstimateAndShares(t *testing.T) {
	_, api := newAPI(t)
	code, out, errs := run(append([]string{"submit", "pi", "--samples", "200000", "--seed", "7", "--wait"}, api...)...)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	hits := compute.PiHits(7, 0, 200000)
	est := 4 * float64(hits) / 200000
	if !strings.Contains(out, fmt.Sprintf("π ≈ %.4f", est)) || !strings.Contains(out, "±") {
		t.Fatalf("no estimate in %q", out)
	}
	if !strings.Contains(out, group(hits)+" hits of 200,000 samples") {
		t.Fatalf("no hits line in %q", out)
	}
	for _, s := range []string{"alpha", "beta", "75.0%", "25.0%", "150,000"} {
		if !strings.Contains(out, s) {
			t.Errorf("shares lack %q:\n%s", s, out)
		}
	}
	if !strings.Contains(errs, "progress") || !strings.Contains(errs, "50.0%") {
		t.Errorf("no plain progress lines on stderr: %q", errs)
	}
	// --json --wait: job and result.
	code, out, _ = run(append([]string{"submit", "pi", "--samples", "1000", "--seed", "1", "--wait", "--json"}, api...)...)
	var both struct {
		Job    webui.JobView
		Result webui.ResultView
	}
	if code != ExitOK || json.Unmarshal([]byte(out), &both) != nil || both.Job.State != compute.StateDone || both.Result.PiResult == nil || both.Result.Samples != 1000 {
		t.Fatalf("json: %d %q", code, out)
	}
}

func TestSubmitWaitCancelledExits1(t *testing.T) {
	f, api := newAPI(t)
	f.cancelOnPoll = true
	code, _, errs := run(append([]string{"submit", "pi", "--samples", "1000", "--seed", "1", "--wait"}, api...)...)
	if code != ExitFailure || !strings.Contains(errs, "cancelled") {
		t.Fatalf("exit %d: %q", code, errs)
	}
}

func TestSubmitMandelbrotWaitWritesPNG(t *testing.T) {
	f, api := newAPI(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "m.png")
	code, out, errs := run(append([]string{"submit", "mandelbrot", "--width", "48", "--height", "32", "--center", "-0.743643887,0.131825904",
		"--span", "0.0002", "--max-iter", "500", "--wait", "-o", file}, api...)...)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want := compute.MandelParams{Width: 48, Height: 32, CenterX: -0.743643887, CenterY: 0.131825904, Span: 0.0002, MaxIter: 500}
	if !reflect.DeepEqual(*f.submitted[0].Mandel, want) {
		t.Fatalf("submitted %+v", f.submitted[0].Mandel)
	}
	if !strings.Contains(out, "wrote "+file) {
		t.Fatalf("output %q", out)
	}
	img := decodePNGFile(t, file)
	if b := img.Bounds(); b.Dx() != 48 || b.Dy() != 32 {
		t.Fatalf("size %v", b)
	}
	// hydra result: raw counts to a file, PNG to a non-terminal stdout.
	rawFile := filepath.Join(dir, "m.raw")
	if code, _, errs := run(append([]string{"result", "job1", "--raw", "-o", rawFile}, api...)...); code != ExitOK {
		t.Fatalf("result --raw: %d %s", code, errs)
	}
	if st, err := os.Stat(rawFile); err != nil || st.Size() != 48*32*4 {
		t.Fatalf("raw file: %v %v", st, err)
	}
	code, out, _ = run(append([]string{"result", "job1"}, api...)...)
	if code != ExitOK {
		t.Fatal(code)
	}
	if _, err := png.Decode(strings.NewReader(out)); err != nil {
		t.Fatalf("stdout is not a PNG: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".hydra-*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func decodePNGFile(t *testing.T, path string) image.Image {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestJobsJobResultCancelRm(t *testing.T) {
	_, api := newAPI(t)
	if code, _, errs := run(append([]string{"submit", "pi", "--samples", "4000", "--seed", "9", "--name", "first"}, api...)...); code != ExitOK {
		t.Fatal(errs)
	}
	if code, _, errs := run(append([]string{"submit", "mandelbrot", "--width", "8", "--height", "4"}, api...)...); code != ExitOK {
		t.Fatal(errs)
	}
	code, out, _ := run(append([]string{"jobs"}, api...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != ExitOK || len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], "job2") || !strings.Contains(lines[2], "first") {
		t.Fatalf("jobs: %d\n%s", code, out)
	}
	code, out, _ = run(append([]string{"jobs", "--json"}, api...)...)
	var list []webui.JobView
	if code != ExitOK || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 {
		t.Fatalf("jobs --json: %q", out)
	}
	// --limit keeps the newest; --state keeps the states named.
	code, out, _ = run(append([]string{"jobs", "--limit", "1", "--json"}, api...)...)
	if list = nil; code != ExitOK || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].ID != "job2" {
		t.Fatalf("jobs --limit 1: %q", out)
	}
	code, out, _ = run(append([]string{"jobs", "--state", "done,failed", "--json"}, api...)...)
	if list = nil; code != ExitOK || json.Unmarshal([]byte(out), &list) != nil || len(list) != 0 {
		t.Fatalf("jobs --state done,failed (none yet): %q", out)
	}
	code, out, _ = run(append([]string{"jobs", "--state", "queued", "--json"}, api...)...)
	if list = nil; code != ExitOK || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 {
		t.Fatalf("jobs --state queued: %q", out)
	}
	// hydra job ID (flags after the ID too); every read advances the fake.
	code, out, _ = run(append([]string{"job", "job1"}, api...)...)
	if code != ExitOK || !strings.Contains(out, "job job1 (first)") || !strings.Contains(out, "seed 9") {
		t.Fatalf("job: %q", out)
	}
	code, out, _ = run(append([]string{"job", "job1", "--json"}, api...)...)
	var v webui.JobView
	if code != ExitOK || json.Unmarshal([]byte(out), &v) != nil || v.Spec.Pi.Seed != 9 || len(v.Nodes) != 2 {
		t.Fatalf("job --json: %q", out)
	}
	code, out, _ = run(append([]string{"result", "job1"}, api...)...)
	if code != ExitOK || !strings.Contains(out, "π ≈") {
		t.Fatalf("result: %q", out)
	}
	// job2 is still queued: cancel it, then cancelling again is a failure (409).
	if code, out, errs := run(append([]string{"cancel", "job2"}, api...)...); code != ExitOK || !strings.Contains(out, "cancelled job job2") {
		t.Fatalf("cancel: %d %q %q", code, out, errs)
	}
	if code, _, errs := run(append([]string{"cancel", "job2"}, api...)...); code != ExitFailure || !strings.Contains(errs, "409") {
		t.Fatalf("second cancel: %d %q", code, errs)
	}
	if code, _, errs := run(append([]string{"rm", "job2"}, api...)...); code != ExitOK {
		t.Fatal(errs)
	}
	if code, _, errs := run(append([]string{"job", "job2"}, api...)...); code != ExitFailure || !strings.Contains(errs, "job2") {
		t.Fatalf("removed job: %d %q", code, errs)
	}
}

func TestJobUsageErrorsExitConfig(t *testing.T) {
	_, api := newAPI(t)
	cases := [][]string{
		{"submit"},
		{"submit", "fft"},
		{"submit", "--wait"},
		{"submit", "pi"},
		{"submit", "pi", "--samples", "1.5"},
		{"submit", "pi", "--samples", "0"},
		{"submit", "pi", "--samples", "2e15"},
		{"submit", "pi", "--samples", "-4"},
		{"submit", "pi", "--samples", "lots"},
		{"submit", "pi", "--samples", "10", "--seed", "-1"},
		{"submit", "pi", "--samples", "10", "--seed", "18446744073709551616"},
		{"submit", "pi", "--samples", "10", "--priority", "101"},
		{"submit", "pi", "--samples", "10", "stray"},
		{"submit", "mandelbrot", "--width", "0"},
		{"submit", "mandelbrot", "--height", "16385"},
		{"submit", "mandelbrot", "--max-iter", "0"},
		{"submit", "mandelbrot", "--span", "0"},
		{"submit", "mandelbrot", "--span", "NaN"},
		{"submit", "mandelbrot", "--center", "1"},
		{"submit", "mandelbrot", "-o", "x.png"},
		{"submit", "mandelbrot", "--samples", "3"},
		{"job"},
		{"job", "a", "b"},
		{"result"},
		{"cancel"},
		{"rm"},
		{"jobs", "extra"},
		{"jobs", "--limit", "-1"},
		{"jobs", "--limit", "10001"},
		{"jobs", "--state", "busy"},
	}
	for _, args := range cases {
		code, _, stderr := run(append(args, api...)...)
		if code != ExitConfig {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, ExitConfig, stderr)
		}
		if n := strings.Count(strings.TrimRight(stderr, "\n"), "\n"); n != 0 || stderr == "" {
			t.Errorf("%v: want one line on stderr, got %q", args, stderr)
		}
	}
	// A π result with -o is a usage error once the kind is known.
	if code, _, errs := run(append([]string{"submit", "pi", "--samples", "10", "--seed", "1"}, api...)...); code != ExitOK {
		t.Fatal(errs)
	}
	if code, _, errs := run(append([]string{"result", "job1", "-o", "x.png"}, api...)...); code != ExitConfig {
		t.Fatalf("π result -o: %d %q", code, errs)
	}
}

func TestFlagNames(t *testing.T) {
	for in, want := range map[string]string{
		"max_iter: 0 is outside 1–1000000": "--max-iter: 0 is outside 1–1000000",
		"center_x: NaN is not a finite":    "--center: x NaN is not a finite",
		"invalid JSON body: x":             "invalid JSON body: x",
	} {
		if got := flagNames(in); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
}

// TestJobShowsWhyItFailed: hydra job ID prints a failed job's reason (a WebAssembly module that
// trapped on enough nodes), on one line, as the web UI and --json show it.
func TestJobShowsWhyItFailed(t *testing.T) {
	now := time.Now()
	v := webui.JobView{ID: "job7", State: compute.StateFailed, SubmittedAt: now.Add(-time.Minute),
		Spec:   compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Items: 10, Reduce: compute.ReduceSum}},
		Reason: "the module failed on 3 nodes (a, b, c): trap:\nunreachable"}
	var b bytes.Buffer
	printJob(&b, v, now)
	if !strings.Contains(b.String(), "\n  failed: the module failed on 3 nodes (a, b, c): trap: unreachable\n") {
		t.Fatalf("hydra job of a failed job:\n%s", b.String())
	}
}

// TestJobShowsWhatItWaitsFor: a running job whose done units wait for their audits says so, and
// names a dispute, which in a cluster of two machines waits until a third node is live: without
// it a job at 100 % that never finished had no explanation outside the log.
func TestJobShowsWhatItWaitsFor(t *testing.T) {
	now := time.Now()
	v := webui.JobView{ID: "job8", State: compute.StateRunning, SubmittedAt: now.Add(-time.Minute),
		Spec:      compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 3000, Seed: 1}},
		DoneUnits: 3000, TotalUnits: 3000, ClearedUnits: 2000, Unit: "samples", Progress: 1, Disputes: 1}
	var b bytes.Buffer
	printJob(&b, v, now)
	if !strings.Contains(b.String(), "\n  audits: 1,000 of the done samples wait for their check; 1 chunk(s) in dispute wait for a third node") {
		t.Fatalf("hydra job of a job waiting for a dispute:\n%s", b.String())
	}
	v.State, v.ClearedUnits, v.Disputes = compute.StateDone, 3000, 0
	b.Reset()
	printJob(&b, v, now)
	if strings.Contains(b.String(), "audits:") {
		t.Fatalf("hydra job of a done job speaks of audits:\n%s", b.String())
	}
}

// TestJobTimesNeverRunBackwards: stamps of clocks that disagree a little (a job submitted on
// a node a few seconds ahead of the leader that started it) never print a negative interval.
func TestJobTimesNeverRunBackwards(t *testing.T) {
	now := time.Now()
	v := webui.JobView{ID: "job9", State: compute.StateDone, SubmittedAt: now.Add(-time.Minute),
		StartedAt: now.Add(-time.Minute - 4*time.Second), FinishedAt: now.Add(-time.Minute - 2*time.Second),
		Spec: compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 3000, Seed: 1}}}
	var b bytes.Buffer
	printJob(&b, v, now)
	if strings.Contains(b.String(), "+-") || !strings.Contains(b.String(), "started +0s, finished +0s") {
		t.Fatalf("hydra job of a job stamped by clocks that disagree:\n%s", b.String())
	}
}

// wasmCluster is fakeCluster with the result routes of WebAssembly jobs (webui.WasmJobBackend).
type wasmCluster struct {
	*fakeCluster
	output string // a concat job's output bytes
}

func (f wasmCluster) WasmResult(id string) (compute.WasmResult, error) {
	j, n, err := f.done(id)
	if err != nil {
		return compute.WasmResult{}, err
	}
	return compute.WasmResult{Reduce: j.Spec.Wasm.Reduce, Value: "78498", Items: j.Spec.Wasm.Items, DoneItems: n, Complete: n == j.Spec.Wasm.Items}, nil
}

func (f wasmCluster) WasmOutput(id string, w io.Writer) error {
	_, err := io.WriteString(w, f.output)
	return err
}

// TestResultOfWasmJob: hydra result ID shows a WebAssembly job's reduced value (and --json its
// result view), and -o writes a concat job's output bytes; before, every wasm result was refused
// as one "this hydra cannot show", with --json too.
func TestResultOfWasmJob(t *testing.T) {
	f := wasmCluster{fakeCluster: &fakeCluster{}, output: "0\n1\n4\n"}
	srv := httptest.NewServer(webui.New(webui.Config{Backend: f, Jobs: f}))
	t.Cleanup(srv.Close)
	api := []string{"--api", srv.URL, "--token", token}
	sha := strings.Repeat("ab", 32)
	for _, reduce := range []compute.Reduce{compute.ReduceSum, compute.ReduceConcat} {
		if _, err := f.SubmitJob(context.Background(), compute.JobSpec{Kind: compute.KindWasm,
			Wasm: &compute.WasmParams{Module: sha, Items: 1000000, Reduce: reduce}}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 { // queued → running → done
		f.Job("job1")
		f.Job("job2")
	}
	code, out, errs := run(append([]string{"result", "job1"}, api...)...)
	if code != ExitOK || !strings.Contains(out, "sum = 78498 over 1,000,000 of 1,000,000 items") {
		t.Fatalf("result of a wasm sum job: %d %q %q", code, out, errs)
	}
	code, out, errs = run(append([]string{"result", "job1", "--json"}, api...)...)
	var v webui.ResultView
	if code != ExitOK || json.Unmarshal([]byte(out), &v) != nil || v.WasmResult == nil || v.Value != "78498" || v.Reduce != compute.ReduceSum {
		t.Fatalf("result --json of a wasm sum job: %d %q %q", code, out, errs)
	}
	if code, _, errs := run(append([]string{"result", "job1", "-o", filepath.Join(t.TempDir(), "x")}, api...)...); code != ExitConfig {
		t.Fatalf("result -o of a wasm sum job: %d %q", code, errs)
	}
	file := filepath.Join(t.TempDir(), "out.bin")
	code, out, errs = run(append([]string{"result", "job2", "-o", file}, api...)...)
	if code != ExitOK || !strings.Contains(out, "wrote "+file) {
		t.Fatalf("result -o of a wasm concat job: %d %q %q", code, out, errs)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != f.output {
		t.Fatalf("concat output written: %q, %v", b, err)
	}
}

// Every message that says which kinds hydra submit takes names all three: pi, mandelbrot and wasm.
func TestSubmitMessagesNameEveryKind(t *testing.T) {
	_, api := newAPI(t)
	for _, args := range [][]string{{"submit"}, {"submit", "--wait"}, {"submit", "fft"}} {
		code, _, stderr := run(append(args, api...)...)
		for _, kind := range []string{"hydra submit pi", "hydra submit mandelbrot", "hydra submit wasm"} {
			if code != ExitConfig || !strings.Contains(stderr, kind) {
				t.Errorf("%v: exit %d, stderr %q should name %q", args, code, stderr, kind)
			}
		}
	}
	code, out, _ := run(append([]string{"jobs"}, api...)...)
	if code != ExitOK || !strings.Contains(out, "hydra submit wasm") {
		t.Errorf("jobs with none: %d %q should name 'hydra submit wasm'", code, out)
	}
}
