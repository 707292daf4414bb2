package node

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/node/owner"
)

// ownerEvery is how often the owner policy reads its sensors. A rule must
// hold for --pause-after before it pauses, so this only bounds the delay
// after that (pause latency ≈ pause-after + ownerEvery).
const ownerEvery = 200 * time.Millisecond

// ownerStatus is what the owner policy decided last, for announcements,
// status and metrics, and the machine's fitness to hold a vote, for the
// leader's promoter (consensus.Availability).
type ownerStatus struct {
	mu       sync.Mutex
	decision owner.Decision
	fitness  owner.Fitness
}

// observe feeds one reading and the decision taken on it to the fitness.
func (s *ownerStatus) observe(r owner.Readings, d owner.Decision, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fitness.Observe(r, d, now)
}

// power is the debounced power source for announcements: "battery",
// "mains" or "" (unknown).
func (s *ownerStatus) power() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fitness.Power()
}

// availability is this node's consensus.Availability: the raft stats
// handler calls it whenever the leader asks.
func (s *ownerStatus) availability() consensus.Availability {
	s.mu.Lock()
	defer s.mu.Unlock()
	return consensus.Availability{OnBattery: s.fitness.OnBattery(), Paused: s.fitness.Paused()}
}

func (s *ownerStatus) get() owner.Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.decision
}

func (s *ownerStatus) set(d owner.Decision) (changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed = d.State != s.decision.State || d.Reason != s.decision.Reason || d.Throttle != s.decision.Throttle
	s.decision = d
	return changed
}

// paused reports whether the owner policy holds compute back now.
func (n *Node) paused() bool { return n.owner.get().State == owner.StatePaused }

// runOwnerPolicy applies the owner policy to the compute process until ctx
// ends: pause (the chunk in hand stops at once and its finished prefix is
// handed in), throttle (the duty cycle is scaled down), resume.
func (n *Node) runOwnerPolicy(ctx context.Context) {
	sensors := owner.NewSensors(owner.SensorConfig{
		SysRoot: n.cfg.SysRoot, ProcRoot: n.cfg.ProcRoot, Logger: n.log,
		ExcludePIDs: func() []int {
			if h, ok := n.runner.Hello(); ok {
				return []int{h.PID}
			}
			return nil
		},
	})
	n.log.Info("owner policy", "dedicated", n.cfg.Owner.Dedicated, "sensors", strings.Join(sensors.Available(), ","),
		"pause_after", n.cfg.Owner.PauseAfter, "resume_after", n.cfg.Owner.ResumeAfter, "schedule", n.cfg.Owner.Schedule.String())
	t := time.NewTimer(ownerEvery)
	defer t.Stop()
	for {
		now := time.Now()
		r := sensors.Read(now)
		d := n.policy.Decide(r, now)
		before := n.owner.availability()
		n.owner.observe(r, d, now)
		if n.raft != nil && !n.owner.availability().SameFitness(before) {
			n.raft.AvailabilityChanged() // the leader moves votes now, not at its next stats call
		}
		if n.owner.set(d) {
			n.applyOwner(d)
		}
		// Without a chunk in hand a decision only shows in status: read less often (the
		// worker wakes this loop when a chunk arrives). A dedicated machine ignores its
		// owner: only the schedule and the temperature limits decide, and both move slowly.
		every := ownerEvery
		switch {
		case n.cfg.Owner.Dedicated:
			every = dedicatedOwnerEvery
		case n.worker == nil || !n.worker.Busy():
			every = idleOwnerEvery
		}
		procs.set(n, n.worker != nil && n.worker.Idle())
		t.Reset(every)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.ownerWake:
		}
	}
}

// applyOwner makes the compute process follow a decision. The decision is logged once it is in
// force, so that a chunk its log shows begun after a pause decision's line began while paused
// (the owner system tests hold the node to that; logged first, a stall between the line and the
// pause let a chunk begin in between).
func (n *Node) applyOwner(d owner.Decision) {
	defer n.log.Info("owner policy decision", "state", d.State, "reason", d.Reason, "throttle", d.Throttle)
	poke(n.announceWake)
	switch d.State {
	case owner.StatePaused:
		n.runner.Pause()
	default:
		limit := n.cfg.CPULimit
		if d.State == owner.StateThrottled {
			limit = max(1, int(float64(limit)*d.Throttle))
		}
		if err := n.runner.SetLimits(n.cfg.CPUs, limit); err != nil {
			n.log.Warn("apply compute limits", "err", err)
		}
		if n.runner.Paused() {
			n.runner.Resume()
		}
	}
	if n.worker != nil {
		n.worker.Wake()
	}
}
