package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
	"github.com/hydra-compute/hydra/p2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Raft is one node's consensus: the hashicorp/raft instance, its stores and
// transport, the FSM, the bootstrap/join loop, forwarding and, on the
// leader, autopilot. All methods are safe for concurrent use.
type Raft struct {
	cfg  Config
	t    Timings
	log  *slog.Logger
	host host.Host
	id   peer.ID

	fsm      *FSM
	st       *stores
	trans    *transport
	raft     *raft.Raft
	notifyCh chan bool
	hadState bool

	appliedMu    sync.Mutex // serialises saveApplied (replay.go)
	appliedSaved uint64     // the applied index last written

	boot     bootState
	grow     growState
	readmit  readmitState // the leader's tries at admitted nodes that are not servers (readmit.go)
	pending  pendingList
	expected sync.Map      // peer.ID → bool: leader and servers of our admission answer (false: while asking); cleared once the answer no longer stands (forgetExpected)
	ownSeen  atomic.Uint64 // times forgetExpected found our own entry in the replica: an answer that comes after one is stale
	// expectedUntil is the index the admission answer's leader had applied (membershipResponse.Index):
	// expected stands until this replica has applied it too (0: an older leader's answer, or none)
	expectedUntil atomic.Uint64
	askAgain      atomic.Bool  // a raft RPC of a peer this replica does not know was refused: ask to be re-added (refusedRaft)
	askedAt       atomic.Int64 // when refusedRaft last set askAgain (unix ns)
	joinTok       *ParsedJoinToken
	waiting       atomic.Bool  // a join request was answered "pending approval"
	runStart      atomic.Int64 // when Run began (unix ns; 0: not yet)
	leadStart     atomic.Int64 // when raft last made this node leader (unix ns; 0: never): quorumAfterRemoval's grace
	statCalls     atomic.Int64 // stats calls answered to the leader (autopilot's idle cost; tests)
	memberRuns    atomic.Int64 // rounds of the membership loop (its idle cost; tests)
	tokenWait     atomic.Bool  // logged that a node with a join token never founds a cluster
	nodeTok       atomic.Pointer[string]
	del           *delegate
	promoter      *Promoter
	apBrisk       *autopilot.Autopilot // the leader's autopilot while the servers change (pace.go)
	apCalm        *autopilot.Autopilot // the same once they stand still
	apCalmNow     atomic.Bool
	apKick        *kicker // something about the servers changed: brisk autopilot (pace.go)

	lmu     sync.Mutex
	leading bool
	hooks   []func(context.Context)

	trailKick   *kicker // an entry was applied: the leader's trailer (trailer.go)
	appliedKick *kicker // an entry was applied: recordApplied (replay.go)
	silenceKick *kicker // leadership lost: the silence watch looks now (silence.go)
	memberKick  *kicker // an entry applied, a leader change, a server added or removed, a readmission wake: the membership loop looks (Run)
	group       grouper // group commit of App commands (batch.go)
	nudge       nudge   // barriers after forwarded commands (forward.go)

	fastFailover atomic.Bool // timeouts shortened after the leader's connection closed
	watch        network.Notifiee

	closeOnce sync.Once
	closed    chan struct{}
	raftDown  chan struct{} // closed when raft has stopped: a future it has not answered never will be (await)
	wg        sync.WaitGroup
	// goMu orders spawn against Shutdown: no goroutine is added to wg
	// once closed is closed, so wg.Wait sees every one.
	goMu     sync.Mutex
	closeErr error

	// memberMu serialises, on the leader, the membership changes whose
	// checks read the state: a join's admission up to its server's
	// addition, a leave's removal of server and allow-list entry, and every
	// other proposal of OpMemberAdd or OpMemberRemove (applyLocal). Without
	// it a join could re-add a leaving node's server after its removal (a
	// server without an allow-list entry counts as a member: memberRole),
	// and a join token or --admit lan could undo a deny proposed between
	// the check and the admission.
	memberMu sync.Mutex
	// gapHook, nil outside tests, runs with memberMu held in the gaps it
	// guards ("leave": server removed, entry not yet; "admit": admission
	// decided, not yet applied), so that a test can land a request there,
	// and without it where a change is about to take it ("wait") and where
	// reconcileMembers found a server to change ("reconcile"), which it
	// checks again under the lock.
	gapHook atomic.Pointer[func(where string, p peer.ID)]
	// answerHook, nil outside tests, sees each join answer this node gets
	// (requestMembership); an error it returns stands for the answer, as
	// if it had been lost on its way.
	answerHook atomic.Pointer[func(via peer.ID, resp membershipResponse) error]
	// tokenRefusedLogged: a refusal of joinTok was logged at error level
	// (once; the later ones at debug).
	tokenRefusedLogged atomic.Bool
}

