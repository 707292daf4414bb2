package work

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/audit"
	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/webui"
)

// Coordinator timings.
const (
	reconcileEvery = time.Second            // safety pass: job changes wake the coordinator at once (JobsChanged)
	reconcileGap   = 20 * time.Millisecond  // a burst of job changes: at most one reconcile per gap (Lead)
	tickEvery      = 500 * time.Millisecond // lease deadlines, while there is work
	idleTickEvery  = 10 * time.Second       // the same with no job and no lease (a job change: tickEvery at once)
	repairEvery    = 3 * time.Second        // requeue work that stayed orphaned this long (see repairLocked)
	workerSilence  = 3 * time.Second        // no sync for this long: the node is gone
	adoptGrace     = time.Second            // a new coordinator hears every worker before leasing
	evictEvery     = time.Minute
	publishEvery   = time.Second
	// idleEvery paces the reconcile safety pass and the activity publish while the leadership has
	// no job and no lease: a job change wakes the coordinator at once (co.wake).
	idleEvery = 10 * time.Second
	// idleWorkerSilence: a worker told there is no job syncs only every idleSyncEvery, so with no
	// job a node is gone after this long; once a job appears, workerSilence counts from then.
	idleWorkerSilence = 3 * idleSyncEvery
)

// Jobs is the replicated job state as the coordinator reads it (this
// node's replica, current after raft's Barrier).
type Jobs interface {
	Unfinished() []compute.UnfinishedJob
	Job(id string) (compute.Job, bool)
	// Evictable reports whether an Evict would drop a job: the leader proposes one only then.
	Evictable(compute.Evict) bool
}

// Apply proposes a job-state command (a compute command such as
// compute.Results) through raft and returns its JSON result.
type Apply func(ctx context.Context, cmd any) (json.RawMessage, error)

// CoordinatorConfig is what the coordinator needs from its node.
type CoordinatorConfig struct {
	Self  peer.ID // this node
	Jobs  Jobs
	Apply Apply
	// ApplyGroup, if set, proposes several commands at once (results with audit answers).
	ApplyGroup ApplyGroup
	// Audits is the audit part of the replicated job state; AuditPolicy
	// the policy this node wants the cluster to run (zero: the defaults).
	Audits      AuditState
	AuditPolicy audit.Policy
	// IsMember reports whether a peer is in the raft configuration: only
	// members take work and hand in results.
	IsMember func(peer.ID) bool
	// Publish spreads the coordinator's soft state (leases, rates) to
	// every node about once a second.
	Publish func(ctx context.Context, a webui.Activity)
	// Settings returns the cluster's replicated settings: retention and
	// disk cap bound finished jobs (compute.Evict).
	Settings func() consensus.Settings
	// CheckOp, if set, says whether an op the coordinator proposes on its own initiative
	// (compute.OpAuditWaive) may be proposed now: an error when some raft member's build does
	// not know it yet (consensus.Raft.CheckOp, a rolling upgrade under way). Such an op is then
	// not proposed, and the error logged once. Nil: every op may be.
	CheckOp func(op byte) error
	Logger  *slog.Logger
}

// Coordinator is the leader-only half of the work protocol. It exists for
// the node's life; Lead runs it for one leadership term, with a scheduler
// (soft state, rebuilt on every leadership from the replicated job state)
// that dies with the term. Results are committed through raft in batches.
type Coordinator struct {
	cfg  CoordinatorConfig
	log  *slog.Logger
	cur  atomic.Pointer[leadership] // the term being led, nil when not leading
	gen  atomic.Uint64              // counts job changes (JobsChanged)
	subs atomic.Uint64              // counts submits (JobSubmitted)
	wake chan struct{}              // poked by JobsChanged and JobSubmitted
}

// NewJobs is what a reconcile after submits only reads when the job state offers it
// (compute.JobStore does): the unfinished jobs submitted after a job number, and the newest one.
type NewJobs interface {
	UnfinishedSince(after uint64) ([]compute.UnfinishedJob, uint64)
}

// JobsChanged tells the coordinator that a job was submitted, cancelled or deleted, or the
// whole job state restored (the node calls it from its raft App). The coordinator reconciles
// its scheduler on this instead of polling the job state: an idle cluster costs nothing.
func (co *Coordinator) JobsChanged() {
	co.gen.Add(1)
	poke(co.wake)
	co.jobsSignal()
}

// jobsSignal wakes the exchanges of the term being led that wait for audits: a job changed.
func (co *Coordinator) jobsSignal() {
	if c := co.cur.Load(); c != nil {
		c.jobsSignal.Store(true)
	}
}

// JobSubmitted tells the coordinator that a job was submitted and nothing else changed: its
// reconcile then reads only the new jobs (NewJobs), not every unfinished one.
func (co *Coordinator) JobSubmitted() {
	co.subs.Add(1)
	poke(co.wake)
	co.jobsSignal()
}

