package compute

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/hydra-compute/hydra/compute/audit"
	"github.com/hydra-compute/hydra/wire"
)

// Snapshot format (version 3; version 2, without audits, and version 1, without chunk
// histories either, are still read):
//
//	"HYDRAJS" 0x01
//	uvarint n, n bytes of JSON: snapHeader (jobs, accepted ranges, contributions, counters)
//	records: 0x01, job id (uvarint length + bytes), range start (uvarint), value (uvarint
//	         length + bytes: 8-byte big-endian range end, then the payload); then 0x00.
//
// The header is JSON because it is small and must stay readable by newer versions; payloads
// are streamed in binary straight from the store.

const (
	snapMagic      = "HYDRAJS"
	snapVersion    = 3
	maxSnapHeader  = 512 << 20
	snapRecordMore = 1
	snapRecordEnd  = 0
	// maxSnapValue bounds one stored result (its 8-byte time and payload) in a
	// snapshot, for writing and restoring alike: any payload a command can carry.
	maxSnapValue = wire.MaxCommand + 8
)

type snapHeader struct {
	LastIndex    uint64        `json:"last_index"`
	Seq          uint64        `json:"seq"`
	TotalPayload int64         `json:"total_payload"`
	Jobs         []snapJob     `json:"jobs"`
	Creds        []snapCred    `json:"creds,omitempty"` // version 3
	AuditSeq     uint64        `json:"audit_seq,omitempty"`
	Policy       *audit.Policy `json:"audit_policy,omitempty"`
}

// snapCred is a node's credibility (audits.go).
type snapCred struct {
	Node        string                  `json:"node"`
	Kinds       map[Kind]audit.Standing `json:"kinds"`
	Failed      uint64                  `json:"failed"`
	Quarantined bool                    `json:"quarantined"`
	Seq         uint64                  `json:"seq"`
	LastPass    uint64                  `json:"last_pass"`
}

// snapAudit is an accepted chunk under audit (audits.go).
type snapAudit struct {
	Range   Range        `json:"range"`
	Node    string       `json:"node"`
	Seq     uint64       `json:"seq"`
	Leaves  int          `json:"leaves"`
	Root    audit.Hash   `json:"root"`
	Hits    uint64       `json:"hits"`
	Step    auditStep    `json:"step"`
	Audited bool         `json:"audited"`
	ID      uint64       `json:"id"`
	Blocks  []int        `json:"blocks,omitempty"`
	Claimed []audit.Hash `json:"claimed,omitempty"`
	Auditor string       `json:"auditor,omitempty"`
	Theirs  []audit.Hash `json:"theirs,omitempty"`
}

type snapJob struct {
	ID           string             `json:"id"`
	Seq          uint64             `json:"seq"`
	Spec         JobSpec            `json:"spec"`
	Submitter    string             `json:"submitter"`
	State        JobState           `json:"status"`
	Submitted    int64              `json:"submitted"`
	Started      int64              `json:"started"`
	Finished     int64              `json:"finished"`
	Accepted     []Range            `json:"accepted"`
	Hits         uint64             `json:"hits"`
	Reason       string             `json:"reason,omitempty"`
	Nodes        []NodeContribution `json:"nodes"`
	PayloadBytes int64              `json:"payload_bytes"`
	History      []byte             `json:"history,omitempty"` // chunk history (history.go), version 2
	Cleared      []Range            `json:"cleared"`           // version 3; before: all accepted
	AuditedUnits uint64             `json:"audited_units,omitempty"`
	RedoneUnits  uint64             `json:"redone_units,omitempty"`
	Audits       []snapAudit        `json:"audits,omitempty"`
	Faults       []JobFault         `json:"faults,omitempty"`
}

// Snapshot writes the whole state, payloads included, to w: CaptureSnapshot, then WriteTo.
func (s *JobStore) Snapshot(w io.Writer) error {
	snap, err := s.captureSnapshot()
	if err != nil {
		return err
	}
	defer snap.Release()
	_, err = snap.WriteTo(w)
	return err
}

// JobSnapshot is the job state as of one moment, to be written later: a copy of the jobs'
// metadata and a view of the result store (a read transaction on a node). Writing streams the
// payloads from that view, so a snapshot of gigabytes of results never sits in memory, and Apply goes on
// meanwhile. Release it when done (a read transaction keeps the store's old pages alive, and a
// store that must grow to apply an entry waits for it).
type JobSnapshot struct {
	h    snapHeader
	view ResultView
}

// Snapshotter is a captured state to be written later: *JobSnapshot. It is an alias of an
// unnamed interface type so that consensus can declare the same type (consensus.AppSnapshot)
// without importing this package.
type Snapshotter = interface {
	io.WriterTo
	Release()
}

// CaptureSnapshot takes a consistent view of the state, cheaply: raft calls it on the FSM
// goroutine (no Apply runs meanwhile) and writes it out later (consensus.SnapshotCapturer).
func (s *JobStore) CaptureSnapshot() (Snapshotter, error) { return s.captureSnapshot() }

