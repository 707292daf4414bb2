package work

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/audit"
	"github.com/hydra-compute/hydra/node/child"
	"github.com/hydra-compute/hydra/node/owner"
	"github.com/hydra-compute/hydra/wire"
)

// Worker timings.
const (
	syncEvery     = 500 * time.Millisecond // progress reports and polling for work
	idleSyncEvery = 10 * time.Second       // nothing in hand and no job: a safety net (Wake syncs at once); see idleWorkerSilence
	prefetchDepth = 2                      // one chunk in hand, one queued
	shortDepth    = 8                      // in hand and queued while chunks are short (compute's MaxShortLeases)
	shortChunk    = 20 * time.Millisecond  // a chunk this quick leaves the worker waiting on its exchanges
	finalFlush    = 3 * time.Second        // on shutdown: time to hand in the last results
	flushRetry    = 50 * time.Millisecond  // on shutdown: between tries to hand them in
	callTimeout   = 30 * time.Second       // one exchange with a remote coordinator
)

// Runner computes one chunk at a time in the compute child process
// (child.Runner).
type Runner interface {
	Run(ctx context.Context, c child.Chunk, progress func(done uint64)) (child.Result, error)
	StopTask()
}

// Call sends req to the peer to over Protocol and decodes its answer into
// resp (p2p.Call on the node's host).
type Call func(ctx context.Context, to peer.ID, req, resp any) error

// WorkerConfig is what the worker needs from its node.
type WorkerConfig struct {
	Self peer.ID
	// Leader is the current raft leader, the coordinator to sync with.
	Leader func() (peer.ID, bool)
	// Local is this node's coordinator, called in-process when Self leads.
	Local *Coordinator
	// Call reaches a remote coordinator.
	Call   Call
	Runner Runner
	// Owner is the owner policy's current decision (pause, throttle).
	Owner func() owner.Decision
	// Crashed reports a simulated SIGKILL (tests): nothing is handed in
	// on the way out.
	Crashed func() bool
	// Leased, if set, is called when chunks arrive while the worker had none in hand (the owner
	// policy then reads its sensors often again).
	Leased func()
	// Prepare, if set, readies what a chunk needs on this node before it runs (a WebAssembly
	// job's module, fetched from a member that has it); an error gives the chunk back.
	Prepare func(ctx context.Context, spec compute.JobSpec) error
	Logger  *slog.Logger
}

// Worker computes chunks for the coordinator in the compute child process
// (docs/design.md §7): it keeps one chunk in hand and one queued, reports
// progress, and keeps every result until the coordinator acknowledges it as
// committed, resubmitting to a new leader after a change.
type Worker struct {
	cfg    WorkerConfig
	log    *slog.Logger
	runner Runner

	mu       sync.Mutex
	leader   peer.ID
	term     uint64
	queue    []lease // queue[0] runs when running != nil
	running  *lease
	discard  bool               // the running lease was cancelled: throw its result away
	stopRun  context.CancelFunc // stops the chunk in hand (keeping its prefix)
	results  []result
	failed   []uint64
	faults   []fault // failed leases whose module was at fault (a subset of failed)
	progress atomic.Uint64
	stopping atomic.Bool   // Run is handing in its last results: no more work (sync)
	lastTook time.Duration // the last chunk's time in the child: below shortChunk, ask for shortDepth
	// lastAudit is the same for the last audit: short audits are leased several at a time too
	// (leaseAuditsLocked).
	lastAudit time.Duration

	wakeSync    chan struct{}
	wakeCompute chan struct{}
	coordIdle   bool // the coordinator said it has no unfinished job (syncResponse.Idle)

	// Totals since start (Counters).
	busyNanos  atomic.Int64
	cpuMicros  atomic.Int64
	chunksRun  atomic.Int64
	auditNanos atomic.Int64 // the same for audits (not in the three above)
	auditCPU   atomic.Int64 // µs
}

