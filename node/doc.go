// Package node wires one Hydra node: identity → libp2p host → consensus →
// discovery → announcements → leader-only work → HTTP.
//
// It is the only package that knows all the others (p2p, consensus, compute,
// webui); they never import it. The leader-only hook (OnLeader) follows
// Nomad's establishLeadership/revokeLeadership: one place knows what being
// the coordinator switches on, started after raft's Barrier and stopped the
// moment leadership is lost.
package node
