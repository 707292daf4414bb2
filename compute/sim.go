package compute

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"time"
)

// SimConfig describes a simulated cluster for Simulate: nodes of log-uniformly spread speeds
// running one job under the real Scheduler, some of them leaving mid-job.
type SimConfig struct {
	Nodes       int
	SlowestRate float64 // units/s of the slowest node
	SpeedSpread float64 // fastest ÷ slowest (20 for a 20:1 spread)
	Units       uint64  // job size; 0: enough for about 120 s of the whole cluster
	Kind        Kind    // job kind (π by default)
	// LeaveFraction of the nodes leave at a random time in the middle of the job; half of them
	// say so (NodeGone at once), half vanish silently (found by lease deadlines).
	LeaveFraction float64
	Noise         float64       // relative spread of a chunk's duration around units ÷ rate (default 0.05)
	TickEvery     time.Duration // how often the coordinator calls Tick (default 500 ms)
	RetryIdle     time.Duration // how long an idle node waits before asking again (default 250 ms)
	Seed          uint64
	Sched         SchedulerConfig
}

// SimReport is the outcome of a simulation. Efficiency = Units ÷ Capacity, where Capacity is
// Σ (node rate × time the node was present, up to the makespan): 1 means no node ever waited,
// lost work, or computed a chunk twice.
type SimReport struct {
	Makespan   time.Duration
	Units      uint64
	Capacity   float64
	Efficiency float64
	// EfficiencyAll counts every node's rate for the whole makespan, leavers included
	// (Units ÷ (Σ rates × makespan)): it also charges the policy for capacity that left.
	EfficiencyAll float64
	Leases        int    // leases handed out (chunks, probes and backups)
	Backups       int    // backup copies handed out
	Expired       int    // leases expired by deadline
	Requeued      int    // leases requeued because their node left
	Cancelled     int    // leases cancelled (their twin won)
	LostUnits     uint64 // units computed on leases whose result was thrown away
	SchedCalls    int    // Lease + Complete calls made
}

type simEvent struct {
	at    time.Duration
	seq   uint64
	kind  int // simAsk, simDone, simLeave, simTick
	node  int
	lease uint64
}

const (
	simAsk = iota
	simDone
	simLeave
	simTick
)

// simQueue is the simulator's event queue, a container/heap ordered by time then insertion.
type simQueue []simEvent

