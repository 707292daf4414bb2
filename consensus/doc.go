// Package consensus owns Hydra's replicated state machine: a hashicorp/raft
// node whose transport runs over libp2p streams, its log, stable and snapshot
// stores, the FSM and its versioned commands, the zero-configuration
// bootstrap/join protocol, membership (voters and non-voters, managed by
// raft-autopilot with Hydra's own Promoter) and the forwarding of writes to the
// leader.
//
// What it knows: raft, libp2p hosts and streams (through p2p.Call/p2p.Serve
// framing only), the cluster state (cluster ID, API credentials, join
// tokens, admission and revocation, settings, node metadata). What it must
// never import or know: discovery (it is told about peers through
// PeerFound), HTTP, the web UI, and jobs: ops 0x40 and above are handed
// untouched to an optional App (the job state of the compute package), so
// the FSM snapshot carries the App's state beside the cluster's.
//
// # Identity and addressing
//
// A raft ServerID and ServerAddress are both the libp2p peer ID string. The
// transport dials by peer ID; the addresses come from the host's peerstore,
// which discovery fills. A restarted node keeps its key, hence its ID, and
// rejoins as the member it was.
//
// # Bootstrap without configuration (see bootstrap.go)
//
// A node with raft state just runs. A fresh node asks every discovered peer
// whether it is in a cluster (/hydra/cluster/info/1.0.0); if one is, it asks
// it to be added (/hydra/cluster/join/1.0.0), otherwise, once no new
// candidate has appeared for a discovery window, the node with the lowest
// peer ID among itself and the answering, unclustered, voter-eligible peers
// bootstraps a cluster of itself alone; all others join it. Nodes started
// to join others (--join peers, a join token) come after the others in that
// order (founderLess), so the node the others were told to join founds the
// cluster, with its settings. A fresh node's
// answer lists the peers it knows, which the asker dials and asks too, so
// nodes that only know a common peer see each other (candidates.go).
// Because every node applies the same total order to the same candidate
// set, nodes started together end in one cluster.
//
// # Leadership
//
// Leader-only work starts after Barrier succeeded on gaining leadership and
// stops when it is lost (Nomad's establishLeadership/revokeLeadership): see
// OnLeader, the one leadership path. Autopilot runs on the leader only.
//
// # Timing
//
// Every raft timeout is a LAN default scaled by Config.Multiplier (see
// DefaultTimings): slow boards and emulated nodes raise it. The base
// timeouts are long (heartbeat and election 3s, leader lease 1.5s, commit
// 5s): cheap when idle and no elections when the machine is busy. A
// barrier entry trails every burst of writes by 50ms (trailer.go), so
// followers learn of a commit at once, not at the commit timeout. A
// killed leader is still replaced in well under a second: its closed
// connection makes the survivors confirm it is gone and start an election
// at once (fastfail.go). A silent leader (power cut, cut link, closed lid)
// is noticed by the silence watch (silence.go): unheard for 750ms, no
// answer to a probe on its own stream within 150ms, and a majority of the
// voters unhearing too, and the survivors start an election: replaced in
// about 0.8s (docs/design.md §5, docs/internals.md).
//
// # Liveness of members
//
// On the leader, autopilot asks every server for its stats each tick
// (/hydra/cluster/stats/1.0.0). Only a successful answer counts as life: a
// voter without one for DeadVoterGrace is failed and its vote goes to a
// healthy non-voter; a non-voter without one for DeadNonvoterGrace is
// removed. Connectedness is no evidence (a QUIC connection to a killed
// peer stays up ~30s). While nothing changes, the leader's autopilot
// slows to a tenth of its pace (pace.go).
//
// # Where each part lives
//
//	raft.go, config.go          New, Run, the Raft type; Config, DefaultTimings
//	transport.go, hclog.go      raft's transport over libp2p streams; its logs into slog
//	answers.go                  each follower's answers to the leader: alive, caught up
//	store.go, snapstore.go      raft's log (raft-wal), stable and snapshot stores
//	walfs.go                    raft-wal's files: a segment a full disk refused leaves none
//	diskfail.go                 a failing disk (read-only, EIO, failed reads) under the stores: reported, no panic
//	replay.go, appliedmark.go   serve what was applied before a restart, before raft runs
//	fsm.go, command.go          the FSM and the versioned commands (live and replay alike)
//	state.go, settings.go       the replicated cluster state and settings
//	restorebounds.go            a restored snapshot's settings within today's bounds
//	batch.go, forward.go        group commit; Apply, forwarded to the leader, retried
//	await.go                    every wait on a raft future (raft drops some at shutdown)
//	readindex.go                the leader's read index: reads on a follower see prior writes
//	levels.go                   rolling upgrades: ops every member's build knows
//	bootstrap.go, candidates.go the bootstrap/join decision; who founds (founderLess)
//	join.go, admission.go       the join/approval protocol; who may connect, approve, deny
//	members.go, tokencheck.go   roles, credentials, join tokens, and their bounds
//	approveagain.go             approving a revoked fingerprint admits the node again
//	evict.go                    revoked servers leave; a leader hands leadership over first
//	readmit.go                  the leader asks admitted non-servers back in
//	voters.go                   voters from the start, never an even count for long
//	autopilot.go, promoter.go   raft-autopilot with Hydra's Promoter (leader only)
//	pace.go                     autopilot's pace: brisk, calm while nothing changes
//	leader.go                   OnLeader, the one leadership path
//	silence.go, fastfail.go     a silent or killed leader replaced in about a second
//	trailer.go                  a barrier after each burst: followers learn commits at once
//	recover.go                  hydra leave and hydra recover
//	checks_on.go, checks_off.go the hydra_nochecks build tag, for a benchmark only
package consensus
