package compute

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/hydra-compute/hydra/compute/audit"
)

// Audits in the replicated job state (docs/design.md §4). A result of an audited Results command
// is accepted (its range is taken, its payload stored) but counts in its job's answer only once
// it is cleared: sampled out by a Challenge, or its audit passed. Every step is a raft command,
// so a new leader finds the audits in flight in the state and leases them again.

// auditStep is where an accepted chunk is in its audit.
type auditStep uint8

const (
	stepCommitted auditStep = iota + 1 // accepted, waiting for its Challenge
	stepAuditing                       // chosen: an auditor recomputes its blocks
	stepDisputed                       // the auditor disagreed: a third node recomputes it all
	stepCleared                        // sampled out or passed: counted
)

// auditRec is an accepted chunk under audit.
type auditRec struct {
	rng     Range
	node    string
	kind    Kind
	seq     uint64 // the node's count of accepted chunks when this one was accepted
	leaves  int
	root    audit.Hash
	hits    uint64
	step    auditStep
	audited bool // cleared by a passed audit (not sampled out)
	id      uint64
	blocks  []int
	claimed []audit.Hash // the node's leaves at blocks
	auditor string       // disputes: the auditor who disagreed
	theirs  []audit.Hash // disputes: the auditor's leaves at blocks
}

// nodeCred is a node's credibility: a Standing per kernel, its failures and its quarantine.
type nodeCred struct {
	kinds       map[Kind]*audit.Standing
	failed      uint64 // failed audits since the last trust reset
	quarantined bool
	seq         uint64 // accepted chunks so far
	lastPass    uint64 // seq of the latest chunk whose audit passed
}

// AuditTask is an audit to lease: recompute Spans of Chunk of Job (a block audit), or the whole
// chunk when Full (a dispute). Node computed the chunk and Auditor (disputes) disagreed with it:
// neither may take the task.
type AuditTask struct {
	ID      uint64
	Job     string
	Spec    JobSpec
	Chunk   Range
	Node    string
	Auditor string
	Spans   []Range
	Full    bool
}

// AuditOutcome is what Apply returns for OpChallenge, OpAudit, OpAuditWaive and OpTrustReset: what changed,
// for the coordinator's logs, metrics and scheduler.
type AuditOutcome struct {
	Audited     int      `json:"audited,omitempty"`     // chunks chosen for audit
	SampledOut  int      `json:"sampled_out,omitempty"` // chunks cleared without audit
	Waived      int      `json:"waived,omitempty"`      // audits cleared unrun (AuditWaive)
	Passed      []string `json:"passed,omitempty"`      // nodes whose audit passed
	Failed      []string `json:"failed,omitempty"`      // nodes whose audit failed
	Quarantined []string `json:"quarantined,omitempty"` // nodes quarantined by this command
	Mismatch    bool     `json:"mismatch,omitempty"`    // an auditor disagreed: dispute opened
	Determinism bool     `json:"determinism,omitempty"` // two trusted nodes disagreed
	Requeued    []Chunk  `json:"requeued,omitempty"`    // ranges to compute again
	Finished    []string `json:"finished,omitempty"`    // jobs this command finished
	Reason      string   `json:"reason,omitempty"`      // why an audit changed nothing
}

// NodeAudit is a node's audit record as the API shows it.
type NodeAudit struct {
	Passed uint64      `json:"passed"`
	Failed uint64      `json:"failed"`
	State  audit.State `json:"state"`
}

func (s *JobStore) cred(node string) *nodeCred {
	c := s.creds[node]
	if c == nil {
		c = &nodeCred{kinds: map[Kind]*audit.Standing{}}
		s.creds[node] = c
	}
	return c
}

func (c *nodeCred) standing(k Kind) *audit.Standing {
	st := c.kinds[k]
	if st == nil {
		st = &audit.Standing{}
		c.kinds[k] = st
	}
	return st
}

// AuditPolicy is the replicated audit policy: every replica decides audits with the same one,
// and a new coordinator compares it with its configuration (the leader's --audit-* values win).
func (s *JobStore) AuditPolicy() audit.Policy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.policy
}

// Quarantined reports whether a node is quarantined: it gets no work and no vote.
func (s *JobStore) Quarantined(node string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := s.creds[node]
	return c != nil && c.quarantined
}

