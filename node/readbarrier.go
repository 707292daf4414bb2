package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/p2p"
	"github.com/hydra-compute/hydra/webui"
)

// A read barrier makes a check that a node answers from its own replica see every write the
// cluster had committed when the request came, wherever that write was made: a module delete
// through a follower right after a cancel through the leader found the job still running on the
// follower's replica, which had not applied the cancel yet, and answered 409 "module in use"
// (read-your-writes across nodes). The node asks the leader for its read index
// (consensus.ReadIndex: its commit index, its leadership confirmed) and waits, bounded, until its
// own replica has applied that far; the leader does the same without the call.
const (
	// ReadIndexProtocol asks the leader for its read index: a request frame {} answered with
	// {"index"}, or an error ("not the leader"). Admitted nodes only (members and workers).
	ReadIndexProtocol = "/hydra/cluster/readindex/1.0.0"

	readIndexReqMax = 64 // bytes of a request frame
	// readBarrierWait bounds a read barrier: asking the leader (again, after a leader change)
	// and waiting for the replica to apply its index. A follower learns a commit with the
	// leader's next message (a trailing barrier follows each burst of writes, consensus's
	// trailer.go), so a healthy cluster takes milliseconds; past this the answer is "retry".
	readBarrierWait = 5 * time.Second
	// readIndexRetry is the pause between two asks when the one asked was not (or no longer)
	// the leader, or could not be reached.
	readIndexRetry = 100 * time.Millisecond
)

// readIndexResp answers ReadIndexProtocol.
type readIndexResp struct {
	Index uint64 `json:"index"`
}

// serveReadIndex registers ReadIndexProtocol: an admitted node asks before judging a request on
// its replica (readBarrier), a worker too (its API takes a user's cancel, which it forwards with
// the user's credential); a stream from a peer not admitted is reset unread. Each ask costs the
// leader a round of heartbeats (VerifyLeader), bounded by the stream's deadline.
func (n *Node) serveReadIndex() {
	mayAsk := func(p peer.ID) bool { return n.raft.PeerRole(p) != "" }
	p2p.ServeAllowed(n.host.Host(), ReadIndexProtocol, readIndexReqMax, readBarrierWait, n.log, mayAsk,
		func(ctx context.Context, _ peer.ID, raw json.RawMessage) (any, error) {
			var req struct{}
			if err := json.Unmarshal(raw, &req); err != nil {
				return nil, fmt.Errorf("read index request: %w", err)
			}
			idx, err := n.raft.ReadIndex(ctx)
			if err != nil {
				return nil, err
			}
			return readIndexResp{Index: idx}, nil
		})
}

// readBarrier returns once this node's replica has applied every entry the cluster had
// committed when it was called, waiting at most readBarrierWait (and no longer than ctx). It
// returns an error wrapping webui.ErrUnavailable (the API's 503 with Retry-After) when no
// leader answered in that time or the replica did not catch up: the check cannot be judged now.
func (n *Node) readBarrier(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readBarrierWait)
	defer cancel()
	idx, err := n.readIndexes.next(ctx, n.roundReadIndex)
	if err != nil {
		return err
	}
	if h := n.barrierHook.Load(); h != nil {
		(*h)(idx)
	}
	if err := n.raft.WaitForIndex(ctx, idx); err != nil {
		return fmt.Errorf("%w: this node's replica has not applied the leader's commit index %d yet: %w", webui.ErrUnavailable, idx, err)
	}
	return nil
}

// readRounds shares the leader's read index among the read barriers of one node. A barrier
// takes the index of the next round to start after it came (an index asked before could miss a
// write committed just before it came), and one round runs at a time, so a burst of barriers (a
// page polling a job deleted since, or anyone reading made-up job IDs) costs the leader one ask
// in flight, not one each. The zero value is ready.
type readRounds struct {
	mu      sync.Mutex
	running bool       // a goroutine runs rounds (run) until none waits
	waiting *readRound // the round the barriers that came since the running one began wait for
}

// readRound is one ask for the read index; done closes once idx or err is set.
type readRound struct {
	done    chan struct{}
	waiters int // barriers that took this round (under readRounds.mu until it runs)
	idx     uint64
	err     error
}

// next returns the index of a round that starts after the call, asked by ask (bounded by its
// own context, not ctx: others wait for the same round), or ctx's end, whichever is first.
func (rr *readRounds) next(ctx context.Context, ask func() (uint64, error)) (uint64, error) {
	rr.mu.Lock()
	if rr.waiting == nil {
		rr.waiting = &readRound{done: make(chan struct{})}
	}
	r := rr.waiting
	r.waiters++
	if !rr.running {
		rr.running = true
		go rr.run(ask)
	}
	rr.mu.Unlock()
	select {
	case <-r.done:
		return r.idx, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: no leader gave its commit index in time: %w", webui.ErrUnavailable, ctx.Err())
	}
}

// run asks a round for the barriers waiting, again while more came meanwhile.
func (rr *readRounds) run(ask func() (uint64, error)) {
	for {
		rr.mu.Lock()
		r := rr.waiting
		if r == nil {
			rr.running = false
			rr.mu.Unlock()
			return
		}
		rr.waiting = nil
		rr.mu.Unlock()
		r.idx, r.err = ask()
		close(r.done)
	}
}

// roundReadIndex is one round's ask (readRounds): the leader's read index within readBarrierWait,
// given up at once when this node stops.
func (n *Node) roundReadIndex() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), readBarrierWait)
	defer cancel()
	return n.readIndex(ctx)
}

// readIndex asks the leader for its read index (itself when it leads), again after a pause when
// the one asked was not the leader or did not answer, until ctx ends or this node stops.
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	t := time.NewTimer(0)
	defer t.Stop()
	var last error
	for {
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return 0, fmt.Errorf("%w: no leader gave its commit index within %s: %w", webui.ErrUnavailable, readBarrierWait, last)
		case <-n.raft.Done():
			return 0, fmt.Errorf("%w: read index: %w", webui.ErrUnavailable, consensus.ErrShutdown)
		case <-t.C:
		}
		idx, err := n.askReadIndex(ctx)
		if err == nil {
			return idx, nil
		}
		last = err
		t.Reset(readIndexRetry)
	}
}

// askReadIndex asks the leader this node knows for its read index once.
func (n *Node) askReadIndex(ctx context.Context) (uint64, error) {
	if n.raft.IsLeader() {
		return n.raft.ReadIndex(ctx)
	}
	leader, ok := n.raft.Leader()
	if !ok {
		return 0, errors.New("no leader known")
	}
	var resp readIndexResp
	if err := p2p.Call(ctx, n.host.Host(), leader, ReadIndexProtocol, struct{}{}, &resp); err != nil {
		return 0, fmt.Errorf("ask the leader %s: %w", leader, err)
	}
	return resp.Index, nil
}
