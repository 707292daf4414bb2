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
// node can keep talking to an older cluster (DESIGN.md §6).
const (
	ProtocolRaft  protocol.ID = "/hydra/raft/1.0.0"
	ProtocolInfo  protocol.ID = "/hydra/cluster/info/1.0.0"
	ProtocolJoin  protocol.ID = "/hydra/cluster/join/1.0.0"
	ProtocolApply protocol.ID = "/hydra/cluster/apply/1.0.0"
	ProtocolStats protocol.ID = "/hydra/cluster/stats/1.0.0"
)

// VoterPref is a node's wish about holding a raft vote. Voters should be the
// stable, mains-powered machines; a laptop says never (DESIGN.md §5, §7).
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
// Snapshot writes a consistent copy of the state (it is buffered, then
// persisted). Restore replaces the whole state; it receives an empty reader
// when the snapshot holds no App section (reset to empty).
type App interface {
	Apply(op byte, payload []byte, index uint64) any
	Snapshot(w io.Writer) error
	Restore(r io.Reader) error
}

// Config configures a Raft node. Host, Dir and Cluster are required.
type Config struct {
	// Host is the libp2p host; its peer ID is the raft server ID.
	Host host.Host
	// Dir holds raft.db (log and stable store) and snapshots: DATA/raft.
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
	// Self describes this node; it is registered in the replicated state on
	// start/join when it differs from what is there. ID and VoterPref are
	// filled in by New.
	Self NodeMeta
	// App owns ops 0x40+ and their snapshot section; nil refuses those ops.
	App App
	// Protect, if set, is called with every raft peer's ID so the connection
	// manager never trims those connections (node wires it to p2p's Protect).
	Protect func(peer.ID)
	// DeadVoterGrace is how long a voter may be unreachable before autopilot
	// hands its vote to a healthy non-voter (default 10s × Multiplier).
	DeadVoterGrace time.Duration
	// DeadNonvoterGrace is how long an unreachable non-voter stays in the
	// configuration before it is removed (default 10 min): a laptop that
	// sleeps over lunch comes back as the member it was.
	DeadNonvoterGrace time.Duration
	// DiscoveryWindow is how long a fresh node collects peers before the
	// lowest eligible one bootstraps (default 1.5s × Multiplier).
	DiscoveryWindow time.Duration
	// Logger receives the package's and raft's logs (slog; never the global).
	Logger *slog.Logger
}

// Timings are the raft and membership timeouts derived from a multiplier.
type Timings struct {
	Heartbeat      time.Duration // follower: time without leader contact before an election
	Election       time.Duration // candidate: time without winning before a new election
	LeaderLease    time.Duration // leader: time without quorum contact before stepping down
	Commit         time.Duration // leader: idle time before an AppendEntries carries the commit index
	Poll           time.Duration // bootstrap/join loop period
	Discovery      time.Duration // discovery window before a fresh cluster is bootstrapped
	PeerDrop       time.Duration // silent peers drop out of the bootstrap candidate set after this
	RPC            time.Duration // timeout of one info/join/stats call
	Apply          time.Duration // timeout of one raft.Apply on the leader
	AutopilotTick  time.Duration // autopilot state update and reconcile interval
	LastContactMax time.Duration // autopilot: a server older than this is unhealthy
	Stabilization  time.Duration // autopilot: healthy this long before a promotion
}

// DefaultTimings returns the timeouts for multiplier m (≤ 0 means 1).
//
// The LAN defaults trade failover speed against spurious elections.
// hashicorp/raft fires the follower timer at a random point in [H, 2H) and
// only then checks whether the leader was heard within H; a vote is refused
// by any voter that still believes in a leader, so after a leader dies an
// election completes once a majority of the surviving voters has timed out:
// about 2H on average, 3H at worst (measured: median 0.46s, worst 0.59s
// at H = 200ms). Any stall of a voter's process longer than about H (minus
// the heartbeat interval H/10) starts an election, and a leader that cannot
// reach a quorum for the lease L steps down, so both must stay well above
// the scheduling gaps of a busy machine: a Go process at normal priority
// whose cores are all busy with other programs sees gaps up to ~55ms
// (DESIGN.md §7). Hence H = E = 300ms and L = 200ms (L ≤ H is required).
//
// A killed leader is replaced faster than 2H: its kernel closes its
// connections, and followers that see their leader's connection close drop
// their timeouts to L until a new leader is known (fastfail.go), so
// failover after SIGKILL takes about L to 2L. A silent death (power cut)
// takes the full 2H–3H.
func DefaultTimings(m float64) Timings {
	if m <= 0 {
		m = 1
	}
	d := func(base time.Duration) time.Duration { return time.Duration(float64(base) * m) }
	return Timings{
		Heartbeat:      d(300 * time.Millisecond),
		Election:       d(300 * time.Millisecond),
		LeaderLease:    d(200 * time.Millisecond),
		Commit:         d(10 * time.Millisecond),
		Poll:           d(150 * time.Millisecond),
		Discovery:      d(1500 * time.Millisecond),
		PeerDrop:       d(3 * time.Second),
		RPC:            d(2 * time.Second),
		Apply:          d(5 * time.Second),
		AutopilotTick:  d(500 * time.Millisecond),
		LastContactMax: d(1 * time.Second),
		Stabilization:  d(2 * time.Second),
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
	c.ShutdownOnRemove = false // a removed node keeps running and may rejoin (Run)
	c.SnapshotThreshold = 4096
	c.TrailingLogs = 4096
	c.SnapshotInterval = 30 * time.Second
	c.NotifyCh = notify
	c.NoLegacyTelemetry = true
	c.Logger = newHCLogger(log.With("component", "raft"), "raft")
	return c
}
