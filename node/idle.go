package node

import (
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/consensus"
)

// Idle cost. A node with no job should cost next to nothing: a laptop runs it on battery. So
// nothing polls fast while there is nothing to do; the loops back off and are woken by the
// events that matter instead (a job submitted, cancelled or deleted; a chunk leased):
//
//	loop                      busy              idle
//	worker ↔ coordinator      every 500 ms      every 10 s, and at once on a job change (node/work)
//	coordinator reconcile     on a job change   on a job change (and a safety pass every 10 s)
//	coordinator lease tick    every 500 ms      every 10 s, every 500 ms again at once on a job change (node/work)
//	eviction (leader)         every minute, a raft entry only when a finished job is due (JobStore.Evictable)
//	activity gossip           every second      when it changed, at least every idlePublishEvery
//	announcements             every second      every idleAnnounceEvery, and at once on a lease or an owner decision,
//	                                            on this node's admission (hello) and, at most once a second,
//	                                            to answer a new member's hello (welcome.go)
//	owner sensors             every 200 ms      every idleOwnerEvery, and at once on a lease
//	  with --dedicated        every dedicatedOwnerEvery (schedule and temperature only)
//	Go scheduler              GOMAXPROCS        1 P (idleProcs): no second thread woken per event
//	API token watch           every 200 ms until known, then every tokenEvery
//	compute child             running           exits after childIdleExit (the next chunk starts it)
//	raft (consensus)          heartbeats every 300–600 ms; an AppendEntries every Commit (5 s)
//	                          or, after writes, a trailing barrier (consensus/trailer.go)
//	autopilot (leader)        every second      every 10 s once the servers stood still, every second
//	                                            again on a change (consensus/pace.go); a stats call
//	                                            per server every 30 s while heartbeats answer
//	membership loop           every second      on an applied entry or a leader change, at least every 15 s
//	gossipsub heartbeat       every 5 s (p2p/gossip.go)
const (
	idlePublishEvery = 10 * time.Second
	idleOwnerEvery   = 10 * time.Second
	// dedicatedOwnerEvery: a --dedicated node's owner loop, busy or not (the owner rules are off).
	dedicatedOwnerEvery = 5 * time.Second
	tokenEvery          = 5 * time.Second
	childIdleExit       = 20 * time.Second
	// idleAnnounceEvery: an idle node's announcements, when nothing changed (announce).
	idleAnnounceEvery = 5 * time.Second
	// maxAnnounceEvery bounds the interval a peer may claim (decodeAnnouncement).
	maxAnnounceEvery = time.Minute
)

// jobsApp is the raft App of the node: the job state, with a hook that wakes the worker and
// the coordinator when a job appears, is cancelled or deleted, or the whole state is restored
// (they sleep while there is nothing to do).
type jobsApp struct {
	*compute.JobStore
	changed func(onlyNew bool) // onlyNew: a job was submitted, nothing else changed
}

// Apply implements consensus.App.
func (a jobsApp) Apply(op byte, payload []byte, index uint64) any {
	out := a.JobStore.Apply(op, payload, index)
	switch op {
	case compute.OpSubmit:
		a.changed(true)
	case compute.OpCancel, compute.OpDelete:
		a.changed(false)
	}
	return out
}

var _ consensus.BatchApp = jobsApp{}

// ApplyBatch implements consensus.BatchApp: one raft entry's commands, woken about once.
func (a jobsApp) ApplyBatch(ops []byte, payloads [][]byte, index uint64) ([]any, error) {
	out, err := a.JobStore.ApplyBatch(ops, payloads, index)
	submitted, changed := false, false
	for _, op := range ops {
		switch op {
		case compute.OpSubmit:
			submitted = true
		case compute.OpCancel, compute.OpDelete:
			changed = true
		}
	}
	if changed || submitted {
		a.changed(!changed)
	}
	return out, err
}

// Restore implements consensus.App.
func (a jobsApp) Restore(r io.Reader) error {
	err := a.JobStore.Restore(r)
	a.changed(false)
	return err
}

// idleProcs runs the process on one P while its node is idle: the cluster has no job and the
// worker holds nothing. Every event of an idle node (a raft heartbeat, an announcement, a timer)
// readies a goroutine or two; with more than one P the runtime wakes a second OS thread to run
// them and parks it again at once, which on a virtual machine costs more than the event's own
// work (measured on a 3-node idle cluster: about −20 % CPU with one P). The process's setting
// comes back as soon as a job appears (jobsChanged) or a chunk is leased (the owner loop). It is
// per process: with several nodes in one process (tests) one P only while they all are idle.
type idleProcs struct {
	mu    sync.Mutex
	busy  int            // GOMAXPROCS when busy (the process's setting at start)
	nodes map[*Node]bool // idle or not, per node of the process
	one   bool           // running on one P now
}

var procs = &idleProcs{busy: runtime.GOMAXPROCS(0), nodes: map[*Node]bool{}}

// set records whether n is idle and switches between one P and the busy setting.
func (p *idleProcs) set(n *Node, idle bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nodes[n] = idle
	p.applyLocked()
}

// forget drops a node that stopped.
func (p *idleProcs) forget(n *Node) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.nodes, n)
	p.applyLocked()
}

func (p *idleProcs) applyLocked() {
	one := len(p.nodes) > 0
	for _, idle := range p.nodes {
		one = one && idle
	}
	if one == p.one || p.busy <= 1 {
		return
	}
	p.one = one
	if one {
		runtime.GOMAXPROCS(1)
	} else {
		runtime.GOMAXPROCS(p.busy)
	}
}

// jobsChanged wakes whoever waits for a change of the jobs (see jobsApp). Raft may restore a
// snapshot before the coordinator or the worker exist: they read the job state when they start.
// onlyNew says a job was submitted and nothing else changed (the coordinator then reads only the
// new jobs).
func (n *Node) jobsChanged(onlyNew bool) {
	if h := n.appliedHook.Load(); h != nil {
		(*h)()
	}
	procs.set(n, false)
	if c := n.wakeCoord.Load(); c != nil {
		if onlyNew {
			c.JobSubmitted()
		} else {
			c.JobsChanged()
		}
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
