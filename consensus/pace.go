package consensus

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
)

// Autopilot's pace.
//
// Autopilot updates its view of the servers and reconciles the voters on two
// fixed tickers, set when it is made. Every tick wakes the leader, and on a
// cluster whose membership does not change there is nothing to do
// (docs/design.md §7 "Idle cost"). So the leader runs one of two instances
// with the same delegate and promoter: the brisk one (AutopilotTick) from the
// start of its leadership and while anything about the servers changes, the
// calm one (AutopilotIdleTick) once the view has stood still for calmAfter
// brisk updates in a row: every voter healthy and alive, no change the
// promoter wants, no removal under way. What may change that view wakes the
// brisk one again at once: a configuration change (raft's PeerObservation), a
// heartbeat a server failed or answered again (a dead or returning server),
// a server's Availability that changed (noteAvail). The calm instance does
// everything the brisk one does, only less often: an event not seen costs
// time, never a decision. A quarantine (Config.NoVote) or a new voter
// preference is such a case: the calm instance acts on it within two of its
// ticks.
const calmAfter = 5

// newAutopilot makes one autopilot instance updating every tick. Its
// reconcile runs a quarter tick later than the update, so it works from the
// update of the same round.
func (r *Raft) newAutopilot(tick time.Duration) *autopilot.Autopilot {
	return autopilot.New(apRaft{Raft: r.raft, r: r}, r.del,
		autopilot.WithLogger(newHCLogger(r.log, "autopilot")),
		autopilot.WithPromoter(r.promoter),
		autopilot.WithUpdateInterval(tick),
		autopilot.WithReconcileInterval(tick+tick/4),
	)
}

// runAutopilot runs autopilot at its pace (see above) until ctx ends.
func (r *Raft) runAutopilot(ctx context.Context) {
	obs := raft.NewObserver(nil, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.PeerObservation, raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			r.apKick.kick()
		}
		return false // the filter only kicks
	})
	r.raft.RegisterObserver(obs)
	defer r.raft.DeregisterObserver(obs)
	cur := r.apBrisk
	r.apCalmNow.Store(false)
	cur.Start(ctx)
	defer func() { <-cur.Stop() }()
	switchTo := func(next *autopilot.Autopilot) {
		<-cur.Stop()
		cur = next
		r.apCalmNow.Store(cur == r.apCalm)
		cur.Start(ctx) // its first update runs here
	}
	t := time.NewTimer(r.t.AutopilotTick)
	defer t.Stop()
	steady, seen := 0, r.del.stateSeq()
	for {
		r.apKick.rearm()
		select {
		case <-ctx.Done():
			return
		case <-r.apKick.c:
			steady = 0
			if cur == r.apCalm {
				switchTo(r.apBrisk)
				seen = r.del.stateSeq()
				t.Reset(r.t.AutopilotTick)
			}
		case <-t.C: // brisk only: the calm instance is left alone until a kick
			if seq := r.del.stateSeq(); seq != seen {
				seen = seq
				if r.del.steady() {
					steady++
				} else {
					steady = 0
				}
			}
			if steady < calmAfter {
				t.Reset(r.t.AutopilotTick)
				continue
			}
			switchTo(r.apCalm)
		}
	}
}

// AutopilotCalm reports whether this leader's autopilot runs at its calm
// pace (tests, status).
func (r *Raft) AutopilotCalm() bool { return r.apCalmNow.Load() }

// stateSeq counts the states autopilot has notified (a new one each update).
func (d *delegate) stateSeq() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seq
}

// steady reports whether autopilot's latest view asks for nothing: every
// voter healthy and alive, no removal under way, and no change the promoter
// would make.
func (d *delegate) steady() bool {
	d.mu.Lock()
	st, removing := d.state, len(d.removing)
	d.mu.Unlock()
	if st == nil || st.Leader == "" || removing > 0 {
		return false
	}
	for _, s := range st.Servers {
		if s.HasVotingRights() && (!s.Health.Healthy || s.Server.NodeStatus != autopilot.NodeAlive) {
			return false
		}
	}
	ch := d.r.promoter.CalculatePromotionsAndDemotions(d.AutopilotConfig(), st)
	return len(ch.Promotions) == 0 && len(ch.Demotions) == 0 && ch.Leader == ""
}
