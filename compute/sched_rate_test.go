package compute

import (
	"math"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/wire"
)

// TestTailCapByTime: near a job's end a slow node's chunk takes it no longer than a fast node's
// (a TailShare-th of the time the busy nodes need for what remains), where a cap in units would
// give the node at a tenth of the cluster's speed a chunk longer than the rest of the job.
func TestTailCapByTime(t *testing.T) {
	c := newClock()
	s := NewScheduler(SchedulerConfig{})
	const total = 100e9
	s.AddJob("j", piJob(total), []Range{{0, total}}, true)
	rates := map[string]float64{"fast": 9e9, "slow": 1e9}
	for n, r := range rates {
		complete(t, s, c, mustLease(t, s, n, c.now()), r) // the probes: rates known
	}
	// The fast node takes everything but 4 s of the cluster's work, its last chunk in hand.
	for {
		l := mustLease(t, s, "fast", c.now())
		if s.PendingUnits("j") <= 40e9 {
			break
		}
		complete(t, s, c, l, rates["fast"])
		c.t = l.Issued.Add(l.Expected)
	}
	c.advance(rateSumEvery) // the busy nodes' Σ rate is up to rateSumEvery old
	rem := s.remaining(s.jobs["j"])
	l := mustLease(t, s, "slow", c.now())
	left := time.Duration(float64(rem) / (rates["fast"] + rates["slow"]) * float64(time.Second)) // ≈ 4 s
	if max := left / 4; l.Expected > max+10*time.Millisecond {
		t.Fatalf("slow node's tail chunk: %v of work (%d units), want ≤ %v of the %v left", l.Expected, l.Range.Len(), max, left)
	}
	if unitsCap := rem / uint64(s.activeNodes()*4); l.Range.Len() >= unitsCap {
		t.Fatalf("chunk %d units, not below the units cap %d", l.Range.Len(), unitsCap)
	}
}

// TestMandelLeaseFitsOneChildTask: a Mandelbrot lease holds no more rows than the compute child
// computes in one task (wire.MaxResultCounts pixels), however fast the node: a longer lease would
// come back as a prefix, its expected duration and deadline counting rows never computed.
func TestMandelLeaseFitsOneChildTask(t *testing.T) {
	c := newClock()
	s := NewScheduler(SchedulerConfig{})
	const width, height = 10000, 8000
	spec := JobSpec{Kind: KindMandelbrot, Mandel: &MandelParams{Width: width, Height: height, Span: 1, MaxIter: 100}}
	if err := s.AddJob("m", spec, []Range{{0, height}}, true); err != nil {
		t.Fatal(err)
	}
	const rate = 1000 // rows/s: 2 s of it is 2,000 rows, far above one task's 52
	complete(t, s, c, mustLease(t, s, "n", c.now()), rate)
	perTask := uint64(wire.MaxResultCounts / width)
	for range 3 {
		l := mustLease(t, s, "n", c.now())
		if l.Range.Len() != perTask {
			t.Fatalf("lease of %d rows, want one child task's %d", l.Range.Len(), perTask)
		}
		if want := time.Duration(float64(perTask*width) / s.Rate("n", KindMandelbrot) * float64(time.Second)); l.Expected != want {
			t.Fatalf("expected %v, want %v", l.Expected, want)
		}
		complete(t, s, c, l, rate)
	}
	if got := maxLeaseUnits(piJob(1e9)); got != 0 {
		t.Fatalf("maxLeaseUnits of π: %d, want 0 (no bound)", got)
	}
}

// TestMandelRateCarriesAcrossWidths: a node's Mandelbrot speed is kept in pixels per second
// (UnitWork), so what it learnt rendering a narrow image sizes its chunks of a wide one: in rows
// per second, a 1,600-pixel render after a 160-pixel one was leased chunks ten times too long.
func TestMandelRateCarriesAcrossWidths(t *testing.T) {
	c := newClock()
	s := NewScheduler(SchedulerConfig{})
	const pxRate = 1e5 // pixels/s
	mandel := func(width int) JobSpec {
		return JobSpec{Kind: KindMandelbrot, Mandel: &MandelParams{Width: width, Height: MaxMandelSide, Span: 1, MaxIter: 100}}
	}
	// done computes l at pxRate: the clock moves to its end and it completes.
	done := func(l Lease, width int) {
		t.Helper()
		c.t = l.Issued.Add(time.Duration(float64(l.Range.Len()) * float64(width) / pxRate * float64(time.Second)))
		if _, _, ok := s.Complete(l.ID, c.now()); !ok {
			t.Fatalf("complete %d: unknown lease", l.ID)
		}
	}
	for _, j := range []struct {
		id    string
		width int
	}{{"narrow", 160}, {"wide", 1600}} {
		if err := s.AddJob(j.id, mandel(j.width), []Range{{0, MaxMandelSide}}, true); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			l := mustLease(t, s, "n", c.now())
			if l.Job != j.id {
				t.Fatalf("lease of job %s, want %s", l.Job, j.id)
			}
			if !l.Probe {
				// 2 s of work, whatever the width the rate was learnt at
				if want := uint64(pxRate * DefaultChunkTarget.Seconds() / float64(j.width)); l.Range.Len() != want {
					t.Fatalf("%s: lease of %d rows, want %d (2 s at %g pixels/s)", j.id, l.Range.Len(), want, pxRate)
				}
				if (l.Expected - DefaultChunkTarget).Abs() > time.Millisecond {
					t.Fatalf("%s: expected %v, want %v", j.id, l.Expected, DefaultChunkTarget)
				}
			}
			done(l, j.width)
		}
		if got := s.Rate("n", KindMandelbrot); math.Abs(got-pxRate) > 1 {
			t.Fatalf("rate %g, want %g pixels/s", got, pxRate)
		}
		s.RemoveJob(j.id)
	}
}
