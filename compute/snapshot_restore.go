package compute

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/hydra-compute/hydra/compute/audit"
)

// Restore replaces the whole state with a snapshot written by Snapshot. On error the previous
// state is kept in memory, but the store may hold a part of the snapshot: the caller must treat a
// failed restore as fatal, or restore another snapshot over it (consensus's FSM stops the node
// on a snapshot the leader sent; at start it restores an older one, or the start fails).
func (s *JobStore) Restore(r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<16)
	if _, err := br.Peek(1); errors.Is(err, io.EOF) {
		// No job section (consensus.App: an empty reader is the empty state).
		s.mu.Lock()
		defer s.mu.Unlock()
		if err := s.payloads.Clear(); err != nil {
			return fmt.Errorf("restore: clear store: %w", err)
		}
		s.jobs, s.seq, s.lastIndex, s.totalPayload = map[string]*job{}, 0, 0, 0
		s.creds, s.auditIx, s.auditSeq = map[string]*nodeCred{}, map[uint64]Chunk{}, 0
		s.waitJobs = map[string]*job{}
		s.policy = audit.DefaultPolicy // as a store that never applied an AuditPolicy
		return nil
	}
	magic := make([]byte, len(snapMagic)+1)
	if _, err := io.ReadFull(br, magic); err != nil {
		return fmt.Errorf("restore: header: %w", err)
	}
	if string(magic[:len(snapMagic)]) != snapMagic {
		return errors.New("restore: not a job-state snapshot")
	}
	// Every earlier version is read (the version < 3 branch of addJob): a node upgraded from a
	// build that wrote one must restore its own snapshot.
	if v := magic[len(snapMagic)]; v < 1 || v > snapVersion {
		return fmt.Errorf("restore: snapshot version %d, this build reads 1 to %d", v, snapVersion)
	}
	version := magic[len(snapMagic)]
	hb, err := readHeader(br, version)
	if err != nil {
		return err
	}
	h, jobs, auditIx := hb.h, hb.jobs, hb.auditIx

	s.mu.Lock()
	defer s.mu.Unlock()
	// Empty the store, then load the records in transactions of bounded size.
	if err := s.payloads.Clear(); err != nil {
		return fmt.Errorf("restore: clear store: %w", err)
	}
	stored := map[*auditRec]bool{}      // the audit records whose chunk's payload came
	recRanges := map[string]*RangeSet{} // per job, the ranges of the records so far
	for done := false; !done; {
		var recs []StoredResult
		size := 0
		for size < 32<<20 {
			tag, err := br.ReadByte()
			if err != nil {
				return fmt.Errorf("restore: records: %w", err)
			}
			if tag == snapRecordEnd {
				done = true
				break
			}
			rec, err := readRecord(br, tag, jobs)
			if err != nil {
				return fmt.Errorf("restore: records: %w", err)
			}
			seen := recRanges[rec.Job]
			if seen == nil {
				seen = &RangeSet{}
				recRanges[rec.Job] = seen
			}
			if seen.Overlaps(rec.Range) {
				// The store keeps one payload per range start: a second would replace the first.
				return fmt.Errorf("restore: records: job %s: record %v overlaps another", rec.Job, rec.Range)
			}
			seen.Add(rec.Range)
			if r := jobs[rec.Job].recs[rec.Range.Start]; r != nil && r.rng == rec.Range {
				stored[r] = true
			}
			recs = append(recs, rec)
			size += len(rec.Payload)
		}
		if err := s.payloads.Put(recs); err != nil {
			return fmt.Errorf("restore: records: %w", err)
		}
	}
	for _, j := range jobs {
		for _, r := range j.recs {
			if !stored[r] {
				// An audit settles a stored chunk: its pass, failure or requeue acts on that
				// chunk's payload and range.
				return fmt.Errorf("restore: job %s: audit record %v without its stored chunk", j.id, r.rng)
			}
		}
	}
	creds := map[string]*nodeCred{}
	for _, sc := range h.Creds {
		c := &nodeCred{kinds: map[Kind]*audit.Standing{}, failed: sc.Failed, quarantined: sc.Quarantined, seq: sc.Seq, lastPass: sc.LastPass}
		for k, st := range sc.Kinds {
			c.kinds[k] = &st
		}
		creds[sc.Node] = c
	}
	s.jobs, s.seq, s.lastIndex, s.totalPayload = jobs, h.Seq, h.LastIndex, h.TotalPayload
	s.creds, s.auditIx, s.auditSeq = creds, auditIx, h.AuditSeq
	s.waitJobs = map[string]*job{}
	for _, j := range jobs {
		if len(j.waiting) > 0 {
			s.waitJobs[j.id] = j
		}
	}
	s.policy = audit.DefaultPolicy
	if h.Policy != nil {
		s.policy = h.Policy.WithDefaults()
	}
	return nil
}