func (q simQueue) Len() int { return len(q) }
func (q simQueue) Less(i, j int) bool {
	return q[i].at < q[j].at || (q[i].at == q[j].at && q[i].seq < q[j].seq)
}
func (q simQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(x any)   { *q = append(*q, x.(simEvent)) }
func (q *simQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

type simNode struct {
	name     string
	rate     float64
	gone     bool
	leaveAt  time.Duration
	queue    []Lease // leases held: queue[0] is computing since startAt
	startAt  time.Duration
	doneAt   time.Duration // when queue[0] finishes
	asking   bool
	computed float64 // units computed, for lost-work accounting of aborted leases
}

// Simulate runs one job on a virtual cluster driven by the real Scheduler with a virtual clock.
// It is deterministic for a given config (seeded randomness, no wall clock).
func Simulate(cfg SimConfig) SimReport {
	if cfg.Kind == "" {
		cfg.Kind = KindPi
	}
	if cfg.Noise == 0 {
		cfg.Noise = 0.05
	}
	if cfg.TickEvery <= 0 {
		cfg.TickEvery = 500 * time.Millisecond
	}
	if cfg.RetryIdle <= 0 {
		cfg.RetryIdle = 250 * time.Millisecond
	}
	if cfg.SpeedSpread < 1 {
		cfg.SpeedSpread = 1
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	nodes := make([]*simNode, cfg.Nodes)
	var sumRate float64
	for i := range nodes {
		r := cfg.SlowestRate * math.Pow(cfg.SpeedSpread, rng.Float64())
		nodes[i] = &simNode{name: "n" + itoa(i), rate: r, leaveAt: -1}
		sumRate += r
	}
	if cfg.Units == 0 {
		cfg.Units = uint64(sumRate * 120)
	}
	ideal := float64(cfg.Units) / sumRate
	for _, i := range rng.Perm(cfg.Nodes)[:int(float64(cfg.Nodes)*cfg.LeaveFraction)] {
		nodes[i].leaveAt = time.Duration((0.2 + 0.6*rng.Float64()) * ideal * float64(time.Second))
	}
	spec := JobSpec{Kind: KindPi, Pi: &PiParams{Samples: cfg.Units}}
	if cfg.Kind == KindMandelbrot {
		spec = JobSpec{Kind: KindMandelbrot, Mandel: &MandelParams{Width: 1, Height: int(min(cfg.Units, MaxMandelSide)), Span: 1, MaxIter: 1}}
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewScheduler(cfg.Sched)
	if err := s.AddJob("sim", spec, []Range{{0, cfg.Units}}, false); err != nil {
		return SimReport{}
	}
	var rep SimReport
	var q simQueue
	var seq uint64
	push := func(at time.Duration, kind, node int, lease uint64) {
		seq++
		heap.Push(&q, simEvent{at, seq, kind, node, lease})
	}
	byName := map[string]int{}
	for i, n := range nodes {
		byName[n.name] = i
		push(0, simAsk, i, 0)
		n.asking = true
		if n.leaveAt >= 0 {
			push(n.leaveAt, simLeave, i, 0)
		}
	}
	push(cfg.TickEvery, simTick, 0, 0)
	var completed RangeSet
	var now time.Duration

	duration := func(n *simNode, l Lease) time.Duration {
		d := float64(l.Range.Len()) / n.rate * (1 + cfg.Noise*rng.NormFloat64())
		return time.Duration(max(d, 1e-6) * float64(time.Second))
	}
	start := func(i int) { // start computing queue[0] if idle
		n := nodes[i]
		if len(n.queue) > 0 && n.doneAt < 0 {
			n.startAt = now
			n.doneAt = now + duration(n, n.queue[0])
			push(n.doneAt, simDone, i, n.queue[0].ID)
		}
	}
	ask := func(i int) {
		n := nodes[i]
		if !n.asking && !n.gone {
			n.asking = true
			push(now, simAsk, i, 0)
		}
	}
	// abort drops a lease from its node; a lease in computation loses the work done so far.
	abort := func(l Lease) {
		i, ok := byName[l.Node]
		if !ok {
			return
		}
		n := nodes[i]
		for k, ql := range n.queue {
			if ql.ID != l.ID {
				continue
			}
			if k == 0 && n.doneAt >= 0 {
				rep.LostUnits += uint64(n.rate * (now - n.startAt).Seconds())
				n.doneAt = -1
			}
			n.queue = append(n.queue[:k], n.queue[k+1:]...)
			break
		}
		if !n.gone {
			start(i)
			ask(i)
		}
	}
	for _, n := range nodes {
		n.doneAt = -1
	}
	for q.Len() > 0 && completed.Units() < cfg.Units {
		ev := heap.Pop(&q).(simEvent)
		now = ev.at
		at := base.Add(now)
		n := nodes[ev.node]
		switch ev.kind {
		case simAsk:
			n.asking = false
			if n.gone {
				continue
			}
			for len(n.queue) < s.cfg.MaxLeasesPerNode {
				rep.SchedCalls++
				l, ok := s.Lease(n.name, at)
				if !ok {
					break
				}
				rep.Leases++
				if l.Backup {
					rep.Backups++
				}
				n.queue = append(n.queue, l)
			}
			start(ev.node)
			if len(n.queue) < s.cfg.MaxLeasesPerNode {
				n.asking = true
				push(now+cfg.RetryIdle, simAsk, ev.node, 0)
			}
		case simDone:
			if n.gone || len(n.queue) == 0 || n.queue[0].ID != ev.lease || n.doneAt != now {
				continue // aborted meanwhile
			}
			l := n.queue[0]
			n.queue = n.queue[1:]
			n.doneAt = -1
			rep.SchedCalls++
			if _, cancelled, ok := s.Complete(l.ID, at); ok {
				if completed.Overlaps(l.Range) {
					rep.LostUnits += l.Range.Len() // cannot happen: the policy never leases twice
				}
				completed.Add(l.Range)
				for _, e := range cancelled {
					rep.Cancelled++
					abort(e.Lease)
				}
			} else {
				rep.LostUnits += l.Range.Len()
			}
			start(ev.node)
			ask(ev.node)
		case simLeave:
			n.gone = true
			if n.doneAt >= 0 {
				rep.LostUnits += uint64(n.rate * (now - n.startAt).Seconds())
			}
			n.queue, n.doneAt = nil, -1
			if ev.node%2 == 0 { // says goodbye; the other half vanish silently
				for range s.NodeGone(n.name, at) {
					rep.Requeued++
				}
			}
		case simTick:
			for _, e := range s.Tick(at) {
				rep.Expired++
				abort(e.Lease)
			}
			push(now+cfg.TickEvery, simTick, 0, 0)
		}
	}
	rep.Makespan = now
	rep.Units = cfg.Units
	for _, n := range nodes {
		present := now
		if n.leaveAt >= 0 && n.leaveAt < now {
			present = n.leaveAt
		}
		rep.Capacity += n.rate * present.Seconds()
	}
	if rep.Capacity > 0 {
		rep.Efficiency = float64(cfg.Units) / rep.Capacity
		rep.EfficiencyAll = float64(cfg.Units) / (sumRate * now.Seconds())
	}
	return rep
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	p := len(b)
	for ; i > 0; i /= 10 {
		p--
		b[p] = byte('0' + i%10)
	}
	return string(b[p:])
}
