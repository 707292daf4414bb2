package node

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/webui"
)

var _ webui.Admission = (*Node)(nil)
var _ webui.Authorizer = (*Node)(nil)

// Approve implements webui.Admission: admit the pending node with this
// fingerprint (or peer ID) as a member or worker.
func (n *Node) Approve(ctx context.Context, key, role, auth string) (webui.PendingResult, error) {
	p, err := n.raft.Approve(ctx, key, role, auth)
	if err != nil {
		return webui.PendingResult{}, apiErr(err)
	}
	if role == "" {
		role = consensus.RoleMember
	}
	return webui.PendingResult{ID: p.String(), Fingerprint: consensus.Fingerprint(p), Role: role}, nil
}

// Deny implements webui.Admission: refuse a pending node's key for good.
func (n *Node) Deny(ctx context.Context, key, auth string) (webui.PendingResult, error) {
	p, err := n.raft.Deny(ctx, key, auth)
	if err != nil {
		return webui.PendingResult{}, apiErr(err)
	}
	return webui.PendingResult{ID: p.String(), Fingerprint: consensus.Fingerprint(p)}, nil
}

// Remove implements webui.Admission: evict a node (by name, peer ID or
// fingerprint) and refuse its key from then on.
func (n *Node) Remove(ctx context.Context, node, auth string) (webui.PendingResult, error) {
	p, err := n.resolveNode(node)
	if err != nil {
		return webui.PendingResult{}, apiErr(err)
	}
	if err := n.raft.Evict(ctx, p, auth); err != nil {
		return webui.PendingResult{}, apiErr(err)
	}
	return webui.PendingResult{ID: p.String(), Fingerprint: consensus.Fingerprint(p)}, nil
}

// resolveNode finds a node of the cluster (or a pending one) by peer ID,
// fingerprint or unique name.
func (n *Node) resolveNode(key string) (peer.ID, error) {
	key = strings.TrimSpace(key)
	if key == "" {
		return "", marked{errors.New("node missing: give its name, peer ID or fingerprint"), webui.ErrInvalid}
	}
	if p, err := peer.Decode(key); err == nil {
		return p, nil
	}
	st := n.raft.State()
	ids := map[string]string{}
	for id, m := range st.Members {
		ids[id] = m.Name
	}
	for id, m := range st.Nodes {
		ids[id] = m.Name
	}
	for _, s := range n.raft.Servers() {
		if _, ok := ids[s.ID.String()]; !ok {
			ids[s.ID.String()] = ""
		}
	}
	for _, pn := range n.raft.Pending() {
		ids[pn.ID] = pn.Name
	}
	var found []string
	for id, name := range ids {
		p, err := peer.Decode(id)
		if err != nil {
			continue
		}
		if strings.EqualFold(consensus.Fingerprint(p), key) || name == key {
			found = append(found, id)
		}
	}
	if len(found) == 0 {
		found = revokedWithFingerprint(st, key)
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w named %q (give a name, peer ID or fingerprint; a removed node's name is forgotten with it, its peer ID and fingerprint are not)", consensus.ErrNoSuchNode, key)
	case 1:
		return peer.Decode(found[0])
	}
	sort.Strings(found)
	return "", marked{fmt.Errorf("%d nodes are named %q: give a peer ID (%s)", len(found), key, strings.Join(found, ", ")), webui.ErrInvalid}
}

// revokedWithFingerprint returns the removed (or denied) nodes whose fingerprint is key: a
// repeated hydra remove by fingerprint (a retry, the first answer lost) finds the node it
// removed once that node has left the configuration too, and answers as the first did, as a
// repeat by peer ID does (resolveNode). Asked only when no node of the cluster or waiting one
// has that fingerprint, so it changes no answer about them.
func revokedWithFingerprint(st consensus.ClusterState, key string) []string {
	var found []string
	for id := range st.Revoked {
		if p, err := peer.Decode(id); err == nil && strings.EqualFold(consensus.Fingerprint(p), key) {
			found = append(found, id)
		}
	}
	return found
}

// CreateToken implements webui.Admission: a join token (role member or
// worker, 24 h by default) or an API credential (admin or viewer).
func (n *Node) CreateToken(ctx context.Context, req webui.TokenRequest, auth string) (webui.TokenCreated, error) {
	st := n.raft.State()
	if !st.Initialized() {
		return webui.TokenCreated{}, fmt.Errorf("%w: this node is not in a cluster yet", webui.ErrUnavailable)
	}
	var ttl time.Duration
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d < 0 {
			return webui.TokenCreated{}, marked{fmt.Errorf("ttl %q: want a duration such as 24h", req.TTL), webui.ErrInvalid}
		}
		ttl = d
	}
	if req.Uses < 0 {
		return webui.TokenCreated{}, marked{errors.New("uses must be ≥ 0"), webui.ErrInvalid}
	}
	now := n.clusterNow() // the token expires by the cluster's clock, whatever this node's says
	switch req.Role {
	case consensus.RoleMember, consensus.RoleWorker:
		if req.TTL == "" {
			ttl = 24 * time.Hour
		}
		id, secret, t := consensus.NewJoinToken(st.ClusterID)
		t.Role, t.Uses, t.Created = req.Role, req.Uses, now
		if ttl > 0 {
			t.Expires = now.Add(ttl)
		}
		cmd, err := consensus.NewCommand(consensus.OpTokenAdd, consensus.TokenAdd{ID: id, Token: t})
		if err != nil {
			return webui.TokenCreated{}, err
		}
		if _, err := n.raft.ApplyAs(ctx, cmd, auth); err != nil {
			return webui.TokenCreated{}, apiErr(err)
		}
		return webui.TokenCreated{Token: secret, ID: id, Role: req.Role, Kind: "join", Expires: t.Expires}, nil
	case consensus.RoleAdmin, consensus.RoleViewer:
		if req.Uses != 0 || req.TTL != "" {
			return webui.TokenCreated{}, marked{errors.New("API credentials have no ttl or uses: revoke them with hydra token revoke"), webui.ErrInvalid}
		}
		secret := newSecret()
		id := req.Role + "-" + newSecret()[:8]
		cmd, err := consensus.NewCommand(consensus.OpCredAdd, consensus.CredAdd{ID: id, Cred: consensus.Cred{Role: req.Role, Hash: consensus.HashSecret(secret), Created: now}})
		if err != nil {
			return webui.TokenCreated{}, err
		}
		if _, err := n.raft.ApplyAs(ctx, cmd, auth); err != nil {
			return webui.TokenCreated{}, apiErr(err)
		}
		return webui.TokenCreated{Token: secret, ID: id, Role: req.Role, Kind: "api"}, nil
	}
	return webui.TokenCreated{}, marked{fmt.Errorf("role %q: want member, worker, admin or viewer", req.Role), webui.ErrInvalid}
}

