package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hydra-compute/hydra/p2p"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ErrNotLeader means the command could not be proposed because this node (or
// the node it was forwarded to) is not the leader, or lost leadership while
// committing. raft.ErrNotLeader and raft.ErrLeadershipLost both map to it.
// Apply retries it (bounded) before giving up with it.
var ErrNotLeader = errors.New("not the leader")

// ErrLeaderUnreachable means a command forwarded to the leader never reached it or its answer
// never came back: the dial failed, the connection was refused, the stream was reset. It is a
// transport failure, not a refusal: Apply retries it, and once its retries are spent the leader
// is down or cut off, which the next election mends, so a caller answers it as "retry later"
// (the API's 503), never as the server's own failure.
var ErrLeaderUnreachable = errors.New("leader unreachable")

// applyAttempts bounds Apply's retries across leader changes: with the
// backoff below it covers several election timeouts.
const applyAttempts = 10

// applyRequest is the /hydra/cluster/apply/1.0.0 request: an encoded command.
type applyRequest struct {
	Command []byte `json:"command"`
	// Auth is the API credential of the person behind an admin command,
	// checked by the leader and never written to the log.
	Auth string `json:"auth,omitempty"`
}

// applyResponse is its answer: the result (JSON), or a rejection, or a
// not-leader hint.
type applyResponse struct {
	Index    uint64          `json:"index,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Rejected string          `json:"rejected,omitempty"`
	// Kinds are the texts of the errors a rejection wraps among the refusal errors both ends
	// know (ErrRejected, ErrForbidden, ErrConflict..., the App's Config.Refusals): see
	// newRejection.
	Kinds     []string `json:"kinds,omitempty"`
	NotLeader bool     `json:"not_leader,omitempty"`
	Leader    string   `json:"leader,omitempty"`
}

// rejection is a refusal received from the leader: its text, and the errors it is recognised
// by. errors.Is(err, ErrRejected) holds for it, and errors.Is(err, e) for each error e of
// refusalErrors that the leader's refusal wrapped (ErrForbidden, ErrSettingsChanged, ErrConflict,
// ErrInvalid, the App's Config.Refusals such as compute.ErrNoSuchJob): the caller tells such refusals apart as it
// would on the leader.
type rejection struct {
	text string
	is   []error
}

func (e *rejection) Error() string { return e.text }

func (e *rejection) Is(target error) bool {
	return target == ErrRejected || slices.Contains(e.is, target)
}

// newRejection decodes a refusal from the leader: its text, and kinds, the texts of the
// errors it wraps among known (refusalErrors). A leader of an older version sends no kinds:
// then the errors of known whose text the refusal contains are taken (never kindRefusals).
func newRejection(text string, kinds []string, known []error) *rejection {
	e := &rejection{text: text}
	for _, k := range known {
		if kinds == nil && !slices.Contains(kindRefusals, k) && strings.Contains(text, k.Error()) || slices.Contains(kinds, k.Error()) {
			e.is = append(e.is, k)
		}
	}
	return e
}

// refusalErrors are the errors a refusal forwarded from the leader is recognised by (besides
// ErrRejected): this package's, the admin refusals' kinds (kindRefusals), and the App's
// (Config.Refusals). An admin refusal answers the same on every node: the API maps these
// kinds to its codes (ErrConflict 409, ErrInvalid 400, ErrNoSuchNode 404), and before they
// were among them a follower answered every forwarded one as a plain refusal (409).
func (r *Raft) refusalErrors() []error {
	return slices.Concat([]error{ErrForbidden, ErrSettingsChanged, ErrOpUnsupported}, kindRefusals, r.cfg.Refusals)
}

// kindRefusals are the kinds of refusalErrors that a forwarded refusal is recognised by only
// through the kinds the leader sends, never by its text: a kinded refusal's text is the error's
// own and never names its kind, so a text that does is one that merely contains those words. A
// leader of an older build sends no kinds: its ErrInvalid and ErrConflict refusals are plain
// refusals on a follower (409), as they were.
var kindRefusals = []error{ErrInvalid, ErrConflict, ErrNoSuchNode}

// refused is the answer to a follower whose command was refused for err: its text, and the
// errors of refusalErrors it wraps (ErrRejected's first, so that the list is never empty).
func (r *Raft) refused(err error) applyResponse {
	if !errors.Is(err, ErrRejected) {
		err = fmt.Errorf("%w: %w", ErrRejected, err)
	}
	kinds := []string{ErrRejected.Error()}
	for _, k := range r.refusalErrors() {
		if errors.Is(err, k) {
			kinds = append(kinds, k.Error())
		}
	}
	return applyResponse{Rejected: err.Error(), Kinds: kinds}
}

// Apply proposes cmd to the cluster and returns once it is committed and
// applied on the leader (and, best effort, on this node too, so a caller
// reading State afterwards sees its write). On a follower the command is
// forwarded to the leader over /hydra/cluster/apply/1.0.0; on the leader it
// goes straight to raft.
//
// The result is the FSM's return value encoded as JSON: "null" for the
// cluster ops, the App's value for ops ≥ OpAppFirst. A command the FSM
// refused returns an error that matches ErrRejected (retrying is pointless).
// ErrNotLeader and transport failures are retried with backoff, a bounded
// number of times, across leader changes; a retry after an ambiguous failure
// (leadership lost while committing, a stream reset) may apply a command
// twice, so commands must be idempotent (every op of this package is, and the
// job ops deduplicate by range).
func (r *Raft) Apply(ctx context.Context, cmd Command) (json.RawMessage, error) {
	return r.apply(ctx, cmd, "")
}

func (r *Raft) apply(ctx context.Context, cmd Command, auth string) (json.RawMessage, error) {
	if cmd.Op == OpBatch {
		return nil, fmt.Errorf("%w: %w: a batch entry is built by the group commit only", ErrRejected, ErrForbidden)
	}
	if err := r.CheckOp(cmd.Op); err != nil {
		return nil, err
	}
	data, err := EncodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	backoff := time.Duration(float64(20*time.Millisecond) * r.cfg.Multiplier)
	var last error
	for attempt := 0; attempt < applyAttempts; attempt++ {
		if r.isClosed() {
			return nil, ErrShutdown
		}
		res, err := r.applyOnce(ctx, data, auth)
		if err == nil {
			if res.Index > 0 && r.raft.State() != raft.Leader {
				wctx, cancel := context.WithTimeout(ctx, r.t.Apply)
				_ = r.WaitForIndex(wctx, res.Index) // best effort read-your-writes
				cancel()
			}
			return res.Result, nil
		}
		if errors.Is(err, ErrRejected) || errors.Is(err, ErrShutdown) || ctx.Err() != nil {
			return nil, err
		}
		last = err
		r.log.Debug("apply failed, retrying", "op", cmd.Op, "attempt", attempt+1, "err", err)
		if !r.sleep(ctx, backoff) {
			break
		}
		backoff = min(2*backoff, time.Duration(float64(500*time.Millisecond)*r.cfg.Multiplier))
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("apply %s: %w (last error: %v)", cmd.Op, ctx.Err(), last)
	}
	return nil, fmt.Errorf("apply %s: %w", cmd.Op, last)
}

// applyOnce proposes data once: locally if leader, else on the leader.
func (r *Raft) applyOnce(ctx context.Context, data []byte, auth string) (applyResponse, error) {
	if r.raft.State() == raft.Leader {
		return r.applyLocal(ctx, data)
	}
	leader, ok := r.Leader()
	if !ok {
		return applyResponse{}, fmt.Errorf("%w: no known leader", ErrNotLeader)
	}
	if leader == r.id { // stale view: raft still names us after losing it
		return applyResponse{}, ErrNotLeader
	}
	cctx, cancel := context.WithTimeout(ctx, r.t.Apply+r.t.RPC)
	defer cancel()
	var resp applyResponse
	if err := p2p.Call(cctx, r.host, leader, ProtocolApply, applyRequest{Command: data, Auth: auth}, &resp); err != nil {
		return applyResponse{}, forwardFailed(leader, err)
	}
	switch {
	case resp.NotLeader:
		return applyResponse{}, fmt.Errorf("%w: %s is no longer leader", ErrNotLeader, leader)
	case resp.Rejected != "":
		return applyResponse{}, newRejection(resp.Rejected, resp.Kinds, r.refusalErrors())
	}
	return resp, nil
}

// forwardFailed is the error of a command forwarded to leader whose call failed with err: the
// leader's handler failed (its error), or the call never reached it or its answer never came
// back (ErrLeaderUnreachable). A leader of an earlier build that was stopping under the command
// failed it with ErrShutdown's text: it leads no more, which is ErrNotLeader (retried; "retry
// later" once the retries are spent), as a leader of this build answers (handleApply).
func forwardFailed(leader peer.ID, err error) error {
	if re, remote := errors.AsType[*p2p.RemoteError](err); remote { // the leader's handler failed
		if re.Msg == ErrShutdown.Error() {
			return fmt.Errorf("%w: leader %s is shutting down", ErrNotLeader, leader)
		}
		return fmt.Errorf("forward to leader %s: %w", leader, err)
	}
	return fmt.Errorf("%w: forward to %s: %w", ErrLeaderUnreachable, leader, err)
}

// applyLocal proposes data on this node, which must be the leader. It waits
// until the entry is committed and applied here, or ctx ends. App commands
// go through the group commit (batch.go), with others proposed at about the
// same time; membership ops hold memberMu.
func (r *Raft) applyLocal(ctx context.Context, data []byte) (applyResponse, error) {
	if r.evictionDone(data) { // a repeated hydra remove: answered as the first was, nothing to commit
		return applyResponse{Index: r.raft.AppliedIndex()}, nil
	}
	if r.revokesSelf(data) { // hydra remove of the leader: the next leader commits it
		if err := r.evictionWaits(data); err != nil {
			return applyResponse{}, err
		}
		if err := r.handOverFromRevoked(); err != nil {
			return applyResponse{}, err
		}
		return applyResponse{}, fmt.Errorf("%w: handed leadership over before this node's eviction", ErrNotLeader)
	}
	if len(data) > 1 && (Op(data[1]) == OpMemberAdd || Op(data[1]) == OpMemberRemove) {
		var p peer.ID
		if r.gapHook.Load() != nil { // tests only: name the peer for the hook
			var m struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(data[2:], &m) == nil {
				p, _ = peer.Decode(m.ID)
			}
		}
		r.lockMembers(p)
		defer r.memberMu.Unlock()
		if err := r.evictionWaits(data); err != nil {
			return applyResponse{}, err
		}
		if err := r.workerVoteWaits(data); err != nil {
			return applyResponse{}, err
		}
		resp, err := r.applyLocked(ctx, data)
		if err == nil {
			r.removeEvictedNow(data)
		}
		return resp, err
	}
	return r.applyLocked(ctx, data)
}

// applyLocked is applyLocal for a caller that holds memberMu (or proposes
// no membership op).
func (r *Raft) applyLocked(ctx context.Context, data []byte) (applyResponse, error) {
	var (
		index uint64
		resp  any
		err   error
	)
	if len(data) > 1 && Op(data[1]) >= OpAppFirst {
		index, resp, err = r.propose(ctx, data)
	} else {
		f := r.raft.Apply(data, r.t.Apply)
		if err = r.await(ctx, f); err == nil {
			index, resp = f.Index(), f.Response()
		} else if ctx.Err() != nil {
			return applyResponse{}, ctx.Err() // it may still commit, as any proposal whose caller gave up
		}
	}
	return response(index, resp, err)
}

// response makes the answer to a proposal of the entry at index: resp is the FSM's result for
// it (an error value: refused), err why it was not committed.
func response(index uint64, resp any, err error) (applyResponse, error) {
	if err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
			errors.Is(err, raft.ErrLeadershipTransferInProgress):
			return applyResponse{}, fmt.Errorf("%w: %v", ErrNotLeader, err)
		case errors.Is(err, raft.ErrRaftShutdown):
			return applyResponse{}, ErrShutdown
		}
		return applyResponse{}, err
	}
	out := applyResponse{Index: index}
	switch v := resp.(type) {
	case error:
		if _, local := errors.AsType[*ApplyFailure](v); local || errors.Is(v, ErrApplyStopped) {
			// Not a refusal: the entry is committed and the other replicas apply it, but this
			// node's replica failed (a full or failing disk) and the node stops (OnFatal). Told
			// as a leader stopping under the command: a follower's forward is retried on the
			// next leader, the node's own proposal answers "retry later".
			return applyResponse{}, fmt.Errorf("%w: %w", ErrShutdown, v)
		}
		if errors.Is(v, ErrRejected) {
			return applyResponse{}, v
		}
		return applyResponse{}, fmt.Errorf("%w: %w", ErrRejected, v) // the App's errors stay recognisable
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return applyResponse{}, fmt.Errorf("%w: encode result: %v", ErrRejected, err)
		}
		out.Result = b
	}
	return out, nil
}

// handleApply serves /hydra/cluster/apply/1.0.0 on every node: the leader
// applies, a follower answers NotLeader with its view of the leader. Only
// members of the configuration may propose.
func (r *Raft) handleApply(ctx context.Context, from peer.ID, raw json.RawMessage) (any, error) {
	var req applyRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, fmt.Errorf("decode apply request: %w", err)
	}
	if !r.hasServer(from) && r.roleOf(from) == "" {
		return nil, fmt.Errorf("%s is not a member of this cluster", from)
	}
	if _, err := DecodeCommand(req.Command); err != nil {
		return r.refused(err), nil
	}
	if r.raft.State() != raft.Leader {
		l, _ := r.Leader()
		return applyResponse{NotLeader: true, Leader: l.String()}, nil
	}
	if err := r.authorize(from, req.Command, req.Auth); err != nil {
		r.log.Warn("refused a command", "from", from, "err", err)
		return r.refused(err), nil
	}
	if err := r.CheckOp(Op(req.Command[1])); err != nil { // the follower checked with its view
		return r.refused(err), nil
	}
	res, err := r.applyLocal(ctx, req.Command)
	switch {
	case err == nil:
		// The follower waits until it has applied its write (read-your-writes), and learns
		// that it is committed from the next AppendEntries, which while no other write flows
		// comes only after the idle Commit timeout: a barrier entry sends one now. It is not
		// waited for, and one serves every command forwarded meanwhile (nudgeFollowers).
		r.nudgeFollowers()
		return res, nil
	case errors.Is(err, ErrRejected):
		return r.refused(err), nil
	case errors.Is(err, ErrNotLeader):
		return applyResponse{NotLeader: true}, nil
	case errors.Is(err, ErrShutdown):
		// This leader is stopping (a SIGTERM: it hands leadership over) and will lead no more:
		// the follower retries on the next one, as after a lost leadership, and answers "retry
		// later" (the API's 503) if none comes in its retries. As a handler error it reached the
		// follower as an unknown remote failure, and its client as a 500.
		return applyResponse{NotLeader: true}, nil
	}
	return nil, err
}

// nudge paces the barriers that tell followers of a forwarded command's commit: one in raft at
// a time, and at most one more queued behind it, however many commands are forwarded meanwhile.
type nudge struct {
	mu      sync.Mutex
	running bool // a barrier is being committed
	again   bool // a command committed since that barrier was appended: one more after it
}

// nudgeFollowers appends a barrier entry after a command this node committed for a follower, so
// that an AppendEntries carrying the commit index goes out now. A barrier already in raft may
// have been appended before that command committed, so another follows it; commands forwarded
// while both wait share them (before, each forwarded command added an entry of its own).
func (r *Raft) nudgeFollowers() {
	n := &r.nudge
	n.mu.Lock()
	if n.running {
		n.again = true
		n.mu.Unlock()
		return
	}
	n.running = true
	n.mu.Unlock()
	r.spawn(func() { // not run once shutting down: then nothing needs telling
		for {
			_ = r.await(context.Background(), r.raft.Barrier(r.t.Apply)) // raft shut down or leadership lost: nothing to tell
			n.mu.Lock()
			if !n.again {
				n.running = false
				n.mu.Unlock()
				return
			}
			n.again = false
			n.mu.Unlock()
		}
	})
}
