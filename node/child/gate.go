package child

import (
	"sync"
	"sync/atomic"
	"time"
)

// dutyPeriod is the period of the --cpu-limit budget: at P % the workers compute for about
// P ms of every 100 ms. 100 ms is short enough that a limited node looks steady to the owner
// and to the coordinator's rate estimate, and long enough that the overshoot (a worker finishes
// the block in hand, a few ms, before it notices the budget is spent) is a small share of it.
const dutyPeriod = 100 * time.Millisecond

// maxCredit bounds how much unused budget the child may carry, in wall time at the limit's
// rate: CPU time lost while the idle-priority child was preempted (by the owner or by anything
// else) is made up within about this window, not later. So a limited child that was starved
// for a moment catches up, but one that sat preempted for minutes does not then run flat out
// for minutes.
const maxCredit = time.Second

// idleCredit bounds the wall time between two tasks that earns budget. A task's end and the
// next one's start are a few ms apart when the node has the next lease in hand, and that gap is
// made up like any other; a longer gap is time the child had nothing to compute, not time it
// lost, and earning budget then let a limited node start each job flat out for up to maxCredit
// (a 15 % child 150 ms of CPU in its first 150 ms, 0.85 s of work ahead of its limit; cgroup
// quotas and cpulimit carry nothing over). A longer gap also ends what the child was owed for
// preemption before it: the next task starts on at most idleCredit's worth, whatever the
// machine's load was before the pause (the owner's program that preempted it and then stopped
// would otherwise see the next task start flat out).
const idleCredit = dutyPeriod

// gate implements --cpu-limit P as a CPU-time budget shared by all kernel workers, as cpulimit
// and BOINC do: the child may use P % of the CPU time of its --cpus cores, measured as the CPU
// time it actually got (processCPU), not as a wall-clock phase. Time a worker spends
// preempted — the child runs at idle priority, so anything else on the machine comes first —
// costs no budget and is made up later (within maxCredit), which a fixed "first P ms of
// every 100 ms" phase never did: on a busy machine a limited node then got well under its
// limit. The owner still comes first: the gate only ever holds workers back.
//
// The kernels poll their Stop every few milliseconds; the Stop the child hands them
// (segment.poll) asks the gate, which blocks the calling worker (so its OS thread goes idle)
// while the budget is spent. Credit accrues at P/100 × cpus CPU seconds per second; a worker
// that finds it at or below zero sleeps until it has grown back to (1 − P/100) × dutyPeriod at
// that rate, so a steady limited child computes about P ms, then rests about 100 − P ms.
// Where the OS cannot tell the process's CPU time, the gate falls back to the wall-clock
// phase.
type gate struct {
	epoch time.Time
	limit atomic.Int32           // 1–100
	cpus  atomic.Int32           // kernel workers the budget is for (≥ 1)
	cpu   func() (float64, bool) // the process's CPU seconds (processCPU; tests fake it)
	now   func() time.Time

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when the limit changes: sleepers re-evaluate
	last    time.Time     // when credit was last brought up to date (zero: start afresh)
	lastCPU float64       // the process CPU time then
	credit  float64       // CPU seconds the workers may still use
	idleAt  time.Time     // when the last task ended, zero while one runs (see idle)
}

func newGate(limit int) *gate {
	g := &gate{epoch: time.Now(), changed: make(chan struct{}), cpu: processCPU, now: time.Now}
	g.cpus.Store(1)
	g.set(limit)
	return g
}

// set changes the limit (0 or ≥ 100: no limit) and wakes sleeping workers.
func (g *gate) set(limit int) {
	if limit <= 0 || limit > 100 {
		limit = 100
	}
	if int(g.limit.Swap(int32(limit))) == limit {
		return
	}
	g.reset()
}

// setCPUs tells the gate how many kernel workers the budget is for.
func (g *gate) setCPUs(n int) {
	if int(g.cpus.Swap(int32(max(n, 1)))) != max(n, 1) {
		g.reset()
	}
}

// reset starts the budget afresh and wakes sleeping workers to re-evaluate.
func (g *gate) reset() {
	g.mu.Lock()
	close(g.changed)
	g.changed = make(chan struct{})
	g.last = time.Time{}
	g.mu.Unlock()
}

// idle marks the end of a task: until busy, the child has nothing to compute. It brings the
// credit up to date, so that busy judges what the task itself left owed.
func (g *gate) idle() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.idleAt.IsZero() {
		return
	}
	g.idleAt = g.now()
	if p := float64(g.limit.Load()) / 100; p < 1 && !g.last.IsZero() {
		if cpu, ok := g.cpu(); ok {
			g.accrue(g.idleAt, cpu, p)
		}
	}
}

// busy marks the start of a task. A gap up to idleCredit is made up like any other; of a longer
// one only idleCredit earns budget, and the credit carried from before it (CPU time lost to
// preemption) is dropped, while a debt (a worker's overshoot) stays.
func (g *gate) busy() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.idleAt.IsZero() {
		return
	}
	if gap := g.now().Sub(g.idleAt) - idleCredit; gap > 0 && !g.last.IsZero() {
		g.last = g.last.Add(gap) // as if the budget was last brought up to date gap later
		g.credit = min(g.credit, 0)
	}
	g.idleAt = time.Time{}
}

// accrue brings the credit up to now at limit p: the budget earned since last less the CPU
// time used, at most maxCredit's worth. g.mu is held.
func (g *gate) accrue(now time.Time, cpu, p float64) {
	rate := p * float64(g.cpus.Load()) // CPU seconds of budget per second
	g.credit += rate*now.Sub(g.last).Seconds() - (cpu - g.lastCPU)
	g.credit = min(g.credit, rate*maxCredit.Seconds())
	g.last, g.lastCPU = now, cpu
}

// wait returns at once while the budget lasts; once it is spent it blocks until it has grown
// back or until halt is closed (a stop must not wait for the budget).
func (g *gate) wait(halt <-chan struct{}) {
	for {
		d, changed := g.delay()
		if d <= 0 {
			return
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-halt:
			t.Stop()
			return
		case <-changed:
			t.Stop()
		}
	}
}

// delay brings the credit up to date and returns how long the calling worker must rest (≤ 0:
// compute on) and the channel that announces a change of the limit.
func (g *gate) delay() (time.Duration, <-chan struct{}) {
	p := float64(g.limit.Load()) / 100
	if p >= 1 {
		return 0, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	cpu, ok := g.cpu()
	if !ok { // wall-clock phase: the first P % of every period
		phase := now.Sub(g.epoch) % dutyPeriod
		if on := time.Duration(float64(dutyPeriod) * p); phase >= on {
			return dutyPeriod - phase, g.changed
		}
		return 0, g.changed
	}
	rate := p * float64(g.cpus.Load()) // CPU seconds of budget per second
	if g.last.IsZero() {
		g.credit = rate * (1 - p) * dutyPeriod.Seconds() // a first "on" phase
		g.last, g.lastCPU = now, cpu
	} else {
		g.accrue(now, cpu, p)
	}
	if g.credit > 0 {
		return 0, g.changed
	}
	// Rest until the credit is worth (1 − p) of a period: then about p of a period's computing.
	rest := (1-p)*dutyPeriod.Seconds() - g.credit/rate
	return time.Duration(rest * float64(time.Second)), g.changed
}
