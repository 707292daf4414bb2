package work

import (
	"fmt"
	"strings"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/audit"
)

// Protocol is the coordinator ⇄ worker protocol: a worker's sync
// request carries its finished results, its progress and how many chunks it
// can take; the answer carries new leases, which results are committed and
// which leases to drop. One request/response pair per exchange (p2p.Call),
// so a lost stream loses nothing: results stay with the worker until acked.
const Protocol = "/hydra/work/1.0.0"

// syncRequest is what a worker sends its coordinator.
type syncRequest struct {
	Want     int             `json:"want"`             // chunks it can take now (0–2; up to 8 while its chunks are short)
	Progress []leaseProgress `json:"progress"`         // units done of the chunks in hand
	Results  []result        `json:"results"`          // finished chunks not yet acknowledged
	Failed   []uint64        `json:"failed"`           // leases it could not run
	Faults   []fault         `json:"faults,omitempty"` // of those, the ones whose module failed, and how
	State    string          `json:"state"`            // working | idle | paused…
	Paused   bool            `json:"paused"`           // true: lease nothing
	Term     uint64          `json:"term"`             // the coordinator term its leases came from
	Kernel   string          `json:"kernel,omitempty"`
	Arch     string          `json:"arch,omitempty"` // GOARCH: audits prefer another architecture
	Leases   []uint64        `json:"leases"`         // lease IDs it holds (running or queued)
	Held     []held          `json:"held"`           // the chunk in hand, whichever coordinator leased it
	Now      time.Time       `json:"now,omitzero"`   // the worker's clock: the cluster clock is their median
}

// fault is a lease that failed because of its module (child.ModuleFault): a trap, an endless
// loop, memory past the cap. The coordinator fails the job once its chunks failed so on enough
// different nodes.
type fault struct {
	Lease uint64 `json:"lease"`
	compute.Chunk
	Msg string `json:"msg"`
}

// Bounds of a sync request's faults.
const (
	maxFaults   = 64
	maxFaultMsg = 1024
)

func clipFault(msg string) string {
	if len(msg) > maxFaultMsg {
		return strings.ToValidUTF8(msg[:maxFaultMsg-3], "") + "..."
	}
	return msg
}

// held is the chunk a worker is computing and the lease it came under, so
// that a new coordinator can adopt it rather than hand its range out again.
type held struct {
	ID   uint64 `json:"id"`
	Term uint64 `json:"term"`
	compute.Chunk
}

// adoption renames a lease of a previous coordinator into one of this one.
type adoption struct {
	Old     uint64 `json:"old"`
	OldTerm uint64 `json:"old_term"`
	New     uint64 `json:"new"`
}

type leaseProgress struct {
	Lease uint64 `json:"lease"`
	Done  uint64 `json:"done"`
}

// result is one finished chunk (or the finished prefix of one), computed
// under lease Lease of coordinator term Term. The coordinator acknowledges
// it by its Chunk, which a new leader does not renumber (an audit's answer
// by its audit ID).
type result struct {
	Lease uint64 `json:"lease"`
	Term  uint64 `json:"term"`
	compute.Chunk
	Seconds float64 `json:"seconds"`
	Payload []byte  `json:"payload"`
	// Root is the worker's commitment to the result: the Merkle root of its
	// blocks (compute.Commitment). A full audit's result carries one too.
	Root audit.Hash `json:"root"`
	// Audit is set on an audit's answer (Lease is then the audit lease).
	Audit *auditAnswer `json:"audit,omitempty"`
}

// auditAnswer is an auditor's answer: for a block audit its leaves of the
// chosen blocks, in order; for a full audit (Full) the whole chunk's result
// is the result's Payload and Root.
type auditAnswer struct {
	ID     uint64       `json:"id"`
	Full   bool         `json:"full,omitempty"`
	Leaves []audit.Hash `json:"leaves,omitempty"`
}

// lease is a chunk granted to a worker by the coordinator of term Term.
type lease struct {
	ID   uint64 `json:"id"`
	Term uint64 `json:"term"` // the coordinator term that leased it
	compute.Chunk
	Spec compute.JobSpec `json:"spec"`
	// Audit makes the lease an audit of the chunk: recompute its Spans (a
	// block audit) or all of it (Full), never part of a job's pending work.
	Audit *auditWork `json:"audit,omitempty"`
}

// auditWork is what an auditor recomputes.
type auditWork struct {
	ID    uint64          `json:"id"`
	Full  bool            `json:"full,omitempty"`
	Spans []compute.Range `json:"spans"`
}

// syncResponse is the coordinator's answer.
type syncResponse struct {
	Term   uint64          `json:"term"`
	Leases []lease         `json:"leases"`
	Acked  []compute.Chunk `json:"acked"` // committed (or refused for good): forget them
	// AckedAudits: audit answers (by audit ID) committed or refused for good.
	AckedAudits []uint64   `json:"acked_audits,omitempty"`
	Cancel      []uint64   `json:"cancel"`  // leases to drop (a backup won, job cancelled or done); not an expired one it runs
	Adopted     []adoption `json:"adopted"` // chunks in hand from a previous coordinator, now leased here
	// Idle: the coordinator has no unfinished job. A worker with nothing in hand then syncs
	// only every idleSyncEvery (and at once when its node sees a job submitted: Worker.Wake).
	Idle bool `json:"idle,omitempty"`
}

// maxSyncResults bounds the results of one sync request.
const maxSyncResults = 256

// validate bounds a sync request from the network.
func (r *syncRequest) validate() error {
	if r.Want < 0 || r.Want > 8 {
		return fmt.Errorf("want %d out of range", r.Want)
	}
	if len(r.Progress) > 64 || len(r.Results) > maxSyncResults || len(r.Failed) > 64 || len(r.Leases) > 64 || len(r.Held) > 8 {
		return fmt.Errorf("too many entries")
	}
	if len(r.Faults) > maxFaults {
		return fmt.Errorf("%d faults, at most %d", len(r.Faults), maxFaults)
	}
	for _, f := range r.Faults {
		if len(f.Msg) > maxFaultMsg {
			return fmt.Errorf("fault of lease %d: message of %d bytes, at most %d", f.Lease, len(f.Msg), maxFaultMsg)
		}
	}
	for _, res := range r.Results {
		if res.End <= res.Start || len(res.Job) == 0 || len(res.Job) > 64 {
			return fmt.Errorf("result %s [%d,%d): bad range or job", res.Job, res.Start, res.End)
		}
		if res.Seconds < 0 || res.Seconds > 1e7 {
			return fmt.Errorf("result %s: compute seconds %g out of range", res.Job, res.Seconds)
		}
		if res.Audit != nil && len(res.Audit.Leaves) > audit.MaxLeaves {
			return fmt.Errorf("result %s: %d audit leaves, at most %d", res.Job, len(res.Audit.Leaves), audit.MaxLeaves)
		}
	}
	return nil
}
