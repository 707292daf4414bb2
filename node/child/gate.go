package child

import (
	"sync"
	"sync/atomic"
	"time"
)

// dutyPeriod is the period of the --cpu-limit duty cycle. 100 ms is short enough that a limited
// node looks steady to the owner and to the coordinator's rate estimate, and long enough that the
// overshoot (a worker finishes the block in hand, a few ms, before it notices the off phase) is a
// small share of it.
const dutyPeriod = 100 * time.Millisecond

// gate implements --cpu-limit P as a duty cycle shared by all kernel workers: in every period
// the first P % is "on", the rest "off". The kernels poll their Stop every few milliseconds;
// the Stop the child hands them (segment.poll) asks the gate, which blocks the calling worker
// (and so its OS thread goes idle) until the next "on" phase. Every worker thread thus uses at
// most about P % of its time, which is what BOINC's "use at most P % of CPU time" means.
type gate struct {
	epoch time.Time
	limit atomic.Int32 // 1–100

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when the limit changes: sleepers re-evaluate
}

func newGate(limit int) *gate {
	g := &gate{epoch: time.Now(), changed: make(chan struct{})}
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
	g.mu.Lock()
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

// wait returns at once in the "on" phase; in the "off" phase it blocks until the next "on"
// phase or until halt is closed (a stop must not wait for the duty cycle).
func (g *gate) wait(halt <-chan struct{}) {
	for {
		p := time.Duration(g.limit.Load())
		if p >= 100 {
			return
		}
		phase := time.Since(g.epoch) % dutyPeriod
		on := dutyPeriod * p / 100
		if phase < on {
			return
		}
		g.mu.Lock()
		changed := g.changed
		g.mu.Unlock()
		t := time.NewTimer(dutyPeriod - phase)
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