// checkSnapJob validates what a job of a snapshot says of itself beyond its spec: an ID a
// command could have given it, a known state, accepted ranges inside the job and cleared ones
// among them (version 3; before, every accepted range was cleared). A snapshot that contradicts
// itself (written by a faulty build, or sent by a faulty leader: raft's checksum only catches
// damage on disk) is refused rather than loaded into a state the next commands would
// misread: a job done past its total, or never finishing.
func checkSnapJob(sj *snapJob, version byte) error {
	if sj.ID == "" || len(sj.ID) > MaxIDLen {
		return fmt.Errorf("job ID of %d bytes", len(sj.ID))
	}
	if err := validText("job id", sj.ID); err != nil {
		return err
	}
	if !sj.State.Valid() {
		return fmt.Errorf("unknown state %q", sj.State)
	}
	if sj.PayloadBytes < 0 {
		return fmt.Errorf("payload %d bytes", sj.PayloadBytes)
	}
	total := Range{0, sj.Spec.TotalUnits()}
	for _, r := range sj.Accepted {
		if r.Empty() || !total.Contains(r) {
			return fmt.Errorf("accepted range %v: the job has %v", r, total)
		}
	}
	if version >= 3 {
		accepted := NewRangeSet(sj.Accepted...)
		for _, r := range sj.Cleared {
			if r.Empty() || !accepted.Covers(r) {
				return fmt.Errorf("cleared range %v not accepted", r)
			}
		}
	}
	return nil
}

// restoreAudit validates one audited chunk of a snapshot: its range inside the job and among its
// accepted ranges, a known step, chosen blocks among its leaves.
func restoreAudit(a snapAudit, j *job) (*auditRec, error) {
	if a.Range.Empty() || !j.accepted.Covers(a.Range) || a.Step < stepCommitted || a.Step > stepCleared {
		return nil, fmt.Errorf("audit record %v: bad range or step", a.Range)
	}
	if a.Leaves < 0 || a.Leaves > audit.MaxLeaves || len(a.Blocks) > a.Leaves || len(a.Claimed) != len(a.Blocks) {
		return nil, fmt.Errorf("audit record %v: bad blocks", a.Range)
	}
	for _, b := range a.Blocks {
		if b < 0 || b >= a.Leaves {
			return nil, fmt.Errorf("audit record %v: block %d of %d", a.Range, b, a.Leaves)
		}
	}
	if a.Step == stepDisputed && len(a.Theirs) != len(a.Blocks) {
		return nil, fmt.Errorf("audit record %v: dispute without the auditor's leaves", a.Range)
	}
	return &auditRec{
		rng: a.Range, node: a.Node, kind: j.spec.Kind, seq: a.Seq, leaves: a.Leaves, root: a.Root, hits: a.Hits,
		step: a.Step, audited: a.Audited, id: a.ID, blocks: a.Blocks, claimed: a.Claimed, auditor: a.Auditor, theirs: a.Theirs,
	}, nil
}

// readRecord reads one payload record of a snapshot after its tag: the job's ID (a job of the
// snapshot), the range start, then the range end and the payload.
func readRecord(br *bufio.Reader, tag byte, jobs map[string]*job) (StoredResult, error) {
	if tag != snapRecordMore {
		return StoredResult{}, fmt.Errorf("bad record tag %d", tag)
	}
	id, err := readBytes(br, MaxIDLen)
	if err != nil {
		return StoredResult{}, err
	}
	start, err := binary.ReadUvarint(br)
	if err != nil {
		return StoredResult{}, err
	}
	v, err := readBytes(br, maxSnapValue)
	if err != nil {
		return StoredResult{}, err
	}
	j, ok := jobs[string(id)]
	if !ok || len(v) < 8 {
		return StoredResult{}, fmt.Errorf("record for unknown job %q", id)
	}
	r := Range{start, binary.BigEndian.Uint64(v)}
	if r.Empty() || !j.accepted.Covers(r) {
		// Readers index a job's image or items by a record's range.
		return StoredResult{}, fmt.Errorf("record %v of job %q: not an accepted range", r, id)
	}
	return StoredResult{Chunk: Chunk{Job: string(id), Range: r}, Payload: v[8:]}, nil
}

// readBytes reads a uvarint length and that many bytes. The snapshot's uvarints (here and in
// readRecord) are read leniently on purpose: an overlong one (no build writes one) means the
// same value, feeds no hash or comparison of encodings, and refusing a snapshot every replica
// restores would strand a node for nothing.
func readBytes(br *bufio.Reader, limit int) ([]byte, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, err
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("%d bytes exceeds the limit of %d", n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return nil, err
	}
	return b, nil
}
