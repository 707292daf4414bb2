package work

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
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
	tickEvery      = 500 * time.Millisecond // lease deadlines, while there is work
	idleTickEvery  = 2 * time.Second        // the same with no job and no lease
	repairEvery    = 3 * time.Second        // requeue work that stayed orphaned this long (see repairLocked)
	workerSilence  = 3 * time.Second        // no sync for this long: the node is gone
	adoptGrace     = time.Second            // a new coordinator hears every worker before leasing
	evictEvery     = time.Minute
	publishEvery   = time.Second
)

// Jobs is the replicated job state as the coordinator reads it (this
// node's replica, current after raft's Barrier).
type Jobs interface {
	Unfinished() []compute.UnfinishedJob
	Job(id string) (compute.Job, bool)
}

// Apply proposes a job-state command (a compute command such as
// compute.Results) through raft and returns its JSON result.
type Apply func(ctx context.Context, cmd any) (json.RawMessage, error)

// CoordinatorConfig is what the coordinator needs from its node.
type CoordinatorConfig struct {
	Self  peer.ID // this node
	Jobs  Jobs
	Apply Apply
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
	Logger   *slog.Logger
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
	wake chan struct{}              // poked by JobsChanged
}

// JobsChanged tells the coordinator that a job was submitted, cancelled or deleted, or the
// whole job state restored (the node calls it from its raft App). The coordinator reconciles
// its scheduler on this instead of polling the job state: an idle cluster costs nothing.
func (co *Coordinator) JobsChanged() {
	co.gen.Add(1)
	poke(co.wake)
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
	lastSeen map[string]time.Time       // node → last sync
	offsets  map[string]time.Duration   // node → its clock minus ours, from its last sync
	kernels  map[string]string          // node → kernel path it reported
	adopted  map[compute.Chunk]uint64   // chunks of earlier terms (ID, term zeroed) → lease here
	granted  map[string][]grant         // node → ranges leased or adopted to it in this term
	leaseAt  time.Time                  // no new leases before (adoptGrace after start)
	orphans  map[string][]compute.Range // job → orphaned ranges at the last repair pass
	repairAt time.Time                  // next repair pass
	seenGen  uint64                     // co.gen at the last reconcile
	faults   map[string]*jobFaults      // job → its module faults in this term (faults.go)

	ctx         context.Context        // the term's: ends with leadership
	arch        map[string]string      // node → GOARCH it reported
	auditTasks  []compute.AuditTask    // audits to run, as of auditsAt
	auditsAt    time.Time              // when auditTasks was read
	auditsDirty atomic.Bool            // the audits in the job state changed since auditsAt
	auditLeases map[uint64]*auditLease // audit ID → its lease
	challenges  chan struct{}          // kicks the challenger: chunks wait for a Challenge

	commits chan *commitReq
}

