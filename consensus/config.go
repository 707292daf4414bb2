package consensus

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Protocol IDs owned by this package. They carry a version so that a newer
// node can keep talking to an older cluster (docs/design.md §6).
const (
	ProtocolRaft  protocol.ID = "/hydra/raft/1.0.0"
	ProtocolInfo  protocol.ID = "/hydra/cluster/info/1.0.0"
	ProtocolJoin  protocol.ID = "/hydra/cluster/join/1.0.0"
	ProtocolApply protocol.ID = "/hydra/cluster/apply/1.0.0"
	ProtocolStats protocol.ID = "/hydra/cluster/stats/1.0.0"
)

// VoterPref is a node's wish about holding a raft vote. Voters should be the
// stable, mains-powered machines; a laptop says never (docs/design.md §5, §7).
type VoterPref int

const (
	// VoterAuto lets the promoter decide (the default).
	VoterAuto VoterPref = iota
	// VoterPrefer asks for a vote: the promoter moves a vote to this node
	// from an auto node when the node is healthy and stable.
	VoterPrefer
	// VoterNever keeps the node a non-voter; it still replicates the state.
	// It never bootstraps a cluster while a voter-eligible peer is known.
	VoterNever
)

// String returns "auto", "prefer" or "never": the flag and API spelling.
func (v VoterPref) String() string {
	switch v {
	case VoterPrefer:
		return "prefer"
	case VoterNever:
		return "never"
	default:
		return "auto"
	}
}

// ParseVoterPref parses the --voter flag ("auto", "prefer", "never"; an empty
// string is auto).
func ParseVoterPref(s string) (VoterPref, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return VoterAuto, nil
	case "prefer":
		return VoterPrefer, nil
	case "never":
		return VoterNever, nil
	}
	return VoterAuto, fmt.Errorf("voter preference %q: want auto, prefer or never", s)
}

// MarshalText makes VoterPref readable in JSON (NodeMeta, info answers).
func (v VoterPref) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText is the inverse of MarshalText; unknown words are an error.
func (v *VoterPref) UnmarshalText(b []byte) error {
	p, err := ParseVoterPref(string(b))
	if err != nil {
		return err
	}
	*v = p
	return nil
}

// App is the optional owner of ops 0x40 and above (the job state of the
// compute package). The FSM hands such commands to it untouched, and its
// snapshot travels inside the FSM snapshot, after the cluster state.
//
// All three methods are called on raft's FSM goroutine, never concurrently
// with each other. Apply must be deterministic: it may only depend on the
// payload, the log index and its own state (never the clock). Its return
// value is the command's result: an error value is reported to the proposer
// as a rejection (ErrRejected); any other value is JSON-encoded for it.
// Snapshot writes a consistent copy of the state (buffered, then persisted;
// an App that implements SnapshotCapturer is streamed instead). Restore replaces the whole state; it receives an empty reader
// when the snapshot holds no App section (reset to empty).
type App interface {
	Apply(op byte, payload []byte, index uint64) any
	Snapshot(w io.Writer) error
	Restore(r io.Reader) error
}

// AppSnapshot is an App's state captured at one moment, written out later
// by raft's snapshot goroutine while Apply goes on (compute.Snapshotter is
// the same type).
// Release must be idempotent.
type AppSnapshot = interface {
	io.WriterTo
	Release()
}

// SnapshotCapturer is implemented by an App whose snapshot is streamed:
// CaptureSnapshot runs on the FSM goroutine and must be cheap (a copy of
// small metadata, a read transaction); the returned snapshot is written to
// raft's snapshot sink afterwards, so the App's state (gigabytes of results)
// never sits in memory. An App without it is buffered by App.Snapshot.
type SnapshotCapturer interface {
	CaptureSnapshot() (AppSnapshot, error)
}

