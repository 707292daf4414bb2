package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/hashicorp/raft"
	"github.com/hydra-compute/hydra/p2p"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Leave removes this node from the cluster for good (hydra leave): a leader
// first hands leadership over, then the leader removes this node from the
// configuration and forgets its NodeMeta; then the node shuts down and
// deletes its raft state, so a later start is a fresh node that joins anew.
// The last server of a cluster cannot leave it (there is nobody to hand the
// state to), nor can its only voter (nobody to hand leadership to), nor a
// voter whose removal would leave fewer reachable voters than a quorum of
// those that remain (quorumAfterRemoval): it gets ErrConflict and keeps
// running.
func (r *Raft) Leave(ctx context.Context) error {
	if r.isClosed() {
		return ErrShutdown
	}
	servers := r.Servers()
	if len(servers) == 0 { // never joined: nothing to leave
		if err := r.Shutdown(false); err != nil {
			r.log.Warn("shutdown before leave", "err", err)
		}
		return removeState(r.cfg.Dir)
	}
	if len(servers) == 1 && servers[0].ID == r.id {
		return kinded(ErrConflict, errors.New("this node is the only server of the cluster"))
	}
	// The only voter (its non-voters beside it) has nobody to hand leadership to,
	// and without it they could never elect a leader: the cluster's state refuses
	// it, as it refuses evicting the only voter (Evict).
	if r.votes(r.id) && len(r.successors(r.id)) == 0 {
		return kinded(ErrConflict, errors.New("this node is the only voter of the cluster: its non-voters could not elect a leader without it"))
	}
	if r.raft.State() == raft.Leader {
		// Checked before the hand-over too: the next leader would refuse it (leaveWaits) with
		// leadership moved for nothing.
		if err := r.quorumAfterRemoval(r.id); err != nil {
			return err
		}
		if err := r.handOverForLeave(); err != nil {
			return fmt.Errorf("hand leadership over: %w", err)
		}
	}
	for {
		err := r.askLeave(ctx)
		if err == nil {
			break
		}
		if errors.Is(err, ErrConflict) { // the leader refuses it: it would leave no quorum
			return err
		}
		r.log.Debug("leave request failed, retrying", "err", err)
		if !r.sleep(ctx, r.t.Poll) {
			return fmt.Errorf("ask the leader to remove this node: %w (last error: %v)", ctx.Err(), err)
		}
	}
	if err := r.Shutdown(false); err != nil {
		r.log.Warn("shutdown after leave", "err", err)
	}
	if err := removeState(r.cfg.Dir); err != nil {
		return fmt.Errorf("leave: delete raft state: %w", err)
	}
	return nil
}

// askLeave asks the current leader (never ourselves) to remove us.
func (r *Raft) askLeave(ctx context.Context) error {
	leader, ok := r.Leader()
	if !ok || leader == r.id {
		return ErrNotLeader
	}
	_, err := r.requestMembership(ctx, leader, true)
	if re, ok := errors.AsType[*p2p.RemoteError](err); ok && strings.Contains(re.Msg, quorumRefused) {
		return kinded(ErrConflict, errors.New(re.Msg)) // as the leader's own Leave says it
	}
	return err
}

// Recover rewrites the raft configuration in dir (the node is stopped) so
// that only voters vote: use it when a majority of voters is lost for good
// (hydra recover). Run it on every survivor with the same voter list (the
// survivors' peer IDs), then start them: they elect a leader among
// themselves with the state they had, and other nodes join them as usual.
// A list of one survivor makes it the sole voter and then the leader.
// Entries not yet committed when the cluster died may be committed by the
// recovery. Voters are peer ID strings.
//
// Recover is RecoverWithApp without an App: use it only on nodes that run
// no App (see RecoverWithApp).
func Recover(dir string, voters []string) error {
	return RecoverWithApp(dir, voters, nil)
}

// RecoverWithApp is Recover for a node that runs an App. raft.RecoverCluster
// replays the log into an FSM to take a fresh snapshot, so app must be a
// fresh instance of the node's App (discarded afterwards): without it the
// App's state would be missing from the recovered snapshot.
func RecoverWithApp(dir string, voterIDs []string, app App) error {
	if len(voterIDs) == 0 {
		return errors.New("recover: at least one voter is needed")
	}
	voters := make([]peer.ID, 0, len(voterIDs))
	for _, s := range voterIDs {
		p, err := peer.Decode(s)
		if err != nil {
			return fmt.Errorf("recover: voter %q is not a peer ID: %w", s, err)
		}
		voters = append(voters, p)
	}
	log := slog.New(slog.DiscardHandler)
	st, err := openStores(dir, log)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	defer st.close()
	has, err := st.hasState()
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	if !has {
		return fmt.Errorf("recover: no raft state in %s", dir)
	}
	var conf raft.Configuration
	seen := map[peer.ID]bool{}
	for _, v := range voters {
		if seen[v] {
			continue
		}
		seen[v] = true
		conf.Servers = append(conf.Servers, raft.Server{
			Suffrage: raft.Voter, ID: raft.ServerID(v.String()), Address: raft.ServerAddress(v.String()),
		})
	}
	rc := raftConfig(voters[0], DefaultTimings(1), make(chan bool, 1), log)
	rc.NotifyCh = nil
	_, trans := raft.NewInmemTransport(raft.ServerAddress(voters[0].String()))
	defer trans.Close()
	fsm := NewFSM(app)
	fsm.log = log
	if err := raft.RecoverCluster(rc, fsm, st.logs, st.bolt, st.snaps, trans, conf); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	return nil
}
