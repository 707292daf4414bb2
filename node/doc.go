// Package node wires one Hydra node: identity → libp2p host → consensus →
// discovery → announcements → work (coordinator and worker) → HTTP.
//
// It is the only package that knows all the others (p2p, consensus, compute,
// webui, node/work, node/child, node/owner); they never import it. The
// coordinator (node/work) is started through consensus.Raft.OnLeader, the
// one leadership path (Nomad's establishLeadership/revokeLeadership): it
// starts after raft's Barrier and stops the moment leadership is lost.
package node
