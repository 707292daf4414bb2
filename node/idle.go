package node

import (
	"io"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/consensus"
)

// Idle cost. A node with no job should cost next to nothing: a laptop runs it on battery. So
// nothing polls fast while there is nothing to do; the loops back off and are woken by the
// events that matter instead (a job submitted, cancelled or deleted; a chunk leased):
//
//	loop                      busy              idle
//	worker ↔ coordinator      every 500 ms      every 2 s, and at once on a job change (node/work)
//	coordinator reconcile     on a job change   on a job change (and a safety pass every second)
//	coordinator lease tick    every 500 ms      every 2 s (node/work)
//	activity gossip           every second      when it changed, at least every idlePublishEvery
//	owner sensors             every 200 ms      every idleOwnerEvery, and at once on a lease
//	API token watch           every 200 ms until known, then every tokenEvery
//	compute child             running           exits after childIdleExit (the next chunk starts it)
//	raft (consensus)          heartbeats every 100–200 ms, AppendEntries every Commit (250 ms)
const (
	idlePublishEvery = 10 * time.Second
	idleOwnerEvery   = time.Second
	tokenEvery       = 5 * time.Second
	childIdleExit    = 20 * time.Second
)

// jobsApp is the raft App of the node: the job state, with a hook that wakes the worker and
// the coordinator when a job appears, is cancelled or deleted, or the whole state is restored
// (they sleep while there is nothing to do).
type jobsApp struct {
	*compute.JobStore
	changed func()
}

// Apply implements consensus.App.
func (a jobsApp) Apply(op byte, payload []byte, index uint64) any {
	out := a.JobStore.Apply(op, payload, index)
	switch op {
	case compute.OpSubmit, compute.OpCancel, compute.OpDelete:
		a.changed()
	}
	return out
}

// Restore implements consensus.App.
func (a jobsApp) Restore(r io.Reader) error {
	err := a.JobStore.Restore(r)
	a.changed()
	return err
}

// jobsChanged wakes whoever waits for a change of the jobs (see jobsApp). Raft may restore a
// snapshot before the coordinator or the worker exist: they read the job state when they start.
func (n *Node) jobsChanged() {
	if c := n.wakeCoord.Load(); c != nil {
		c.JobsChanged()
	}
	if w := n.wakeWorker.Load(); w != nil {
		w.Wake()
	}
}

// poke wakes a loop waiting on ch without blocking (a wake-up already pending is enough).
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// The job state's snapshot is streamed from its store, never buffered whole.
var _ consensus.SnapshotCapturer = jobsApp{}