// NodeAudits returns every node's audit record: passed and failed audits over all kernels and
// its standing (trusted once trusted for every kernel it has been audited on).
func (s *JobStore) NodeAudits() map[string]NodeAudit {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]NodeAudit, len(s.creds))
	for id, c := range s.creds {
		out[id] = s.nodeAuditLocked(c)
	}
	return out
}

// NodeAudit returns one node's audit record (a node never audited is new).
func (s *JobStore) NodeAudit(node string) NodeAudit {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if c := s.creds[node]; c != nil {
		return s.nodeAuditLocked(c)
	}
	return NodeAudit{State: audit.StateNew}
}

func (s *JobStore) nodeAuditLocked(c *nodeCred) NodeAudit {
	v := NodeAudit{State: audit.StateNew}
	trusted := len(c.kinds) > 0
	for _, st := range c.kinds {
		v.Passed += st.Passed
		v.Failed += st.Failed
		if !s.policy.Trusted(*st) {
			trusted = false
		}
	}
	switch {
	case c.quarantined:
		v.State = audit.StateQuarantined
	case trusted:
		v.State = audit.StateTrusted
	}
	return v
}

func (s *JobStore) sortedJobsLocked() []*job {
	js := make([]*job, 0, len(s.jobs))
	for _, j := range s.jobs {
		js = append(js, j)
	}
	sort.Slice(js, func(a, b int) bool { return js[a].seq < js[b].seq })
	return js
}

