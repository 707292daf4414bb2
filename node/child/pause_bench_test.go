package child

// Pause figures for the compute child (docs/design.md §7): the latency from Runner.Pause (what the owner
// policy calls when a rule fires) to compute stopped with its finished prefix in hand, and the
// work a pause throws away. Run them with
//
//	GOEXPERIMENT=simd go test -run '^$' -bench 'Pause' -benchtime 30x ./node/child/
//
// BenchmarkPause drives the real child (this test binary re-executed, see TestMain) through a
// Runner and verifies every range a pause hands in bit for bit. Where the child can be frozen
// (Linux) a pause freezes it and reads what it finished from the shared log; lost-units counts
// finished units the log held that the pause did not hand in. ms/op is the mean latency; p50-ms, p95-ms and
// max-ms its distribution. Sub-benchmark "idle" runs on whatever the machine has; "owner-busy"
// adds one busy process per core at normal priority, the worst case of a busy owner: the child,
// at SCHED_IDLE, is then starved and notices the stop late (meanwhile its kernels get only the
// few cycles the owner leaves, about 1 % of the machine).
//
// BenchmarkPauseLostWork counts the units the kernels compute against the units a stop keeps.
// compute has no counting hooks, so it runs the child's own driver (child.drive: segments, the
// duty-cycle gate, task.stop) with the blocks of runPi and runMandel wrapped in a counter, in a
// process of its own (the driver lowers its threads to SCHED_IDLE, which must not happen to the
// benchmark's process). Figures: lost units per stop, split into the frontier's unfinished row
// (Mandelbrot results keep whole rows) and work other workers did beyond the prefix.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// lostWorkEnv carries "<case> <trials>" to the lostwork process (childEnv=lostwork).
const lostWorkEnv = "HYDRA_LOST_WORK"

// Generous bounds: the child runs at idle priority on a shared machine.
const progressWait = 60 * time.Second // from Run to the first progress report

var pauseWait = stopTimeout + 10*time.Second

// The test binary's extra roles, chosen before TestMain: a busy process standing in for the
// owner's programs, and the lost-work counter.
func init() {
	switch os.Getenv(childEnv) {
	case "spin":
		spin()
	case "lostwork":
		os.Exit(lostWorkMain(os.Getenv(lostWorkEnv), os.Stdout, os.Stderr))
	}
}

var spinSink atomic.Uint64

// spin burns one core until its stdin ends (the test is gone) or it is killed.
func spin() {
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	x := uint64(1)
	for {
		for range 1 << 20 {
			x = x*6364136223846793005 + 1442695040888963407
		}
		spinSink.Store(x)
	}
}

// pauseCase is a task far longer than a test, paused while it runs. spread is the range of
// the lostwork process's stop delays: at least a block's time, so stops land at every phase.
type pauseCase struct {
	name   string
	spec   compute.JobSpec
	rng    compute.Range
	spread time.Duration
}

var (
	casePi = pauseCase{"pi", piSpec(1<<45, 42), compute.Range{Start: 1000, End: 1000 + 1<<40}, 20 * time.Millisecond}
	// Inside the set: every pixel takes max_iter iterations, blocks cost the same.
	caseMandel = pauseCase{"mandel", mandelSpec(600, 600, 20000, -0.2, 0, 0.4), compute.Range{Start: 0, End: 600}, 300 * time.Millisecond}
	// The whole set: rows cost from a few to 20000 iterations a pixel, workers finish blocks out of
	// order. Seconds of work on a fast machine.
	caseMandelMixed = pauseCase{"mandel-mixed", mandelSpec(1024, 768, 20000, -0.75, 0, 3), compute.Range{Start: 0, End: 768}, time.Second}
	// Seahorse valley: neighbouring blocks differ most in cost; for BenchmarkPauseLostWork.
	caseMandelValley = pauseCase{"mandel-valley", mandelSpec(2048, 1536, 20000, -0.743643887, 0.131825904, 0.002), compute.Range{Start: 0, End: 1536}, 300 * time.Millisecond}
)

