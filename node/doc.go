// Package node wires one Hydra node: identity → libp2p host → consensus →
// discovery → announcements → work (coordinator and worker) → HTTP.
//
// It is the only package that knows all the others (p2p, consensus, compute,
// webui, node/work, node/child, node/owner, internal/...); they never import
// it. The coordinator (node/work) is started through consensus.Raft.OnLeader,
// the one leadership path (Nomad's establishLeadership/revokeLeadership): it
// starts after raft's Barrier and stops the moment leadership is lost.
//
// # Where each part lives
//
//	node.go, config.go          New, Run, Close; Config and its defaults
//	datalock*.go, files.go      DATA/lock; DATA/api-token and api-url for the CLI
//	diskspace*.go, diskwait.go  Serve; wait for free disk space, serving a waiting view
//	fatal.go                    stop on an entry this node cannot apply or a failing disk, saying why
//	recover*.go                 hydra recover, replaying into a scratch result store; files left to DATA's owner
//	announce.go, activity.go    gossip: each node's announcement; the coordinator's activity
//	welcome.go                  a new member's hellos and the members' prompt answers to them
//	peers.go                    Connect; the work protocol's calls and its members
//	clock.go                    the cluster's clock, learnt from the leader's activity
//	backend.go, jobs.go         what webui asks of the node: status, jobs, results
//	admission.go                approve, deny, remove, tokens, credentials (webui.Admission)
//	modules.go, modfetch.go     WebAssembly modules: the store, compiled code, transfer
//	readbarrier.go              a check on this replica sees every write committed before it
//	ownerloop.go, idle.go       the owner policy applied to compute; the idle schedule
//	metrics.go                  /metrics, read at scrape time
//	version.go                  build information
package node
