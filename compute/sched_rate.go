package compute

import (
	"strings"
	"time"
)

// SchedulerConfig tunes the scheduling policy. The zero value of a field means its default.
type SchedulerConfig struct {
	// ChunkTarget is how long a chunk should take on the node that gets it (default 2 s; the
	// cluster setting --chunk-target). Longer chunks cost less coordination, shorter ones balance
	// better and lose less when a node leaves.
	ChunkTarget time.Duration
	// ProbeUnits is the size of the first chunk of a kind for a node with no rate estimate yet
	// (defaults: π 2²⁰ samples, Mandelbrot 1 row, wasm 64 items): small enough that the slowest board answers
	// within seconds, so its rate is known before it can hold up a job.
	ProbeUnits map[Kind]uint64
	// MinUnits is the smallest chunk of a kind, below which coordination costs more than the work
	// (defaults: π 2¹⁶ samples, Mandelbrot 1 row).
	MinUnits map[Kind]uint64
	// RateWindow is how many recent chunks a node's rate estimate averages (default 8).
	RateWindow int
	// TailShare bounds chunks near a job's end (guided self-scheduling): no chunk is larger than
	// remaining ÷ (active nodes × TailShare) (default 2).
	TailShare float64
	// DeadlineFactor and DeadlineSlack set a lease's deadline: now + factor × expected duration +
	// slack (defaults 3 and 2 s). Progress reports push it forward the same way. A probe, whose
	// duration is unknown, gets ProbeTimeout (default 30 s).
	DeadlineFactor float64
	DeadlineSlack  time.Duration
	ProbeTimeout   time.Duration
	// NoBackups disables backup copies of the last stragglers.
	NoBackups bool
	// MaxLeasesPerNode is how many leases a node may hold at once: one computing and one queued
	// (prefetch) by default.
	MaxLeasesPerNode int
	// MaxShortLeases and ShortQueue let a node hold more leases when chunks are short (tiny jobs,
	// a job's tail): up to MaxShortLeases (default 8) while the leases it holds are all of known
	// duration and expected to take less than ShortQueue together (default 100 ms). A worker then
	// has work for the time its results take to commit, instead of waiting for every exchange.
	MaxShortLeases int
	ShortQueue     time.Duration
}

// DefaultChunkTarget is SchedulerConfig.ChunkTarget's default.
const DefaultChunkTarget = 2 * time.Second

func (c SchedulerConfig) withDefaults() SchedulerConfig {
	if c.ChunkTarget <= 0 {
		c.ChunkTarget = DefaultChunkTarget
	}
	probe := map[Kind]uint64{KindPi: 1 << 20, KindMandelbrot: 1, KindWasm: 64}
	for k, v := range c.ProbeUnits {
		probe[k] = v
	}
	c.ProbeUnits = probe
	minu := map[Kind]uint64{KindPi: 1 << 16, KindMandelbrot: 1, KindWasm: 1}
	for k, v := range c.MinUnits {
		minu[k] = v
	}
	c.MinUnits = minu
	if c.RateWindow <= 0 {
		c.RateWindow = 8
	}
	if c.TailShare <= 0 {
		c.TailShare = 2
	}
	if c.DeadlineFactor <= 0 {
		c.DeadlineFactor = 3
	}
	if c.DeadlineSlack <= 0 {
		c.DeadlineSlack = 2 * time.Second
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = 30 * time.Second
	}
	if c.MaxLeasesPerNode <= 0 {
		c.MaxLeasesPerNode = 2
	}
	if c.MaxShortLeases <= 0 {
		c.MaxShortLeases = 8
	}
	if c.ShortQueue <= 0 {
		c.ShortQueue = 100 * time.Millisecond
	}
	return c
}

// rateEst is a node's speed for one job kind: units per second over its last few chunks
// (Σ units ÷ Σ seconds, so a long chunk weighs more than a short one).
type rateEst struct {
	used    time.Time // when a chunk last credited it: the least recently used is dropped first
	units   []float64
	secs    []float64
	next    int
	sumU    float64
	sumS    float64
	samples int
}

func (r *rateEst) add(units float64, secs float64, window int) {
	if secs <= 0 || units <= 0 {
		return
	}
	if len(r.units) < window {
		r.units = append(r.units, units)
		r.secs = append(r.secs, secs)
	} else {
		r.sumU -= r.units[r.next]
		r.sumS -= r.secs[r.next]
		r.units[r.next], r.secs[r.next] = units, secs
		r.next = (r.next + 1) % window
	}
	r.sumU += units
	r.sumS += secs
	r.samples++
}

// rate returns units per second, or 0 when unknown.
func (r *rateEst) rate() float64 {
	if r == nil || r.sumS <= 0 {
		return 0
	}
	return r.sumU / r.sumS
}

// maxRateClasses bounds the rate classes one node keeps: every WebAssembly module is a class of
// its own, so a long term with many modules would otherwise grow the leader's memory without end.
// The least recently credited class goes first; a node that meets its module again probes it.
const maxRateClasses = 16

// rate returns the node's estimate for a rate class, making it (and dropping the least recently
// credited class past maxRateClasses) if it has none, and marks it used at now.
func (n *schedNode) rate(k Kind, now time.Time) *rateEst {
	r := n.rates[k]
	if r == nil {
		if len(n.rates) >= maxRateClasses {
			var oldest Kind
			for c, e := range n.rates {
				if oldest == "" || e.used.Before(n.rates[oldest].used) || (e.used.Equal(n.rates[oldest].used) && c < oldest) {
					oldest = c
				}
			}
			delete(n.rates, oldest)
		}
		r = &rateEst{}
		n.rates[k] = r
	}
	r.used = now
	return r
}

// RateClass is what a node's speed is measured for: the job kind, and for WebAssembly jobs the
// module too ("wasm:<sha256>"), since two modules' items have nothing in common. Leases carry it
// as their Kind.
func RateClass(spec JobSpec) Kind {
	if spec.Kind == KindWasm && spec.Wasm != nil {
		return Kind(string(KindWasm) + ":" + spec.Wasm.Module)
	}
	return spec.Kind
}

// baseKind is the job kind of a rate class.
func baseKind(k Kind) Kind {
	if b, _, ok := strings.Cut(string(k), ":"); ok {
		return Kind(b)
	}
	return k
}

// shortQueue reports whether node n may take a lease beyond MaxLeasesPerNode: it holds fewer than
// MaxShortLeases, none a probe or a backup, and together they are expected to take less than
// ShortQueue at its measured rates.
func (s *Scheduler) shortQueue(n *schedNode) bool {
	if len(n.leases) >= s.cfg.MaxShortLeases {
		return false
	}
	var sum time.Duration
	for _, l := range n.leases {
		if l.Probe || l.Backup || l.Expected <= 0 {
			return false
		}
		sum += l.Expected
	}
	return sum < s.cfg.ShortQueue
}
