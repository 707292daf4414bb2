package child

import (
	"math"
	"testing"
	"time"
)

// fakeGate is a gate on a fake wall clock and a fake process CPU clock.
type fakeGate struct {
	*gate
	wall  time.Time
	cpu   float64
	cpuOK bool
}

func newFakeGate(limit, cpus int) *fakeGate {
	f := &fakeGate{wall: time.Unix(1000, 0), cpuOK: true}
	f.gate = newGate(limit)
	f.gate.setCPUs(cpus)
	f.gate.now = func() time.Time { return f.wall }
	f.gate.cpu = func() (float64, bool) { return f.cpu, f.cpuOK }
	f.gate.epoch = f.wall
	return f
}

// step advances the wall clock by wall and the process's CPU time by cpu, then asks the gate.
func (f *fakeGate) step(wall, cpu time.Duration) time.Duration {
	f.wall = f.wall.Add(wall)
	f.cpu += cpu.Seconds()
	d, _ := f.delay()
	return d
}

// TestGateBudgetsCPUTime checks --cpu-limit as a CPU-time budget: a child that got less CPU
// than its limit allowed (preempted) may make it up, within maxCredit; one that used its
// budget rests for the time that earns back a period's share.
func TestGateBudgetsCPUTime(t *testing.T) {
	const ms = time.Millisecond
	f := newFakeGate(25, 1)
	if d := f.step(0, 0); d != 0 {
		t.Fatalf("first poll: rest %v, want 0 (a first on phase)", d)
	}
	// Steady: 25 ms of CPU per 100 ms keeps the budget.
	for i := range 10 {
		if d := f.step(100*ms, 25*ms); d != 0 {
			t.Fatalf("steady period %d: rest %v", i, d)
		}
	}
	// Preempted: in 1 s the child got 100 ms of CPU instead of 250. It may now run flat out
	// until that is made up: 150 ms of catching up plus what accrues meanwhile.
	if d := f.step(time.Second, 100*ms); d != 0 {
		t.Fatalf("after preemption: rest %v, want 0", d)
	}
	for i := range 2 {
		if d := f.step(90*ms, 90*ms); d != 0 {
			t.Fatalf("catching up, step %d: rest %v, want 0", i, d)
		}
	}
	// Spent: now it must rest.
	d := f.step(50*ms, 50*ms)
	if d <= 0 || d > time.Second {
		t.Fatalf("budget spent: rest %v, want (0, 1 s]", d)
	}
	// Resting the time asked for earns the share of a period back: (1 − 0.25) × 100 ms at 25 %
	// is 75 ms of wall... and then about 25 ms of computing is allowed.
	if d2 := f.step(d, 0); d2 != 0 {
		t.Fatalf("after resting %v: rest again %v", d, d2)
	}
	if got := f.credit; math.Abs(got-0.75*0.1*0.25) > 1e-9 {
		t.Fatalf("credit after a rest %.6f s, want %.6f s", got, 0.75*0.1*0.25)
	}
	// A long preemption is made up only within maxCredit.
	f.step(time.Minute, 0)
	if max := 0.25 * maxCredit.Seconds(); math.Abs(f.credit-max) > 1e-9 {
		t.Fatalf("credit after a minute preempted %.3f s, want the cap %.3f s", f.credit, max)
	}
	// Two workers: twice the budget.
	g := newFakeGate(50, 2)
	g.step(0, 0)
	for i := range 10 {
		if d := g.step(100*ms, 100*ms); d != 0 {
			t.Fatalf("2 workers at 50 %%, period %d: rest %v", i, d)
		}
	}
	if d := g.step(100*ms, 200*ms); d <= 0 {
		t.Fatal("2 workers at 50 % used both cores for 100 ms and may go on")
	}
	// No limit: never a rest, whatever was used.
	u := newFakeGate(100, 1)
	if d := u.step(time.Millisecond, time.Hour); d != 0 {
		t.Fatalf("unlimited: rest %v", d)
	}
}

// TestGateWallPhaseFallback checks the fallback where the process's CPU time is unknown: the
// first P % of every period is on.
func TestGateWallPhaseFallback(t *testing.T) {
	f := newFakeGate(30, 1)
	f.cpuOK = false
	if d := f.step(10*time.Millisecond, 0); d != 0 {
		t.Fatalf("at 10 ms of the period: rest %v, want 0", d)
	}
	if d := f.step(30*time.Millisecond, 0); d != 60*time.Millisecond {
		t.Fatalf("at 40 ms of the period: rest %v, want 60 ms", d)
	}
}

