package compute

import "fmt"

// Job-state protocol levels. A build's level says which job-state ops its replicas apply: it is
// raised whenever an op is added or an op's meaning changes, and opLevels, the one place that
// knows which op needs which level, gets the new op. Every node advertises its build's level
// (consensus.NodeMeta.Level, replicated), and an op is proposed only once every raft member's
// build knows it (consensus.Config.OpLevel): during a rolling upgrade, a replica of an older
// build never meets an op it cannot apply, and none of them diverges.
const (
	// Level is this build's job-state protocol level: the highest of opLevels.
	Level = 2

	// LevelUnadvertised is the level counted for a member that advertises none (a build older
	// than levels, NodeMeta.Level 0). It is the level of the oldest build that may still share
	// a cluster with this one: the builds since the group commit (consensus.OpBatch, which every
	// leader writes under load, and jobs with chunk_units, both landed on 2026-12-03) know every
	// op but AuditWaive, and so do all builds up to AuditWaive's (2026-12-05), which does not
	// advertise a level either. A build older than the group commit does not know OpBatch and
	// cannot be a replica of this one's cluster at all, so counting it lower would gate nothing
	// it could apply. An unadvertised member therefore blocks AuditWaive and nothing else.
	LevelUnadvertised = 1
)

// opLevels maps every job-state op to the lowest level whose builds apply it. Add a new op here
// with Level+1, and raise Level.
var opLevels = map[byte]int{
	OpSubmit: 1, OpResults: 1, OpStarted: 1, OpCancel: 1, OpDelete: 1, OpEvict: 1, OpFail: 1, OpFault: 1,
	OpChallenge: 1, OpAudit: 1, OpTrustReset: 1, OpAuditPolicy: 1,
	OpAuditWaive: 2, // 7c66eb0, 2026-12-05
}

// OpLevel returns the lowest job-state protocol level whose builds apply op, or 0 for an op this
// build does not know.
func OpLevel(op byte) int { return opLevels[op] }

// UnknownOpError is the result of applying a committed command whose op this build does not
// know: a newer build proposed it (or a cluster of newer builds did, before this node joined).
// Applying nothing and going on would make this replica differ from the others for good, so it
// is a local failure (consensus.LocalFailure): the node stops applying the log and stops, and
// after an upgrade it applies the entry from its log. A known op with a bad payload is not this
// error: it is refused alike by every replica.
type UnknownOpError struct {
	Op byte
}

func (e *UnknownOpError) Error() string {
	return fmt.Sprintf("job-state op %#02x: %v (this build's job-state level is %d)", e.Op, ErrUnknownOp, Level)
}

// Unwrap makes errors.Is(err, ErrUnknownOp) hold.
func (e *UnknownOpError) Unwrap() error { return ErrUnknownOp }

// LocalFailure tells consensus to stop applying the log rather than diverge.
func (e *UnknownOpError) LocalFailure() bool { return true }

// UnknownOp returns the op (consensus.UnknownOp: the node's message names it).
func (e *UnknownOpError) UnknownOp() byte { return e.Op }
