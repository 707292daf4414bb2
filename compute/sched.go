package compute

import (
	"fmt"
	"sort"
	"time"

	"github.com/hydra-compute/hydra/compute/audit"
	"github.com/hydra-compute/hydra/wire"
)

// maxPiChunk is the largest π chunk: half of what a commitment can hold.
const maxPiChunk = audit.MaxLeaves / 2 * audit.PiBlock

// Lease is a chunk handed to a node: compute Range of Job and report. The coordinator sends it
// to the worker; the scheduler keeps it until Complete, Fail, expiry, the node's departure, or a
// cancellation (its backup twin won, or the job was removed).
type Lease struct {
	ID uint64
	Chunk
	Kind     Kind
	Node     string
	Issued   time.Time
	Deadline time.Time
	// Expected is how long the node should take at its measured rate (0 for a probe).
	Expected time.Duration
	Probe    bool // the node's first chunk of this kind: sized small, rate unknown
	Backup   bool // a copy of another node's in-flight chunk: first result wins
	// FirstOfJob is set on the first lease of a queued job: the coordinator applies OpStarted.
	FirstOfJob bool
}

// EventKind says why a lease ended without a result.
type EventKind int

const (
	// EventExpired: the deadline passed; the range is pending again.
	EventExpired EventKind = iota + 1
	// EventCancelled: the lease is no longer wanted (its twin finished first, or the job was
	// removed): tell the worker to stop it.
	EventCancelled
	// EventRequeued: the node left; the range is pending again (or still covered by a twin).
	EventRequeued
)