// ErrShutdown is returned by calls on a Raft that was shut down.
var ErrShutdown = errors.New("consensus is shut down")

// New opens the stores in cfg.Dir, starts raft on the host (serving the raft
// protocol and the cluster protocols at once, so peers can ask about us even
// before Run) and returns. It does not bootstrap: Run decides that.
func New(cfg Config) (*Raft, error) {
	if cfg.Host == nil || cfg.Dir == "" || cfg.Cluster == "" {
		return nil, errors.New("consensus: Host, Dir and Cluster are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Multiplier <= 0 {
		cfg.Multiplier = 1
	}
	t := DefaultTimings(cfg.Multiplier)
	if cfg.DiscoveryWindow > 0 {
		t.Discovery = cfg.DiscoveryWindow
	}
	if cfg.timings != nil {
		cfg.timings(&t)
	}
	if cfg.DeadVoterGrace <= 0 {
		cfg.DeadVoterGrace = time.Duration(float64(10*time.Second) * cfg.Multiplier)
	}
	if cfg.DeadNonvoterGrace <= 0 {
		cfg.DeadNonvoterGrace = 10 * time.Minute
	}
	if cfg.ChunkTarget <= 0 {
		cfg.ChunkTarget = 2 * time.Second
	}
	if cfg.Voters < 0 || cfg.Voters > maxVoters {
		return nil, fmt.Errorf("consensus: voters %d out of range 0..%d", cfg.Voters, maxVoters)
	}
	var joinTok *ParsedJoinToken
	if cfg.JoinToken != "" {
		t, err := ParseJoinToken(cfg.JoinToken)
		if err != nil {
			return nil, fmt.Errorf("consensus: join token: %w", err)
		}
		joinTok = &t
	}
	if cfg.Admit != "" && cfg.Admit != AdmitApproval && cfg.Admit != AdmitLAN {
		return nil, fmt.Errorf("consensus: admission mode %q: want approval or lan", cfg.Admit)
	}
	if cfg.Settings == (Settings{}) {
		cfg.Settings = DefaultSettings()
	}
	if err := cfg.Settings.Validate(); err != nil {
		return nil, fmt.Errorf("consensus: cluster settings: %w", err)
	}
	id := cfg.Host.ID()
	cfg.Self.ID = id.String()
	cfg.Self.Voter = cfg.VoterPref
	log := cfg.Logger.With("component", "consensus")
	if checksOff {
		log.Warn("BENCHMARK BUILD (hydra_nochecks): membership and command checks are off; never run this anywhere but a benchmark")
	}

	r := &Raft{
		cfg: cfg, t: t, log: log, host: cfg.Host, id: id,
		fsm:         NewFSM(cfg.App),
		trailKick:   newKicker(),
		appliedKick: newKicker(),
		silenceKick: newKicker(),
		memberKick:  newKicker(),
		apKick:      newKicker(),
		notifyCh:    make(chan bool, 16),
		closed:      make(chan struct{}),
		raftDown:    make(chan struct{}),
		joinTok:     joinTok,
	}
	r.boot.init()
	r.fsm.onRevoke = func(s string) {
		// Only a peer refused now: a joiner replaying the cluster's history
		// applies past revocations too, among them one of the leader that
		// replicates to it, once removed and approved again. Its admission
		// answer, or the join call still in flight, stands over that past
		// (Access); closing the connection there failed the call, dropped the
		// call's trust, and left the replica at the revocation for good (the
		// chaos harness, seed 107).
		if p, err := peer.Decode(s); err == nil && cfg.OnRefuse != nil && p != id && r.Access(p) == p2p.AccessRefused {
			cfg.OnRefuse(p)
		}
	}
	r.fsm.log = log
	r.fsm.onRoles = r.forgetExpected
	r.fsm.onIndex = r.passedIndex
	r.fsm.onFatal = func(af *ApplyFailure) {
		if uo, ok := errors.AsType[UnknownOp](af.Err); ok {
			log.Error("stopping: this build does not know the op of a committed entry; upgrade hydra on this node and restart it: the node replays its log",
				"index", af.Index, "op", fmt.Sprintf("%#02x", uo.UnknownOp()), "err", af.Err)
		} else {
			log.Error("stopping: a committed entry could not be applied here; fix the cause (disk space?) and restart: the node replays its log",
				"index", af.Index, "err", af.Err)
		}
		if cfg.OnFatal != nil {
			cfg.OnFatal(af)
		}
	}
	segSize := walSegmentSize
	if cfg.walSegmentSize > 0 {
		segSize = cfg.walSegmentSize
	}
	st, err := openStoresSized(cfg.Dir, log, segSize)
	if err != nil {
		return nil, err
	}
	r.st = st
	onDisk := func(df *DiskFailure) {
		log.Error("stopping: the disk under this node's raft state fails (writes refused as read-only or with I/O errors, or reads failing: a failing disk? see the kernel's log); it cannot count as a replica",
			"dir", df.Dir, "err", df.Err)
		if cfg.OnDiskFailure != nil {
			cfg.OnDiskFailure(df)
		}
	}
	st.watch.fn.Store(&onDisk)
	st.watch.closed = r.closed
	if r.hadState, err = st.hasState(); err != nil {
		_ = st.close()
		return nil, fmt.Errorf("inspect raft state: %w", err)
	}
	trans := newTransport(cfg.Host, 2*t.RPC, t.RPC, r.allowRaft, log)
	r.trans = trans
	rc := raftConfig(id, t, r.notifyCh, cfg.Logger)
	if cfg.trailingLogs > 0 {
		rc.TrailingLogs = cfg.trailingLogs
	}
	// What this node applied before it stopped is served at once, leader
	// or not (replay.go).
	restored, err := replayApplied(st, r.fsm, log)
	if err != nil {
		_ = trans.Close()
		_ = st.close()
		return nil, fmt.Errorf("replay the raft log: %w", err)
	}
	rc.NoSnapshotRestoreOnStart = restored
	if cfg.beforeRaft != nil {
		cfg.beforeRaft(cfg.Host)
	}
	if r.raft, err = newRaft(rc, appliedFSM{r.fsm, []*kicker{r.trailKick, r.appliedKick, r.memberKick}, st.mark}, st, trans); err != nil {
		_ = trans.Close()
		_ = st.close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	// Raft streams are served from now on, not from the transport's making: their allow check
	// (mayRaft) reads raft's configuration, and a stream that came while the log was replayed
	// found no raft (a nil dereference that crashed a node restarting after a full disk).
	trans.listen()
	// The membership loop looks again whenever the leader changes or is
	// lost (the filter runs on raft's goroutine and only kicks).
	r.raft.RegisterObserver(raft.NewObserver(nil, false, func(o *raft.Observation) bool {
		if _, ok := o.Data.(raft.LeaderObservation); ok {
			r.memberKick.kick()
		}
		return false
	}))
	r.del = newDelegate(r)
	r.promoter = &Promoter{desired: r.desiredVoters, noVote: cfg.NoVote}
	r.apBrisk, r.apCalm = r.newAutopilot(t.AutopilotTick), r.newAutopilot(t.AutopilotIdleTick)
	r.serve()
	r.watch = leaderConnWatch{r}
	cfg.Host.Network().Notify(r.watch)
	r.wg.Add(3)
	go r.monitorLeadership()
	go r.watchSilence()
	go r.recordApplied()
	return r, nil
}

// ID returns this node's peer ID (its raft server ID and address).
func (r *Raft) ID() peer.ID { return r.id }

// State returns a copy of the replicated cluster state as applied locally.
// On a follower it may lag the leader by a heartbeat.
func (r *Raft) State() ClusterState { return r.fsm.State() }

// Leader returns the current leader as this node knows it.
func (r *Raft) Leader() (peer.ID, bool) {
	_, id := r.raft.LeaderWithID()
	if id == "" {
		return "", false
	}
	p, err := peer.Decode(string(id))
	return p, err == nil
}

// IsLeader reports whether raft considers this node the leader right now
// (leader-only work should rather follow OnLeader, which waits for Barrier).
func (r *Raft) IsLeader() bool { return r.raft.State() == raft.Leader }

// Term returns the current raft term.
func (r *Raft) Term() uint64 { return r.raft.CurrentTerm() }

// AppliedIndex returns the index of the last log entry applied to the FSM.
func (r *Raft) AppliedIndex() uint64 { return r.raft.AppliedIndex() }

// Stats returns raft's own statistics (state, term, indexes, last contact).
func (r *Raft) Stats() map[string]string { return r.raft.Stats() }

// Server is one member of the raft configuration.
type Server struct {
	ID     peer.ID `json:"id"`
	Voter  bool    `json:"voter"`  // holds a vote (voters and the leader)
	Leader bool    `json:"leader"` // the leader as this node knows it
}

// Servers returns the latest raft configuration known locally (it may
// include a change not yet committed), sorted by ID.
func (r *Raft) Servers() []Server {
	cfg, err := r.configuration()
	if err != nil {
		return nil
	}
	_, leader := r.raft.LeaderWithID()
	out := make([]Server, 0, len(cfg.Servers))
	for _, s := range cfg.Servers {
		p, err := peer.Decode(string(s.ID))
		if err != nil {
			continue
		}
		out = append(out, Server{ID: p, Voter: s.Suffrage == raft.Voter, Leader: s.ID == leader})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (r *Raft) configuration() (raft.Configuration, error) {
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, err
	}
	return f.Configuration(), nil
}

// inCluster reports whether this node is part of a configuration (it
// bootstrapped, joined, or restarted with state).
func (r *Raft) inCluster() bool {
	cfg, err := r.configuration()
	return err == nil && len(cfg.Servers) > 0
}

// hasServer reports whether id is in the latest configuration.
func (r *Raft) hasServer(id peer.ID) bool {
	cfg, err := r.configuration()
	if err != nil {
		return false
	}
	for _, s := range cfg.Servers {
		if string(s.ID) == id.String() {
			return true
		}
	}
	return false
}

func (r *Raft) lastLogTerm() uint64 {
	t, _ := strconv.ParseUint(r.raft.Stats()["last_log_term"], 10, 64)
	return t
}

// WaitForLeader waits until this node knows a leader and returns it. It is
// a test and startup helper: it polls every 20ms until ctx is done.
func (r *Raft) WaitForLeader(ctx context.Context) (peer.ID, error) {
	var id peer.ID
	err := r.waitFor(ctx, func() bool {
		var ok bool
		id, ok = r.Leader()
		return ok
	})
	return id, err
}

// Done is closed once Shutdown has begun: work a node runs beyond one request (a read index
// asked for several) stops with it instead of running out its own deadline.
func (r *Raft) Done() <-chan struct{} { return r.closed }

// WaitForApplied waits until everything in the local log has been applied
// to the FSM (ipfs-cluster's WaitForUpdates): after it, State reflects every
// entry this node had received when it was called.
func (r *Raft) WaitForApplied(ctx context.Context) error {
	return r.WaitForIndex(ctx, r.raft.LastIndex())
}

// WaitForIndex waits until the entry at index has been applied by the local
// FSM. raft's AppliedIndex moves when an entry is handed to the FSM
// goroutine, a little before the FSM has applied it, hence the extra check.
func (r *Raft) WaitForIndex(ctx context.Context, index uint64) error {
	return r.waitFor(ctx, func() bool { return r.appliedThrough(index) })
}

// appliedThrough reports whether the FSM has applied every entry up to idx:
// raft has dispatched them, and no command or configuration entry lies
// between the FSM's last one and idx (noops and barriers never reach it).
func (r *Raft) appliedThrough(idx uint64) bool {
	if r.raft.AppliedIndex() < idx {
		return false
	}
	return !stateEntryIn(r.st.logs, r.fsm.index.Load()+1, idx)
}

// stateEntryIn reports whether logs holds a command or a configuration entry from index from
// through to. The look starts at the log's first index: what lies before it was compacted into
// a snapshot, applied. A restored snapshot sets the FSM's index only if an older build did not
// write it (snapshotState), so after a restart or a snapshot sent by the leader the FSM's index
// may lag by the cluster's whole history, and each index before the log's first was looked up
// in turn at every poll of WaitForIndex: millions on a busy cluster's node, seconds each time.
func stateEntryIn(logs raft.LogStore, from, to uint64) bool {
	if first, err := logs.FirstIndex(); err == nil {
		if first == 0 { // an empty log: everything was compacted
			return false
		}
		from = max(from, first)
	}
	for i := from; i <= to; i++ {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			continue // compacted into a snapshot meanwhile: applied
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return true
		}
	}
	return false
}

func (r *Raft) waitFor(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.closed:
			return ErrShutdown
		case <-t.C:
		}
	}
	return nil
}