func pauseCaseByName(name string) (pauseCase, bool) {
	for _, c := range []pauseCase{casePi, caseMandel, caseMandelMixed, caseMandelValley} {
		if c.name == name {
			return c, true
		}
	}
	return pauseCase{}, false
}

// tbWriter sends the runner's log to the test log.
type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(b []byte) (int, error) {
	w.tb.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// startPauseRunner starts a Runner on all CPUs that logs warnings only (a benchmark's log
// would otherwise drown in progress).
func startPauseRunner(tb testing.TB) *Runner {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := Start(ctx, Config{Exe: os.Args[0], Env: []string{childEnv + "=child"}, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = r.Close() })
	return r
}

// startSpinners starts n busy processes at normal priority, the owner's programs. They end
// with the test (or when their stdin closes, should the test die first).
func startSpinners(tb testing.TB, n int) {
	tb.Helper()
	for range n {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), childEnv+"=spin")
		setSysProcAttr(cmd)
		in, err := cmd.StdinPipe()
		if err != nil {
			tb.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			tb.Fatalf("start a busy process: %v", err)
		}
		tb.Cleanup(func() { _ = in.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}
}

// pauseOnce runs c on r until the child reports progress (its kernels run), pauses r, and
// returns the time from Pause to Run's return and Run's result. r is resumed afterwards.
func pauseOnce(tb testing.TB, r *Runner, id uint64, c pauseCase) (time.Duration, Result) {
	tb.Helper()
	started := make(chan struct{})
	var once sync.Once
	ch := make(chan outcome, 1)
	go func() {
		res, err := r.Run(context.Background(), Chunk{ID: id, Spec: c.spec, Range: c.rng}, func(uint64) {
			once.Do(func() { close(started) })
		})
		ch <- outcome{res, err, time.Now()}
	}()
	wait := time.NewTimer(progressWait)
	defer wait.Stop()
	select {
	case <-started:
	case o := <-ch:
		tb.Fatalf("%s: task ended before any progress: %s %v", c.name, o.res.Done, o.err)
	case <-wait.C:
		tb.Fatalf("%s: no progress within %v", c.name, progressWait)
	}
	defer r.Resume()
	t0 := time.Now()
	r.Pause()
	wait.Reset(pauseWait)
	select {
	case o := <-ch:
		if o.err != nil {
			tb.Fatalf("%s: paused Run: %v", c.name, o.err)
		}
		return o.at.Sub(t0), o.res
	case <-wait.C:
		tb.Fatalf("%s: Run did not return within %v of Pause", c.name, pauseWait)
	}
	return 0, Result{}
}

// checkPrefix verifies that res is a proper prefix of c's range with exactly the reference
// result: π hits equal compute.PiHits over it, Mandelbrot rows equal compute.MandelPixels's.
func checkPrefix(c pauseCase, res Result) error {
	d := res.Done
	if d.Start != c.rng.Start || d.End < d.Start || d.End >= c.rng.End {
		return fmt.Errorf("%s: prefix %s of %s", c.name, d, c.rng)
	}
	if d.Len() == 0 {
		return nil // a pause before the first block finished: nothing to check
	}
	switch c.spec.Kind {
	case compute.KindPi:
		hits, err := compute.DecodePiResult(res.Payload, d)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		want, done := compute.PiHitsParallel(c.spec.Pi.Seed, d.Start, d.End, runtime.NumCPU(), nil)
		if done != d.Len() || hits != want {
			return fmt.Errorf("%s: prefix %s has %d hits, want %d", c.name, d, hits, want)
		}
	default:
		p := *c.spec.Mandel
		n := int(d.Len()) * p.Width
		got, err := compute.DecodeMandelPayload(res.Payload, n, uint32(p.MaxIter))
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		want := make([]uint32, n)
		if _, err := compute.MandelPixels(p, int(d.Start)*p.Width, int(d.End)*p.Width, want, runtime.NumCPU(), nil); err != nil {
			return fmt.Errorf("%s: reference: %w", c.name, err)
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s: prefix rows %s differ from the reference", c.name, d)
		}
	}
	// The commitment handed in with it is the payload's: the node does not decode it again.
	if want, err := compute.Commitment(c.spec, d, res.Payload); err != nil || res.Root != want {
		return fmt.Errorf("%s: prefix %s: root %v, the payload's %v (%v)", c.name, d, res.Root, want, err)
	}
	return nil
}

// TestPauseLatencyAndPrefix is the correctness guard of pausing: a paused task returns (within
// pauseWait: the 100 ms goal is BenchmarkPause's figure, not a pass mark on a shared machine
// under -race) with an exact prefix and exact ranges finished ahead of it. It also checks that
// a stop by message loses no π sample.
func TestPauseLatencyAndPrefix(t *testing.T) {
	r := startPauseRunner(t)
	for _, c := range []pauseCase{casePi, caseMandel} {
		for i := range 2 {
			lat, res := pauseOnce(t, r, uint64(i+1), c)
			t.Logf("%s: pause returned in %v with prefix %s and %d more ranges", c.name, lat, res.Done, len(res.Also))
			if err := checkPrefix(c, res); err != nil {
				t.Error(err)
			}
			for _, p := range res.Also {
				if err := checkPart(c, p); err != nil {
					t.Error(err)
				}
			}
		}
	}
	trials := runLostWork(t, casePi, 3)
	for i, tr := range trials {
		if tr.Computed != tr.Kept {
			t.Errorf("π stop %d: kernels computed %d samples, the prefix keeps %d", i, tr.Computed, tr.Kept)
		}
	}
}

// BenchmarkPause measures the latency from Runner.Pause to the paused Run's return with the real
// child on all CPUs, idle and with the owner busy on every core. Use -benchtime Nx: an
// iteration takes about half a second (the task runs until its first progress report).
func BenchmarkPause(b *testing.B) {
	for _, load := range []string{"idle", "owner-busy"} {
		for _, c := range []pauseCase{casePi, caseMandel, caseMandelMixed} {
			b.Run(c.name+"/"+load, func(b *testing.B) {
				var logged []shmRec
				freezeLogged = func(_ Chunk, recs []shmRec) { logged = recs }
				b.Cleanup(func() { freezeLogged = nil })
				r := startPauseRunner(b)
				if load == "owner-busy" {
					startSpinners(b, runtime.NumCPU())
				}
				lats := make([]time.Duration, 0, b.N)
				var units, lost uint64
				for i := 0; i < b.N; i++ {
					logged = nil
					lat, res := pauseOnce(b, r, uint64(i+1), c)
					if err := checkPrefix(c, res); err != nil {
						b.Fatal(err)
					}
					kept := compute.NewRangeSet(res.Done)
					for _, p := range res.Also {
						if err := checkPart(c, p); err != nil {
							b.Fatal(err)
						}
						kept.Add(p.Done)
					}
					lats = append(lats, lat)
					units += kept.Units()
					lost += lostUnits(c, logged, kept)
				}
				slices.Sort(lats)
				var sum time.Duration
				for _, l := range lats {
					sum += l
				}
				ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
				b.ReportMetric(0, "ns/op") // the iteration's time is mostly the task running
				b.ReportMetric(ms(sum)/float64(len(lats)), "ms/op")
				b.ReportMetric(ms(percentile(lats, 0.50)), "p50-ms")
				b.ReportMetric(ms(percentile(lats, 0.95)), "p95-ms")
				b.ReportMetric(ms(lats[len(lats)-1]), "max-ms")
				b.ReportMetric(float64(units)/float64(b.N), "kept-units/op")
				// Finished units (π samples, Mandelbrot whole rows) the frozen child had logged that
				// the pause did not hand in: the goal is 0. (A pause by message: not counted here,
				// see BenchmarkPauseLostWork.)
				b.ReportMetric(float64(lost)/float64(b.N), "lost-units/op")
			})
		}
	}
}

// percentile returns the nearest-rank p-quantile of sorted s.
func percentile[T any](s []T, p float64) T {
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// lostTrial is one stop in the lostwork process, in the task's segment units (π samples,
// Mandelbrot pixels).
type lostTrial struct {
	Computed uint64 `json:"computed"` // units the kernels finished
	Done     uint64 `json:"done"`     // the finished prefix
	Kept     uint64 `json:"kept"`     // what the result keeps: Done, or Done's whole rows
	Width    uint64 `json:"width"`    // units per row (1 for π)
	Workers  int    `json:"workers"`
	StopNS   int64  `json:"stop_ns"` // from task.stop to the driver's return
}

// BenchmarkPauseLostWork measures the work a stop throws away (see the file comment). Goals:
// 0 samples for π; for Mandelbrot at most the row each worker had started (lost-rows ≤
// workers). lost-partial-px is the frontier's unfinished row, lost-ahead-px what other workers
// computed beyond the prefix; stop-ms is the driver's own stop latency (no process hop).
func BenchmarkPauseLostWork(b *testing.B) {
	for _, c := range []pauseCase{casePi, caseMandel, caseMandelMixed, caseMandelValley} {
		b.Run(c.name, func(b *testing.B) {
			trials := runLostWork(b, c, b.N)
			var lost, partial, ahead, maxLost uint64
			stops := make([]time.Duration, 0, len(trials))
			for _, tr := range trials {
				l := tr.Computed - tr.Kept
				lost += l
				partial += tr.Done - tr.Kept
				ahead += tr.Computed - tr.Done
				maxLost = max(maxLost, l)
				stops = append(stops, time.Duration(tr.StopNS))
			}
			slices.Sort(stops)
			n := float64(len(trials))
			w := float64(trials[0].Width)
			b.ReportMetric(0, "ns/op")
			if c.spec.Kind == compute.KindPi {
				b.ReportMetric(float64(lost)/n, "lost-samples/op")
				b.ReportMetric(float64(maxLost), "max-lost-samples")
			} else {
				b.ReportMetric(float64(lost)/n, "lost-px/op")
				b.ReportMetric(float64(partial)/n, "lost-partial-px/op")
				b.ReportMetric(float64(ahead)/n, "lost-ahead-px/op")
				b.ReportMetric(float64(lost)/n/w, "lost-rows/op")
				b.ReportMetric(float64(maxLost)/w, "max-lost-rows")
				b.ReportMetric(float64(trials[0].Workers), "workers")
			}
			b.ReportMetric(float64(percentile(stops, 0.5))/1e6, "stop-p50-ms")
			b.ReportMetric(float64(stops[len(stops)-1])/1e6, "stop-max-ms")
		})
	}
}

// runLostWork runs n stops of c in a lostwork process and returns them.
func runLostWork(tb testing.TB, c pauseCase, n int) []lostTrial {
	tb.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=lostwork", fmt.Sprintf("%s=%s %d", lostWorkEnv, c.name, n))
	setSysProcAttr(cmd)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("lostwork %s: %v\n%s", c.name, err, stderr.String())
	}
	var trials []lostTrial
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var tr lostTrial
		if err := json.Unmarshal(sc.Bytes(), &tr); err != nil {
			tb.Fatalf("lostwork %s: %q: %v", c.name, sc.Text(), err)
		}
		if tr.Computed < tr.Done || tr.Done < tr.Kept || tr.Width == 0 {
			tb.Fatalf("lostwork %s: inconsistent trial %+v", c.name, tr)
		}
		trials = append(trials, tr)
	}
	if len(trials) != n {
		tb.Fatalf("lostwork %s: %d trials, want %d\n%s", c.name, len(trials), n, stderr.String())
	}
	return trials
}

