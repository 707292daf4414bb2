package consensus

import (
	"errors"
	"fmt"
	"maps"
	"sort"
)

// Rolling upgrades: every node registers the job-state protocol level of its build
// (NodeMeta.Level, replicated like its version), and an App op is proposed only when every raft
// member's build knows it (checkOp), so that no replica meets a committed op it cannot apply.
// A replica that meets one anyway (it was a member before the check, or rejoined with an older
// build) stops instead of going on without it (UnknownOp, a LocalFailure). Which op needs which
// level is the App's business (Config.OpLevel: compute's table).
//
// Only App ops are gated: a new cluster op (below OpAppFirst) would stop every older replica
// that meets it (unknownOpError), so adding one needs a level of its own here first.

// maxLevel bounds the level a node may register: a hostile or corrupt registration cannot claim
// an absurd one (any real level is far below).
const maxLevel = 255

// ErrOpUnsupported refuses an App command whose op the build of some raft member does not know
// (it runs an older hydra): proposing it would stop that member. The refusal says which member
// and which level; it holds until that member is upgraded or removed.
var ErrOpUnsupported = errors.New("not every member's hydra knows this command yet")

// UnknownOp is implemented by the local failure (LocalFailure) of a committed entry whose op
// this build does not know (this package's unknownOpError, compute.UnknownOpError): a newer
// build proposed it. The remedy is an upgrade of this node, which the node's message says.
type UnknownOp interface {
	error
	UnknownOp() byte
}

// unknownOpError is the result of a committed entry whose cluster op (below OpAppFirst) this
// build does not know: a local failure, the FSM stops rather than diverge.
type unknownOpError struct{ op byte }

func (e *unknownOpError) Error() string {
	return fmt.Sprintf("%v: %s (a newer hydra proposed it)", ErrCommandOp, Op(e.op))
}
func (e *unknownOpError) Unwrap() error      { return ErrCommandOp }
func (e *unknownOpError) LocalFailure() bool { return true }
func (e *unknownOpError) UnknownOp() byte    { return e.op }

// MemberLevel is a raft member's job-state protocol level as the cluster state records it.
type MemberLevel struct {
	ID, Name, Version string
	// Level is the registered level, or Config.UnadvertisedLevel for a member that registered
	// none (an older build, or one that has not registered yet).
	Level      int
	Advertised bool
}

// lowestLevel returns the raft member (voter or non-voter: every replica applies the log) with
// the lowest level, the lowest peer ID among equals; false when the configuration is unknown.
func (r *Raft) lowestLevel() (MemberLevel, bool) {
	conf, err := r.configuration()
	if err != nil || len(conf.Servers) == 0 {
		return MemberLevel{}, false
	}
	nodes := r.fsm.nodes()
	ms := make([]MemberLevel, 0, len(conf.Servers))
	for _, s := range conf.Servers {
		m := MemberLevel{ID: string(s.ID), Level: r.cfg.UnadvertisedLevel}
		if meta, ok := nodes[m.ID]; ok {
			m.Name, m.Version = meta.Name, meta.Version
			if meta.Level > 0 {
				m.Level, m.Advertised = meta.Level, true
			}
		}
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool {
		return ms[i].Level < ms[j].Level || ms[i].Level == ms[j].Level && ms[i].ID < ms[j].ID
	})
	return ms[0], true
}

// CheckOp tells whether an App command with op may be proposed now: nil when Config.OpLevel is
// unset, for cluster ops, and when every raft member's build knows op; otherwise an error that
// wraps ErrRejected and ErrOpUnsupported and names the member that keeps it back. The
// coordinator asks it before proposing an op of its own; Apply, ApplyGroup and the leader (for
// a forwarded command) check it again.
func (r *Raft) CheckOp(op Op) error {
	if op < OpAppFirst || r.cfg.OpLevel == nil {
		return nil
	}
	need := r.cfg.OpLevel(op)
	if need <= 0 {
		return fmt.Errorf("%w: %w: op %#02x is unknown to this node's hydra (%s)", ErrRejected, ErrOpUnsupported, byte(op), r.cfg.Self.Version)
	}
	if need <= r.cfg.UnadvertisedLevel {
		return nil // every build that may be a member knows it: no need to look
	}
	m, ok := r.lowestLevel()
	if !ok {
		return fmt.Errorf("%w: %w: op %#02x needs job-state level %d and the members are not known yet", ErrRejected, ErrOpUnsupported, byte(op), need)
	}
	if m.Level >= need {
		return nil
	}
	who := m.ID
	if m.Name != "" {
		who = fmt.Sprintf("%s (%s)", m.Name, m.ID)
	}
	if !m.Advertised {
		return fmt.Errorf("%w: %w: op %#02x needs job-state level %d; member %s runs hydra %q, which does not advertise a level (counted as %d): upgrade it",
			ErrRejected, ErrOpUnsupported, byte(op), need, who, m.Version, m.Level)
	}
	return fmt.Errorf("%w: %w: op %#02x needs job-state level %d; member %s runs hydra %q at level %d: upgrade it",
		ErrRejected, ErrOpUnsupported, byte(op), need, who, m.Version, m.Level)
}

// nodes returns the registered nodes' metadata (a copy of that map only: CheckOp needs no
// more of the state).
func (f *FSM) nodes() map[string]NodeMeta {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return maps.Clone(f.state.Nodes)
}