func newSecret() string { return randomSecret() }

// Tokens implements webui.Admission: join tokens and API credentials,
// without their secrets.
func (n *Node) Tokens() []webui.TokenInfo {
	st := n.raft.State()
	out := []webui.TokenInfo{}
	for id, t := range st.JoinTokens {
		out = append(out, webui.TokenInfo{ID: id, Kind: "join", Role: t.Role, Created: t.Created, Expires: t.Expires, Uses: t.Uses, Used: t.Used})
	}
	for id, c := range st.Creds {
		out = append(out, webui.TokenInfo{ID: id, Kind: "api", Role: c.Role, Node: c.Node, Created: c.Created})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// RevokeToken implements webui.Admission: a join token or API credential.
func (n *Node) RevokeToken(ctx context.Context, id, auth string) error {
	st := n.raft.State()
	op := consensus.OpTokenRemove
	if _, ok := st.Creds[id]; ok {
		op = consensus.OpCredRemove
	} else if _, ok := st.JoinTokens[id]; !ok {
		return marked{fmt.Errorf("no such token or credential %q", id), webui.ErrNotFound}
	}
	cmd, err := consensus.NewCommand(op, consensus.SecretRemove{ID: id})
	if err != nil {
		return err
	}
	_, err = n.raft.ApplyAs(ctx, cmd, auth)
	return apiErr(err)
}

// SetAdmit implements webui.Admission: the admission mode.
func (n *Node) SetAdmit(ctx context.Context, mode, auth string) error {
	if mode != consensus.AdmitApproval && mode != consensus.AdmitLAN {
		return marked{fmt.Errorf("mode %q: want approval or lan", mode), webui.ErrInvalid}
	}
	cmd, err := consensus.NewCommand(consensus.OpAdmit, consensus.AdmitMode{Mode: mode})
	if err != nil {
		return err
	}
	_, err = n.raft.ApplyAs(ctx, cmd, auth)
	if err == nil {
		n.log.Warn("admission mode changed", "mode", mode)
	}
	return apiErr(err)
}

// pendingStatus converts the pending list for the API.
func (n *Node) pendingStatus() []webui.PendingNode {
	out := []webui.PendingNode{}
	for _, p := range n.raft.Pending() {
		out = append(out, webui.PendingNode{ID: p.ID, Name: p.Name, Addrs: append([]string{}, p.Addrs...), Fingerprint: p.Fingerprint, LastSeen: p.LastSeen})
	}
	return out
}

// apiErr is err as the API's handlers tell it apart: marked with webui's error for what the
// consensus error means (ErrForbidden: 403, ErrNoSuchNode: 404, ErrInvalid: 400, ErrConflict
// and any other refusal of the cluster's state machine: 409), and unavailable's (503). What it
// leaves unmarked is the server's own failure (500).
func apiErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, consensus.ErrForbidden):
		err = marked{err, webui.ErrForbidden}
	case errors.Is(err, consensus.ErrNoSuchNode):
		err = marked{err, webui.ErrNotFound}
	case errors.Is(err, consensus.ErrInvalid):
		err = marked{err, webui.ErrInvalid}
	case errors.Is(err, consensus.ErrConflict),
		errors.Is(err, consensus.ErrRejected) && !errors.Is(err, consensus.ErrOpUnsupported) && !errors.Is(err, consensus.ErrSettingsChanged):
		err = marked{err, webui.ErrConflict}
	}
	return unavailable(err)
}

// marked is an error that errors.Is also takes for mark, with the text of the error alone.
type marked struct {
	error
	mark error
}

func (m marked) Unwrap() []error { return []error{m.error, m.mark} }