// Config configures a Raft node. Host, Dir and Cluster are required.
type Config struct {
	// Host is the libp2p host; its peer ID is the raft server ID.
	Host host.Host
	// NoVote, if set, names servers that must not hold a vote whatever
	// their preference (a node quarantined by the audits): the promoter
	// treats them as voter preference never. Called from autopilot's
	// goroutine; it must be cheap and safe for concurrent use.
	NoVote func(id string) bool
	// Now, if set, is the cluster's clock as this node knows it (node/clock.go): the time the
	// membership changes it proposes carry, and the time a join token's expiry is checked at
	// on the leader, so that a node whose own clock is off by hours or decades neither refuses
	// a valid token nor accepts an expired one. Nil: this node's clock.
	Now func() time.Time
	// Dir is DATA/raft: the raft log (wal/), the stable store (raft.db) and snapshots.
	Dir string
	// Cluster is the cluster name. Peers answering with another name are
	// ignored, and joins from them are refused.
	Cluster string
	// Multiplier scales every raft and membership timeout; 0 or 1 is the LAN
	// default. Slow boards (or emulated nodes) raise it.
	Multiplier float64
	// VoterPref is this node's voter preference (kept in its NodeMeta).
	VoterPref VoterPref
	// Voters is the voter count asked for when this node bootstraps the
	// cluster (0: 3, and 5 once the cluster has ≥ 7 servers). It is kept in
	// the replicated ClusterState; later nodes' values are ignored.
	Voters int
	// ChunkTarget is the cluster's target chunk duration, taken at bootstrap
	// (default 2s) and kept in ClusterState.
	ChunkTarget time.Duration
	// Settings seed the cluster's replicated Settings when this node
	// bootstraps it (--retention, --disk-cap, --max-jobs); zero: the
	// defaults. Later nodes' values are ignored: `hydra config set` changes
	// them.
	Settings Settings
	// Self describes this node; it is registered in the replicated state on
	// start/join when it differs from what is there. ID and VoterPref are
	// filled in by New.
	Self NodeMeta
	// App owns ops 0x40+ and their snapshot section; nil refuses those ops.
	App App
	// Refusals are the errors the App's refusals wrap that a proposer tells apart
	// (compute.ErrNoSuchJob, ErrJobFinished...). errors.Is holds for them on the error Apply
	// returns whether the App refused on this node or on the leader it forwarded to, whose
	// refusal comes back as text and the list of these errors it wrapped, matched by their
	// text (so each must have its own). ErrForbidden, ErrSettingsChanged and ErrOpUnsupported
	// are always known.
	Refusals []error
	// OpLevel, if set, gates App ops on the members' builds: it returns the job-state protocol
	// level a build needs to apply op (compute.OpLevel; 0: this build does not know op), and
	// an op is proposed only when every raft member registered at least that level
	// (NodeMeta.Level; see CheckOp). Nil: no gate.
	OpLevel func(op Op) int
	// UnadvertisedLevel is the level counted for a member that registered none (a build older
	// than levels): compute.LevelUnadvertised. Ops at or below it are never held back.
	UnadvertisedLevel int
	// AdminOps are the App ops only an admin may propose (cancel, delete,
	// trust reset): the leader checks the admin credential forwarded with
	// them (ApplyAs), whichever member proposes. Other App ops need a
	// member (not a worker).
	AdminOps []Op
	// CheckForwarded, if set, is the leader's check of an App command another member forwarded,
	// before it is proposed: what the App's replicas trust the log for without checking it
	// themselves (the node checks chunk results against their commitments). An error refuses
	// the command. This node's own proposals are not passed to it.
	CheckForwarded func(op Op, payload []byte) error
	// Admit is the admission mode this node writes when it founds the
	// cluster: AdmitApproval ("") or AdmitLAN (hydra node --admit lan).
	Admit string
	// NodeToken is this node's own admin API credential: registered
	// (hashed) once the node is an admitted member, never before, so the
	// node may then write it to DATA/api-token. The founder's is the
	// cluster's first credential.
	NodeToken string
	// JoinToken, if set, is a join token (hydra token create): the node
	// joins with it, with no approval, and only a cluster whose
	// fingerprint the token carries.
	JoinToken string
	// JoinPeers are the peers this node was told to join (hydra node
	// --join): such a node founds a cluster only once one of them has
	// answered, never alone while they are unreachable. Discovery dials
	// them; consensus only waits for them.
	JoinPeers []peer.ID
	// OnRefuse, if set, is called with every peer whose key gets revoked
	// and that Access refuses at that moment (the node closes its
	// connections: p2p.Host.Refuse); a revocation replayed from the history
	// while an admission answer stands over it closes nothing.
	OnRefuse func(peer.ID)
	// Protect, if set, is called with every raft peer's ID so the connection
	// manager never trims those connections (node wires it to p2p's Protect).
	Protect func(peer.ID)
	// DeadVoterGrace is how long a voter may go without answering the
	// leader's stats call (/hydra/cluster/stats/1.0.0, every autopilot tick)
	// before autopilot removes it and hands its vote to a healthy non-voter
	// (default 10s × Multiplier). Evidence of life counts, not an open
	// connection: a QUIC connection to a killed peer, or a TCP one over a
	// pulled cable, stays "connected" for ~30s.
	DeadVoterGrace time.Duration
	// DeadNonvoterGrace is how long an unreachable non-voter stays in the
	// configuration before it is removed (default 10 min): a laptop that
	// sleeps over lunch comes back as the member it was.
	DeadNonvoterGrace time.Duration
	// DiscoveryWindow is how long a fresh node collects peers before the
	// founder bootstraps (founderLess; default 1.5s × Multiplier).
	DiscoveryWindow time.Duration
	// Availability, if set, reports this node's current fitness to hold a
	// vote (on battery, how often paused). The leader asks every server for
	// it with each autopilot stats call, so it is soft state: fresh every
	// tick, never written to the raft log. Nil reports a fit node.
	Availability func() Availability
	// OnFatal, if set, is called (once, in its own goroutine) when a
	// committed entry could not be applied for a local reason (a full or
	// failing disk: see LocalFailure). The FSM applies nothing more; the
	// node should stop with the message and be restarted once the cause is
	// fixed (it replays its log then). Nil only logs.
	OnFatal func(*ApplyFailure)
	// OnDiskFailure, if set, is called (once, in its own goroutine) when
	// a write to raft's log or stable store fails because the file system
	// turned read-only or fails I/O (diskfail.go): unlike a full disk,
	// that does not pass by waiting. The node should stop with the
	// message. Nil only logs.
	OnDiskFailure func(*DiskFailure)
	// Logger receives the package's and raft's logs (slog; never the global).
	Logger *slog.Logger

	// trailingLogs, if set, replaces the 4096 log entries raft keeps after a snapshot (tests
	// that need a log trimmed past an older snapshot).
	trailingLogs uint64
	// walSegmentSize, if set, replaces the 16 MiB of a raft log segment (tests: raft-wal drops
	// only whole segments, so with the usual size a test's log is never trimmed and a leader
	// never needs to send its snapshot).
	walSegmentSize int
	// beforeRaft, if set, runs in New once the transport exists and the log is replayed, right
	// before raft starts (tests: a raft stream arriving while a node starts).
	beforeRaft func(host.Host)
	// timings, if set, adjusts the timings the multiplier gives (tests: a long MemberIdle tells
	// an event that woke the membership loop from its idle timer; long Commit and Trail, a raft
	// that sends no AppendEntries of its own accord).
	timings func(*Timings)
}

