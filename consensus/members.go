package consensus

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"
)

// Roles. Members and workers are nodes (peer IDs in ClusterState.Members);
// admins and viewers are API credentials (ClusterState.Creds). A worker
// computes but never holds a raft vote nor an admin credential.
const (
	RoleMember = "member"
	RoleWorker = "worker"
	RoleAdmin  = "admin"
	RoleViewer = "viewer"
)

// Admission modes of a cluster (ClusterState.Admit).
const (
	// AdmitApproval (the default, also spelled "") makes every new node
	// wait until an admin approves it or it shows a join token.
	AdmitApproval = "approval"
	// AdmitLAN approves nodes that ask from a private or loopback address
	// on their own; every other check still holds.
	AdmitLAN = "lan"
)

// Member is one admitted node. Token and ClusterKey are the join token
// that admitted it and that token's cluster key, kept so that the leader
// can still prove an admission answer to it (answerProof) once the token
// is revoked: a holder admitted whose answer was lost, or that restarted
// before it came, asks again with the token it has, and its entry is the
// only place the key is left.
type Member struct {
	Role       string    `json:"role"` // member | worker
	Name       string    `json:"name,omitempty"`
	Added      time.Time `json:"added"`
	Token      string    `json:"token,omitempty"`
	ClusterKey string    `json:"cluster_key,omitempty"`
}

// Cred is an API credential: only the SHA-256 of the secret is replicated.
// Node is set for the credential a member writes to its DATA/api-token.
type Cred struct {
	Role    string    `json:"role"` // admin | viewer
	Hash    string    `json:"hash"` // hex SHA-256 of the bearer token
	Node    string    `json:"node,omitempty"`
	Created time.Time `json:"created"`
}

// JoinToken is a join token as replicated: its public key and its cluster
// key. The token itself holds the matching Ed25519 seed; a joiner proves it
// by signing the pair (joiner, member) of its authenticated connection
// (Proof). The cluster key, derived from the seed (joinClusterKey), is how
// the cluster proves itself back: anyone can claim a cluster ID, so a token
// joiner trusts an admission answer only with a MAC under this key over its
// fresh nonce and both ends of its connection (AnswerProof). It proves
// nothing to the cluster (the seed stays with the token). Tokens made by
// builds before it have none (and a "hydra-join1" string).
type JoinToken struct {
	Role       string    `json:"role"`                  // member | worker
	Key        string    `json:"key"`                   // hex Ed25519 public key
	ClusterKey string    `json:"cluster_key,omitempty"` // hex HMAC-SHA256 key (joinClusterKey)
	Expires    time.Time `json:"expires,omitzero"`
	Uses       int       `json:"uses,omitempty"` // 0: unlimited
	Used       int       `json:"used"`
	Created    time.Time `json:"created"`
}

// Payloads of the membership ops.
type (
	// MemberAdd admits a node (OpMemberAdd). With TokenID the admission
	// spends one use of that join token (checked against At).
	MemberAdd struct {
		ID      string    `json:"id"`
		Role    string    `json:"role"`
		Name    string    `json:"name,omitempty"`
		TokenID string    `json:"token_id,omitempty"`
		At      time.Time `json:"at"`
	}
	// MemberRemove evicts a node (OpMemberRemove): its membership, node
	// metadata and node credential go; with Revoke its key is refused for
	// good (until an admin approves it again).
	MemberRemove struct {
		ID     string `json:"id"`
		Revoke bool   `json:"revoke"`
	}
	// CredAdd adds an API credential (OpCredAdd).
	CredAdd struct {
		ID   string `json:"id"`
		Cred Cred   `json:"cred"`
	}
	// TokenAdd adds a join token (OpTokenAdd).
	TokenAdd struct {
		ID    string    `json:"id"`
		Token JoinToken `json:"token"`
	}
	// SecretRemove removes an API credential or a join token by ID
	// (OpCredRemove, OpTokenRemove).
	SecretRemove struct {
		ID string `json:"id"`
	}
	// AdmitMode sets the admission mode (OpAdmit).
	AdmitMode struct {
		Mode string `json:"mode"`
	}
)

