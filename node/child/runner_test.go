package child

import (
	"context"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

func TestPiExact(t *testing.T) {
	r := startRunner(t, "child", 2, 0)
	h, _ := r.Hello()
	t.Logf("hello: %+v", h)
	for i, tc := range []struct {
		seed       uint64
		start, end uint64
	}{{7, 0, 1}, {7, 0, 12_345_678}, {1, 5_000_000, 9_000_003}, {^uint64(0), 1 << 40, 1<<40 + 3_000_001}, {3, 1<<22 - 77, 3<<22 + 5}} {
		spec := piSpec(1<<41, tc.seed)
		res, err := r.Run(context.Background(), Chunk{ID: uint64(i + 1), Spec: spec, Range: compute.Range{Start: tc.start, End: tc.end}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.ID != uint64(i+1) || res.Done != (compute.Range{Start: tc.start, End: tc.end}) {
			t.Fatalf("result %d: %+v", i, res)
		}
		hits, err := compute.DecodePiResult(res.Payload, res.Done)
		if err != nil {
			t.Fatal(err)
		}
		if want := compute.PiHits(tc.seed, tc.start, tc.end); hits != want {
			t.Fatalf("seed %d [%d,%d): %d hits, want %d", tc.seed, tc.start, tc.end, hits, want)
		}
		// The commitment blocks: hits per block of the job's sample grid, as the reference.
		blocks, _, err := compute.DecodePiBlocks(res.Payload, res.Done)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := compute.PiBlocksHits(tc.seed, res.Done); !slices.Equal(blocks, want) {
			t.Fatalf("seed %d [%d,%d): block hits %v, want %v", tc.seed, tc.start, tc.end, blocks, want)
		}
		if res.ComputeSeconds <= 0 {
			t.Errorf("compute seconds %g", res.ComputeSeconds)
		}
	}
}

func mandelWant(t *testing.T, spec compute.JobSpec, r compute.Range) []uint32 {
	t.Helper()
	p := *spec.Mandel
	out := make([]uint32, int(r.Len())*p.Width)
	if err := compute.MandelRows(p, int(r.Start), int(r.End), out); err != nil {
		t.Fatal(err)
	}
	return out
}

func mandelGot(t *testing.T, spec compute.JobSpec, res Result) []uint32 {
	t.Helper()
	got, err := compute.DecodeMandelPayload(res.Payload, int(res.Done.Len())*spec.Mandel.Width, uint32(spec.Mandel.MaxIter))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestMandelExact(t *testing.T) {
	r := startRunner(t, "child", 2, 0)
	spec := mandelSpec(317, 203, 700, -0.743643887, 0.131825904, 0.01)
	for _, rg := range []compute.Range{{Start: 0, End: 203}, {Start: 0, End: 1}, {Start: 57, End: 131}, {Start: 202, End: 203}} {
		res, err := r.Run(context.Background(), Chunk{ID: 9, Spec: spec, Range: rg}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Done != rg {
			t.Fatalf("done %s, want %s", res.Done, rg)
		}
		if !slices.Equal(mandelGot(t, spec, res), mandelWant(t, spec, rg)) {
			t.Fatalf("rows %s differ from MandelRows", rg)
		}
	}
}

// runUntilProgress starts a task, waits for its first progress report with something done
// (the kernels run and a stop has a prefix to keep), and returns a channel with Run's outcome.
type outcome struct {
	res Result
	err error
	at  time.Time
}

func runUntilProgress(t *testing.T, r *Runner, ctx context.Context, task Chunk, onProgress func(uint64)) <-chan outcome {
	t.Helper()
	started := make(chan struct{})
	var once atomic.Bool
	ch := make(chan outcome, 1)
	go func() {
		res, err := r.Run(ctx, task, func(d uint64) {
			if onProgress != nil {
				onProgress(d)
			}
			if d > 0 && once.CompareAndSwap(false, true) {
				close(started)
			}
		})
		ch <- outcome{res, err, time.Now()}
	}()
	select {
	case <-started:
	case o := <-ch:
		t.Fatalf("task ended before any progress: %+v %v", o.res.Done, o.err)
	case <-time.After(progressWait):
		t.Fatalf("no progress within %v", progressWait)
	}
	return ch
}

func waitOutcome(t *testing.T, ch <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(pauseWait): // the runner itself gives up after stopTimeout
		t.Fatalf("Run did not return within %v", pauseWait)
		return outcome{}
	}
}

func TestPiStopPrefixResume(t *testing.T) {
	r := startRunner(t, "child", 2, 0)
	const seed = 42
	spec := piSpec(1<<45, seed)
	full := compute.Range{Start: 1000, End: 1000 + 1<<40} // far more than the test's lifetime
	ch := runUntilProgress(t, r, context.Background(), Chunk{ID: 1, Spec: spec, Range: full}, nil)
	t0 := time.Now()
	r.StopTask()
	o := waitOutcome(t, ch)
	lat := o.at.Sub(t0)
	t.Logf("π stop latency %v, prefix %d samples", lat, o.res.Done.Len())
	if o.err != nil {
		t.Fatal(o.err)
	}
	d := o.res.Done
	if d.Start != full.Start || d.End <= d.Start || d.End >= full.End {
		t.Fatalf("prefix %s of %s", d, full)
	}
	hits, _ := compute.DecodePiResult(o.res.Payload, d)
	if want := compute.PiHits(seed, d.Start, d.End); hits != want {
		t.Fatalf("prefix %s: %d hits, want %d", d, hits, want)
	}
	if blocks, _, err := compute.DecodePiBlocks(o.res.Payload, d); err != nil {
		t.Fatal(err)
	} else if want, _ := compute.PiBlocksHits(seed, d); !slices.Equal(blocks, want) {
		t.Fatalf("prefix %s: block hits differ from the reference", d)
	}
	// The rest, shortened to something finite: prefix + rest = whole, nothing lost or repeated.
	end := d.End + 7_777_777
	rest, err := r.Run(context.Background(), Chunk{ID: 1, Spec: spec, Range: compute.Range{Start: d.End, End: end}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := compute.DecodePiResult(rest.Payload, rest.Done)
	if got, want := hits+h2, compute.PiHits(seed, full.Start, end); got != want {
		t.Fatalf("prefix + rest = %d hits, whole = %d", got, want)
	}
}

func TestMandelStopPrefixResume(t *testing.T) {
	r := startRunner(t, "child", 2, 0)
	// Mostly inside the set: every pixel takes max_iter iterations, so this runs for many seconds.
	spec := mandelSpec(600, 600, 20000, -0.2, 0, 0.4)
	full := compute.Range{Start: 0, End: 600}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var last atomic.Uint64
	ch := runUntilProgress(t, r, ctx, Chunk{ID: 5, Spec: spec, Range: full}, func(d uint64) { last.Store(d) })
	t0 := time.Now()
	cancel() // ctx cancellation stops like StopTask
	o := waitOutcome(t, ch)
	t.Logf("mandelbrot stop latency %v, prefix %s (last progress %d rows)", o.at.Sub(t0), o.res.Done, last.Load())
	if o.err != nil {
		t.Fatal(o.err)
	}
	d := o.res.Done
	if d.Start != 0 || d.End >= full.End || d.End < last.Load() {
		t.Fatalf("prefix %s (progress said %d)", d, last.Load())
	}
	got := mandelGot(t, spec, o.res)
	if d.Len() > 0 && !slices.Equal(got, mandelWant(t, spec, d)) {
		t.Fatal("prefix rows differ from MandelRows")
	}
	// Resume a few rows further (the whole rest would take long) and compare the union.
	next := compute.Range{Start: d.End, End: d.End + 3}
	res, err := r.Run(context.Background(), Chunk{ID: 5, Spec: spec, Range: next}, nil)
	if err != nil {
		t.Fatal(err)
	}
	all := append(got, mandelGot(t, spec, res)...)
	if !slices.Equal(all, mandelWant(t, spec, compute.Range{Start: 0, End: next.End})) {
		t.Fatal("prefix + rest differ from a whole computation")
	}
}

func TestKillChildThenRecover(t *testing.T) {
	r := startRunner(t, "child", 1, 0)
	h1, _ := r.Hello()
	ch := runUntilProgress(t, r, context.Background(), Chunk{ID: 1, Spec: piSpec(1<<45, 3), Range: compute.Range{Start: 0, End: 1 << 40}}, nil)
	p, err := findProcess(h1.PID)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	o := waitOutcome(t, ch)
	if o.err == nil {
		t.Fatalf("Run after SIGKILL of the child: %+v, want an error", o.res)
	}
	t.Logf("Run after SIGKILL: %v", o.err)
	res, err := r.Run(context.Background(), Chunk{ID: 2, Spec: piSpec(1000, 3), Range: compute.Range{Start: 0, End: 1000}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hits, _ := compute.DecodePiResult(res.Payload, res.Done)
	if hits != compute.PiHits(3, 0, 1000) {
		t.Fatal("wrong hits after restart")
	}
	if h2, _ := r.Hello(); h2.PID == h1.PID || h2.PID == 0 {
		t.Fatalf("child not restarted: pid %d then %d", h1.PID, h2.PID)
	}
}

func TestPauseResumeAndLimits(t *testing.T) {
	r := startRunner(t, "child", 2, 0)
	const seed = 11
	spec := piSpec(1<<45, seed)
	full := compute.Range{Start: 0, End: 1 << 40}
	ch := runUntilProgress(t, r, context.Background(), Chunk{ID: 1, Spec: spec, Range: full}, nil)
	// A --cpus change mid-task cuts the workers and goes on with one: nothing lost.
	if err := r.SetLimits(1, 60); err != nil {
		t.Fatal(err)
	}
	r.Pause()
	o := waitOutcome(t, ch)
	if o.err != nil {
		t.Fatal(o.err)
	}
	d := o.res.Done
	hits, _ := compute.DecodePiResult(o.res.Payload, d)
	if want := compute.PiHits(seed, 0, d.End); hits != want {
		t.Fatalf("paused prefix %s: %d hits, want %d", d, hits, want)
	}
	// While paused, Run waits.
	next := Chunk{ID: 1, Spec: spec, Range: compute.Range{Start: d.End, End: d.End + 3_000_000}}
	ch2 := make(chan outcome, 1)
	go func() {
		res, err := r.Run(context.Background(), next, nil)
		ch2 <- outcome{res, err, time.Now()}
	}()
	select {
	case o := <-ch2:
		t.Fatalf("Run while paused returned %+v %v", o.res, o.err)
	case <-time.After(100 * time.Millisecond): // a negative check can only wait a little
	}
	r.Resume()
	o2 := waitOutcome(t, ch2)
	if o2.err != nil {
		t.Fatal(o2.err)
	}
	h2, _ := compute.DecodePiResult(o2.res.Payload, o2.res.Done)
	if got, want := hits+h2, compute.PiHits(seed, 0, next.Range.End); got != want || o2.res.Done != next.Range {
		t.Fatalf("prefix + rest %d (done %s), want %d", got, o2.res.Done, want)
	}
	if err := r.SetLimits(-1, 0); err == nil {
		t.Error("SetLimits(-1) accepted")
	}
	if _, err := r.Run(context.Background(), Chunk{ID: 1, Spec: spec, Range: compute.Range{Start: 5, End: 5}}, nil); err == nil {
		t.Error("empty range accepted")
	}
}

func TestBusyAndClosed(t *testing.T) {
	r := startRunner(t, "child", 1, 0)
	ch := runUntilProgress(t, r, context.Background(), Chunk{ID: 1, Spec: piSpec(1<<45, 1), Range: compute.Range{Start: 0, End: 1 << 40}}, nil)
	if _, err := r.Run(context.Background(), Chunk{ID: 2, Spec: piSpec(10, 1), Range: compute.Range{Start: 0, End: 10}}, nil); err != ErrBusy {
		t.Fatalf("concurrent Run: %v, want ErrBusy", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if o := waitOutcome(t, ch); o.err == nil {
		t.Log("Run during Close returned its prefix:", o.res.Done)
	}
	if _, err := r.Run(context.Background(), Chunk{ID: 2, Spec: piSpec(10, 1), Range: compute.Range{Start: 0, End: 10}}, nil); err != ErrClosed {
		t.Fatalf("Run after Close: %v", err)
	}
}

func TestBadChildren(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := Start(ctx, Config{Exe: "/nonexistent/hydra", Logger: testLogger(t)}); err == nil {
		t.Error("start of a missing binary succeeded")
	}
	if _, err := Start(ctx, Config{Exe: testExe(t), Env: []string{childEnv + "=silent"}, Logger: testLogger(t)}); err == nil {
		t.Error("a child without hello was accepted")
	}
	r := startRunner(t, "garbage", 1, 0)
	_, err := r.Run(ctx, Chunk{ID: 1, Spec: piSpec(10, 1), Range: compute.Range{Start: 0, End: 10}}, nil)
	if err == nil {
		t.Fatal("garbage from the child gave no error")
	}
	t.Logf("garbage from the child: %v", err)
}

// TestIdleExit checks Config.IdleExit: a child with no task exits after the idle time (the
// process is gone, not only forgotten), the next Run starts a new one and computes exactly,
// and a running task is never cut by the idle timer.
func TestIdleExit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := Start(ctx, Config{Exe: os.Args[0], Env: []string{childEnv + "=child"}, CPUs: 1, Logger: testLogger(t), IdleExit: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	h, ok := r.Hello()
	if !ok {
		t.Fatal("no child right after Start")
	}
	waitGone := func(pid int) {
		t.Helper()
		for {
			if _, ok := r.Hello(); !ok && syscallGone(pid) {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("idle child %d still running", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitGone(h.PID)
	if r.Kernel() == "" {
		t.Error("the kernel of the exited child is forgotten")
	}
	// A task longer than the idle time: not cut, and exact. The reference is computed first:
	// the new child's IdleExit countdown starts when Run returns, and it must still be there
	// when Hello is asked (the reference takes tens of ms under -race, more on a loaded machine).
	spec := piSpec(3<<22, 9)
	want := compute.PiHits(9, 0, 3<<22)
	res, err := r.Run(ctx, Chunk{ID: 1, Spec: spec, Range: compute.Range{Start: 0, End: 3 << 22}}, nil)
	h2, ok := r.Hello()
	if err != nil {
		t.Fatal(err)
	}
	if !ok || h2.PID == h.PID {
		t.Fatalf("Run did not start a new child (hello %v %+v)", ok, h2)
	}
	hits, err := compute.DecodePiResult(res.Payload, res.Done)
	if err != nil || res.Done.Len() != 3<<22 || hits != want {
		t.Fatalf("after an idle exit: done %s hits %d (%v), want all %d and %d", res.Done, hits, err, 3<<22, want)
	}
	waitGone(h2.PID)
}

// TestRunAfterKillStartsANewChild: a child the runner has killed (a module stuck in a call, a
// silent child, a malformed result) but that is not reaped yet was handed the next task, which
// failed with "compute child exited: signal: killed". An idle-priority child on a busy machine
// can take seconds to die after SIGKILL: the task after a stuck module's fault failed so
// (TestWasmTasks, once, under load). A killed child takes no task; the next Run starts another.
func TestRunAfterKillStartsANewChild(t *testing.T) {
	r := startRunner(t, "child", 1, 0)
	for i := range 5 {
		r.mu.Lock()
		p := r.p
		r.mu.Unlock()
		if p == nil {
			t.Fatalf("round %d: no child", i)
		}
		p.kill() // as Run does on those faults, returning without waiting for the exit
		if h, ok := r.Hello(); ok && h.PID == p.hello.PID {
			t.Errorf("round %d: Hello reports the killed child %d as running", i, h.PID)
		}
		res, err := r.Run(context.Background(), Chunk{ID: uint64(i + 1), Spec: piSpec(1000, 3), Range: compute.Range{Start: 0, End: 1000}}, nil)
		if err != nil {
			t.Fatalf("round %d: the task after a kill: %v", i, err)
		}
		if hits, _ := compute.DecodePiResult(res.Payload, res.Done); res.Done.Len() != 1000 || hits != compute.PiHits(3, 0, 1000) {
			t.Fatalf("round %d: done %s, %d hits", i, res.Done, hits)
		}
	}
}

// TestRunOnMoreCoresThanMaxCPUs: on a machine with more logical CPUs than MaxCPUs, a runner
// with --cpus 0 ("all of them") runs its tasks on MaxCPUs workers. It used to send the child
// the machine's count, which the child refuses as a malformed run (cpus over MaxCPUs): the
// child's error names no task, so Run waited for a result that never came until its stop
// deadline killed the child, every task, for as long as the node ran.
func TestRunOnMoreCoresThanMaxCPUs(t *testing.T) {
	saved := numCPU
	numCPU = func() int { return 2 * MaxCPUs }
	t.Cleanup(func() { numCPU = saved })
	r := startRunner(t, "child", 0, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	task := compute.Range{Start: 0, End: 3 << 20}
	res, err := r.Run(ctx, Chunk{ID: 1, Spec: piSpec(1<<30, 5), Range: task}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil || res.Done != task {
		t.Fatalf("Run returned %s of %s (ctx: %v), want all of it before the deadline", res.Done, task, ctx.Err())
	}
	hits, _ := compute.DecodePiResult(res.Payload, res.Done)
	if want := compute.PiHits(5, task.Start, task.End); hits != want {
		t.Fatalf("%d hits, want %d", hits, want)
	}
}
