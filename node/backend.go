package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"time"

	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/webui"
)

var _ webui.Backend = (*Node)(nil)

// offlineAfter is how long a node may stay silent on the announcement topic
// before it is shown offline.
func (n *Node) offlineAfter() time.Duration { return 3*n.cfg.AnnounceInterval + time.Second }

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
		sp, _ := n.peers.get(id)
		ns := get(id)
		a := sp.ann
		ns.Name, ns.OS, ns.Arch, ns.Cores, ns.Version = a.Name, a.OS, a.Arch, a.Cores, a.Version
		ns.Load, ns.Uptime, ns.LastSeen = a.Load, a.Uptime, sp.when.UTC()
		ns.Addrs = append([]string{}, a.Addrs...)
		ns.Online = id == self || now.Sub(sp.when) < n.offlineAfter()
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
	me.State, me.Reason, me.Power = n.workState(), n.owner.get().Reason, n.owner.power()
	for _, ns := range byID {
		// With --voter auto, a node on battery only fills a seat no mains
		// node can take: that, not the generic reason, is why it has none.
		if ns.Role == webui.RoleNonvoter && ns.Power == "battery" && st.Nodes[ns.ID].Voter == consensus.VoterAuto {
			ns.NonvoterReason = "on battery"
		}
	}
	for _, ns := range byID {
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

// Token implements webui.Backend: the cluster's API token, "" until known.
func (n *Node) Token() string { return n.raft.State().Token }

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
		return err
	}
	n.leaveOnce.Do(func() { close(n.left) })
	return nil
}

// watchToken writes the cluster's API token into the data directory and
// prints the web address with it once the node knows it (after bootstrap or
// join), and again if it ever changes.
func (n *Node) watchToken(ctx context.Context) {
	t := time.NewTimer(200 * time.Millisecond)
	defer t.Stop()
	for {
		if tok := n.raft.State().Token; tok != "" && tok != n.tokenSeen {
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