// sleep waits d, returning false if ctx ended or the node shut down first.
func (r *Raft) sleep(ctx context.Context, d time.Duration) bool {
	return r.sleepKicked(ctx, neverKicked, d)
}

// neverKicked is a kicker no one kicks (its channel is nil): sleep is sleepKicked without one.
var neverKicked = &kicker{}

// spawn runs f on its own goroutine that Shutdown waits for, unless the
// node is shutting down: then f does not run. Callbacks from libp2p (a
// connection closing) use it, so that no dial of ours outlives the host.
func (r *Raft) spawn(f func()) {
	r.goMu.Lock()
	defer r.goMu.Unlock()
	if r.isClosed() {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f()
	}()
}

func (r *Raft) isClosed() bool {
	select {
	case <-r.closed:
		return true
	default:
		return false
	}
}

// HandOver passes leadership to another voter if this node leads, and returns once it has
// (nil at once on a follower). A graceful stop calls it before its worker stops: the compute
// child may take the whole stop timeout to hand in its chunk (a WebAssembly call runs to its
// end), and a service manager's own grace (systemd's 30 s) would then kill a leader that had
// not handed over yet, leaving the cluster without a leader for an election.
// It picks its successor as a leaving leader does (handOverForLeave): raft's own pick may be a
// dead voter, as caught up as the others in an idle cluster, and the transfer to it fails.
func (r *Raft) HandOver(ctx context.Context) error {
	if r.raft.State() != raft.Leader {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- r.handOverForLeave() }() // each transfer bounded by raft; ctx bounds them all
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("leadership transfer: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("leadership transfer: %w", ctx.Err())
	}
}