// NewCoordinator prepares the coordinator; it coordinates nothing until Lead.
func NewCoordinator(cfg CoordinatorConfig) *Coordinator {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Coordinator{cfg: cfg, log: cfg.Logger.With("component", "coordinator"), wake: make(chan struct{}, 1)}
}

// leadership is the coordinator's state for one leadership term.
type leadership struct {
	co   *Coordinator
	cfg  *CoordinatorConfig
	log  *slog.Logger
	term uint64

	mu       sync.Mutex
	sched    *compute.Scheduler
	jobs     map[string]bool            // jobs known to the scheduler
	lastSeen map[string]time.Time       // node → last sync (its start, then its end)
	busyAt   time.Time                  // when the first job came after none (tick: idle workers' silence)
	paused   map[string]bool            // nodes whose last sync said they are paused
	began    time.Time                  // the term's start
	alone    loneWatch                  // how long one node has been the only live one (waiveLoneAudits)
	offsets  map[string]time.Duration   // node → its clock minus ours, from its last sync
	kernels  map[string]string          // node → kernel path it reported
	adopted  map[compute.Chunk]uint64   // chunks of earlier terms (ID, term zeroed) → lease here
	granted  map[string][]grant         // node → ranges leased or adopted to it in this term
	expired  map[uint64]expiredLease    // leases that expired, while their nodes still run them
	leaseAt  time.Time                  // no new leases before (adoptGrace after start)
	orphans  map[string][]compute.Range // job → orphaned ranges at the last repair pass
	repairAt time.Time                  // next repair pass
	seenGen  uint64                     // co.gen at the last reconcile
	seenSubs uint64                     // co.subs at the last reconcile
	lastSeq  uint64                     // the newest job's number at the last reconcile (NewJobs)
	recAt    time.Time                  // the last reconcile
	faults   map[string]*jobFaults      // job → what this term does about its module faults (faults.go)
	warned   map[warnKey]bool           // refusals logged as a warning in this term (warnOnceLocked)
	heldBack map[byte]bool              // ops not proposed since a member's build lacks them, logged (opAllowed)

	ctx         context.Context        // the term's: ends with leadership
	arch        map[string]string      // node → GOARCH it reported
	auditTasks  []compute.AuditTask    // audits to run, as of auditsAt
	auditsAt    time.Time              // when auditTasks was read
	auditsDirty auditSignal            // the audits in the job state changed since auditsAt
	jobsSignal  auditSignal            // set by JobsChanged and JobSubmitted: wakes exchanges waiting for audits
	auditWait   time.Duration          // auditWait (tests: longer, so that a wait that should not happen shows)
	auditLeases map[uint64]*auditLease // audit ID → its lease
	auditIdle   map[string]int         // node → its exchanges waiting for audits (awaitAuditsLocked)
	exchanging  map[string]int         // node → its exchanges under way: not silent meanwhile (tick)
	challenges  chan struct{}          // kicks the challenger: chunks wait for a Challenge
	resultsAt   atomic.Int64           // when the last Results entry was proposed (Unix ns)

	commits     chan *commitReq
	chunkTarget time.Duration // how long a chunk should take on its node
}

// newLeadership is the state of leadership term termNo before it runs; ctx is the term's.
func (co *Coordinator) newLeadership(ctx context.Context, termNo uint64, chunkTarget time.Duration) *leadership {
	return &leadership{
		co:       co,
		cfg:      &co.cfg,
		log:      co.log,
		term:     termNo,
		sched:    compute.NewScheduler(compute.SchedulerConfig{ChunkTarget: chunkTarget}),
		jobs:     map[string]bool{},
		lastSeen: map[string]time.Time{},
		paused:   map[string]bool{},
		offsets:  map[string]time.Duration{},
		kernels:  map[string]string{},
		adopted:  map[compute.Chunk]uint64{},
		granted:  map[string][]grant{},
		expired:  map[uint64]expiredLease{},
		warned:   map[warnKey]bool{},
		began:    time.Now(),
		leaseAt:  time.Now().Add(adoptGrace),
		commits:  make(chan *commitReq, 1024),

		chunkTarget: cmp.Or(chunkTarget, compute.DefaultChunkTarget),

		ctx:         ctx,
		arch:        map[string]string{},
		auditLeases: map[uint64]*auditLease{},
		auditIdle:   map[string]int{},
		challenges:  make(chan struct{}, 1),
		auditWait:   auditWait,
	}
}

