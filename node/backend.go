package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/p2p"
	"github.com/hydra-compute/hydra/webui"
)

var _ webui.Backend = (*Node)(nil)

// NodeNames implements webui.NodeNamer: the names of the replicated node
// registry, overridden by the latest announcements of members, as Status
// names them, without the rest of Status.
func (n *Node) NodeNames() map[string]string {
	names := map[string]string{}
	for id, m := range n.raft.State().Nodes {
		names[id] = m.Name
	}
	for _, id := range n.peers.ids() {
		if pid, err := peer.Decode(id); err != nil || n.host.Access(pid) != p2p.AccessMember {
			continue
		}
		if sp, ok := n.peers.get(id); ok {
			names[id] = sp.ann.Name
		}
	}
	return names
}

var _ webui.NodeNamer = (*Node)(nil)

// offlineAfter is how long a node may stay silent on the announcement topic
// before it is shown offline.
func (n *Node) offlineAfter() time.Duration { return offlineAfter(n.cfg.AnnounceInterval) }

// offlineAfter is how long a node that announces every d may stay silent before it counts as
// offline: three announcements missed, and a second.
func offlineAfter(d time.Duration) time.Duration { return 3*d + time.Second }

// Status implements webui.Backend: the cluster as this node's replica sees
// it, merging the raft configuration (roles), the replicated node registry
// (names, platforms) and the gossip announcements (liveness, load).
func (n *Node) Status() webui.Status {
	now := time.Now()
	st := n.raft.State()
	leader, _ := n.raft.Leader()
	self := n.host.ID().String()
	out := webui.Status{
		Self:      webui.NodeRef{ID: self, Name: n.cfg.Name},
		Cluster:   n.cfg.Cluster,
		ClusterID: st.ClusterID,
		Leader:    leader.String(),
		Term:      n.raft.Term(),
		Version:   Version,
	}
	if leader == "" {
		out.Leader = ""
	}
	out.Pending = n.pendingStatus()
	out.Fingerprint = consensus.Fingerprint(n.host.ID())
	out.Admit = st.AdmitMode()
	switch out.Admission = n.raft.Role(); out.Admission {
	case "":
		out.Admission = "waiting"
	}
	byID := map[string]*webui.NodeStatus{}
	get := func(id string) *webui.NodeStatus {
		if ns, ok := byID[id]; ok {
			return ns
		}
		ns := &webui.NodeStatus{ID: id, Role: webui.RoleNone, State: webui.StateOffline, Addrs: []string{}}
		byID[id] = ns
		return ns
	}
	why := n.raft.NonvoterReasons()
	for _, s := range n.raft.Servers() {
		ns := get(s.ID.String())
		switch {
		case s.ID.String() == out.Leader:
			ns.Role = webui.RoleLeader
		case s.Voter:
			ns.Role = webui.RoleVoter
		default:
			ns.Role = webui.RoleNonvoter
			ns.NonvoterReason = why[s.ID]
		}
	}
	for id, m := range st.Nodes {
		ns := get(id)
		ns.Name, ns.OS, ns.Arch, ns.Cores, ns.Version = m.Name, m.OS, m.Arch, m.Cores, m.Version
	}
	for _, id := range n.peers.ids() {
		if pid, err := peer.Decode(id); err != nil || n.host.Access(pid) != p2p.AccessMember {
			continue // evicted, or heard before it was: not in the cluster
		}
		sp, _ := n.peers.get(id)
		ns := get(id)
		a := sp.ann
		ns.Name, ns.OS, ns.Arch, ns.Cores, ns.Version = a.Name, a.OS, a.Arch, a.Cores, a.Version
		ns.Load, ns.Uptime, ns.LastSeen, ns.ClockOffset = a.Load, a.Uptime, sp.when.UTC(), a.ClockOffset
		ns.Addrs = append([]string{}, a.Addrs...)
		// An idle peer announces less often (announce).
		ns.Online = id == self || now.Sub(sp.when) < offlineAfter(announcedEvery(a, n.cfg.AnnounceInterval))
		if ns.Online {
			ns.State, ns.Reason, ns.Power = a.State, a.Reason, a.Power
			if ns.State == "" {
				ns.State = webui.StateIdle
			}
		}
	}
	// This node's own state is known now, not only as of its last
	// announcement (up to AnnounceInterval old).
	me := get(self)
	me.Online = true
	me.ClockOffset = n.clock.offset(n.wall()).Round(time.Second).Seconds()
	me.State, me.Reason, me.Power = n.workState(), n.owner.get().Reason, n.owner.power()
	for _, ns := range byID {
		// With --voter auto, a node on battery only fills a seat no mains
		// node can take: that, not the generic reason, is why it has none.
		if ns.Role == webui.RoleNonvoter && ns.Power == "battery" && st.Nodes[ns.ID].Voter == consensus.VoterAuto {
			ns.NonvoterReason = "on battery"
		}
	}
	audits := n.jobs.NodeAudits()
	for id, ns := range byID {
		a, ok := audits[id]
		if !ok {
			a = n.jobs.NodeAudit(id)
		}
		ns.Audit = webui.NodeAudit{Passed: a.Passed, Failed: a.Failed, State: string(a.State)}
		out.Nodes = append(out.Nodes, *ns)
	}
	sort.Slice(out.Nodes, func(i, j int) bool {
		if out.Nodes[i].Name != out.Nodes[j].Name {
			return out.Nodes[i].Name < out.Nodes[j].Name
		}
		return out.Nodes[i].ID < out.Nodes[j].ID
	})
	return out
}

