package consensus

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"
	"unicode/utf8"
)

// NodeMeta is what the cluster knows durably about a node: enough for the
// UI (name, OS, arch, cores, version) and for the leader's promoter (the
// voter preference), replicated so that any node can show it.
type NodeMeta struct {
	ID      string    `json:"id"` // peer ID string
	Name    string    `json:"name"`
	OS      string    `json:"os"`
	Arch    string    `json:"arch"`
	Version string    `json:"version"`
	Cores   int       `json:"cores"`
	Voter   VoterPref `json:"voter"`
	// Level is the job-state protocol level of the node's build (compute.Level): which App ops
	// its replica applies. 0: a build older than levels (Config.UnadvertisedLevel counts for
	// it). Older builds ignore the field. See CheckOp.
	Level int `json:"level,omitempty"`
}

// ClusterState is the replicated cluster-level state. It holds no secret:
// API credentials and join tokens are stored as hashes and public keys
// (Token is only read from clusters created before that, and moved into
// Creds on apply and restore).
type ClusterState struct {
	ClusterID   string              `json:"cluster_id"`
	Token       string              `json:"token,omitempty"`
	Voters      int                 `json:"voters"` // 0: 3, and 5 at ≥ 7 servers
	ChunkTarget time.Duration       `json:"chunk_target"`
	Created     time.Time           `json:"created"`
	Nodes       map[string]NodeMeta `json:"nodes"`
	// Admit is the admission mode: AdmitApproval ("" too) or AdmitLAN.
	Admit string `json:"admit,omitempty"`
	// Members is the allow-list of admitted nodes by peer ID.
	Members map[string]Member `json:"members,omitempty"`
	// Revoked are evicted or denied peer IDs, refused on every transport.
	Revoked map[string]bool `json:"revoked,omitempty"`
	// Creds are the API credentials by ID (hashed).
	Creds map[string]Cred `json:"creds,omitempty"`
	// JoinTokens are the join tokens by ID (public keys).
	JoinTokens map[string]JoinToken `json:"join_tokens,omitempty"`
	// Retired are the hashes of revoked API credentials: never accepted
	// again (a member whose credential was revoked makes a new one).
	Retired map[string]bool `json:"retired,omitempty"`
	// Settings are the limits on finished jobs; nil for a cluster created
	// before they were replicated (EffectiveSettings: the defaults).
	Settings *Settings `json:"settings,omitempty"`
}

// Initialized reports whether OpInit has been applied.
func (s ClusterState) Initialized() bool { return s.ClusterID != "" }

// clone returns a deep copy (the Nodes map is not shared).
func (s ClusterState) clone() ClusterState {
	c := s
	c.Nodes = maps.Clone(s.Nodes)
	if s.Settings != nil {
		st := *s.Settings
		c.Settings = &st
	}
	if c.Nodes == nil {
		c.Nodes = map[string]NodeMeta{}
	}
	c.cloneMembership()
	return c
}

// ErrRejected marks a command that was committed but that the state machine
// refused (a second init, an invalid payload, an unknown op...). Retrying it
// is pointless.
var ErrRejected = errors.New("command rejected")

// rejectf builds the error value a command returns as its result.
func rejectf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRejected, fmt.Sprintf(format, args...))
}