// Lead coordinates the leadership term number termNo until ctx ends (the
// leader hook: consensus.Raft.OnLeader cancels ctx when leadership is lost).
func (co *Coordinator) Lead(ctx context.Context, termNo uint64, chunkTarget time.Duration) {
	c := co.newLeadership(ctx, termNo, chunkTarget)
	c.reconcile(time.Now())
	c.log.Info("coordinator started", "term", c.term, "jobs", len(c.jobs)) // before a sync can reconcile
	go c.setPolicy(ctx)
	co.cur.Store(c)
	defer co.cur.CompareAndSwap(c, nil)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.committer(ctx) }()
	if c.cfg.Audits != nil {
		wg.Add(1)
		go func() { defer wg.Done(); c.challenger(ctx) }()
	}
	defer wg.Wait()

	rec := time.NewTimer(reconcileEvery)
	soon := time.NewTimer(reconcileGap) // the reconcile a burst of job changes put off
	soon.Stop()
	defer soon.Stop()
	tick := time.NewTimer(tickEvery)
	tickIdle := false // tick runs at idleTickEvery
	evict := time.NewTicker(evictEvery)
	publish := time.NewTimer(publishEvery)
	// With no job and no lease the reconcile and publish timers run at idleEvery; a job change puts
	// them back at once.
	idle := false
	every := func(busy time.Duration) time.Duration {
		if idle = c.tickInterval() == idleTickEvery; idle {
			return idleEvery
		}
		return busy
	}
	defer publish.Stop()
	defer rec.Stop()
	defer tick.Stop()
	defer evict.Stop()
	for {
		select {
		case <-ctx.Done():
			c.log.Info("coordinator stopped", "term", c.term)
			return
		case <-co.wake:
			if idle {
				idle = false
				rec.Reset(reconcileEvery)
				publish.Reset(publishEvery)
			}
			if tickIdle { // a new job's leases expire on time
				tickIdle = false
				tick.Reset(tickEvery)
			}
			// Every submit wakes the coordinator, and a reconcile reads every unfinished job: while
			// jobs arrive faster than reconcileGap, one reconcile per gap takes them all in (a
			// worker that finds nothing to do reconciles at once: sync).
			if wait := c.reconcileWait(time.Now()); wait > 0 {
				soon.Reset(wait)
			} else {
				c.reconcileIfChanged(time.Now())
			}
		case now := <-soon.C:
			c.reconcileIfChanged(now)
		case now := <-rec.C:
			c.reconcileIfChanged(now)
			rec.Reset(every(reconcileEvery))
		case now := <-tick.C:
			c.tick(now)
			c.waiveLoneAudits(ctx, now)
			d := c.tickInterval()
			tickIdle = d == idleTickEvery
			tick.Reset(d)
		case now := <-evict.C:
			c.evict(ctx, now)
		case now := <-publish.C:
			c.publishActivity(ctx, now)
			publish.Reset(every(publishEvery))
		}
	}
}

// tickInterval is tickEvery while the scheduler has a job or a lease, else idleTickEvery.
func (c *leadership) tickInterval() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.jobs) > 0 || len(c.sched.Leases()) > 0 {
		return tickEvery
	}
	return idleTickEvery
}

// reconcileWait is how long until the next reconcile may run (reconcileGap after the last one).
func (c *leadership) reconcileWait(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recAt.Add(reconcileGap).Sub(now)
}

// reconcileIfChanged reconciles when a job was submitted, cancelled or deleted since the last
// time, or when a repair pass is due while jobs run: with no job and no change it does nothing.
func (c *leadership) reconcileIfChanged(now time.Time) {
	c.mu.Lock()
	due := c.co.gen.Load() != c.seenGen || len(c.jobs) > 0 && now.After(c.repairAt)
	onlyNew := !due && c.co.subs.Load() != c.seenSubs
	c.mu.Unlock()
	switch {
	case due:
		c.reconcile(now)
	case onlyNew:
		c.reconcileNew(now)
	}
}

// changedLocked reports whether jobs changed since the last reconcile.
func (c *leadership) changedLocked() bool {
	return c.co.gen.Load() != c.seenGen || c.co.subs.Load() != c.seenSubs
}

// NodeGone tells the coordinator a node's connections all closed: its
// chunks are requeued at once rather than after workerSilence.
func (co *Coordinator) NodeGone(node peer.ID) {
	if c := co.cur.Load(); c != nil {
		c.nodeGone(node.String(), time.Now())
	}
}

// Sync serves one worker exchange in-process (the worker on the leader).
// It fails with consensus.ErrNotLeader when this node does not coordinate.
func (co *Coordinator) Sync(ctx context.Context, from peer.ID, req *syncRequest) (*syncResponse, error) {
	c := co.cur.Load()
	if c == nil {
		return nil, consensus.ErrNotLeader
	}
	return c.sync(ctx, from, req)
}

// Serve answers a sync request from the network (the Protocol handler):
// every node answers, but only the current coordinator serves; others say
// so and the worker retries.
func (co *Coordinator) Serve(ctx context.Context, from peer.ID, raw json.RawMessage) (any, error) {
	var req syncRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, err
	}
	if err := req.validate(); err != nil {
		return nil, err
	}
	c := co.cur.Load()
	if c == nil {
		return nil, consensus.ErrNotLeader
	}
	if !co.cfg.IsMember(from) {
		return nil, fmt.Errorf("%s is not a member of this cluster", from)
	}
	return c.sync(ctx, from, &req)
}
