package work

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// leaderCheck: while an exchange with a remote coordinator lasts longer than this, the worker
// asks its replica every leaderCheck whether another node leads now (leaderWatch).
const leaderCheck = 250 * time.Millisecond

// errLeaderChanged ends an exchange with a coordinator that no longer leads (leaderWatch).
var errLeaderChanged = errors.New("another node leads now: exchange abandoned")

// call reaches the coordinator: in-process when this node leads.
func (w *Worker) call(ctx context.Context, leader peer.ID, req *syncRequest) (*syncResponse, error) {
	if leader == w.cfg.Self {
		return w.cfg.Local.Sync(ctx, leader, req)
	}
	var resp syncResponse
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	wctx, abandon := context.WithCancelCause(cctx)
	defer abandon(nil)
	watch := w.leaderWatch(wctx, leader, abandon)
	defer watch.Stop()
	if err := w.cfg.Call(wctx, leader, req, &resp); err != nil {
		if cause := context.Cause(wctx); errors.Is(cause, errLeaderChanged) {
			poke(w.wakeSync) // sync with the new leader now, not after syncEvery
			return nil, fmt.Errorf("sync with %s: %w", leader, cause)
		}
		return nil, err
	}
	return &resp, nil
}

// leaderWatch abandons an exchange with leader (abandon, errLeaderChanged) once this node's
// replica knows another leader, until ctx ends. A coordinator that stopped answering without
// closing its connections — a leader whose machine was suspended (its lid closed), or whose
// cable was cut — would otherwise hold the worker for callTimeout after the others elected a
// new one (in about a second: consensus/silence.go), and with it the chunks it hands in and
// the work it would take. The exchange is otherwise left alone: a coordinator may take long to
// answer (commits through raft, the wait for audits). Stop the returned timer when the
// exchange ends.
func (w *Worker) leaderWatch(ctx context.Context, leader peer.ID, abandon context.CancelCauseFunc) *time.Timer {
	// No goroutine for the everyday exchange of a few ms: one only once it lasts leaderCheck.
	return time.AfterFunc(leaderCheck, func() {
		tick := time.NewTicker(leaderCheck)
		defer tick.Stop()
		for {
			if now, ok := w.cfg.Leader(); ok && now != "" && now != leader {
				abandon(errLeaderChanged)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
}