// Availability is what a node tells the leader about how well it can hold
// a raft vote, beyond being alive. A laptop that runs from its battery may
// sleep or die at any moment, and one whose owner keeps it busy is likely
// to be closed or suspended: with --voter auto the promoter moves votes to
// mains-powered, rarely-paused machines (see Promoter).
type Availability struct {
	// OnBattery is true while the machine runs from its battery (debounced
	// by the node, so a loose plug does not move votes back and forth).
	OnBattery bool `json:"on_battery,omitempty"`
	// Paused is the share of recent time (about the last hour) that the
	// owner policy held compute back, 0–1.
	Paused float64 `json:"paused,omitempty"`
}

// valid reports whether a is within its documented ranges (it arrives from
// the network).
func (a Availability) valid() bool { return a.Paused >= 0 && a.Paused <= 1 }

// SameFitness reports whether a and b weigh the same for the promoter: both
// on battery or both not, both rarely paused (RarelyPaused) or both not. The
// paused share moves a little all the time; only a change of fitness is news
// for the leader (Raft.AvailabilityChanged).
func (a Availability) SameFitness(b Availability) bool {
	return a.OnBattery == b.OnBattery && (a.Paused < RarelyPaused) == (b.Paused < RarelyPaused)
}

// Timings are the raft and membership timeouts derived from a multiplier.
type Timings struct {
	Heartbeat         time.Duration // follower: time without leader contact before an election
	Election          time.Duration // candidate: time without winning before a new election
	LeaderLease       time.Duration // leader: time without quorum contact before stepping down
	Commit            time.Duration // leader: raft's CommitTimeout (an AppendEntries per follower every Commit–2·Commit)
	Trail             time.Duration // leader: applied index still this long: a barrier tells followers the commit (trailer.go)
	FailoverStagger   time.Duration // fast failover: delay between surviving voters' elections, by rank
	Redial            time.Duration // fast failover: deadline of the redial of a leader whose connection closed
	Silence           time.Duration // silence watch: leader unheard this long is probed (silence.go)
	SilenceProbe      time.Duration // silence watch: deadline of the probe of a silent leader
	SilenceAgree      time.Duration // silence watch: another voter agrees when unheard this long (> the heartbeat gap H/5)
	SilencePoll       time.Duration // silence watch: the shortest wait between two reads of the last contact
	Poll              time.Duration // bootstrap/join loop period (and while no leader is known)
	MemberPoll        time.Duration // membership loop: shortest period of a member that knows a leader
	MemberIdle        time.Duration // membership loop: longest sleep of a settled member without an event (bootstrap.go Run)
	Discovery         time.Duration // discovery window before a fresh cluster is bootstrapped
	PeerDrop          time.Duration // silent peers drop out of the bootstrap candidate set after this
	RPC               time.Duration // timeout of one info/join call
	Apply             time.Duration // timeout of one raft.Apply on the leader
	AutopilotTick     time.Duration // autopilot state update and reconcile interval while the servers change (pace.go)
	AutopilotIdleTick time.Duration // the same once they stood still
	LastContactMax    time.Duration // autopilot: a server older than this is unhealthy
	Stabilization     time.Duration // autopilot: healthy this long before a promotion
}