// Shutdown stops this node: on SIGTERM, with transfer, a leader first hands
// leadership to another voter (so the cluster does not wait for an election
// timeout), then raft, the transport and the stores are closed. The node
// stays a member: a restart with the same data directory rejoins.
func (r *Raft) Shutdown(transfer bool) error {
	r.closeOnce.Do(func() {
		if transfer && r.raft.State() == raft.Leader {
			if err := r.handOverForLeave(); err != nil { // HandOver's pick: a voter that answers first
				r.log.Warn("leadership transfer before shutdown failed", "err", err)
			}
		}
		r.goMu.Lock()
		close(r.closed)
		r.goMu.Unlock()
		r.host.Network().StopNotify(r.watch)
		<-r.apBrisk.Stop()
		<-r.apCalm.Stop()
		var errs []error
		if err := r.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
		close(r.raftDown)
		for _, p := range []protocol.ID{ProtocolInfo, ProtocolJoin, ProtocolApply, ProtocolStats} {
			r.host.RemoveStreamHandler(p)
		}
		if err := r.trans.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raft transport: %w", err))
		}
		r.wg.Wait()
		r.saveApplied() // raft stopped: the FSM's last index is final
		if err := r.st.close(); err != nil {
			errs = append(errs, fmt.Errorf("raft stores: %w", err))
		}
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}