// Bounds of the membership state.
const (
	maxMembers = maxNodes
	maxRevoked = maxNodes
	maxSecrets = 1000
)

// HashSecret is how API credentials are stored: hex SHA-256. The secrets
// are 32 random bytes, so a plain hash is enough (no dictionary to try).
func HashSecret(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// CredFor returns the ID and credential whose secret is tok.
func (s ClusterState) CredFor(tok string) (string, Cred, bool) {
	if tok == "" {
		return "", Cred{}, false
	}
	h := HashSecret(tok)
	for id, c := range s.Creds {
		if subtle.ConstantTimeCompare([]byte(c.Hash), []byte(h)) == 1 {
			return id, c, true
		}
	}
	return "", Cred{}, false
}

// ReadCookie is the value of the web UI's read cookie for the credential whose stored hash
// (HashSecret) is hash: a MAC of it, never the credential. Browsers send a host's cookies to
// every port of that host (another web service on the same machine, its logs); a cookie that
// held the credential, often the admin token, gave them a bearer token for writes. This one
// only opens reads on this cluster's nodes, all of which derive the same value.
func ReadCookie(hash string) string {
	m := hmac.New(sha256.New, []byte(hash))
	m.Write([]byte("hydra read cookie v1"))
	return "r1." + hex.EncodeToString(m.Sum(nil))
}

// CredForReadCookie returns the credential whose ReadCookie is v.
func (s ClusterState) CredForReadCookie(v string) (Cred, bool) {
	if !strings.HasPrefix(v, "r1.") {
		return Cred{}, false
	}
	for _, c := range s.Creds {
		if subtle.ConstantTimeCompare([]byte(ReadCookie(c.Hash)), []byte(v)) == 1 {
			return c, true
		}
	}
	return Cred{}, false
}

// IsAdmin reports whether tok is an admin credential of the cluster.
func (s ClusterState) IsAdmin(tok string) bool {
	_, c, ok := s.CredFor(tok)
	return ok && c.Role == RoleAdmin
}

// AdmitMode returns the cluster's admission mode, AdmitApproval by default.
func (s ClusterState) AdmitMode() string {
	if s.Admit == AdmitLAN {
		return AdmitLAN
	}
	return AdmitApproval
}

// ClusterFingerprint is the short code of a cluster ID that join tokens
// carry, so a joiner checks it joins the cluster it was given a token for.
func ClusterFingerprint(clusterID string) string {
	h := sha256.Sum256([]byte("hydra-cluster\x00" + clusterID))
	return hex.EncodeToString(h[:6])
}

// Join token prefixes: "hydra-join2.<cluster fp>.<id>.<seed>" for a token
// whose replicated record holds its cluster key, so its joiner requires the
// cluster's answer proof; "hydra-join1" for one an older build made, whose
// record has none (its joiner accepts an answer without the proof, with a
// warning). Builds before the cluster key read only "hydra-join1".
const (
	joinTokenPrefix       = "hydra-join2"
	legacyJoinTokenPrefix = "hydra-join1"
)

// NewJoinToken makes a join token for a cluster: the secret string for
// the person, and the record to replicate with its public key and cluster
// key set (the caller sets role, expiry and uses).
func NewJoinToken(clusterID string) (id, secret string, rec JoinToken) {
	id = randomHex(6)
	seed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(seed) // crypto/rand.Read never fails (Go ≥ 1.24)
	priv := ed25519.NewKeyFromSeed(seed)
	secret = strings.Join([]string{joinTokenPrefix, ClusterFingerprint(clusterID), id, base64.RawURLEncoding.EncodeToString(seed)}, ".")
	rec = JoinToken{Key: hex.EncodeToString(priv.Public().(ed25519.PublicKey)), ClusterKey: hex.EncodeToString(joinClusterKey(seed))}
	return id, secret, rec
}

// joinClusterKey derives a token's cluster key from its seed (HKDF-SHA256
// with a label of its own, so that it says nothing about the signing key).
func joinClusterKey(seed []byte) []byte {
	k, err := hkdf.Key(sha256.New, seed, nil, "hydra-join-cluster-key/1", sha256.Size)
	if err != nil {
		panic(fmt.Sprintf("hkdf: %v", err)) // only for a length sha256 cannot give
	}
	return k
}

// ParsedJoinToken is a join token split into its parts. Legacy: the token
// was made by a build whose record holds no cluster key ("hydra-join1").
type ParsedJoinToken struct {
	ClusterFP string
	ID        string
	Legacy    bool
	key       ed25519.PrivateKey
}

// ErrBadJoinToken is returned for a string that is not a join token.
var ErrBadJoinToken = errors.New("not a hydra join token")

// ParseJoinToken splits a join token; it checks the form only.
func ParseJoinToken(s string) (ParsedJoinToken, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 4 || (parts[0] != joinTokenPrefix && parts[0] != legacyJoinTokenPrefix) || len(parts[1]) != 12 || len(parts[2]) == 0 || len(parts[2]) > 32 {
		return ParsedJoinToken{}, ErrBadJoinToken
	}
	seed, err := base64.RawURLEncoding.DecodeString(parts[3])
	if err != nil || len(seed) != ed25519.SeedSize {
		return ParsedJoinToken{}, ErrBadJoinToken
	}
	return ParsedJoinToken{ClusterFP: parts[1], ID: parts[2], Legacy: parts[0] == legacyJoinTokenPrefix, key: ed25519.NewKeyFromSeed(seed)}, nil
}

// joinProofMessage is what a join proof signs: the token, the cluster and
// both ends of the authenticated connection, so a proof captured on one
// connection is worth nothing on another.
func joinProofMessage(tokenID, clusterID, joiner, member string) []byte {
	return []byte("hydra-join-proof/1\x00" + tokenID + "\x00" + clusterID + "\x00" + joiner + "\x00" + member)
}

// Proof signs the join of joiner through member.
func (t ParsedJoinToken) Proof(clusterID, joiner, member string) string {
	return hex.EncodeToString(ed25519.Sign(t.key, joinProofMessage(t.ID, clusterID, joiner, member)))
}

// answerProofMessage is what the cluster's answer proof authenticates: the
// token, the joiner's fresh nonce, both ends of the joiner's connection
// (joiner, and the member it asked), the cluster ID and what the answer
// names, so an answer is worth nothing for another request, another
// connection or another list of peers to trust.
func answerProofMessage(tokenID, nonce, joiner, member, clusterID, leader string, servers []string) []byte {
	return []byte("hydra-join-answer/1\x00" + tokenID + "\x00" + nonce + "\x00" + joiner + "\x00" + member + "\x00" + clusterID +
		"\x00" + leader + "\x00" + strings.Join(servers, ","))
}

func answerMAC(key []byte, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// answerProof is the leader's proof, for the token record t, of an answer
// (leader, servers) to joiner's request with nonce through member; "" when
// the record has no cluster key (an older build made the token).
func answerProof(t JoinToken, tokenID, nonce, joiner, member, clusterID, leader string, servers []string) string {
	key, err := hex.DecodeString(t.ClusterKey)
	if err != nil || len(key) != sha256.Size {
		return ""
	}
	return hex.EncodeToString(answerMAC(key, answerProofMessage(tokenID, nonce, joiner, member, clusterID, leader, servers)))
}

// VerifyAnswer checks the cluster's proof of an admission answer (in
// constant time): that the peer that answered, member, holds the token's
// cluster key for this joiner's request with nonce in cluster clusterID.
func (t ParsedJoinToken) VerifyAnswer(proof, nonce, joiner, member, clusterID, leader string, servers []string) bool {
	got, err := hex.DecodeString(proof)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	want := answerMAC(joinClusterKey(t.key.Seed()), answerProofMessage(t.ID, nonce, joiner, member, clusterID, leader, servers))
	return hmac.Equal(got, want)
}

// verifyJoinProof checks a join proof against the replicated token at now.
func (s ClusterState) verifyJoinProof(tokenID, proof, joiner, member string, now time.Time) (JoinToken, error) {
	t, ok := s.JoinTokens[tokenID]
	if !ok {
		return JoinToken{}, errors.New("unknown or revoked join token")
	}
	if !t.Expires.IsZero() && now.After(t.Expires) {
		return JoinToken{}, errors.New("join token expired")
	}
	if t.Uses > 0 && t.Used >= t.Uses {
		return JoinToken{}, errors.New("join token used up")
	}
	key, err := hex.DecodeString(t.Key)
	sig, err2 := hex.DecodeString(proof)
	if err != nil || err2 != nil || len(key) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return JoinToken{}, errors.New("malformed join proof")
	}
	if !ed25519.Verify(ed25519.PublicKey(key), joinProofMessage(tokenID, s.ClusterID, joiner, member), sig) {
		return JoinToken{}, errors.New("join proof does not verify")
	}
	return t, nil
}

// cloneMembership deep-copies the membership maps of c (see clone).
func (c *ClusterState) cloneMembership() {
	c.Members = maps.Clone(c.Members)
	c.Revoked = maps.Clone(c.Revoked)
	c.Creds = maps.Clone(c.Creds)
	c.JoinTokens = maps.Clone(c.JoinTokens)
	c.Retired = maps.Clone(c.Retired)
}

// upgradeToken moves a clear API token (a cluster created before
// credentials were hashed) into Creds as the "init" admin credential: the
// old DATA/api-token files keep working and the state holds no secret.
func (s *ClusterState) upgradeToken() {
	if s.Token == "" {
		return
	}
	if s.Creds == nil {
		s.Creds = map[string]Cred{}
	}
	if _, ok := s.Creds["init"]; !ok {
		s.Creds["init"] = Cred{Role: RoleAdmin, Hash: HashSecret(s.Token), Created: s.Created}
	}
	s.Token = ""
}

func validRole(r string, roles ...string) bool {
	for _, x := range roles {
		if r == x {
			return true
		}
	}
	return false
}

func validSecretID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// applyMembership applies the membership ops (deterministic, no clock).
func applyMembership(st *ClusterState, op Op, payload []byte) any {
	switch op {
	case OpMemberAdd:
		var m MemberAdd
		if err := strictUnmarshal(payload, &m); err != nil {
			return rejectf("member add: %v", err)
		}
		if m.ID == "" || len(m.ID) > maxIDLen || len(m.Name) > maxNameLen || !validRole(m.Role, RoleMember, RoleWorker) {
			return rejectf("member add: bad ID, name or role %q", m.Role)
		}
		if st.Members == nil {
			st.Members = map[string]Member{}
		}
		if _, ok := st.Members[m.ID]; ok {
			return nil // already admitted: no token use spent
		}
		if len(st.Members) >= maxMembers {
			return rejectf("member add: member list full (%d)", maxMembers)
		}
		mem := Member{Role: m.Role, Name: m.Name, Added: m.At}
		if m.TokenID != "" {
			t, ok := st.JoinTokens[m.TokenID]
			if !ok || (!t.Expires.IsZero() && m.At.After(t.Expires)) || (t.Uses > 0 && t.Used >= t.Uses) {
				return rejectf("member add: join token %s is not valid", m.TokenID)
			}
			t.Used++
			st.JoinTokens = maps.Clone(st.JoinTokens)
			st.JoinTokens[m.TokenID] = t
			if t.ClusterKey != "" {
				mem.Token, mem.ClusterKey = m.TokenID, t.ClusterKey
			}
		}
		delete(st.Revoked, m.ID)
		st.Members[m.ID] = mem
		return nil
	case OpMemberRemove:
		var m MemberRemove
		if err := strictUnmarshal(payload, &m); err != nil {
			return rejectf("member remove: %v", err)
		}
		if m.ID == "" || len(m.ID) > maxIDLen {
			return rejectf("member remove: bad ID")
		}
		if m.Revoke && !st.Revoked[m.ID] && len(st.Revoked) >= maxRevoked { // before anything changes
			return rejectf("member remove: revocation list full (%d)", maxRevoked)
		}
		delete(st.Members, m.ID)
		delete(st.Nodes, m.ID)
		for id, c := range st.Creds {
			if c.Node == m.ID {
				if m.Revoke {
					if st.Retired == nil {
						st.Retired = map[string]bool{}
					}
					if len(st.Retired) < maxRevoked {
						st.Retired[c.Hash] = true
					}
				}
				delete(st.Creds, id)
			}
		}
		if m.Revoke {
			if st.Revoked == nil {
				st.Revoked = map[string]bool{}
			}
			st.Revoked[m.ID] = true
		}
		return nil
	case OpCredAdd:
		var c CredAdd
		if err := strictUnmarshal(payload, &c); err != nil {
			return rejectf("credential add: %v", err)
		}
		if !validSecretID(c.ID) || !validRole(c.Cred.Role, RoleAdmin, RoleViewer) || len(c.Cred.Hash) != 64 || len(c.Cred.Node) > maxIDLen {
			return rejectf("credential add: bad ID, role or hash")
		}
		if st.Creds == nil {
			st.Creds = map[string]Cred{}
		}
		if st.Retired[c.Cred.Hash] {
			return rejectf("credential add: that credential was revoked")
		}
		if _, ok := st.Creds[c.ID]; !ok && len(st.Creds) >= maxSecrets {
			return rejectf("credential add: too many credentials (%d)", maxSecrets)
		}
		st.Creds[c.ID] = c.Cred
		return nil
	case OpTokenAdd:
		var t TokenAdd
		if err := strictUnmarshal(payload, &t); err != nil {
			return rejectf("token add: %v", err)
		}
		// Only what every build's apply checks: a new refusal here would make this replica
		// diverge from an older one replaying the same entry. Proposers check the whole entry
		// (checkTokenAdd).
		if !validSecretID(t.ID) || !validRole(t.Token.Role, RoleMember, RoleWorker) || len(t.Token.Key) != 2*ed25519.PublicKeySize || t.Token.Uses < 0 {
			return rejectf("token add: bad ID, role or key")
		}
		if k, err := hex.DecodeString(t.Token.ClusterKey); err != nil || len(k) != sha256.Size {
			// Dropped, not refused: a build before cluster keys ignores the
			// field and accepts the entry, and every replica must agree.
			// Its joiner refuses every answer (the proof cannot be made).
			t.Token.ClusterKey = ""
		}
		if st.JoinTokens == nil {
			st.JoinTokens = map[string]JoinToken{}
		}
		if _, ok := st.JoinTokens[t.ID]; !ok && len(st.JoinTokens) >= maxSecrets {
			return rejectf("token add: too many join tokens (%d)", maxSecrets)
		}
		t.Token.Used = 0
		st.JoinTokens[t.ID] = t.Token
		return nil
	case OpCredRemove, OpTokenRemove:
		var r SecretRemove
		if err := strictUnmarshal(payload, &r); err != nil {
			return rejectf("%s: %v", op, err)
		}
		if op == OpCredRemove {
			if c, ok := st.Creds[r.ID]; ok {
				if st.Retired == nil {
					st.Retired = map[string]bool{}
				}
				if len(st.Retired) < maxRevoked {
					st.Retired[c.Hash] = true
				}
			}
			delete(st.Creds, r.ID)
		} else {
			delete(st.JoinTokens, r.ID)
		}
		return nil
	case OpAdmit:
		var a AdmitMode
		if err := strictUnmarshal(payload, &a); err != nil {
			return rejectf("admit: %v", err)
		}
		if a.Mode != AdmitApproval && a.Mode != AdmitLAN {
			return rejectf("admit: mode %q: want approval or lan", a.Mode)
		}
		st.Admit = a.Mode
		return nil
	}
	return rejectf("op %s has no handler", op)
}

// memberRole returns the role of p: a Members entry, else "member" for a
// server of a cluster created before the allow-list (inCfg), else "".
func (s ClusterState) memberRole(id string, inCfg bool) string {
	if s.Revoked[id] {
		return ""
	}
	if m, ok := s.Members[id]; ok {
		return m.Role
	}
	if inCfg {
		return RoleMember
	}
	return ""
}