// DefaultTimings returns the timeouts for multiplier m (≤ 0 means 1).
//
// The LAN defaults trade failover speed against idle cost and spurious
// elections, and leave failover speed to a separate path.
//
// Idle cost: the leader sends every follower a heartbeat every H/10 to H/5
// and, with nothing to send, an AppendEntries every Commit to 2·Commit
// (raft's replication loop wakes on CommitTimeout); each is a message over
// an encrypted libp2p stream, and every message wakes both Go runtimes, so
// both set the idle CPU of every node. With H = 3s and Commit = 5s that is
// about 2.4 small messages a second per follower (it was ~90 at H = 300ms,
// Commit = 10ms: 2–3% of a core on a follower, 7–10% on the leader of 5
// nodes; ~9 at H = 1s, Commit = 250ms: 1.2% on the leader of 3, 0.5% now,
// measured with scripts/bench-idle; docs/performance.md, "Idle cost", has the figures). Commit no
// longer bounds how late a follower learns that an entry is committed: the
// leader trails each burst of writes with a barrier entry after Trail
// (trailer.go), and a forwarded write, whose proposer waits to apply it
// (read-your-writes), is followed by one at once (handleApply). Commit only
// paces raft's retries to a follower whose AppendEntries failed.
//
// Spurious elections: hashicorp/raft fires the follower timer at a random
// point in [H, 2H) and only then checks whether the leader was heard within
// H; a leader that cannot reach a quorum for the lease L steps down. Under
// CPU saturation a Go process at normal priority sees scheduling gaps of
// 50ms and more (docs/design.md §7), and a leader whose lease was 200ms was
// measured to miss contact for 230–260ms and step down. Hence long timeouts:
// H = E = 3s, L = 1.5s (raft requires L ≤ H ≤ E): a follower tolerates
// stalls of seconds, the leader ~900ms on top of the heartbeat interval
// (300–600ms; a 500ms lease, with heartbeats every 100–200ms, still let a
// stalled leader step down: 15 elections in 5 minutes with 8 busy loops on 2
// cores and a 5-node cluster on them).
//
// Failover speed does not come from these timeouts (raft alone replaces a
// silent leader after 2H to 3H with pre-vote: 2.2–2.3 s measured at H = 1s),
// but from two detectors beside them. The silence watch (silence.go) probes
// a leader unheard for Silence (750 ms: more than the longest heartbeat gap,
// H/5) on a stream of its own within SilenceProbe (150 ms), asks the other
// voters meanwhile and, without an answer from the leader and with a
// majority that has not heard it for SilenceAgree (650 ms) either, starts an
// election at once: a cut cable, a closed lid or a power cut is
// replaced in ~0.8 s (worst ~1 s). The closed connection of a killed leader
// (fastfail.go) is faster still where it is seen: its kernel closes its
// sockets, the survivors confirm by a redial (Redial) that it is gone, and the first
// surviving voter in peer-ID order starts an election immediately as in a
// leadership transfer (others follow at FailoverStagger steps if no leader
// appears). docs/performance.md, "Failover", has the measurements.
func DefaultTimings(m float64) Timings {
	if m <= 0 {
		m = 1
	}
	d := func(base time.Duration) time.Duration { return time.Duration(float64(base) * m) }
	return Timings{
		Heartbeat:         d(3 * time.Second),
		Election:          d(3 * time.Second),
		LeaderLease:       d(1500 * time.Millisecond),
		Commit:            d(5 * time.Second),
		Trail:             d(50 * time.Millisecond),
		FailoverStagger:   d(250 * time.Millisecond),
		Redial:            d(500 * time.Millisecond),
		Silence:           d(750 * time.Millisecond),
		SilenceProbe:      d(150 * time.Millisecond),
		SilenceAgree:      d(650 * time.Millisecond),
		SilencePoll:       d(50 * time.Millisecond),
		Poll:              d(150 * time.Millisecond),
		MemberPoll:        d(1 * time.Second),
		MemberIdle:        d(15 * time.Second),
		Discovery:         d(1500 * time.Millisecond),
		PeerDrop:          d(3 * time.Second),
		RPC:               d(2 * time.Second),
		Apply:             d(5 * time.Second),
		AutopilotTick:     d(1 * time.Second),
		AutopilotIdleTick: d(10 * time.Second),
		LastContactMax:    d(2 * time.Second),
		Stabilization:     d(2 * time.Second),
	}
}

// raftConfig builds the hashicorp/raft configuration for this node.
func raftConfig(id peer.ID, t Timings, notify chan<- bool, log *slog.Logger) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(id.String())
	c.HeartbeatTimeout = t.Heartbeat
	c.ElectionTimeout = t.Election
	c.LeaderLeaseTimeout = t.LeaderLease
	c.CommitTimeout = t.Commit
	// Pre-vote (on by default; the transport carries it): a node that lost
	// its leader alone, a false alarm of the silence watch or an isolated
	// node coming back never moves the term nor unseats a working leader.
	c.PreVoteDisabled = false
	c.ShutdownOnRemove = false // a removed node keeps running and may rejoin (Run)
	c.SnapshotThreshold = 4096
	c.TrailingLogs = 4096
	c.SnapshotInterval = 30 * time.Second
	c.NotifyCh = notify
	c.NoLegacyTelemetry = true
	c.Logger = newHCLogger(log.With("component", "raft"), "raft")
	return c
}

// now is the cluster's time as this node knows it (Config.Now), in UTC.
func (r *Raft) now() time.Time {
	if r.cfg.Now != nil {
		return r.cfg.Now().UTC()
	}
	return time.Now().UTC()
}
