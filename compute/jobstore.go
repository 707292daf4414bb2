package compute

import (
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hydra-compute/hydra/compute/audit"
)

// JobState is a job's state as the API shows it.
type JobState string

// A job is queued until the coordinator leases its first chunk, running after, done when its
// ranges are all accepted, cancelled when a user cancelled it first.
const (
	StateQueued    JobState = "queued"
	StateRunning   JobState = "running"
	StateDone      JobState = "done"
	StateCancelled JobState = "cancelled"
	StateFailed    JobState = "failed" // cannot finish; the job's reason says why
)

// Valid reports whether s is one of the states above (a snapshot's job is checked with it).
func (s JobState) Valid() bool {
	switch s {
	case StateQueued, StateRunning, StateDone, StateCancelled, StateFailed:
		return true
	}
	return false
}

// Finished reports whether the status is final.
func (s JobState) Finished() bool {
	return s == StateDone || s == StateCancelled || s == StateFailed
}

// NodeContribution is what one node did for a job, from its accepted chunks only.
type NodeContribution struct {
	Node           string  `json:"node"`
	Units          uint64  `json:"units"`
	Chunks         uint64  `json:"chunks"`
	ComputeSeconds float64 `json:"compute_seconds"`
}

// Errors of Apply that callers may want to tell apart.
var (
	ErrJobExists   = errors.New("job already exists")
	ErrNoSuchJob   = errors.New("no such job")
	ErrJobFinished = errors.New("job already finished")
	ErrStaleIndex  = errors.New("log index already applied")
	ErrTooManyJobs = errors.New("too many jobs")
)

// Refusals are the errors of Apply above, for consensus.Config.Refusals: a proposer recognises
// them (errors.Is) in a refusal from the leader too.
var Refusals = []error{ErrJobExists, ErrNoSuchJob, ErrJobFinished, ErrStaleIndex, ErrTooManyJobs}

// job is the replicated state of one job. Result payloads are not here: they are in the
// ResultStore.
type job struct {
	id           string
	seq          uint64 // submission order, for stable listings and eviction order
	spec         JobSpec
	submitter    string
	state        JobState
	submitted    time.Time
	started      time.Time
	finished     time.Time
	accepted     RangeSet             // ranges taken: computed and committed (counted or under audit)
	cleared      RangeSet             // ranges counted in the answer: sampled out or audited (docs/design.md §4)
	hits         uint64               // π: the sum of cleared chunks' hits; wasm: their reduced value
	reason       string               // why a failed job failed
	faults       []JobFault           // wasm: the distinct nodes its module failed on (faults.go)
	recs         map[uint64]*auditRec // chunks of audited results by range start (audits.go)
	open         int                  // recs not cleared yet
	waiting      map[uint64]struct{}  // starts of recs waiting for their Challenge (stepCommitted)
	auditedUnits uint64               // units recomputed by auditors
	redoneUnits  uint64               // units computed again after a failed audit
	nodes        map[string]*NodeContribution
	payloadBytes int64
	hist         chunkHistory // accepted chunks in commit order, bounded (history.go)
}

func (j *job) total() Range { return Range{0, j.spec.TotalUnits()} }

// JobStore is the replicated job state behind the raft FSM (docs/design.md §2): jobs, accepted
// ranges, per-node contributions, and — in a ResultStore (on disk on a node), compressed — the
// result payloads.
// Apply, Snapshot and Restore are what consensus calls; the read methods serve the API from
// this replica. Safe for concurrent use: Apply and Restore serialise, reads and Snapshot share.
//
// Apply is deterministic: it reads no clock (times come inside the commands) and its outcome
// depends only on the state and the command, so every replica computes the same state.
type JobStore struct {
	mu           sync.RWMutex
	payloads     *putBuffer // the ResultStore, whose Puts wait while an entry is applied (ApplyBatch)
	jobs         map[string]*job
	seq          uint64
	lastIndex    uint64
	totalPayload int64
	// storeErr is a store failure met inside an apply by code that cannot return it (a
	// requeue, a recount): applyLocked fails the command with it, a *StorageError, so this
	// replica stops applying rather than carry on from what its disk did not give it
	// (storeFailed).
	storeErr error

	policy   audit.Policy
	creds    map[string]*nodeCred // node → credibility (audits.go)
	auditIx  map[uint64]Chunk     // audit ID → the chunk under audit
	waitJobs map[string]*job      // jobs with chunks waiting for their Challenge (job.waiting not empty)
	auditSeq uint64               // the last audit ID given
	now      time.Time            // the time of the command being applied
}

// NewJobStore returns an empty job state that keeps its result payloads in results and owns it
// from now on (Close closes it). The store must start empty: after a restart raft rebuilds the
// state by Restore from its latest snapshot and replay of the log after it.
func NewJobStore(results ResultStore) *JobStore {
	return &JobStore{payloads: &putBuffer{ResultStore: results}, jobs: map[string]*job{}, creds: map[string]*nodeCred{}, auditIx: map[uint64]Chunk{}, waitJobs: map[string]*job{}, policy: audit.DefaultPolicy}
}