// Counters are a worker's totals since start, for /metrics: the wall time a chunk was in the
// compute child, the CPU time the child reported for them, and the chunks (or parts of chunks,
// after a stop) run. With a job's makespan they split a node's time into computing, waiting for
// a chunk and idle at the end (scripts/bench-cluster prints that breakdown). Audits this node
// ran for others are counted apart (AuditBusySeconds, AuditCPUSeconds), so that the cost of
// audits can be set against the work they check (docs/audits.md, Figures).
type Counters struct {
	BusySeconds, CPUSeconds           float64
	Chunks                            int64
	AuditBusySeconds, AuditCPUSeconds float64
}

// Counters returns the worker's totals since start.
func (w *Worker) Counters() Counters {
	return Counters{BusySeconds: float64(w.busyNanos.Load()) / 1e9, CPUSeconds: float64(w.cpuMicros.Load()) / 1e6, Chunks: w.chunksRun.Load(),
		AuditBusySeconds: float64(w.auditNanos.Load()) / 1e9, AuditCPUSeconds: float64(w.auditCPU.Load()) / 1e6}
}

// Busy reports whether the worker holds a chunk (running or queued).
func (w *Worker) Busy() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.running != nil || len(w.queue) > 0
}

// Idle reports whether the worker has nothing to do or report and the coordinator said it has
// no job: the node then slows its loops down (docs/design.md §7, "Idle cost").
func (w *Worker) Idle() bool { return w.idle() }

// idle reports whether the worker has nothing to do or report and the coordinator has no job:
// then it syncs only every idleSyncEvery.
func (w *Worker) idle() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.coordIdle && w.running == nil && len(w.queue) == 0 && len(w.results) == 0 && len(w.failed) == 0
}

// NewWorker prepares a worker; Run starts it.
func NewWorker(cfg WorkerConfig) *Worker {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Crashed == nil {
		cfg.Crashed = func() bool { return false }
	}
	return &Worker{
		cfg: cfg, log: cfg.Logger.With("component", "worker"), runner: cfg.Runner,
		wakeSync: make(chan struct{}, 1), wakeCompute: make(chan struct{}, 1),
	}
}

// Wake makes the worker look at its state again now (the owner policy
// decided something): sync with the coordinator and start or stop computing.
func (w *Worker) Wake() {
	poke(w.wakeCompute)
	poke(w.wakeSync)
}

// InHand is the chunk being computed and the units of it done so far; ok is
// false when the worker computes nothing.
func (w *Worker) InHand() (r compute.Range, done uint64, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running == nil {
		return compute.Range{}, 0, false
	}
	return w.running.Range, w.progress.Load(), true
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run works until ctx ends, then stops the chunk in hand, keeps its
// finished prefix and hands in what it can before returning.
func (w *Worker) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.computeLoop(ctx) }()
	t := time.NewTimer(syncEvery)
	defer t.Stop()
	for ctx.Err() == nil {
		err := w.sync(ctx)
		if err != nil && ctx.Err() == nil {
			w.log.Debug("sync with coordinator", "err", err)
		}
		every := syncEvery
		if err == nil && w.idle() {
			every = idleSyncEvery
		}
		t.Reset(every)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-w.wakeSync:
		}
	}
	wg.Wait()
	if w.cfg.Crashed() {
		return
	}
	// Hand in what was finished, including the prefix of the stopped chunk, and give back the
	// chunks queued that will not run, asking for none: the coordinator leases them to others
	// at once, not after this node's silence (a graceful stop keeps the host up for a while).
	w.stopping.Store(true)
	fctx, cancel := context.WithTimeout(context.Background(), finalFlush)
	defer cancel()
	retry := time.NewTicker(flushRetry)
	defer retry.Stop()
	for {
		w.mu.Lock()
		left := len(w.results) + len(w.queue) + len(w.failed)
		w.mu.Unlock()
		if left == 0 {
			return
		}
		err := w.sync(fctx)
		if err == nil {
			continue
		}
		// Tried again within finalFlush: a stopping leader hands leadership over first, and the
		// new leader answers "not the leader" until its coordinator runs (a few milliseconds).
		select {
		case <-retry.C:
			continue
		case <-fctx.Done():
		}
		w.log.Warn("results not handed in before stopping: the coordinator will reassign them", "results", left, "err", err)
		return
	}
}