// applyCommand is the stateless command processor: it decodes one log entry
// and applies it to st (and app for ops ≥ OpAppFirst). Live applies and replay
// after a restart both come through here, so they cannot diverge. It returns
// the command's result: nil, an error value (rejected), or the App's value; an op
// this build does not know is a local failure (UnknownOp), which stops the FSM.
// It never panics on arbitrary data and never reads a clock.
func applyCommand(st *ClusterState, app App, data []byte, index uint64) any {
	cmd, err := DecodeCommand(data)
	if errors.Is(err, ErrCommandOp) {
		return &unknownOpError{op: data[1]} // a newer build's cluster op: stop, do not diverge
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	if cmd.Op >= OpMemberAdd && cmd.Op <= OpAdmit {
		return applyMembership(st, cmd.Op, cmd.Payload)
	}
	if cmd.Op == OpBatch {
		return applyBatch(app, cmd.Payload, index)
	}
	if cmd.Op >= OpAppFirst {
		if app == nil {
			return rejectf("op %s: no application state on this node", cmd.Op)
		}
		return app.Apply(byte(cmd.Op), cmd.Payload, index)
	}
	switch cmd.Op {
	case OpInit:
		var in ClusterInit
		if err := strictUnmarshal(cmd.Payload, &in); err != nil {
			return rejectf("init: %v", err)
		}
		if st.Initialized() {
			return rejectf("init: cluster %s is already initialized", st.ClusterID)
		}
		if in.ClusterID == "" || len(in.ClusterID) > maxIDLen || (in.Token == "" && len(in.TokenHash) != 64) || len(in.Token) > maxIDLen {
			return rejectf("init: cluster ID and token must be 1..%d bytes", maxIDLen)
		}
		if len(in.Founder) > maxIDLen || (in.Admit != "" && in.Admit != AdmitApproval && in.Admit != AdmitLAN) {
			return rejectf("init: bad founder or admission mode")
		}
		if in.Voters < 0 || in.Voters > maxVoters || in.ChunkTarget < 0 {
			return rejectf("init: voters must be 0..%d and chunk target ≥ 0", maxVoters)
		}
		if in.Settings != nil { // checked before anything changes: a refused init leaves no trace
			in.Settings.narrow()
			if err := in.Settings.Validate(); err != nil {
				return rejectf("init: %v", err)
			}
		}
		st.ClusterID, st.Token, st.Voters = in.ClusterID, in.Token, in.Voters
		if in.Settings != nil {
			set := *in.Settings
			st.Settings = &set
		}
		st.ChunkTarget, st.Created = in.ChunkTarget, in.Created
		if st.Nodes == nil {
			st.Nodes = map[string]NodeMeta{}
		}
		st.upgradeToken() // a clear token (older founders) is stored hashed
		if in.TokenHash != "" {
			st.Creds = map[string]Cred{"init": {Role: RoleAdmin, Hash: in.TokenHash, Node: in.Founder, Created: in.Created}}
		}
		st.Admit = in.Admit
		if in.Founder != "" {
			st.Members = map[string]Member{in.Founder: {Role: RoleMember, Added: in.Created}}
		}
		return nil
	case OpNodeRegister:
		var m NodeMeta
		if err := strictUnmarshal(cmd.Payload, &m); err != nil {
			return rejectf("register: %v", err)
		}
		if err := m.validate(); err != nil {
			return rejectf("register: %v", err)
		}
		if st.Nodes == nil {
			st.Nodes = map[string]NodeMeta{}
		}
		if _, ok := st.Nodes[m.ID]; !ok && len(st.Nodes) >= maxNodes {
			return rejectf("register: node registry full (%d)", maxNodes)
		}
		st.Nodes[m.ID] = m
		return nil
	case OpSettings:
		var ch SettingsChange
		if err := strictUnmarshal(cmd.Payload, &ch); err != nil {
			return rejectf("settings: %v", err)
		}
		if !st.Initialized() {
			return rejectf("settings: the cluster is not initialized")
		}
		ch.Settings.narrow()
		if ch.Base != nil {
			ch.Base.narrow()
		}
		if err := ch.Settings.Validate(); err != nil {
			return rejectf("settings: %v", err)
		}
		if ch.Base != nil && *ch.Base != st.EffectiveSettings() {
			return fmt.Errorf("%w: settings: %w", ErrRejected, ErrSettingsChanged)
		}
		set := ch.Settings
		st.Settings = &set
		return nil
	case OpNodeRemove:
		var rm NodeRemove
		if err := strictUnmarshal(cmd.Payload, &rm); err != nil {
			return rejectf("remove: %v", err)
		}
		delete(st.Nodes, rm.ID)
		return nil
	}
	return rejectf("op %s has no handler", cmd.Op)
}

func (m NodeMeta) validate() error {
	if m.ID == "" || len(m.ID) > maxIDLen {
		return fmt.Errorf("node ID must be 1..%d bytes", maxIDLen)
	}
	for _, s := range []string{m.Name, m.OS, m.Arch, m.Version} {
		if len(s) > maxNameLen || !utf8.ValidString(s) {
			return fmt.Errorf("node strings must be valid UTF-8 of at most %d bytes", maxNameLen)
		}
	}
	if m.Cores < 0 || m.Cores > maxCoresVal {
		return fmt.Errorf("cores %d out of range", m.Cores)
	}
	if m.Level < 0 || m.Level > maxLevel {
		return fmt.Errorf("job-state level %d out of range 0..%d", m.Level, maxLevel)
	}
	if m.Voter < VoterAuto || m.Voter > VoterNever {
		return fmt.Errorf("voter preference %d out of range", m.Voter)
	}
	return nil
}

// strictUnmarshal decodes a JSON object into v and refuses null (a missing
// payload) so that an empty command never silently applies zero values.
func strictUnmarshal(b []byte, v any) error {
	if string(b) == "null" {
		return errors.New("missing payload")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode payload: %w", err)
	}
	return nil
}