// lostWorkMain is the lostwork process: arg is "<case> <trials>"; it prints one JSON lostTrial
// a line and returns the exit code.
func lostWorkMain(arg string, stdout, stderr io.Writer) int {
	name, ns, _ := strings.Cut(arg, " ")
	n, err := strconv.Atoi(ns)
	c, ok := pauseCaseByName(name)
	if err != nil || !ok || n < 1 {
		fmt.Fprintf(stderr, "lostwork: bad %s %q\n", lostWorkEnv, arg)
		return 2
	}
	lowerPriority() // as the real child does
	ch := &child{out: bufio.NewWriter(io.Discard), stderr: stderr, gate: newGate(100)}
	ch.cpus.Store(int32(runtime.GOMAXPROCS(0)))
	enc := json.NewEncoder(stdout)
	for i := range n {
		tr, err := lostWorkTrial(ch, c, i)
		if err != nil {
			fmt.Fprintf(stderr, "lostwork %s trial %d: %v\n", name, i, err)
			return 1
		}
		if err := enc.Encode(tr); err != nil {
			return 1
		}
	}
	return 0
}

// lostWorkTrial runs c with counting kernels, stops it once a block is finished plus a delay
// that differs between trials (so stops fall at every phase of a block), and counts.
func lostWorkTrial(ch *child, c pauseCase, i int) (lostTrial, error) {
	t := &task{id: uint64(i + 1), spec: c.spec, rng: c.rng}
	var computed atomic.Uint64
	type ended struct {
		done, kept, width uint64
		err               error
		at                time.Time
	}
	end := make(chan ended, 1)
	go func() {
		var e ended
		if c.spec.Kind == compute.KindPi {
			e.done, e.err = countPi(ch, t, &computed)
			e.kept, e.width = e.done, 1
		} else {
			e.done, e.err = countMandel(ch, t, &computed)
			e.width = uint64(c.spec.Mandel.Width)
			e.kept = e.done / e.width * e.width
		}
		e.at = time.Now()
		end <- e
	}()
	deadline := time.Now().Add(progressWait)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for t.prefix() == 0 {
		if time.Now().After(deadline) {
			t.stop()
			return lostTrial{}, errors.New("no block finished within the deadline")
		}
		select {
		case e := <-end:
			return lostTrial{}, fmt.Errorf("task ended before the stop: %d units, %v", e.done, e.err)
		case <-tick.C:
		}
	}
	// Part of the experiment, not a synchronisation: where in a block the stop lands.
	<-time.After(time.Duration(i*7919) * time.Millisecond % c.spread)
	t0 := time.Now()
	t.stop()
	e := <-end
	if e.err != nil {
		return lostTrial{}, e.err
	}
	return lostTrial{Computed: computed.Load(), Done: e.done, Kept: e.kept, Width: e.width,
		Workers: int(ch.cpus.Load()), StopNS: e.at.Sub(t0).Nanoseconds()}, nil
}