// TestGateLimitChangeWakes checks that a sleeping worker re-evaluates at once when the limit
// is lifted, and that a halt ends a rest.
func TestGateLimitChangeWakes(t *testing.T) {
	f := newFakeGate(10, 1)
	f.step(0, 0)
	f.cpu += 10 // far over budget: a rest of many seconds
	done := make(chan struct{})
	go func() {
		f.gate.wait(nil)
		close(done)
	}()
	f.gate.set(100)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("lifting the limit did not wake the resting worker")
	}
	f.gate.set(10)
	f.cpu += 10
	halt := make(chan struct{})
	done = make(chan struct{})
	go func() {
		f.gate.wait(halt)
		close(done)
	}()
	close(halt)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a halt did not end the rest")
	}
}

// TestGateIdleEarnsNoBudget checks that time with no task earns at most idleCredit of budget: a
// limited child that sat idle between jobs starts the next one at its limit, not flat out on a
// second of credit, nor on credit earned by preemption before the pause; a short gap between
// back-to-back tasks and the preemption before it are made up.
func TestGateIdleEarnsNoBudget(t *testing.T) {
	const ms = time.Millisecond
	const p = 0.15
	f := newFakeGate(15, 1)
	f.step(0, 0)
	for range 10 { // steady at the limit: 15 ms of CPU per 100 ms
		f.step(100*ms, 15*ms)
	}
	before := f.credit
	// The task ends; a minute with nothing to compute; the next task starts.
	f.gate.idle()
	f.wall = f.wall.Add(time.Minute)
	f.gate.busy()
	f.step(0, 0)
	if want := min(before, 0) + p*idleCredit.Seconds(); math.Abs(f.credit-want) > 1e-9 {
		t.Fatalf("credit after a minute idle %.4f CPU s, want %.4f (idleCredit's worth), not the cap %.4f",
			f.credit, want, p*maxCredit.Seconds())
	}
	// Preempted for 600 ms at the end of a task (90 ms of budget owed), then 1.5 s with nothing
	// to compute: the next task starts on idleCredit's worth, not on the 90 ms as well (the
	// owner's program that preempted the child and then stopped saw the next task run flat out).
	e := newFakeGate(15, 1)
	e.step(0, 0)
	for range 5 {
		e.step(100*ms, 15*ms)
	}
	e.wall = e.wall.Add(600 * ms) // no poll while preempted: the task ends
	e.gate.idle()
	if e.credit < p*0.5 {
		t.Fatalf("credit at a task's end after 600 ms preempted %.4f CPU s, want at least %.4f", e.credit, p*0.5)
	}
	e.wall = e.wall.Add(1500 * ms)
	e.gate.busy()
	e.step(0, 0)
	if want := p * idleCredit.Seconds(); math.Abs(e.credit-want) > 1e-9 {
		t.Fatalf("credit after preemption and then 1.5 s idle %.4f CPU s, want %.4f (idleCredit's worth)", e.credit, want)
	}
	// (Without the idle mark the same minute is a preemption, made up within maxCredit:
	// TestGateBudgetsCPUTime.)
	// Back to back: preempted for 400 ms in a task (60 ms of budget owed), then a 5 ms gap to
	// the next task: both are made up.
	h := newFakeGate(15, 1)
	h.step(0, 0)
	c0 := h.credit
	h.step(400*ms, 0)
	h.gate.idle()
	h.wall = h.wall.Add(5 * ms)
	h.gate.busy()
	h.step(0, 0)
	if want := c0 + p*0.405; math.Abs(h.credit-want) > 1e-9 {
		t.Fatalf("credit across a 5 ms gap %.4f CPU s, want %.4f", h.credit, want)
	}
	// CPU the child used while idle (hashing and sending the result) still counts.
	k := newFakeGate(15, 1)
	k.step(0, 0)
	c0 = k.credit
	k.gate.idle()
	k.wall = k.wall.Add(10 * time.Second)
	k.cpu += 0.02
	k.gate.busy()
	k.step(0, 0)
	if want := min(c0, 0) + p*idleCredit.Seconds() - 0.02; math.Abs(k.credit-want) > 1e-9 {
		t.Fatalf("credit after idle with 20 ms of CPU used %.4f CPU s, want %.4f", k.credit, want)
	}
}
