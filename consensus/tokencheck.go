package consensus

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Bounds of a join token a proposer may add (checkTokenAdd).
const (
	// MaxTokenUses bounds a join token's uses (0: unlimited).
	MaxTokenUses = 1_000_000
	// MaxTokenTTL bounds how long after its creation a join token may expire, as
	// MaxRetention bounds the settings: a mistyped --ttl is refused, not kept for ever.
	MaxTokenTTL = 10 * 365 * 24 * time.Hour
)

// checkTokenAdd is the proposer's check of an OpTokenAdd entry against st, the cluster as
// this node sees it: the whole entry is validated (ID, role, key, cluster key, uses, expiry, an
// ID not in use) before it is proposed, by ApplyAs (the node's HTTP handler and CLI come
// through it) and by the leader for a forwarded proposal (authorize).
//
// Applying the entry checks less (applyMembership: the ID's format, the role, the key's
// length, uses ≥ 0) and must keep doing so: an older replica replaying the same log accepts an
// entry this check refuses (a key of the right length that is not hex, a re-used ID, …), and a
// replica that refused it would hold a different state. An entry that no build's proposer
// writes is refused here, where refusing changes nothing replicated.
func checkTokenAdd(st ClusterState, payload []byte) error {
	var t TokenAdd
	if err := strictUnmarshal(payload, &t); err != nil {
		return kinded(ErrInvalid, fmt.Errorf("token add: %w", err))
	}
	tok := t.Token
	var errs []error
	if !validSecretID(t.ID) {
		errs = append(errs, fmt.Errorf("ID %q: want 1 to %d of a-z, 0-9, - and _", t.ID, maxIDLen))
	}
	if !validRole(tok.Role, RoleMember, RoleWorker) {
		errs = append(errs, fmt.Errorf("role %q: want member or worker", tok.Role))
	}
	if k, err := hex.DecodeString(tok.Key); err != nil || len(k) != ed25519.PublicKeySize {
		errs = append(errs, fmt.Errorf("key: want %d bytes of hex", ed25519.PublicKeySize))
	}
	if k, err := hex.DecodeString(tok.ClusterKey); err != nil || len(k) != sha256.Size {
		// Apply drops a bad one (an older build ignores the field); a new token without one
		// could never be used: its joiner refuses every answer.
		errs = append(errs, fmt.Errorf("cluster key: want %d bytes of hex", sha256.Size))
	}
	if tok.Uses < 0 || tok.Uses > MaxTokenUses {
		errs = append(errs, fmt.Errorf("uses %d: want 0 (unlimited) to %d", tok.Uses, MaxTokenUses))
	}
	if tok.Used != 0 {
		errs = append(errs, fmt.Errorf("used %d: a new token has none", tok.Used))
	}
	if tok.Created.IsZero() {
		errs = append(errs, errors.New("no creation time"))
	}
	if !tok.Expires.IsZero() {
		if ttl := tok.Expires.Sub(tok.Created); ttl <= 0 || ttl > MaxTokenTTL {
			errs = append(errs, fmt.Errorf("expiry %s after its creation: want up to %s", ttl, MaxTokenTTL))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return kinded(ErrInvalid, fmt.Errorf("token add: %w", err))
	}
	if old, ok := st.JoinTokens[t.ID]; ok {
		if old.Key == tok.Key {
			return nil // the same token again: a retry of an entry already committed
		}
		// Apply would replace it and reset its uses.
		return kinded(ErrConflict, fmt.Errorf("token add: a join token %s exists", t.ID))
	}
	if len(st.JoinTokens) >= maxSecrets {
		return kinded(ErrConflict, fmt.Errorf("token add: too many join tokens (%d)", maxSecrets))
	}
	return nil
}