// countPi is runPi with every sample the kernel computes counted.
func countPi(c *child, t *task, computed *atomic.Uint64) (uint64, error) {
	seed, start := t.spec.Pi.Seed, t.rng.Start
	done, _, err := c.drive(t, t.rng.Len(), piBlock, func(off uint64) blockFn {
		return func(s, e uint64, _ compute.Stop) (uint64, uint64, error) {
			h := compute.PiHits(seed, start+off+s, start+off+e)
			computed.Add(e - s)
			return e - s, h, nil
		}
	})
	return done, err
}

// countMandel is runMandel with every pixel the kernel finishes counted: MandelPixels polls its
// Stop between groups of whole pixels, so the d it returns is all it computed. It returns the
// finished prefix in pixels; the result would keep its whole rows.
func countMandel(c *child, t *task, computed *atomic.Uint64) (uint64, error) {
	p := *t.spec.Mandel
	w := uint64(p.Width)
	n := t.rng.Len() * w
	first := t.rng.Start * w
	out := make([]uint32, n)
	bs := mandelBlock(n, w, uint64(c.cpus.Load()))
	done, _, err := c.drive(t, n, bs, func(off uint64) blockFn {
		return func(s, e uint64, stop compute.Stop) (uint64, uint64, error) {
			d, err := compute.MandelPixels(p, int(first+off+s), int(first+off+e), out[off+s:off+e], 1, stop)
			computed.Add(uint64(d))
			return uint64(d), 0, err
		}
	})
	return done, err
}
