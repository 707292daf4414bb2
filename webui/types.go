package webui

import (
	"context"
	"time"
)

// Status is the body of GET /api/v1/status: the cluster as this node's
// replica sees it. Field names are part of the public API (docs/api.md).
type Status struct {
	Self      NodeRef      `json:"self"`
	Cluster   string       `json:"cluster"`
	ClusterID string       `json:"cluster_id"`
	Leader    string       `json:"leader"`
	Term      uint64       `json:"term"`
	Version   string       `json:"version"`
	Nodes     []NodeStatus `json:"nodes"`
	// Pending are the nodes waiting for approval (not in Nodes).
	Pending []PendingNode `json:"pending"`
	// Fingerprint is this node's key fingerprint (what hydra approve takes).
	Fingerprint string `json:"fingerprint,omitempty"`
	// Admission is this node's own standing: member, worker, or waiting
	// (for approval).
	Admission string `json:"admission,omitempty"`
	// Admit is the cluster's admission mode: approval or lan.
	Admit string `json:"admit,omitempty"`
}

// NodeRef names a node: its peer ID and human name.
type NodeRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// NodeStatus is one node of the cluster as seen from here. Role comes from
// the raft configuration; Online and the live fields from the node's
// announcements on the gossip topic (or from the node itself for "self").
type NodeStatus struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Role string `json:"role"` // leader | voter | nonvoter | none (known but not a raft member)
	// NonvoterReason says why a nonvoter holds no vote ("its voter
	// preference is never", "on battery", "the cluster has the 3 voters it
	// keeps", "waiting for another eligible node: …"); empty otherwise.
	NonvoterReason string    `json:"nonvoter_reason,omitempty"`
	Online         bool      `json:"online"`
	State          string    `json:"state"`            // working | idle | throttled | paused | offline
	Reason         string    `json:"reason,omitempty"` // why throttled or paused ("on battery", "cpu 82 °C", "owner active", "schedule")
	Power          string    `json:"power,omitempty"`  // battery | mains | "" (unknown); with --voter auto, nodes on battery give up their vote
	Addrs          []string  `json:"addrs"`
	OS             string    `json:"os"`
	Arch           string    `json:"arch"`
	Cores          int       `json:"cores"`
	Version        string    `json:"version"`
	Load           float64   `json:"load"`
	Uptime         float64   `json:"uptime_seconds"`
	LastSeen       time.Time `json:"last_seen"`
	// ClockOffset is the node's clock minus the cluster's (the leader's stamps) in seconds, 0
	// while within 10 s: a machine whose clock is off (a board without an RTC, a clock set by
	// hand) still stamps the cluster's time, but its owner should fix it.
	ClockOffset float64 `json:"clock_offset_seconds,omitempty"`
	// Audit is the node's audit record: audits passed and failed over all
	// kernels and its standing (docs/audits.md).
	Audit NodeAudit `json:"audit"`
}

// NodeAudit is a node's audit record. State is new (audited on every
// chunk), trusted (audited now and then) or quarantined (no work, no vote,
// until `hydra trust reset`).
type NodeAudit struct {
	Passed uint64 `json:"passed"`
	Failed uint64 `json:"failed"`
	State  string `json:"state"`
}

// Truster is the optional part of a Backend that clears a node's failed
// audits and quarantine (POST /api/v1/nodes/{id}/trust/reset).
type Truster interface {
	// TrustReset clears node's audit failures and quarantine; node is a
	// peer ID or a node name. It returns the peer ID. Errors wrapping
	// ErrInvalid (no such node, an ambiguous name) answer 400, ErrForbidden
	// 403, ErrUnavailable 503; others 500.
	TrustReset(ctx context.Context, node string) (string, error)
}

// Roles and states, one spelling everywhere (docs/design.md §5).
const (
	RoleLeader   = "leader"
	RoleVoter    = "voter"
	RoleNonvoter = "nonvoter"
	RoleNone     = "none"

	StateWorking   = "working"
	StateIdle      = "idle"
	StateThrottled = "throttled"
	StatePaused    = "paused"
	StateOffline   = "offline"
)