func sortedStarts(m map[uint64]*auditRec) []uint64 {
	out := make([]uint64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

// wait records that the chunk at start of j waits for its Challenge. The store keeps the jobs
// with waiting chunks apart (waitJobs): the coordinator asks for them with every commit, and
// reading every job each time cost a busy leader more than the commit did once the store held
// thousands of finished jobs.
func (s *JobStore) wait(j *job, start uint64) {
	if j.waiting == nil {
		j.waiting = map[uint64]struct{}{}
	}
	j.waiting[start] = struct{}{}
	s.waitJobs[j.id] = j
}

// unwait records that the chunk at start of j no longer waits for its Challenge.
func (s *JobStore) unwait(j *job, start uint64) {
	delete(j.waiting, start)
	if len(j.waiting) == 0 {
		delete(s.waitJobs, j.id)
	}
}

// clear counts a chunk in its job's answer.
func (s *JobStore) clearChunk(j *job, r *auditRec, audited bool, out *AuditOutcome) {
	if r.step == stepCleared {
		return
	}
	if r.id != 0 {
		delete(s.auditIx, r.id)
	}
	if r.step == stepCommitted {
		s.unwait(j, r.rng.Start)
	}
	r.step, r.audited = stepCleared, audited
	r.blocks, r.claimed, r.theirs = nil, nil, nil
	j.open--
	first := j.cleared.Units() == 0
	j.cleared.Add(r.rng)
	j.hits = j.combine(j.hits, r.hits, first)
	s.maybeFinish(j, out)
}

// combine adds a cleared chunk's hits (π) or reduced value (wasm) to the job's answer so far;
// first: nothing was counted before.
func (j *job) combine(sofar, v uint64, first bool) uint64 {
	switch {
	case j.spec.Kind != KindWasm:
		return sofar + v
	case first:
		return v
	}
	return j.spec.Wasm.Reduce.Combine(sofar, v)
}

// recountWasm recomputes a WebAssembly job's reduced value from the stored results that count
// (min and max cannot take a value back out): after a counted chunk was taken back.
func (s *JobStore) recountWasm(j *job) {
	j.hits = 0
	first := true
	err := s.eachResult(j.id, func(rec StoredResult) error {
		if !j.cleared.Covers(rec.Range) {
			return nil
		}
		v, _, err := DecodeWasmPayload(rec.Payload, j.spec.Wasm.Reduce)
		if err != nil {
			return err
		}
		j.hits, first = j.combine(j.hits, v, first), false
		return nil
	})
	if err != nil {
		// The job state validated every stored payload when it accepted it: only a broken
		// store gets here. Counting what it gave would diverge from the other replicas.
		s.storeFailed("recount "+j.id, err)
	}
}

// maybeFinish marks a running job done once every unit is cleared. A stopped job (cancelled or
// failed) keeps its state: an audit leased before it stopped may still be answered and clear
// its last units, but that does not undo why it stopped.
func (s *JobStore) maybeFinish(j *job, out *AuditOutcome) {
	if !j.state.Finished() && j.cleared.Covers(j.total()) {
		j.state, j.finished = StateDone, s.now
		if out != nil {
			out.Finished = append(out.Finished, j.id)
		}
	}
}

func (s *JobStore) challenge(c Challenge) *AuditOutcome {
	s.now = c.Time
	out := &AuditOutcome{}
	for _, it := range c.Items {
		j := s.jobs[it.Job]
		if j == nil {
			continue
		}
		r := j.recs[it.Start]
		if r == nil || r.step != stepCommitted {
			continue
		}
		st := s.cred(r.node).standing(r.kind)
		chosen, blocks := s.policy.Choose(c.Seed, j.id, r.rng.Start, *st, r.leaves)
		if !chosen || c.Unaudited {
			out.SampledOut++
			s.clearChunk(j, r, false, out)
			continue
		}
		leaves, err := s.storedLeaves(j, r)
		var se *StorageError
		if errors.As(err, &se) {
			s.storeFailed("challenge "+j.id, se.Err) // not the payload's fault: this disk's
			return out
		}
		if err != nil || len(leaves) != r.leaves || audit.Root(leaves) != r.root {
			// The stored payload no longer matches the commitment (blocks index r.leaves
			// leaves): compute the chunk again.
			s.requeue(j, r, out)
			continue
		}
		r.blocks = blocks
		r.claimed = make([]audit.Hash, len(blocks))
		for i, b := range blocks {
			r.claimed[i] = leaves[b]
		}
		s.auditSeq++
		s.unwait(j, r.rng.Start)
		r.id, r.step = s.auditSeq, stepAuditing
		s.auditIx[r.id] = Chunk{Job: j.id, Range: r.rng}
		out.Audited++
	}
	return out
}

// storedLeaves recomputes a chunk's leaves from its stored payload.
func (s *JobStore) storedLeaves(j *job, r *auditRec) ([]audit.Hash, error) {
	rec, ok, err := s.payloads.Get(j.id, r.rng.Start)
	if err != nil {
		return nil, &StorageError{Op: "read " + j.id, Err: err}
	}
	if !ok || rec.Range != r.rng {
		return nil, fmt.Errorf("no payload for %v", r.rng)
	}
	leaves, _, err := ChunkLeaves(j.spec, r.rng, rec.Payload)
	return leaves, err
}

func (s *JobStore) auditResult(c Audit) (*AuditOutcome, error) {
	if err := validText("auditor", c.Auditor); err != nil {
		return nil, fmt.Errorf("audit %d: %w", c.ID, err)
	}
	s.now = c.Time
	out := &AuditOutcome{}
	ref, ok := s.auditIx[c.ID]
	if !ok || ref.Job != c.Job {
		out.Reason = "no such audit in progress"
		return out, nil
	}
	j := s.jobs[ref.Job]
	r := j.recs[ref.Range.Start]
	if c.Auditor == "" || c.Auditor == r.node || (r.step == stepDisputed && c.Auditor == r.auditor) {
		return nil, fmt.Errorf("audit %d: %q may not audit this chunk", c.ID, c.Auditor)
	}
	if !validSeconds(c.Seconds) {
		return nil, fmt.Errorf("audit %d: compute seconds %g outside 0–%g", c.ID, c.Seconds, MaxComputeSeconds)
	}
	if q := s.creds[c.Auditor]; q != nil && q.quarantined {
		out.Reason = "auditor quarantined"
		return out, nil
	}
	switch r.step {
	case stepAuditing:
		if len(c.Leaves) != len(r.blocks) {
			return nil, fmt.Errorf("audit %d: %d leaves for %d blocks", c.ID, len(c.Leaves), len(r.blocks))
		}
		for _, b := range auditSpans(j.spec, r) {
			j.auditedUnits += b.Len()
		}
		for i := range c.Leaves {
			if c.Leaves[i] != r.claimed[i] {
				// A mismatch: the whole chunk goes to a third node; the majority's bits stand.
				auditorTrusted := s.policy.Trusted(*s.cred(c.Auditor).standing(r.kind))
				out.Mismatch = true
				out.Determinism = s.policy.Trusted(*s.cred(r.node).standing(r.kind)) && auditorTrusted
				r.step, r.auditor, r.theirs = stepDisputed, c.Auditor, c.Leaves
				return out, nil
			}
		}
		s.pass(r, out)
		s.clearChunk(j, r, true, out)
	case stepDisputed:
		leaves, hits, err := ChunkLeaves(j.spec, r.rng, c.Payload)
		if err != nil {
			return nil, fmt.Errorf("audit %d: full result: %w", c.ID, err)
		}
		if audit.Root(leaves) != c.Root {
			return nil, fmt.Errorf("audit %d: commitment does not match the result", c.ID)
		}
		if len(leaves) != r.leaves {
			// r.blocks index the chunk's committed leaves; a result of another shape (a
			// single-value wasm payload is one leaf whatever its range) cannot be held against
			// them, and indexing it would panic Apply on every replica.
			return nil, fmt.Errorf("audit %d: full result of %d leaves, the chunk committed to %d", c.ID, len(leaves), r.leaves)
		}
		agreeNode := audit.Root(leaves) == r.root
		agreeAuditor := true
		for i, b := range r.blocks {
			if leaves[b] != r.theirs[i] {
				agreeAuditor = false
			}
		}
		switch {
		case agreeNode:
			// The chunk's node was right; its auditor's bits were wrong.
			s.pass(r, out)
			s.fail(r.auditor, r.kind, out)
			s.clearChunk(j, r, true, out)
		case agreeAuditor:
			// The auditor was right: the third node's result replaces the chunk's.
			bad := r.node
			if err := s.replacePayload(j, r, c, hits, leaves); err != nil {
				return nil, err
			}
			s.clearChunk(j, r, true, out)
			s.fail(bad, r.kind, out)
		default:
			// Three different answers: no majority. Compute the chunk again from scratch.
			out.Reason = "no majority"
			s.requeue(j, r, out)
		}
		j.auditedUnits += r.rng.Len() // after replacePayload, which may refuse the answer
	}
	return out, nil
}

// replacePayload makes the third node's full result the chunk's: payload, hits, contribution,
// and the payload bytes the job and the store count (the disk cap evicts by them), which now
// count the new payload instead of the old. A store that fails is this node's fault
// (StorageError).
func (s *JobStore) replacePayload(j *job, r *auditRec, c Audit, hits uint64, leaves []audit.Hash) error {
	op := fmt.Sprintf("audit %d", c.ID)
	old, had, err := s.payloads.Get(j.id, r.rng.Start)
	if err != nil {
		return &StorageError{Op: op, Err: err}
	}
	if err := s.payloads.Put([]StoredResult{{Chunk: Chunk{Job: j.id, Range: r.rng}, Payload: c.Payload}}); err != nil {
		return &StorageError{Op: op, Err: err}
	}
	size := int64(len(c.Payload)) + 16
	if had {
		size -= int64(len(old.Payload)) + 16
	}
	j.payloadBytes += size
	s.totalPayload += size
	s.uncontribute(j, r.node, r.rng)
	n := j.nodes[c.Auditor]
	if n == nil {
		n = &NodeContribution{Node: c.Auditor}
		j.nodes[c.Auditor] = n
	}
	n.Units += r.rng.Len()
	n.Chunks++
	n.ComputeSeconds += c.Seconds
	r.node, r.hits, r.root, r.leaves = c.Auditor, hits, audit.Root(leaves), len(leaves)
	r.seq = s.cred(c.Auditor).seq
	return nil
}

func (s *JobStore) uncontribute(j *job, node string, rng Range) {
	if n := j.nodes[node]; n != nil {
		n.Units -= min(n.Units, rng.Len())
		n.Chunks -= min(n.Chunks, 1)
		if n.Units == 0 && n.Chunks == 0 {
			delete(j.nodes, node)
		}
	}
}

func (s *JobStore) pass(r *auditRec, out *AuditOutcome) {
	c := s.cred(r.node)
	st := c.standing(r.kind)
	st.Passed++
	st.Streak++
	c.lastPass = max(c.lastPass, r.seq)
	out.Passed = append(out.Passed, r.node)
}

// fail records a failed audit of node: its streak resets, every result of it accepted since its
// last passed audit is computed again, and past Policy.QuarantineAfter failures it is
// quarantined and every result of it not cleared by an audit is computed again.
func (s *JobStore) fail(node string, k Kind, out *AuditOutcome) {
	c := s.cred(node)
	st := c.standing(k)
	st.Failed++
	st.Streak = 0
	c.failed++
	out.Failed = append(out.Failed, node)
	if !c.quarantined && c.failed >= s.policy.WithDefaults().QuarantineAfter {
		c.quarantined = true
		out.Quarantined = append(out.Quarantined, node)
	}
	for _, j := range s.sortedJobsLocked() {
		for _, start := range sortedStarts(j.recs) {
			r := j.recs[start]
			if r.node != node || r.audited {
				continue
			}
			if c.quarantined || r.seq > c.lastPass {
				s.requeue(j, r, out)
			}
		}
	}
}

// requeue forgets an accepted chunk: its range is pending again, its payload deleted, and if it
// was counted, its job's answer loses it (a done job runs again).
func (s *JobStore) requeue(j *job, r *auditRec, out *AuditOutcome) {
	delete(j.recs, r.rng.Start)
	if r.id != 0 {
		delete(s.auditIx, r.id)
	}
	j.accepted.Remove(r.rng)
	if r.step == stepCommitted {
		s.unwait(j, r.rng.Start)
	}
	wasCleared := r.step == stepCleared
	if wasCleared {
		j.cleared.Remove(r.rng)
		j.hits -= min(j.hits, r.hits)
	} else {
		j.open--
	}
	rec, ok, err := s.payloads.Get(j.id, r.rng.Start)
	if err == nil && ok {
		err = s.payloads.Delete(j.id, r.rng.Start)
	}
	switch {
	case err != nil:
		s.storeFailed("requeue "+j.id, err)
	case ok:
		size := int64(len(rec.Payload)) + 16
		j.payloadBytes -= size
		s.totalPayload -= size
	}
	if wasCleared && j.spec.Kind == KindWasm {
		s.recountWasm(j)
	}
	s.uncontribute(j, r.node, r.rng)
	j.redoneUnits += r.rng.Len()
	if j.state == StateDone {
		j.state, j.finished = StateRunning, time.Time{}
	}
	out.Requeued = append(out.Requeued, Chunk{Job: j.id, Range: r.rng})
}

// auditWaive clears, unaudited, the open block audits of c.Node's chunks in unfinished jobs
// (AuditWaive), in the order they were chosen (audit IDs).
func (s *JobStore) auditWaive(c AuditWaive) (*AuditOutcome, error) {
	if c.Node == "" {
		return nil, fmt.Errorf("audit waive: empty node id")
	}
	if err := validText("node id", c.Node); err != nil {
		return nil, fmt.Errorf("audit waive: %w", err)
	}
	s.now = c.Time
	out := &AuditOutcome{}
	ids := make([]uint64, 0, len(s.auditIx))
	for id := range s.auditIx {
		ids = append(ids, id)
	}
	slices.Sort(ids) // audit IDs grow with each Challenge: the order they were chosen in
	for _, id := range ids {
		ref := s.auditIx[id]
		j := s.jobs[ref.Job]
		if j == nil || j.state.Finished() {
			continue
		}
		if r := j.recs[ref.Range.Start]; r != nil && r.step == stepAuditing && r.node == c.Node {
			s.clearChunk(j, r, false, out)
			out.Waived++
		}
	}
	return out, nil
}

func (s *JobStore) trustReset(c TrustReset) (*AuditOutcome, error) {
	if c.Node == "" {
		return nil, fmt.Errorf("trust reset: empty node id")
	}
	if err := validText("node id", c.Node); err != nil {
		return nil, fmt.Errorf("trust reset: %w", err)
	}
	n := s.cred(c.Node)
	n.quarantined, n.failed = false, 0
	for _, st := range n.kinds {
		st.Failed, st.Streak = 0, 0
	}
	return &AuditOutcome{}, nil
}
