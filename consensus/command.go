package consensus

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hydra-compute/hydra/wire"
)

// CommandVersion is the command-format version written in byte 0 of every
// raft log entry this package proposes. A node refuses (as an error result,
// never a panic) entries of a version it does not know, so a format change
// must bump it and keep decoding the old one.
const CommandVersion = 1

// Op says what a command does. Ops below OpAppFirst belong to this package;
// OpAppFirst and above are handed to Config.App.
type Op byte

const (
	// OpInit creates the cluster state (ClusterInit); applied once, by the
	// bootstrapping leader. A second init is refused.
	OpInit Op = 0x01
	// OpNodeRegister inserts or replaces a node's NodeMeta.
	OpNodeRegister Op = 0x02
	// OpNodeRemove deletes a node's NodeMeta (NodeRemove); idempotent.
	OpNodeRemove Op = 0x03
	// OpMemberAdd admits a node (MemberAdd).
	OpMemberAdd Op = 0x04
	// OpMemberRemove evicts (and with Revoke, refuses) a node (MemberRemove).
	OpMemberRemove Op = 0x05
	// OpCredAdd adds an API credential (CredAdd).
	OpCredAdd Op = 0x06
	// OpCredRemove revokes an API credential (SecretRemove).
	OpCredRemove Op = 0x07
	// OpTokenAdd adds a join token (TokenAdd).
	OpTokenAdd Op = 0x08
	// OpTokenRemove revokes a join token (SecretRemove).
	OpTokenRemove Op = 0x09
	// OpAdmit sets the admission mode (AdmitMode).
	OpAdmit Op = 0x0a
	// OpSettings replaces the cluster's Settings (SettingsChange).
	OpSettings Op = 0x0b
	// OpBatch carries several App commands in one entry (group commit,
	// batch.go); its payload is binary, not JSON. Only the leader's group
	// commit builds it: a proposed OpBatch is refused.
	OpBatch Op = 0x0c
	// OpAppFirst is the first op routed to the App (the job state).
	OpAppFirst Op = 0x40
)

func (o Op) known() bool {
	return (o >= OpInit && o <= OpBatch) || o >= OpAppFirst
}

// String names the op for logs.
func (o Op) String() string {
	switch o {
	case OpInit:
		return "init"
	case OpNodeRegister:
		return "node-register"
	case OpNodeRemove:
		return "node-remove"
	case OpMemberAdd:
		return "member-add"
	case OpMemberRemove:
		return "member-remove"
	case OpCredAdd:
		return "cred-add"
	case OpCredRemove:
		return "cred-remove"
	case OpTokenAdd:
		return "token-add"
	case OpTokenRemove:
		return "token-remove"
	case OpAdmit:
		return "admit"
	case OpSettings:
		return "settings"
	case OpBatch:
		return "batch"
	}
	if o >= OpAppFirst {
		return fmt.Sprintf("app-0x%02x", byte(o))
	}
	return fmt.Sprintf("unknown-0x%02x", byte(o))
}

// Command is one decoded raft log entry: an op and its payload. The payload
// of this package's ops is JSON; the payload of App ops (≥ OpAppFirst) is
// opaque bytes that the App encodes, bounds and validates itself (the job
// state's results are binary and compressed: docs/design.md §2).
type Command struct {
	Op      Op
	Payload []byte
}

// Errors of DecodeCommand; the FSM returns them (wrapped) as the result of a
// log entry it cannot apply.
var (
	ErrCommandVersion   = errors.New("unknown command version")
	ErrCommandOp        = errors.New("unknown command op")
	ErrCommandMalformed = errors.New("malformed command")
	ErrCommandTooLarge  = errors.New("command too large")
)

// NewCommand builds a command whose payload is v encoded as JSON.
func NewCommand(op Op, v any) (Command, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Command{}, fmt.Errorf("encode %s payload: %w", op, err)
	}
	return Command{Op: op, Payload: b}, nil
}

// EncodeCommand returns the log entry for c: version, op, payload (JSON for
// this package's ops, opaque for App ops). An
// empty payload is written as JSON null so every entry decodes the same way.
func EncodeCommand(c Command) ([]byte, error) {
	if !c.Op.known() {
		return nil, fmt.Errorf("%w: %s", ErrCommandOp, c.Op)
	}
	p := c.Payload
	if len(p) == 0 && c.Op < OpAppFirst && c.Op != OpBatch {
		p = []byte("null")
	}
	if 2+len(p) > wire.MaxLogEntry {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrCommandTooLarge, 2+len(p), wire.MaxLogEntry)
	}
	if c.Op < OpAppFirst && c.Op != OpBatch && !json.Valid(p) {
		return nil, fmt.Errorf("%w: payload is not JSON", ErrCommandMalformed)
	}
	b := make([]byte, 0, 2+len(p))
	b = append(b, CommandVersion, byte(c.Op))
	return append(b, p...), nil
}

// DecodeCommand parses a log entry written by EncodeCommand. It is the one
// entry point of the FSM's decoding, for live applies and replay alike, and
// it never panics on arbitrary input (fuzzed). The payload aliases b.
func DecodeCommand(b []byte) (Command, error) {
	if len(b) > wire.MaxLogEntry {
		return Command{}, fmt.Errorf("%w: %d bytes, limit %d", ErrCommandTooLarge, len(b), wire.MaxLogEntry)
	}
	if len(b) < 2 {
		return Command{}, fmt.Errorf("%w: %d bytes", ErrCommandMalformed, len(b))
	}
	if b[0] != CommandVersion {
		return Command{}, fmt.Errorf("%w: %d", ErrCommandVersion, b[0])
	}
	op := Op(b[1])
	if !op.known() {
		return Command{}, fmt.Errorf("%w: %s", ErrCommandOp, op)
	}
	if op < OpAppFirst && op != OpBatch && !json.Valid(b[2:]) {
		return Command{}, fmt.Errorf("%w: %s payload is not JSON", ErrCommandMalformed, op)
	}
	return Command{Op: op, Payload: b[2:]}, nil
}

// ClusterInit is the OpInit payload. Every field is set by the proposer
// (the bootstrapping leader), including Created: Apply never reads a clock.
type ClusterInit struct {
	ClusterID string `json:"cluster_id"`
	// Token is the clear API token of clusters founded before credentials
	// were hashed (still read from their logs); new founders set TokenHash.
	Token       string        `json:"token,omitempty"`
	TokenHash   string        `json:"token_hash,omitempty"`
	Founder     string        `json:"founder,omitempty"` // first member (peer ID)
	Admit       string        `json:"admit,omitempty"`   // AdmitApproval or AdmitLAN
	Voters      int           `json:"voters"`
	ChunkTarget time.Duration `json:"chunk_target"`
	Created     time.Time     `json:"created"`
	Settings    *Settings     `json:"settings,omitempty"` // the founder's; nil: DefaultSettings
}

// NodeRemove is the OpNodeRemove payload.
type NodeRemove struct {
	ID string `json:"id"`
}

// Limits on replicated strings: a hostile or broken proposer cannot bloat
// the state through the node registry.
const (
	maxIDLen    = 128
	maxNameLen  = 256
	maxVoters   = 9
	maxNodes    = 10000
	maxCoresVal = 1 << 16
)