// sync does one exchange with the coordinator.
func (w *Worker) sync(ctx context.Context) error {
	leader, ok := w.cfg.Leader()
	if !ok || leader == "" {
		return errors.New("no leader")
	}
	w.mu.Lock()
	if leader != w.leader {
		// A new coordinator renumbers leases: drop the queued ones (it will
		// lease that work again); the chunk in hand goes on, and the new
		// coordinator adopts it (Held) unless its range went elsewhere.
		if w.leader != "" {
			w.log.Info("new coordinator", "leader", leader)
		}
		w.leader = leader
		w.queue = nil
	}
	req := &syncRequest{Term: w.term, Results: w.handInLocked(), Failed: w.failed, Faults: w.faults, Kernel: compute.KernelPath(), Now: time.Now().UTC()}
	w.failed, w.faults = nil, nil
	inHand := len(w.queue)
	if w.running != nil {
		inHand++
	}
	if w.stopping.Load() || w.ctxPaused() {
		// Paused by the owner: queued chunks go back to the coordinator at
		// once, so others take them; the one in hand stops and hands in
		// its finished prefix. Stopping, the same: lease nothing.
		req.Paused = true
		if w.running != nil && w.stopRun != nil {
			w.stopRun() // even a chunk that had not started when the pause came
		}
		// Added to what the request gives back already: an audit the pause stopped was given
		// back (finishAudits) after the previous exchange, and it is only in req.Failed now.
		for _, l := range w.queue {
			if l.Term == w.term {
				req.Failed = append(req.Failed, l.ID)
			}
		}
		w.queue = nil
	} else if ctx.Err() == nil {
		depth := prefetchDepth
		if w.lastTook > 0 && w.lastTook < shortChunk || w.lastAudit > 0 && w.lastAudit < shortChunk {
			// Short chunks or audits: hold enough of them to compute while results are committed
			// (the coordinator grants more than two only while what a node holds is short work).
			depth = shortDepth
		}
		req.Want = max(0, depth-inHand)
	}
	for _, l := range w.queue {
		if l.Term == w.term {
			req.Leases = append(req.Leases, l.ID)
		}
	}
	if r := w.running; r != nil && r.Audit != nil {
		// An audit: no progress, no adoption (it lives in the replicated
		// state; its answer is committed by whichever leader gets it).
		if r.Term == w.term && !req.Paused {
			req.Leases = append(req.Leases, r.ID)
		}
	} else if r != nil {
		if r.Term == w.term && !req.Paused {
			req.Leases = append(req.Leases, r.ID)
			req.Progress = []leaseProgress{{Lease: r.ID, Done: w.progress.Load()}}
		}
		req.Held = []held{{ID: r.ID, Term: r.Term, Chunk: r.Chunk}}
	}
	req.Arch = runtime.GOARCH
	req.State = w.stateLocked()
	w.mu.Unlock()

	resp, err := w.call(ctx, leader, req)
	if err != nil {
		w.mu.Lock()
		w.failed = append(w.failed, req.Failed...)
		w.faults = append(w.faults, req.Faults...)
		w.mu.Unlock()
		return err
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	acked := map[compute.Chunk]bool{}
	for _, k := range resp.Acked {
		acked[k] = true
	}
	ackedAudits := map[uint64]bool{}
	for _, id := range resp.AckedAudits {
		ackedAudits[id] = true
	}
	kept := w.results[:0]
	for _, r := range w.results {
		if r.Audit != nil && !ackedAudits[r.Audit.ID] || r.Audit == nil && !acked[r.Chunk] {
			kept = append(kept, r)
		}
	}
	w.results = kept
	w.term = resp.Term
	w.coordIdle = resp.Idle
	for _, a := range resp.Adopted {
		if r := w.running; r != nil && r.ID == a.Old && r.Term == a.OldTerm {
			r.ID, r.Term = a.New, resp.Term
		}
	}
	cancel := map[uint64]bool{}
	for _, id := range resp.Cancel {
		cancel[id] = true
	}
	// A queued lease of another term is no lease of this coordinator's: it leases that work
	// again. A new leader cleared the queue above, but the same node leading again in a new term
	// (leadership lost and won back) does not change the leader: those leases stayed, their work
	// was computed twice, and they counted as in hand, so the worker asked for less.
	q := w.queue[:0]
	for _, l := range w.queue {
		if !cancel[l.ID] && l.Term == resp.Term {
			q = append(q, l)
		}
	}
	w.queue = q
	if r := w.running; r != nil && r.Term == resp.Term && cancel[r.ID] {
		w.discard = true
		w.runner.StopTask()
	}
	if len(resp.Leases) > 0 {
		// Only the first chunks after none in hand wake the owner policy: a worker of short
		// chunks is leased many times a second, and each wake reads every sensor.
		wasIdle := w.running == nil && len(w.queue) == 0
		w.queue = append(w.queue, resp.Leases...)
		poke(w.wakeCompute)
		if w.cfg.Leased != nil && wasIdle {
			w.cfg.Leased()
		}
	}
	return nil
}

// handInLocked picks the results for one sync request: the oldest, as many
// as fit one batch (wire.MaxBatch, at least one), so that a request always
// fits its frame (wire.MaxSyncFrame) and the coordinator's log entries;
// the rest go in the next exchanges.
//
// The results of one lease (the chunks of a job with chunk_units) go together when they fit, so
// that the coordinator sees the lease done at once instead of a prefix whose rest it hands out
// again.
func (w *Worker) handInLocked() []result {
	size := 0
	for i, r := range w.results {
		s := len(r.Payload) + wire.ResultOverhead
		if i > 0 && (size+s > wire.MaxBatch || i == maxSyncResults) {
			cut := i
			for cut > 0 && sameLease(w.results[cut-1], r) {
				cut--
			}
			if cut == 0 {
				cut = i
			}
			return w.results[:cut:cut]
		}
		size += s
	}
	return w.results[:len(w.results):len(w.results)]
}

// sameLease reports whether two results came from the same lease.
func sameLease(a, b result) bool {
	return a.Audit == nil && b.Audit == nil && a.Lease == b.Lease && a.Term == b.Term
}

// computeLoop runs queued leases one after the other in the child.
func (w *Worker) computeLoop(ctx context.Context) {
	for {
		w.mu.Lock()
		var l lease
		var more []lease // audits run with l as one task (takeAuditsLocked)
		ready := len(w.queue) > 0 && !w.ctxPaused() && ctx.Err() == nil
		if ready {
			l = w.queue[0]
			w.queue = w.queue[1:]
			more = w.takeAuditsLocked(l)
			running := l // sync renames it on adoption, under w.mu; l stays this loop's
			w.running, w.discard = &running, false
			w.progress.Store(0)
		}
		w.mu.Unlock()
		if !ready {
			select {
			case <-ctx.Done():
				return
			case <-w.wakeCompute:
				continue
			}
		}
		start := time.Now()
		rctx, stop := context.WithCancel(ctx)
		w.mu.Lock()
		w.stopRun = stop
		w.mu.Unlock()
		var err error
		if w.cfg.Prepare != nil {
			err = w.cfg.Prepare(rctx, l.Spec)
		}
		if l.Audit != nil {
			bundle := append([]lease{l}, more...)
			answers, errs := make([]result, len(bundle)), make([]error, len(bundle))
			if err == nil {
				answers, errs = w.runAudits(rctx, bundle)
			} else {
				for i := range errs {
					errs[i] = err
				}
			}
			stop()
			took := time.Since(start)
			w.auditNanos.Add(int64(took))
			for _, a := range answers {
				w.auditCPU.Add(int64(a.Seconds * 1e6))
			}
			w.finishAudits(bundle, answers, errs, took)
			poke(w.wakeSync)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		var res child.Result
		if err == nil {
			res, err = w.runner.Run(rctx, child.Chunk{ID: l.ID, Spec: l.Spec, Range: l.Range},
				func(done uint64) { w.progress.Store(done) })
		}
		stop()
		took := time.Since(start)
		w.busyNanos.Add(int64(took))
		w.chunksRun.Add(1)
		if err == nil {
			w.cpuMicros.Add(int64(res.ComputeSeconds * 1e6))
		}
		w.mu.Lock()
		w.lastTook = took
		w.stopRun = nil
		cur := *w.running // its ID and term may have changed by adoption
		w.running = nil
		switch {
		case err != nil:
			w.log.Warn("chunk failed", "job", cur.Job, "start", cur.Start, "end", cur.End, "err", err)
			if cur.Term == w.term {
				w.failed = append(w.failed, cur.ID)
				var mf *child.ModuleFault
				if errors.As(err, &mf) && len(w.faults) < maxFaults {
					w.faults = append(w.faults, fault{Lease: cur.ID, Chunk: cur.Chunk, Msg: clipFault(mf.Msg)})
				}
			}
		case w.discard:
			w.log.Debug("chunk cancelled", "job", cur.Job, "lease", cur.ID)
		default:
			// The finished prefix and, after a pause that froze the child, the ranges it had
			// finished ahead of it: each is handed in as a result of the lease.
			parts := res.Also
			if res.Done.Len() > 0 {
				parts = append([]child.Part{{Done: res.Done, Payload: res.Payload, Root: res.Root}}, parts...)
			}
			if len(parts) == 0 {
				if cur.Term == w.term {
					w.failed = append(w.failed, cur.ID) // stopped before it began: give it back
				}
				break
			}
			var units uint64
			for _, p := range parts {
				units += p.Done.Len()
			}
			for _, p := range parts {
				if !w.addResultLocked(cur, p, res.ComputeSeconds*float64(p.Done.Len())/float64(units)) {
					break
				}
			}
			w.log.Debug("chunk done", "job", cur.Job, "range", res.Done, "more", len(res.Also), "took", time.Since(start).Round(time.Millisecond))
		}
		w.discard = false
		w.mu.Unlock()
		poke(w.wakeSync)
		if ctx.Err() != nil {
			return
		}
	}
}

// addResultLocked queues the result of part of lease cur for the coordinator; false when it
// cannot be committed to (the lease is then given back).
func (w *Worker) addResultLocked(cur lease, p child.Part, secs float64) bool {
	payload := p.Payload
	if corrupt != nil {
		payload = corrupt(cur.Spec, p.Done, payload)
	}
	// The child's commitment, computed from the counts it had in hand; the payload is decoded
	// again only where it gave none, or a test-only cheat changed the payload.
	root, err := p.Root, error(nil)
	if root == (audit.Hash{}) || corrupt != nil {
		root, err = compute.Commitment(cur.Spec, p.Done, payload)
	}
	if err != nil && compute.Auditable(cur.Spec.Kind) {
		w.log.Warn("chunk result cannot be committed to", "job", cur.Job, "range", p.Done, "err", err)
		if cur.Term == w.term {
			w.failed = append(w.failed, cur.ID)
		}
		return false
	}
	w.results = append(w.results, result{
		Lease: cur.ID, Term: cur.Term, Chunk: compute.Chunk{Job: cur.Job, Range: p.Done},
		Seconds: secs, Payload: payload, Root: root,
	})
	return true
}

// ctxPaused reports whether the owner policy holds compute back.
func (w *Worker) ctxPaused() bool { return w.cfg.Owner().State == owner.StatePaused }

func (w *Worker) stateLocked() string {
	switch d := w.cfg.Owner(); d.State {
	case owner.StatePaused:
		return "paused"
	case owner.StateThrottled:
		// Throttled with or without a chunk in hand: the reason (cpu 82 °C)
		// says why the node runs slower, which "idle: cpu 82 °C" did not.
		return "throttled"
	}
	if w.running != nil {
		return "working"
	}
	return "idle"
}

// State is the worker's state for announcements.
func (w *Worker) State() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stateLocked()
}
