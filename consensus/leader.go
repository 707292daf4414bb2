package consensus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// OnLeader registers fn to run, in its own goroutine, each time this node
// establishes leadership: after raft made it leader AND a Barrier succeeded
// (every committed entry is applied, so the FSM is current), after the
// cluster state was initialized and autopilot started. ctx is cancelled when
// leadership is lost or on shutdown; the next establishment waits until fn
// returned. This is Nomad's establishLeadership/revokeLeadership: the one
// place leader-only work (the coordinator) is switched on and off. Register
// hooks right after New: raft may elect a lone voter before Run, and a hook
// added while leading starts only at the next term.
func (r *Raft) OnLeader(fn func(ctx context.Context)) {
	r.lmu.Lock()
	defer r.lmu.Unlock()
	r.hooks = append(r.hooks, fn)
}

// Leading reports whether leadership is established (see OnLeader).
func (r *Raft) Leading() bool {
	r.lmu.Lock()
	defer r.lmu.Unlock()
	return r.leading
}

func (r *Raft) setLeading(v bool) {
	r.lmu.Lock()
	defer r.lmu.Unlock()
	r.leading = v
}

// monitorLeadership consumes raft's leadership notifications: it starts
// leaderLoop on gaining leadership and cancels it (and waits for it) on
// losing it or on shutdown.
func (r *Raft) monitorLeadership() {
	defer r.wg.Done()
	type term struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	var cur *term
	revoke := func() {
		if cur != nil {
			cur.cancel()
			<-cur.done
			cur = nil
		}
	}
	defer revoke()
	for {
		select {
		case <-r.closed:
			return
		case isLeader := <-r.notifyCh:
			if !isLeader {
				r.silenceKick.kick() // watch the new leader from now on
				revoke()
				continue
			}
			r.leadStart.Store(time.Now().UnixNano())
			if cur != nil {
				select {
				case <-cur.done: // the previous loop gave up (barrier failed): restart
					revoke()
				default:
					continue
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			cur = &term{cancel: cancel, done: make(chan struct{})}
			go r.leaderLoop(ctx, cur.done)
		}
	}
}

// leaderLoop establishes leadership (Barrier, init, autopilot, hooks) and
// holds it until ctx is cancelled.
func (r *Raft) leaderLoop(ctx context.Context, done chan struct{}) {
	defer close(done)
	for {
		err := r.await(context.Background(), r.raft.Barrier(r.t.Apply))
		if err == nil {
			break
		}
		if ctx.Err() != nil || r.raft.State() != raft.Leader || errors.Is(err, raft.ErrRaftShutdown) {
			return
		}
		r.log.Warn("barrier after gaining leadership failed, retrying", "err", err)
		if !r.sleep(ctx, r.t.Poll) {
			return
		}
	}
	r.ensureInit(ctx)
	if ctx.Err() != nil {
		return
	}
	r.log.Info("leadership established", "term", r.raft.CurrentTerm())
	r.del.reset()
	apDone := make(chan struct{})
	go func() {
		defer close(apDone)
		r.runAutopilot(ctx)
	}()
	defer func() { <-apDone }()
	r.setLeading(true)
	defer r.setLeading(false)
	r.memberKick.kick() // the membership loop's leader work (reconcileMembers) starts now

	r.lmu.Lock()
	hooks := append([]func(context.Context){}, r.hooks...)
	r.lmu.Unlock()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.trailCommits(ctx)
	}()
	for _, h := range hooks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h(ctx)
		}()
	}
	<-ctx.Done()
	wg.Wait()
	r.log.Info("leadership revoked")
}

// ensureInit applies OpInit if the cluster state is not initialized yet: the
// bootstrapping node does it as its first act as leader. Should it die
// before, the next leader does it with its own settings. The token and
// cluster ID are random, generated here (never in Apply) and replicated.
func (r *Raft) ensureInit(ctx context.Context) {
	for !r.fsm.State().Initialized() {
		tok := r.cfg.NodeToken
		if tok == "" {
			tok = randomHex(32) // nobody holds it: admins are made with hydra token
		}
		in := ClusterInit{
			ClusterID:   randomHex(16),
			TokenHash:   HashSecret(tok),
			Founder:     r.id.String(),
			Admit:       r.cfg.Admit,
			Voters:      r.cfg.Voters,
			ChunkTarget: r.cfg.ChunkTarget,
			Created:     time.Now().UTC(),
			Settings:    &r.cfg.Settings,
		}
		cmd, err := NewCommand(OpInit, in)
		if err == nil {
			_, err = r.applyLocal(ctx, mustEncode(cmd))
		}
		if err == nil || errors.Is(err, ErrRejected) {
			if err == nil {
				r.log.Info("cluster initialized", "cluster_id", in.ClusterID)
			}
			return
		}
		r.log.Warn("initializing the cluster state failed, retrying", "err", err)
		if !r.sleep(ctx, r.t.Poll) {
			return
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b)
}

func mustEncode(c Command) []byte {
	b, err := EncodeCommand(c)
	if err != nil {
		panic("consensus: encoding an internal command: " + err.Error())
	}
	return b
}