// Token implements webui.Backend; a node checks credentials with Authorize
// instead (several, hashed), so it has no single token to compare.
func (n *Node) Token() string { return "" }

// APIToken is this node's own admin credential once the cluster has
// admitted the node and registered it (what DATA/api-token holds), else "".
func (n *Node) APIToken() string {
	if n.raft.NodeTokenActive() {
		return n.raft.NodeToken()
	}
	return ""
}

// Authorize implements webui.Authorizer: the role of an API credential
// (admin or viewer), or "" if it is none of this cluster's.
func (n *Node) Authorize(tok string) string {
	st := n.raft.State()
	if _, c, ok := st.CredFor(tok); ok {
		return c.Role
	}
	return ""
}

var _ webui.ReadCookier = (*Node)(nil)

// ReadCookie implements webui.ReadCookier: the read cookie's value for tok, derived from the
// credential's stored hash (consensus.ReadCookie), "" for a token that is no credential.
func (n *Node) ReadCookie(tok string) string {
	if _, _, ok := n.raft.State().CredFor(tok); !ok {
		return ""
	}
	return consensus.ReadCookie(consensus.HashSecret(tok))
}

// AuthorizeReadCookie implements webui.ReadCookier: the role of the credential whose read
// cookie is v.
func (n *Node) AuthorizeReadCookie(v string) string {
	if c, ok := n.raft.State().CredForReadCookie(v); ok {
		return c.Role
	}
	return ""
}

var _ webui.Truster = (*Node)(nil)

// TrustReset implements webui.Truster: it clears a node's failed audits and
// its quarantine through raft (hydra trust reset NODE). node is a peer ID or
// the name of a node the cluster knows.
func (n *Node) TrustReset(ctx context.Context, node string) (string, error) {
	id := ""
	for _, ns := range n.Status().Nodes {
		if ns.ID == node || (ns.Name == node && ns.Name != "") {
			if id != "" && id != ns.ID {
				return "", marked{fmt.Errorf("%q names more than one node: use its ID", node), webui.ErrInvalid}
			}
			id = ns.ID
		}
	}
	if id == "" {
		return "", marked{fmt.Errorf("no node %q in this cluster", node), webui.ErrInvalid}
	}
	if _, err := n.applyJob(ctx, compute.TrustReset{Node: id}); err != nil {
		return "", apiErr(fmt.Errorf("trust reset %s: %w", id, err)) // refused by the leader: 403; no leader: 503
	}
	n.log.Warn("trust reset: the node is new again", "node", id)
	return id, nil
}

// Healthy implements webui.Backend.
func (n *Node) Healthy() error {
	if n.raft.State().ClusterID == "" {
		return errors.New("not in a cluster yet")
	}
	if l, _ := n.raft.Leader(); l == "" {
		return errors.New("no leader known")
	}
	return nil
}

// Leave implements webui.Backend: it removes this node from the cluster for
// good (hydra leave) and then stops it.
func (n *Node) Leave(ctx context.Context) error {
	if err := n.raft.Leave(ctx); err != nil {
		return apiErr(err) // no leader to ask (503), the only server (409)
	}
	n.leaveOnce.Do(func() { close(n.left) })
	return nil
}

// watchToken writes this node's admin credential into the data directory
// and prints the web address with it once the cluster has admitted the
// node and registered the credential (after bootstrap or approval).
func (n *Node) watchToken(ctx context.Context) {
	t := time.NewTimer(200 * time.Millisecond)
	defer t.Stop()
	fp := consensus.Fingerprint(n.host.ID())
	fmt.Fprintf(n.cfg.Out, "Hydra node fingerprint: %s\n", fp)
	toldWaiting := false
	role := ""
	for {
		// Admitted (or removed): the announce loop says hello to the members at once (welcome).
		if r := n.raft.Role(); r != role {
			role = r
			poke(n.announceWake)
		}
		if !toldWaiting && n.raft.Waiting() {
			toldWaiting = true
			fmt.Fprintf(n.cfg.Out, "Waiting for approval: check the fingerprint %s, then approve it in a member's web UI or run 'hydra approve %s' on a member\n", fp, fp)
		}
		// Only an admitted member's own credential is written: a node that
		// waits for approval, or a worker, has none.
		if tok := n.raft.NodeToken(); tok != n.tokenSeen && n.raft.NodeTokenActive() {
			if err := writeToken(n.cfg.DataDir, tok); err != nil {
				n.log.Error("cannot write API token", "err", err)
			} else {
				n.tokenSeen = tok
				fmt.Fprintf(n.cfg.Out, "Hydra web UI: %s/?token=%s\n", n.publicURL(), url.QueryEscape(tok))
			}
		}
		if n.tokenSeen != "" {
			t.Reset(tokenEvery) // known: it only changes if the cluster is re-created
		} else {
			t.Reset(200 * time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// publicURL is the web address to print for people: the host name when the
// API listens on every interface.
func (n *Node) publicURL() string {
	ta, ok := n.httpLn.Addr().(*net.TCPAddr)
	if !ok || !ta.IP.IsUnspecified() {
		return n.httpURL
	}
	return "http://" + net.JoinHostPort(hostname(), fmt.Sprint(ta.Port))
}