// Close closes the result store.
func (s *JobStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.payloads.Close()
}

// ResultsOutcome is what Apply returns for OpResults: how many chunk results were accepted,
// which were rejected and why (a duplicate or overlapping range, a cancelled job…), and which
// jobs this batch finished. Rejections are normal after a leader change: a worker resubmits what
// the new leader may already have.
type ResultsOutcome struct {
	Accepted int
	Rejected []Rejection
	Finished []string
	// Challenge is the outcome of the Challenge the command carried (Results.Challenge).
	Challenge *AuditOutcome `json:",omitempty"`
}

// Rejection is one chunk result that was not counted.
type Rejection struct {
	Index  int // position in the batch
	Job    string
	Range  Range
	Reason string
}

// Apply applies one committed command: op and payload as consensus received them, index the raft
// log index (0 in tests that have none). It returns an error value for a command that changes
// nothing (malformed, unknown job, validation), a *ResultsOutcome for OpResults, or nil; an op
// this build does not know gives an *UnknownOpError, a local failure that stops the node. It
// never panics on bad input.
func (s *JobStore) Apply(op byte, payload []byte, index uint64) any {
	cmd, err := DecodeCommand(op, payload)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyLocked(op, cmd, index)
}

// ApplyBatch applies the commands of one raft entry (ops[i] and payloads[i] each, as Apply
// would, the entry's index with the first and 0 with the others) and returns their results in
// order. The chunk results they accept are stored in one transaction of the ResultStore at the
// end instead of one per command, and readers see the state only after all of it is applied.
// An op this build does not know fails the whole entry, before any of it is applied, with an
// *UnknownOpError. A store that fails fails the whole entry with a *StorageError (a LocalFailure: the node stops
// applying the log, so what this replica counted but did not store is never served as applied;
// after a restart the entry is applied again).
func (s *JobStore) ApplyBatch(ops []byte, payloads [][]byte, index uint64) ([]any, error) {
	if len(ops) != len(payloads) {
		return nil, fmt.Errorf("apply batch: %d ops, %d payloads", len(ops), len(payloads))
	}
	cmds := make([]any, len(ops))
	errs := make([]error, len(ops))
	for i := range ops {
		cmds[i], errs[i] = DecodeCommand(ops[i], payloads[i])
		var unknown *UnknownOpError
		if errors.As(errs[i], &unknown) {
			return nil, unknown // before any command of the entry is applied: the node stops here
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.payloads.on = true
	out := make([]any, len(ops))
	for i := range ops {
		ix := index
		if i > 0 {
			ix = 0
		}
		if errs[i] != nil {
			out[i] = errs[i]
			continue
		}
		out[i] = s.applyLocked(ops[i], cmds[i], ix)
		var se *StorageError
		if err, ok := out[i].(error); ok && errors.As(err, &se) {
			s.payloads.discard()
			return nil, err
		}
	}
	if err := s.payloads.flush(); err != nil {
		return nil, &StorageError{Op: "results", Err: err}
	}
	return out, nil
}

// applyLocked applies one decoded command; s.mu is held. A store failure met on the way fails it
// with a *StorageError (see storeErr).
func (s *JobStore) applyLocked(op byte, cmd any, index uint64) any {
	s.storeErr = nil
	out := s.applyCommandLocked(op, cmd, index)
	if err := s.storeErr; err != nil {
		s.storeErr = nil
		return err
	}
	return out
}

// applyCommandLocked is applyLocked without the store failure check.
func (s *JobStore) applyCommandLocked(op byte, cmd any, index uint64) any {
	if index != 0 {
		if index <= s.lastIndex {
			return fmt.Errorf("apply index %d (last %d): %w", index, s.lastIndex, ErrStaleIndex)
		}
		s.lastIndex = index
	}
	switch c := cmd.(type) {
	case Submit:
		return s.submit(c)
	case Results:
		out, err := s.results(c)
		if err != nil {
			return err
		}
		return out
	case Started:
		return s.started(c)
	case Cancel:
		return s.cancel(c)
	case Delete:
		return s.delete(c.Job)
	case Evict:
		return s.evict(c)
	case Fail:
		return s.failJob(c)
	case Fault:
		return s.fault(c)
	case Challenge:
		return s.challenge(c)
	case Audit:
		out, err := s.auditResult(c)
		if err != nil {
			return err
		}
		return out
	case AuditPolicy:
		s.policy = c.Policy.WithDefaults()
		return nil
	case AuditWaive:
		out, err := s.auditWaive(c)
		if err != nil {
			return err
		}
		return out
	case TrustReset:
		out, err := s.trustReset(c)
		if err != nil {
			return err
		}
		return out
	}
	return fmt.Errorf("apply op %#x: %w", op, ErrUnknownOp)
}

// ApplyCommand encodes cmd and applies it: a convenience for tests and single-node tools.
func (s *JobStore) ApplyCommand(cmd any, index uint64) any {
	op, payload, err := EncodeCommand(cmd)
	if err != nil {
		return err
	}
	return s.Apply(op, payload, index)
}

func (s *JobStore) submit(c Submit) error {
	if c.ID == "" {
		return errors.New("submit: empty job id")
	}
	if _, ok := s.jobs[c.ID]; ok {
		return fmt.Errorf("submit %s: %w", c.ID, ErrJobExists)
	}
	if err := validText("job id", c.ID); err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	if err := validText("submitter", c.Submitter); err != nil {
		return fmt.Errorf("submit %s: %w", c.ID, err)
	}
	if err := c.Spec.Validate(); err != nil {
		return fmt.Errorf("submit %s: %w", c.ID, err)
	}
	if c.MaxJobs > 0 && len(s.jobs) >= c.MaxJobs {
		return fmt.Errorf("submit %s: the cluster holds %d jobs (max-jobs %d): delete finished ones (hydra rm) or raise the cap (hydra config set max-jobs=N): %w",
			c.ID, len(s.jobs), c.MaxJobs, ErrTooManyJobs)
	}
	s.seq++
	s.jobs[c.ID] = &job{
		id: c.ID, seq: s.seq, spec: c.Spec, submitter: c.Submitter, state: StateQueued,
		submitted: c.Time, nodes: map[string]*NodeContribution{}, recs: map[uint64]*auditRec{},
	}
	return nil
}

func (s *JobStore) started(c Started) error {
	j, ok := s.jobs[c.Job]
	if !ok {
		return fmt.Errorf("started %s: %w", c.Job, ErrNoSuchJob)
	}
	if j.state == StateQueued {
		j.state, j.started = StateRunning, c.Time
	}
	return nil
}

func (s *JobStore) cancel(c Cancel) error {
	j, ok := s.jobs[c.Job]
	if !ok {
		return fmt.Errorf("cancel %s: %w", c.Job, ErrNoSuchJob)
	}
	switch j.state {
	case StateCancelled:
		return nil
	case StateDone, StateFailed:
		return fmt.Errorf("cancel %s: %w", c.Job, ErrJobFinished)
	}
	j.state, j.finished = StateCancelled, c.Time
	return nil
}

func (s *JobStore) failJob(c Fail) error {
	j, ok := s.jobs[c.Job]
	if !ok {
		return fmt.Errorf("fail %s: %w", c.Job, ErrNoSuchJob)
	}
	if j.state.Finished() {
		return fmt.Errorf("fail %s: %w", c.Job, ErrJobFinished)
	}
	if err := validText("reason", c.Reason); err != nil {
		return fmt.Errorf("fail %s: %w", c.Job, err)
	}
	j.state, j.finished, j.reason = StateFailed, c.Time, c.Reason
	return nil
}

func (s *JobStore) delete(id string) error {
	j, ok := s.jobs[id]
	if !ok {
		return fmt.Errorf("delete %s: %w", id, ErrNoSuchJob)
	}
	if err := s.payloads.DeleteJob(id); err != nil {
		return &StorageError{Op: "delete " + id, Err: err}
	}
	s.totalPayload -= j.payloadBytes
	for _, r := range j.recs {
		if r.id != 0 {
			delete(s.auditIx, r.id)
		}
	}
	delete(s.jobs, id)
	delete(s.waitJobs, id)
	return nil
}

// validText refuses a string that is not valid UTF-8 for a field the state keeps. A snapshot's
// header is JSON, whose encoder turns every invalid byte into U+FFFD: kept as it came, the
// string would differ between a node restored from a snapshot and one that replayed the log
// (and a job ID would no longer name its stored results).
func validText(what, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s: not valid UTF-8", what)
	}
	return nil
}

// validSeconds reports whether a chunk result's or an audit's compute seconds are a number in
// 0–MaxComputeSeconds (NaN is not).
func validSeconds(v float64) bool { return v >= 0 && v <= MaxComputeSeconds }

// expired reports whether c evicts j for its age: finished before c.Now−c.Retention.
func (j *job) expired(c Evict) bool {
	return j.state.Finished() && !j.finished.IsZero() && c.Retention > 0 && j.finished.Before(c.Now.Add(-c.Retention))
}

func (s *JobStore) evict(c Evict) error {
	var gone []*job
	for _, j := range s.jobs {
		if j.expired(c) {
			gone = append(gone, j)
		}
	}
	for _, j := range gone {
		if err := s.delete(j.id); err != nil {
			return fmt.Errorf("evict: %w", err)
		}
	}
	for c.DiskCap > 0 && s.totalPayload > c.DiskCap {
		var oldest *job
		for _, j := range s.jobs {
			if j.state.Finished() && (oldest == nil || j.finished.Before(oldest.finished) ||
				(j.finished.Equal(oldest.finished) && j.seq < oldest.seq)) {
				oldest = j
			}
		}
		if oldest == nil {
			break // only queued or running jobs hold the space: never evicted
		}
		if err := s.delete(oldest.id); err != nil {
			return fmt.Errorf("evict: %w", err)
		}
	}
	return nil
}