func (s *JobStore) captureSnapshot() (*JobSnapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	pol := s.policy
	h := snapHeader{LastIndex: s.lastIndex, Seq: s.seq, TotalPayload: s.totalPayload, AuditSeq: s.auditSeq, Policy: &pol}
	for id, c := range s.creds {
		sc := snapCred{Node: id, Kinds: map[Kind]audit.Standing{}, Failed: c.failed, Quarantined: c.quarantined, Seq: c.seq, LastPass: c.lastPass}
		for k, st := range c.kinds {
			sc.Kinds[k] = *st
		}
		h.Creds = append(h.Creds, sc)
	}
	for _, j := range s.jobs {
		sj := snapJob{
			ID: j.id, Seq: j.seq, Spec: j.spec, Submitter: j.submitter, State: j.state,
			Submitted: timeNanos(j.submitted), Started: timeNanos(j.started), Finished: timeNanos(j.finished),
			Accepted: j.accepted.Ranges(), Hits: j.hits, PayloadBytes: j.payloadBytes, Reason: j.reason,
			History: j.hist.encode(), Cleared: j.cleared.Ranges(), AuditedUnits: j.auditedUnits, RedoneUnits: j.redoneUnits,
			Faults: append([]JobFault(nil), j.faults...),
		}
		for _, start := range sortedStarts(j.recs) {
			r := j.recs[start]
			sj.Audits = append(sj.Audits, snapAudit{
				Range: r.rng, Node: r.node, Seq: r.seq, Leaves: r.leaves, Root: r.root, Hits: r.hits, Step: r.step,
				Audited: r.audited, ID: r.id, Blocks: r.blocks, Claimed: r.claimed, Auditor: r.auditor, Theirs: r.theirs,
			})
		}
		for _, n := range j.nodes {
			sj.Nodes = append(sj.Nodes, *n)
		}
		h.Jobs = append(h.Jobs, sj)
	}
	view, err := s.payloads.View()
	if err != nil {
		return nil, fmt.Errorf("snapshot: store: %w", err)
	}
	return &JobSnapshot{h: h, view: view}, nil
}

// Release ends the snapshot's view of the result store; it is idempotent.
func (js *JobSnapshot) Release() {
	if js.view != nil {
		js.view.Release()
		js.view = nil
	}
}

// WriteTo writes the snapshot to w in the format Restore reads. It refuses a state Restore would
// refuse (a header over the limit) rather than write a snapshot no node could load.
func (js *JobSnapshot) WriteTo(w io.Writer) (int64, error) {
	if js.view == nil {
		return 0, errors.New("snapshot: already released")
	}
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 1<<16)
	// The header's length comes first: one pass counts it, the next writes it.
	size, err := js.writeHeader(io.Discard)
	if err != nil {
		return 0, err
	}
	if size > maxSnapHeader {
		return 0, fmt.Errorf("snapshot: the jobs' header is %d bytes, over the limit of %d that restore accepts: delete jobs or lower max-jobs", size, maxSnapHeader)
	}
	e := &encoder{b: []byte(snapMagic)}
	e.byte1(snapVersion)
	e.uvarint(uint64(size))
	if _, err := bw.Write(e.b); err != nil {
		return cw.n, fmt.Errorf("snapshot: write: %w", err)
	}
	if n, err := js.writeHeader(bw); err != nil {
		return cw.n, err
	} else if n != size {
		return cw.n, fmt.Errorf("snapshot: the jobs' header was %d bytes, then %d", size, n)
	}
	for _, sj := range js.h.Jobs {
		err := js.view.Each(sj.ID, func(rec StoredResult) error {
			if 8+len(rec.Payload) > maxSnapValue {
				return fmt.Errorf("payload of %d bytes over the limit of %d that restore accepts", 8+len(rec.Payload), maxSnapValue)
			}
			e := &encoder{}
			e.byte1(snapRecordMore)
			e.str(sj.ID)
			e.uvarint(rec.Range.Start)
			e.uvarint(uint64(8 + len(rec.Payload)))
			e.b = binary.BigEndian.AppendUint64(e.b, rec.Range.End)
			if _, err := bw.Write(e.b); err != nil {
				return err
			}
			_, err := bw.Write(rec.Payload)
			return err
		})
		if err != nil {
			return cw.n, fmt.Errorf("snapshot: job %s: %w", sj.ID, err)
		}
	}
	if err := bw.WriteByte(snapRecordEnd); err != nil {
		return cw.n, fmt.Errorf("snapshot: write: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return cw.n, fmt.Errorf("snapshot: write: %w", err)
	}
	return cw.n, nil
}

// writeHeader writes the jobs' header, exactly as json.Marshal(js.h) would, a job at a time:
// whole, it is about 760 bytes a job (76 MB at 100,000 jobs), and json.Marshal held it and its
// growing buffer at once (TestSnapshotHeaderStreamed). It returns the bytes written.
func (js *JobSnapshot) writeHeader(w io.Writer) (int, error) {
	rest := js.h
	rest.Jobs = []snapJob{}
	b, err := json.Marshal(rest)
	if err != nil {
		return 0, fmt.Errorf("snapshot: header: %w", err)
	}
	// The fields before "jobs" are numbers, so this is the jobs field.
	const empty = `"jobs":[]`
	i := bytes.Index(b, []byte(empty))
	if i < 0 {
		return 0, errors.New("snapshot: header: no jobs field")
	}
	open := i + len(empty) - 1 // the closing bracket
	n := 0
	write := func(p []byte) error {
		k, err := w.Write(p)
		n += k
		return err
	}
	if err := write(b[:open]); err != nil {
		return n, fmt.Errorf("snapshot: write: %w", err)
	}
	for k := range js.h.Jobs {
		sj := &js.h.Jobs[k] // addressable, as an element of the whole header is
		jb, err := json.Marshal(sj)
		if err != nil {
			return n, fmt.Errorf("snapshot: header: job %s: %w", sj.ID, err)
		}
		if k > 0 {
			if err := write([]byte{','}); err != nil {
				return n, fmt.Errorf("snapshot: write: %w", err)
			}
		}
		if err := write(jb); err != nil {
			return n, fmt.Errorf("snapshot: write: %w", err)
		}
	}
	if err := write(b[open:]); err != nil {
		return n, fmt.Errorf("snapshot: write: %w", err)
	}
	return n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
