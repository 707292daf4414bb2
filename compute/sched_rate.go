package compute

import (
	"math"
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
	// TailShare bounds chunks near a job's end (guided self-scheduling by time): no chunk takes
	// its node longer than 1/TailShare of the time the busy nodes together need for what
	// remains (default 4: in the simulator, 4 nodes spread 5:1 on a 20 s job reach 0.995 with
	// 4, 0.966 with 2). With equal nodes that is remaining ÷ (busy nodes × TailShare) units.
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
		c.TailShare = 4
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

// rateEst is a node's speed for one rate class: work (UnitWork) per second over its last few
// chunks (Σ work ÷ Σ seconds, so a long chunk weighs more than a short one).
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

// rate returns work per second, or 0 when unknown.
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

// UnitWork is the work of one of spec's units in the terms a rate is measured in: a Mandelbrot
// row is Width pixels, anything else 1 (a π sample, a wasm item). A node's Mandelbrot speed is
// kept in pixels per second, so that what it learnt on one job sizes the chunks of the next at
// another width: in rows per second, a 4K render after a 640-pixel preview was leased chunks six
// times too long. (A pixel's cost still depends on the view; the first chunks correct that.)
func UnitWork(spec JobSpec) float64 {
	if spec.Kind == KindMandelbrot && spec.Mandel != nil && spec.Mandel.Width > 0 {
		return float64(spec.Mandel.Width)
	}
	return 1
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

// rateSums caches, per rate class, Σ of the rate estimates of the nodes holding a lease: how
// fast the cluster works through a job's end, for tailCap. Near a job's end it is at most
// rateSumEvery old; far from it, where it only tells that the cap does not bind, up to
// rateSumFar. A lease costs O(1) however many nodes there are.
type rateSums struct {
	at   time.Time
	sums map[Kind]float64
}

const (
	rateSumEvery = 250 * time.Millisecond
	rateSumFar   = 5 * time.Second
)

// busyRate is Σ of the busy nodes' rates for class k, at most maxAge old (rateSums).
func (s *Scheduler) busyRate(k Kind, now time.Time, maxAge time.Duration) float64 {
	rs := &s.sums
	if rs.sums == nil || now.Sub(rs.at) >= maxAge || now.Before(rs.at) || rs.sums[k] == 0 {
		if rs.sums == nil {
			rs.sums = map[Kind]float64{}
		}
		clear(rs.sums)
		for _, n := range s.nodes {
			if len(n.leases) == 0 {
				continue
			}
			for c, r := range n.rates {
				rs.sums[c] += r.rate()
			}
		}
		rs.at = now
	}
	return rs.sums[k]
}

// tailCap is the largest chunk (in units) node n (rate: work/s) may get of job j near its end: one that
// takes n no longer than 1/TailShare of the time the busy nodes together need for what remains.
// A cap in units (remaining ÷ (nodes × TailShare)) gives a node at a tenth of the cluster's
// speed a last chunk longer than the whole rest of the job; by time, the slow node's last chunk
// is as short as the fast ones', and none of them holds the job's end.
func (s *Scheduler) tailCap(j *schedJob, n *schedNode, rate float64, now time.Time) uint64 {
	rem := float64(s.remaining(j))
	// The cap binds once what remains takes the cluster less than TailShare chunk targets:
	// far from that (twice, by a Σ up to rateSumFar old, n's own rate added) it is not worked out.
	far := 2 * s.cfg.TailShare * s.cfg.ChunkTarget.Seconds()
	if sum := s.busyRate(j.kind, now, rateSumFar); sum > 0 && rem*j.unitWork > far*(sum+rate) {
		return math.MaxUint64
	}
	sum := s.busyRate(j.kind, now, rateSumEvery)
	if len(n.leases) == 0 {
		sum += rate // about to be busy
	}
	sum = max(sum, rate)
	return uint64(rem * rate / sum / s.cfg.TailShare)
}