// String names the kind for logs and the coordinator's gossip.
func (k EventKind) String() string {
	switch k {
	case EventExpired:
		return "expired"
	case EventCancelled:
		return "cancelled"
	case EventRequeued:
		return "requeued"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event reports a lease that ended without a result.
type Event struct {
	Kind  EventKind
	Lease Lease
}

type lease struct {
	Lease
	done     uint64    // units reported done by progress
	lastProg time.Time // time of the last progress report
	unitWork float64   // UnitWork of its job: rates count units × unitWork per second
	twin     *lease    // the backup of this lease, or the lease this one backs up
	// adopted: a chunk its node was computing before this scheduler leased it (Adopt), since
	// a time it cannot know: its completion credits no rate.
	adopted bool
}

// expectedFinish is when the lease should end, from its progress if any, else its rate.
func (l *lease) expectedFinish(rate float64) time.Time {
	if rate <= 0 {
		return l.Deadline
	}
	from := l.Issued
	if !l.lastProg.IsZero() {
		from = l.lastProg
	}
	return from.Add(l.takes(l.Range.Len()-min(l.done, l.Range.Len()), rate))
}

// takes is how long units of the lease's job take at rate (work per second, see UnitWork).
func (l *lease) takes(units uint64, rate float64) time.Duration {
	return time.Duration(float64(units) * l.unitWork / rate * float64(time.Second))
}

type schedJob struct {
	id       string
	kind     Kind
	priority float64
	seq      uint64
	pending  RangeSet
	leases   map[uint64]*lease
	served   float64 // node-seconds leased to this job (fair share accounting)
	inflight uint64  // units of its leases that are not backups (each range counted once)
	started  bool
	chunk    uint64  // JobSpec.ChunkUnits: leases are runs of whole chunks (0: sized freely)
	maxUnits uint64  // the most one lease may hold (0: no bound): maxLeaseUnits
	unitWork float64 // UnitWork(spec): the work of one unit, in the rate's terms
}

type schedNode struct {
	id     string
	rates  map[Kind]*rateEst
	leases map[uint64]*lease
	// lastDone is when the node's previous chunk completed. A worker computes
	// one chunk at a time and keeps the next one queued, so a queued chunk's
	// computation starts at lastDone, not when it was issued: counting its
	// wait would halve the rate estimate and the chunk sizes.
	lastDone time.Time
}

// Scheduler is the coordinator's scheduling policy (docs/design.md §3) as a state machine: every
// method takes the time, nothing reads a clock or runs in the background, so it can be driven by
// the real coordinator, by tests with a fake clock and by a simulator alike. It is leader-memory
// soft state: a new leader builds a new one from the job state (AddJob with the pending ranges).
// Not safe for concurrent use: the coordinator calls it from one goroutine or under a lock.
type Scheduler struct {
	cfg    SchedulerConfig
	jobs   map[string]*schedJob
	order  []*schedJob // by seq
	nodes  map[string]*schedNode
	leases map[uint64]*lease
	nextID uint64
	seq    uint64
	busy   int // nodes holding at least one lease
	sums   rateSums
}

// NewScheduler returns an empty scheduler.
func NewScheduler(cfg SchedulerConfig) *Scheduler {
	return &Scheduler{
		cfg: cfg.withDefaults(), jobs: map[string]*schedJob{}, nodes: map[string]*schedNode{},
		leases: map[uint64]*lease{},
	}
}

// AddJob makes a job's pending ranges available for leasing. started says whether the job is
// already running (so no lease carries FirstOfJob). Adding a job that exists is an error.
func (s *Scheduler) AddJob(id string, spec JobSpec, pending []Range, started bool) error {
	if _, ok := s.jobs[id]; ok {
		return fmt.Errorf("scheduler: job %s already added", id)
	}
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("scheduler: job %s: %w", id, err)
	}
	s.seq++
	j := &schedJob{id: id, kind: RateClass(spec), priority: float64(spec.EffectivePriority()), seq: s.seq,
		pending: NewRangeSet(pending...), leases: map[uint64]*lease{}, started: started, chunk: spec.ChunkUnits,
		maxUnits: maxLeaseUnits(spec), unitWork: UnitWork(spec)}
	// A newcomer starts level with the least-served running job, so it neither starves the
	// others nor waits behind their history.
	first := true
	for _, o := range s.order {
		if o.pending.Count() > 0 || len(o.leases) > 0 {
			if first || o.served/o.priority < j.served/j.priority {
				j.served = o.served / o.priority * j.priority
				first = false
			}
		}
	}
	s.jobs[id] = j
	s.order = append(s.order, j)
	return nil
}

// RemoveJob forgets a job (finished, cancelled or deleted) and returns its outstanding leases as
// EventCancelled: the workers should stop them.
func (s *Scheduler) RemoveJob(id string) []Event {
	j, ok := s.jobs[id]
	if !ok {
		return nil
	}
	var ev []Event
	for _, l := range sortedLeases(j.leases) {
		s.drop(l)
		ev = append(ev, Event{EventCancelled, l.Lease})
	}
	delete(s.jobs, id)
	for i, o := range s.order {
		if o == j {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	return ev
}

func (s *Scheduler) node(id string) *schedNode {
	n := s.nodes[id]
	if n == nil {
		n = &schedNode{id: id, rates: map[Kind]*rateEst{}, leases: map[uint64]*lease{}}
		s.nodes[id] = n
	}
	return n
}

// Rate is the node's measured speed for a rate class in work per second (UnitWork: π samples,
// Mandelbrot pixels, wasm items; 0 when unknown): the coordinator publishes it for the UI and
// sizes audits by it.
func (s *Scheduler) Rate(node string, kind Kind) float64 {
	if n := s.nodes[node]; n != nil {
		return n.rates[kind].rate()
	}
	return 0
}

// Lease hands node its next chunk, if there is work: from the job furthest below its fair share
// (node-seconds weighted by priority), sized to the node's rate × ChunkTarget, a probe if the
// rate is unknown, capped near the end of the job; with no pending work left, an idle node may
// get a backup copy of the in-flight chunk expected to finish last, if it would finish it sooner.
// A node holds at most MaxLeasesPerNode leases, or up to MaxShortLeases while all it holds is
// short work (shortQueue).
func (s *Scheduler) Lease(node string, now time.Time) (Lease, bool) {
	n := s.node(node)
	if len(n.leases) >= s.cfg.MaxLeasesPerNode && !s.shortQueue(n) {
		return Lease{}, false
	}
	if j := s.pickJob(n); j != nil {
		return s.carve(j, n, now), true
	}
	if !s.cfg.NoBackups && len(n.leases) == 0 {
		return s.backup(n, now)
	}
	return Lease{}, false
}

func (s *Scheduler) pickJob(n *schedNode) *schedJob {
	var best *schedJob
	for _, j := range s.order {
		if j.pending.Count() == 0 {
			continue
		}
		if best == nil || j.served/j.priority < best.served/best.priority {
			best = j
		}
	}
	return best
}

// activeNodes counts the nodes holding a lease (at least 1).
func (s *Scheduler) activeNodes() float64 { return float64(max(s.busy, 1)) }

func (s *Scheduler) carve(j *schedJob, n *schedNode, now time.Time) Lease {
	rate := n.rates[j.kind].rate()
	probe := rate <= 0
	var size uint64
	if probe {
		size = s.cfg.ProbeUnits[baseKind(j.kind)]
	} else {
		size = uint64(rate * s.cfg.ChunkTarget.Seconds() / j.unitWork)
		// Guided self-scheduling: near the end, no chunk longer than a share of the time
		// what remains takes the busy nodes (tailCap).
		size = min(size, s.tailCap(j, n, rate, now))
	}
	size = max(size, s.cfg.MinUnits[baseKind(j.kind)], 1)
	if j.maxUnits > 0 {
		size = min(size, j.maxUnits)
	}
	if j.kind == KindPi {
		// A chunk's commitment has at most audit.MaxLeaves blocks (a rate of 10¹¹ samples/s
		// would be needed to reach half of it in a 2 s chunk).
		size = min(size, maxPiChunk)
	}
	first := j.pending.rs[0]
	r := Range{first.Start, first.Start + min(size, first.Len())}
	if j.chunk > 0 {
		r.End = min(chunkRunEnd(first.Start, size, j.chunk), first.End)
	} else if rest := first.End - r.End; rest > 0 && rest < s.cfg.MinUnits[baseKind(j.kind)] {
		// Do not leave a sliver behind that costs more to schedule than to compute.
		r.End = first.End
	}
	j.pending.Remove(r)
	l := &lease{Lease: Lease{ID: s.newID(), Chunk: Chunk{Job: j.id, Range: r}, Kind: j.kind, Node: n.id, Issued: now, Probe: probe},
		unitWork: j.unitWork}
	if !j.started {
		l.FirstOfJob, j.started = true, true
	}
	if probe {
		l.Deadline = now.Add(s.cfg.ProbeTimeout)
		j.served += s.cfg.ChunkTarget.Seconds() / 4
	} else {
		l.Expected = l.takes(r.Len(), rate)
		l.Deadline = s.deadline(now, l.Expected)
		j.served += l.Expected.Seconds()
	}
	s.add(l)
	return l.Lease
}

// maxLeaseUnits is the most a lease of spec may hold: for Mandelbrot the rows the compute child
// computes in one task (wire.MaxResultCounts pixels, so that a result fits a log entry; at
// least one row), since it hands in that prefix of a longer range and the rest is leased again.
// A lease sized beyond it would be a promise the node does not keep: its expected duration,
// deadline and the tail cap would count rows it never computes, and the rest of its range would
// sit unleasable until the prefix came back. 0: no bound.
func maxLeaseUnits(spec JobSpec) uint64 {
	if spec.Kind == KindMandelbrot && spec.Mandel != nil && spec.Mandel.Width > 0 {
		return uint64(max(1, wire.MaxResultCounts/spec.Mandel.Width))
	}
	return 0
}

// chunkRunEnd is the end of a lease of a job with fixed chunks of cu units that starts at start
// and should hold about size units: it ends on a chunk boundary, covers at least the rest of the
// chunk start lies in, and at most MaxLeaseChunks chunk boundaries are crossed.
func chunkRunEnd(start, size, cu uint64) uint64 {
	n := min(max(size/cu, 1), MaxLeaseChunks)
	return (start/cu + n) * cu
}

func (s *Scheduler) deadline(now time.Time, expected time.Duration) time.Time {
	return now.Add(time.Duration(s.cfg.DeadlineFactor*float64(expected)) + s.cfg.DeadlineSlack)
}

// remaining is the job's units not yet done: pending plus in flight (each range once).
func (s *Scheduler) remaining(j *schedJob) uint64 { return j.pending.Units() + j.inflight }

func (s *Scheduler) newID() uint64 { s.nextID++; return s.nextID }

func (s *Scheduler) add(l *lease) {
	s.leases[l.ID] = l
	j := s.jobs[l.Job]
	j.leases[l.ID] = l
	if !l.Backup {
		j.inflight += l.Range.Len()
	}
	n := s.node(l.Node)
	if len(n.leases) == 0 {
		s.busy++
	}
	n.leases[l.ID] = l
}

// drop forgets a lease everywhere, without touching its range.
func (s *Scheduler) drop(l *lease) {
	delete(s.leases, l.ID)
	if j := s.jobs[l.Job]; j != nil {
		if _, ok := j.leases[l.ID]; ok && !l.Backup {
			j.inflight -= l.Range.Len()
		}
		delete(j.leases, l.ID)
	}
	if n := s.nodes[l.Node]; n != nil {
		if _, ok := n.leases[l.ID]; ok {
			delete(n.leases, l.ID)
			if len(n.leases) == 0 {
				s.busy--
			}
		}
	}
	if l.twin != nil {
		l.twin.twin = nil
		l.twin = nil
	}
}

// backup picks the in-flight chunk expected to finish last and copies it to n, if n (whose rate
// is known) would finish it before its current holder.
func (s *Scheduler) backup(n *schedNode, now time.Time) (Lease, bool) {
	var worst *lease
	var worstEnd time.Time
	for _, l := range s.leases {
		if l.Backup || l.twin != nil || l.Node == n.id {
			continue
		}
		end := l.expectedFinish(s.nodes[l.Node].rates[l.Kind].rate())
		if worst == nil || end.After(worstEnd) || (end.Equal(worstEnd) && l.ID < worst.ID) {
			worst, worstEnd = l, end
		}
	}
	if worst == nil {
		return Lease{}, false
	}
	rate := n.rates[worst.Kind].rate()
	if rate <= 0 {
		return Lease{}, false
	}
	expected := worst.takes(worst.Range.Len(), rate)
	if !now.Add(expected).Before(worstEnd) {
		return Lease{}, false
	}
	b := &lease{Lease: Lease{ID: s.newID(), Chunk: worst.Chunk, Kind: worst.Kind, Node: n.id,
		Issued: now, Expected: expected, Deadline: s.deadline(now, expected), Backup: true}, unitWork: worst.unitWork}
	b.twin, worst.twin = worst, b
	s.add(b)
	return b.Lease, true
}

// Leases returns the outstanding leases in ID order (for the coordinator's gossip of soft state).
func (s *Scheduler) Leases() []Lease {
	out := make([]Lease, 0, len(s.leases))
	for _, l := range sortedLeases(s.leases) {
		out = append(out, l.Lease)
	}
	return out
}

// InFlight is how many leases are out: none, and no result is on its way.
func (s *Scheduler) InFlight() int { return len(s.leases) }

// Holds reports whether lease id is out to node (cheaper than a walk of Leases, which sorts).
func (s *Scheduler) Holds(node string, id uint64) bool {
	l := s.leases[id]
	return l != nil && l.Node == node
}

// Holder returns the node lease id is out to, if it is out.
func (s *Scheduler) Holder(id uint64) (string, bool) {
	if l := s.leases[id]; l != nil {
		return l.Node, true
	}
	return "", false
}

// PendingUnits is a job's units neither done nor leased.
func (s *Scheduler) PendingUnits(job string) uint64 {
	if j := s.jobs[job]; j != nil {
		return j.pending.Units()
	}
	return 0
}

// Open reports whether any unit of r in job is still to be done: pending, or in a lease. A
// range that is neither came back (a result for it was taken).
func (s *Scheduler) Open(job string, r Range) bool {
	j := s.jobs[job]
	if j == nil {
		return false
	}
	if j.pending.Overlaps(r) {
		return true
	}
	for _, l := range j.leases {
		if l.Range.Overlaps(r) {
			return true
		}
	}
	return false
}

// Idle reports whether a job has nothing pending and nothing in flight: all its work came back.
func (s *Scheduler) Idle(job string) bool {
	j := s.jobs[job]
	return j == nil || (j.pending.Count() == 0 && len(j.leases) == 0)
}

func sortedLeases(m map[uint64]*lease) []*lease {
	out := make([]*lease, 0, len(m))
	for _, l := range m {
		out = append(out, l)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}