// Lead coordinates the leadership term number termNo until ctx ends (the
// leader hook: consensus.Raft.OnLeader cancels ctx when leadership is lost).
func (co *Coordinator) Lead(ctx context.Context, termNo uint64, chunkTarget time.Duration) {
	c := &leadership{
		co:       co,
		cfg:      &co.cfg,
		log:      co.log,
		term:     termNo,
		sched:    compute.NewScheduler(compute.SchedulerConfig{ChunkTarget: chunkTarget}),
		jobs:     map[string]bool{},
		lastSeen: map[string]time.Time{},
		offsets:  map[string]time.Duration{},
		kernels:  map[string]string{},
		adopted:  map[compute.Chunk]uint64{},
		granted:  map[string][]grant{},
		leaseAt:  time.Now().Add(adoptGrace),
		commits:  make(chan *commitReq, 1024),

		ctx:         ctx,
		arch:        map[string]string{},
		auditLeases: map[uint64]*auditLease{},
		challenges:  make(chan struct{}, 1),
	}
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

	rec := time.NewTicker(reconcileEvery)
	tick := time.NewTimer(tickEvery)
	evict := time.NewTicker(evictEvery)
	publish := time.NewTicker(publishEvery)
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
			c.reconcileIfChanged(time.Now())
		case now := <-rec.C:
			c.reconcileIfChanged(now)
		case now := <-tick.C:
			c.tick(now)
			tick.Reset(c.tickInterval())
		case now := <-evict.C:
			c.evict(ctx, now)
		case now := <-publish.C:
			c.publishActivity(ctx, now)
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

// reconcileIfChanged reconciles when a job was submitted, cancelled or deleted since the last
// time, or when a repair pass is due while jobs run: with no job and no change it does nothing.
func (c *leadership) reconcileIfChanged(now time.Time) {
	c.mu.Lock()
	due := c.co.gen.Load() != c.seenGen || len(c.jobs) > 0 && now.After(c.repairAt)
	c.mu.Unlock()
	if due {
		c.reconcile(now)
	}
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

// reconcile aligns the scheduler with the replicated job state: new jobs
// are added with their pending ranges (all minus accepted), finished,
// cancelled and deleted ones removed.
func (c *leadership) reconcile(now time.Time) {
	gen := c.co.gen.Load()
	unfinished := c.cfg.Jobs.Unfinished()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seenGen = gen
	live := make(map[string]bool, len(unfinished))
	for _, u := range unfinished {
		live[u.ID] = true
		if c.jobs[u.ID] {
			continue
		}
		if err := c.sched.AddJob(u.ID, u.Spec, u.Pending, u.State == compute.StateRunning); err != nil {
			c.log.Error("add job to scheduler", "job", u.ID, "err", err)
			continue
		}
		c.jobs[u.ID] = true
		c.log.Info("scheduling job", "job", u.ID, "kind", u.Spec.Kind, "pending_ranges", len(u.Pending))
	}
	for id := range c.jobs {
		if !live[id] {
			c.sched.RemoveJob(id)
			delete(c.jobs, id)
		}
	}
	if now.After(c.repairAt) {
		c.repairAt = now.Add(repairEvery)
		c.repairLocked(unfinished)
	}
	if c.cfg.Audits != nil {
		c.refreshAuditsLocked(now)
		c.challenge()
	}
}

// repairLocked requeues work that nobody will compute: unaccepted ranges of
// a job that are neither pending nor leased, in this pass and in the one
// before (a result being committed is orphaned only briefly). Every path
// that drops a lease should put its unfinished range back; this makes a
// slip in that bookkeeping cost repairEvery, not a job that never ends.
func (c *leadership) repairLocked(unfinished []compute.UnfinishedJob) {
	prev := c.orphans
	c.orphans = map[string][]compute.Range{}
	for _, u := range unfinished {
		if !c.jobs[u.ID] {
			continue
		}
		now := c.sched.Orphans(u.ID, u.Pending)
		if len(now) == 0 {
			continue
		}
		c.orphans[u.ID] = now
		// Orphaned now and at the last pass: now ∩ prev.
		before := compute.NewRangeSet(prev[u.ID]...)
		both := compute.NewRangeSet(now...)
		notBefore := before.Complement(compute.Range{Start: 0, End: ^uint64(0)})
		for _, r := range notBefore.Ranges() {
			both.Remove(r)
		}
		if both.Count() == 0 {
			continue
		}
		c.log.Warn("requeued work that nobody held", "job", u.ID, "ranges", both.Ranges(), "units", both.Units())
		c.sched.Requeue(u.ID, both.Ranges())
	}
}

func (c *leadership) tick(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range c.sched.Tick(now) {
		c.log.Info("lease expired", "lease", ev.Lease.ID, "node", ev.Lease.Node, "job", ev.Lease.Job, "range", ev.Lease.Range)
	}
	for node, seen := range c.lastSeen {
		if now.Sub(seen) > workerSilence {
			c.nodeGoneLocked(node, now)
		}
	}
}

func (c *leadership) nodeGone(node string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodeGoneLocked(node, now)
}

func (c *leadership) nodeGoneLocked(node string, now time.Time) {
	if _, ok := c.lastSeen[node]; !ok {
		return
	}
	delete(c.lastSeen, node)
	delete(c.offsets, node)
	if evs := c.sched.NodeGone(node, now); len(evs) > 0 {
		c.log.Info("node gone: chunks requeued", "node", node, "chunks", len(evs))
	}
}

// evict drops finished jobs past the cluster's retention or over its disk cap. The time it
// commits (and every replica evicts by) is the cluster's clock, not this leader's alone: the
// median of the clocks of the nodes that synced lately, this one included, so that one node
// whose clock is off by a week cannot evict every result when it leads (docs/api.md, Cluster
// settings).
func (c *leadership) evict(ctx context.Context, now time.Time) {
	set := consensus.DefaultSettings()
	if c.cfg.Settings != nil {
		set = c.cfg.Settings()
	}
	cmd := compute.Evict{Now: c.clusterNow(now), Retention: set.Retention, DiskCap: set.DiskCap}
	if _, err := c.cfg.Apply(ctx, cmd); err != nil && ctx.Err() == nil {
		c.log.Warn("evict finished jobs", "err", err)
	}
}

// clusterNow is now corrected by the lower median of the offsets of the nodes' clocks
// (this node's is 0); with two clocks it is the earlier one, which evicts less.
func (c *leadership) clusterNow(now time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	offs := []time.Duration{0}
	for node, off := range c.offsets {
		if _, ok := c.lastSeen[node]; ok && node != c.cfg.Self.String() {
			offs = append(offs, off)
		}
	}
	slices.Sort(offs)
	return now.Add(offs[(len(offs)-1)/2])
}

// sync serves one worker exchange.
func (c *leadership) sync(ctx context.Context, from peer.ID, req *syncRequest) (*syncResponse, error) {
	now := time.Now()
	node := from.String()
	resp := &syncResponse{Term: c.term}
	// A worker woken by a submit on its replica may come before the wake-up reaches Lead.
	c.reconcileIfChanged(now)

	c.mu.Lock()
	c.lastSeen[node] = now
	if !req.Now.IsZero() {
		if c.offsets == nil {
			c.offsets = map[string]time.Duration{}
		}
		c.offsets[node] = req.Now.Sub(now) // the request's transit makes it a little late: harmless
	}
	if req.Kernel != "" && len(req.Kernel) < 32 {
		c.kernels[node] = req.Kernel
	}
	if req.Arch != "" && len(req.Arch) < 32 {
		c.arch[node] = req.Arch
	}
	for _, h := range req.Held {
		if h.Term == c.term {
			continue
		}
		key := h.Chunk
		id, ok := c.adopted[key]
		if !ok {
			l, adopted := c.sched.Adopt(node, h.Job, h.Range, now)
			if !adopted {
				continue
			}
			id = l.ID
			c.adopted[key] = id
			c.grantLocked(node, h.Job, l.Range)
			c.log.Info("adopted a chunk leased by the previous coordinator", "node", node, "job", h.Job, "range", h.Range)
		}
		resp.Adopted = append(resp.Adopted, adoption{Old: h.ID, OldTerm: h.Term, New: id})
	}
	for _, p := range req.Progress {
		c.sched.Progress(p.Lease, p.Done, now)
	}
	for _, f := range req.Faults {
		c.faultLocked(node, f)
	}
	for _, id := range req.Failed {
		if id >= auditLeaseBase {
			c.releaseAuditLocked(id, node)
			continue
		}
		c.sched.Fail(id)
	}
	items := make([]compute.ChunkResult, 0, len(req.Results))
	keys := make([]compute.Chunk, 0, len(req.Results))
	var audits []result // audit answers, committed one by one
	for _, r := range req.Results {
		if r.Audit != nil {
			audits = append(audits, r)
			continue
		}
		// Only results for ranges leased to the sender count: in this term,
		// a range leased or adopted to it; from an earlier term (leases this
		// coordinator never saw), a range nobody else holds now.
		if !c.grantedLocked(node, r.Job, r.Range) && (r.Term == c.term || c.heldByOtherLocked(node, r.Job, r.Range)) {
			c.log.Warn("result refused: the range was not leased to the sender", "node", node, "job", r.Job, "range", r.Range, "term", r.Term)
			resp.Acked = append(resp.Acked, r.Chunk) // settled: never resent
			continue
		}
		keys = append(keys, r.Chunk)
		if r.Term == c.term {
			// A prefix (the worker paused or stopped): the rest goes back.
			c.sched.CompletePrefix(r.Lease, r.Range, now)
		}
		items = append(items, compute.ChunkResult{Chunk: r.Chunk, Node: node, ComputeSeconds: r.Seconds, Payload: r.Payload, Root: r.Root})
	}
	c.mu.Unlock()

	for _, r := range audits {
		if err := c.commitAudit(ctx, node, r); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			c.log.Warn("audit answer refused", "node", node, "job", r.Job, "err", err)
		}
		resp.AckedAudits = append(resp.AckedAudits, r.Audit.ID)
	}

	if len(items) > 0 {
		out, err := c.commit(ctx, items)
		if err != nil {
			return nil, fmt.Errorf("commit results: %w", err)
		}
		rejected := map[int]bool{}
		for _, rj := range out.Rejected {
			rejected[rj.Index] = true
		}
		c.mu.Lock()
		for i, it := range items {
			if !rejected[i] {
				c.sched.Accepted(it.Job, it.Range)
			}
			resp.Acked = append(resp.Acked, keys[i])
		}
		for _, id := range out.Finished {
			c.sched.RemoveJob(id)
			delete(c.jobs, id)
			c.forgetGrantsLocked(id)
			c.log.Info("job done", "job", id)
		}
		c.mu.Unlock()
		if c.cfg.Audits != nil {
			c.challenge() // the committed chunks count once challenged (and audited)
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	live := map[uint64]bool{}
	for _, l := range c.sched.Leases() {
		if l.Node == node {
			live[l.ID] = true
		}
	}
	if req.Term == c.term {
		for _, id := range req.Leases {
			if !live[id] && !(id >= auditLeaseBase && c.auditLiveLocked(id, node)) {
				resp.Cancel = append(resp.Cancel, id)
			}
		}
	}
	resp.Idle = len(c.jobs) == 0
	if req.Paused || now.Before(c.leaseAt) {
		return resp, nil
	}
	if c.cfg.Audits != nil && c.cfg.Audits.Quarantined(node) {
		return resp, nil // a quarantined node gets no work until an admin clears it
	}
	want := req.Want
	if want > 0 && c.cfg.Audits != nil {
		c.refreshAuditsIfDirtyLocked(now)
		// Audits first: results count only once their audit passed.
		if l, ok := c.leaseAuditLocked(node, now); ok {
			resp.Leases = append(resp.Leases, l)
			want--
		}
	}
	for range want {
		l, ok := c.sched.Lease(node, now)
		if !ok {
			break
		}
		if c.faultedLocked(l.Job, node) {
			c.sched.Fail(l.ID) // for a node that has not seen the job's module fail
			break
		}
		j, found := c.cfg.Jobs.Job(l.Job)
		if !found {
			c.sched.Fail(l.ID)
			break
		}
		c.grantLocked(node, l.Job, l.Range)
		if l.FirstOfJob {
			go c.markStarted(l.Job, now)
		}
		resp.Leases = append(resp.Leases, lease{ID: l.ID, Term: c.term, Chunk: l.Chunk, Spec: j.Spec})
	}
	return resp, nil
}

func (c *leadership) markStarted(job string, now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.cfg.Apply(ctx, compute.Started{Job: job, Time: now}); err != nil {
		c.log.Debug("mark job started", "job", job, "err", err)
	}
}

// grant is a range leased (or adopted) to a node in this term.
type grant struct {
	job string
	r   compute.Range
}

func (c *leadership) grantLocked(node, job string, r compute.Range) {
	c.granted[node] = append(c.granted[node], grant{job: job, r: r})
}

// grantedLocked reports whether r lies within a range leased or adopted to
// node for job in this term.
func (c *leadership) grantedLocked(node, job string, r compute.Range) bool {
	for _, g := range c.granted[node] {
		if g.job == job && r.Start >= g.r.Start && r.End <= g.r.End {
			return true
		}
	}
	return false
}

// heldByOtherLocked reports whether another node holds a lease of job that
// overlaps r right now.
func (c *leadership) heldByOtherLocked(node, job string, r compute.Range) bool {
	for _, l := range c.sched.Leases() {
		if l.Job == job && l.Node != node && l.Range.Start < r.End && r.Start < l.Range.End {
			return true
		}
	}
	return false
}

// forgetGrantsLocked drops the grants of a finished job.
func (c *leadership) forgetGrantsLocked(job string) {
	for node, gs := range c.granted {
		kept := gs[:0]
		for _, g := range gs {
			if g.job != job {
				kept = append(kept, g)
			}
		}
		if len(kept) == 0 {
			delete(c.granted, node)
		} else {
			c.granted[node] = kept
		}
	}
}
