package consensus

import (
	"context"
	"io"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// The commit trailer.
//
// hashicorp/raft tells a follower how far the log is committed only inside
// an AppendEntries that carries entries or follows a CommitTimeout; its
// heartbeats do not carry it. So when writes stop, followers learn that the
// last of them committed from the next AppendEntries, which raft sends every
// CommitTimeout to 2·CommitTimeout per follower whether or not anything
// changed. On an idle cluster that is a message to every follower several
// times a second for nothing (docs/internals.md, "Idle cost").
//
// So Commit is long (DefaultTimings: it now only paces raft's retries to a
// follower whose last AppendEntries failed), and the leader trails every
// burst of writes with a barrier entry once the applied index has stood
// still for Trail: the barrier's AppendEntries carries the commit index of
// everything before it, so a follower learns of a write within Trail and a
// round trip. The barrier itself is not applied to the FSM, so it is not
// trailed in turn, and while writes flow without a pause of Trail nothing is
// added: their own AppendEntries carry the commit index.
//
// A follower that answers heartbeats again after failing them (it restarted,
// or a partition healed) is also sent a barrier, so that it catches up at
// once rather than at the next CommitTimeout.

// appliedFSM is the FSM as raft sees it: every applied entry kicks the
// trailer and the recorder of the applied index (replay.go), which sleep
// while nothing is applied.
type appliedFSM struct {
	*FSM
	kicks []*kicker
	mark  *appliedMark // written after every entry (appliedmark.go)
}

// Apply implements raft.FSM.
func (f appliedFSM) Apply(l *raft.Log) any {
	out := f.FSM.Apply(l)
	f.mark.write(f.index.Load())
	for _, k := range f.kicks {
		k.kick()
	}
	return out
}

// Restore implements raft.FSM: raft restores only the snapshots a leader sends (the one on disk
// at start is the replay's, replay.go), and one whose App section failed stops the FSM
// (installFailed).
func (f appliedFSM) Restore(rc io.ReadCloser) error {
	err := f.FSM.Restore(rc)
	if err != nil {
		f.installFailed(err)
	}
	return err
}

// kicker wakes a loop that sleeps until something happened, at the cost of
// an atomic load per event while it is armed.
type kicker struct {
	armed atomic.Bool   // kicked, and the loop has not rearmed since
	c     chan struct{} // capacity 1: the first kick since the loop rearmed
}

func newKicker() *kicker { return &kicker{c: make(chan struct{}, 1)} }

// kick notes an event: the first since rearm wakes the loop.
func (k *kicker) kick() {
	if k.armed.Load() || !k.armed.CompareAndSwap(false, true) {
		return
	}
	select {
	case k.c <- struct{}{}:
	default:
	}
}

// rearm makes the next kick wake the loop again; the loop calls it before it
// looks at the state the events change, so none goes unseen.
func (k *kicker) rearm() { k.armed.Store(false) }

// trail issues a barrier, on the leader, once the FSM's applied index stood
// still for delay after a kick, until ctx ends. On a follower nothing runs
// it, so its kicker stays armed after the first entry and costs a load.
func trail(ctx context.Context, k *kicker, delay time.Duration, applied func() uint64, barrier func()) {
	timer := time.NewTimer(delay)
	timer.Stop()
	defer timer.Stop()
	var at uint64 // the applied index when the timer was set
	for {
		select {
		case <-ctx.Done():
			return
		case <-k.c:
			at = applied()
			timer.Reset(delay)
		case <-timer.C:
			if now := applied(); now != at { // still writing: their AppendEntries carry the commit
				at = now
				timer.Reset(delay)
				continue
			}
			k.rearm() // before the barrier: an entry applied from here on kicks again
			barrier()
		}
	}
}

// trailCommits runs the trailer while this node leads (leaderLoop) and
// sends a barrier when a follower answers heartbeats again.
func (r *Raft) trailCommits(ctx context.Context) {
	barrier := func() { r.raft.Barrier(r.t.Apply) } // not waited for: the entry is what counts
	resumed := make(chan raft.Observation, 1)
	obs := raft.NewObserver(resumed, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.ResumedHeartbeatObservation)
		return ok
	})
	r.raft.RegisterObserver(obs)
	defer r.raft.DeregisterObserver(obs)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-resumed:
				barrier()
			}
		}
	}()
	// Entries of earlier terms this leader commits may have left the kicker
	// armed (it was a follower): trail them too.
	r.trailKick.armed.Store(true)
	select {
	case r.trailKick.c <- struct{}{}:
	default:
	}
	trail(ctx, r.trailKick, r.t.Trail, r.fsm.index.Load, barrier)
}
