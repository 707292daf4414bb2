// Package work is the work protocol: the coordinator (leader-only: it owns
// the scheduler for one leadership term, leases chunks to workers and
// commits their results through raft in batches) and the worker (on every
// computing node: it keeps one chunk in hand and one queued in the compute
// child process, and keeps each result until the coordinator acknowledged
// it as committed).
//
// It reaches the rest of the node only through narrow interfaces: apply a
// command (Apply), read the replicated jobs (Jobs), call a peer (Call), run a
// chunk (Runner), the owner's decision and the current leader. The node
// wires them and starts the coordinator through its one leadership path
// (consensus.Raft.OnLeader). The coordinator stamps what it commits with the
// cluster's clock, the median of the clocks of the workers that synced with
// it (stampLocked), never its own alone (docs/design.md §2, Time).
//
// It must never import node or p2p: it knows peers only by ID, and the node
// carries its messages. From webui it uses only the Activity type it
// publishes.
package work
