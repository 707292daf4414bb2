package compute

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// restoredHeader is a snapshot's header as Restore reads it: the jobs already built into job
// state, the other fields as decoded (h.Jobs stays empty).
type restoredHeader struct {
	h       snapHeader
	jobs    map[string]*job
	auditIx map[uint64]Chunk
}

// headerReader hands out exactly the header's declared length of the snapshot, no more (the
// records follow), and an unexpected EOF if the snapshot ends sooner.
type headerReader struct {
	r    *bufio.Reader
	left uint64
}

func (hr *headerReader) Read(p []byte) (int, error) {
	if hr.left == 0 {
		return 0, io.EOF
	}
	if uint64(len(p)) > hr.left {
		p = p[:hr.left]
	}
	n, err := hr.r.Read(p)
	hr.left -= uint64(n)
	if errors.Is(err, io.EOF) && hr.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// readHeader reads a snapshot's length-prefixed JSON header and builds its jobs a job at a
// time. Whole, the header is about 760 bytes a job (76 MB at the largest max-jobs), and reading
// it, then unmarshalling it into every snapJob at once before building the jobs held all three
// (550–750 MiB more at the peak of a restore at max-jobs, docs/performance.md): now one job's
// JSON and snapJob are held at a time (TestRestoreHeaderStreamed).
//
// It accepts exactly the headers json.Unmarshal into a snapHeader accepted, in any field order,
// and builds the same state, with one exception: a header with the jobs field twice (which no
// build writes; json.Unmarshal merged the two arrays element by element) is refused. The checks
// of a job against the header's own fields (its sequence number against seq, an audit's ID
// against audit_seq), which may follow the jobs, run once the whole header is read. A header
// with several faults may be refused for another of them than before, and JSON errors name
// their place differently.
func readHeader(br *bufio.Reader, version byte) (*restoredHeader, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, fmt.Errorf("restore: header: %w", err)
	}
	if n > maxSnapHeader {
		return nil, fmt.Errorf("restore: header: %d bytes exceeds the limit of %d", n, maxSnapHeader)
	}
	b := &headerBuilder{
		version: version,
		out:     &restoredHeader{jobs: map[string]*job{}, auditIx: map[uint64]Chunk{}},
	}
	dec := json.NewDecoder(&headerReader{r: br, left: n})
	dec.UseNumber() // numbers skipped are not converted: json.Unmarshal refused none it ignored
	if err := b.decode(dec); err != nil {
		return nil, err
	}
	if err := b.finish(); err != nil {
		return nil, err
	}
	return b.out, nil
}

// headerBuilder builds the state from a header's JSON as it is decoded.
type headerBuilder struct {
	version byte
	out     *restoredHeader
	order   []*job // the jobs in the header's order, for the checks run at the end
	// inflight are the audits in flight (auditing or disputed), in the header's order: their IDs
	// are checked against audit_seq at the end.
	inflight []inflightAudit
}

type inflightAudit struct {
	k   int // the job's place in order
	rng Range
	id  uint64
}

// headerErr is a JSON error of the header. The decoder's io.EOF means the header's bytes
// ended inside its JSON (json.Unmarshal: unexpected end of JSON input).
func headerErr(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("restore: header: %w", err)
}

// decode walks the header's JSON object: the jobs field is decoded a job at a time, each other
// field with json.Unmarshal into the header, so that names match and repeat as they did, and
// unknown ones are skipped.
func (b *headerBuilder) decode(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return headerErr(err)
	}
	switch tok {
	case nil: // null: json.Unmarshal leaves the header empty
	case json.Delim('{'):
		if err := b.members(dec); err != nil {
			return err
		}
	default:
		return headerErr(fmt.Errorf("json: cannot unmarshal %s into a snapshot header", jsonKind(tok)))
	}
	// Nothing but white space may follow, as json.Unmarshal requires.
	if tok, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err == nil {
			err = fmt.Errorf("%s after the header's JSON", jsonKind(tok))
		}
		return fmt.Errorf("restore: header: %w", err)
	}
	return nil
}

// headerFields are the JSON names of the header's fields but the jobs.
var headerFields = func() []string {
	var names []string
	t := reflect.TypeFor[snapHeader]()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "jobs" {
			names = append(names, name)
		}
	}
	return names
}()

// headerField reports whether json.Unmarshal decodes a member of this name into a header field
// other than the jobs: it matches names without regard to case.
func headerField(key string) bool {
	for _, name := range headerFields {
		if strings.EqualFold(key, name) {
			return true
		}
	}
	return false
}

// skipValue reads the next value a token at a time: only its longest string or number is held.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

// members decodes the header object's members after its opening brace, and the closing one.
func (b *headerBuilder) members(dec *json.Decoder) error {
	jobsSeen := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return headerErr(err)
		}
		key, ok := tok.(string)
		if !ok { // the decoder returns an object's keys as strings
			return headerErr(fmt.Errorf("key %v", tok))
		}
		// json.Unmarshal matches field names without regard to case.
		if strings.EqualFold(key, "jobs") {
			if jobsSeen {
				return errors.New("restore: header: the jobs field twice")
			}
			jobsSeen = true
			if err := b.jobs(dec); err != nil {
				return err
			}
			continue
		}
		if !headerField(key) {
			// json.Unmarshal ignored it; skipped a token at a time, it is never held whole.
			if err := skipValue(dec); err != nil {
				return headerErr(err)
			}
			continue
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return headerErr(err)
		}
		// Unmarshalled into the header as it stands, as json.Unmarshal decoded each field of
		// the whole header in turn: a name in any case, the last of a repeated one.
		k, err := json.Marshal(key)
		if err != nil {
			return headerErr(err)
		}
		member := append(append(append(append([]byte{'{'}, k...), ':'), v...), '}')
		if err := json.Unmarshal(member, &b.out.h); err != nil {
			return fmt.Errorf("restore: header: %w", err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace (More saw it, or an error)
		return headerErr(err)
	}
	return nil
}

// jobs decodes the jobs field's array a job at a time, building each.
func (b *headerBuilder) jobs(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return headerErr(err)
	}
	switch tok {
	case nil: // null: no jobs, as json.Unmarshal reads it
		return nil
	case json.Delim('['):
	default:
		return headerErr(fmt.Errorf("json: cannot unmarshal %s into the snapshot header's jobs", jsonKind(tok)))
	}
	for dec.More() {
		var sj snapJob // a new one each time, as each element of a new slice
		if err := dec.Decode(&sj); err != nil {
			return headerErr(err)
		}
		if err := b.addJob(&sj); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing bracket
		return headerErr(err)
	}
	return nil
}

// jsonKind names the kind of JSON value a token begins.
func jsonKind(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		if tok == json.Delim('{') {
			return "object"
		}
		return "array"
	case string:
		return "string"
	case float64, json.Number:
		return "number"
	case bool:
		return "bool"
	}
	return "null"
}

// addJob checks one job of the header and builds its state; the checks against the header's
// own fields wait for finish.
func (b *headerBuilder) addJob(sj *snapJob) error {
	jobs, auditIx := b.out.jobs, b.out.auditIx
	if err := sj.Spec.Validate(); err != nil {
		return fmt.Errorf("restore: job %s: %w", sj.ID, err)
	}
	if err := checkSnapJob(sj, b.version); err != nil {
		return fmt.Errorf("restore: job %q: %w", sj.ID, err)
	}
	if _, dup := jobs[sj.ID]; dup {
		return fmt.Errorf("restore: job %q twice", sj.ID)
	}
	if err := validFaults(sj.Spec, sj.Faults); err != nil {
		return fmt.Errorf("restore: job %s: %w", sj.ID, err)
	}
	j := &job{
		id: sj.ID, seq: sj.Seq, spec: sj.Spec, submitter: sj.Submitter, state: sj.State,
		submitted: nanosTime(sj.Submitted), started: nanosTime(sj.Started), finished: nanosTime(sj.Finished),
		accepted: NewRangeSet(sj.Accepted...), hits: sj.Hits, payloadBytes: sj.PayloadBytes, reason: sj.Reason,
		nodes: map[string]*NodeContribution{}, recs: map[uint64]*auditRec{},
		cleared: NewRangeSet(sj.Cleared...), auditedUnits: sj.AuditedUnits, redoneUnits: sj.RedoneUnits,
		faults: sj.Faults,
	}
	if b.version < 3 {
		j.cleared = NewRangeSet(sj.Accepted...)
	}
	for _, a := range sj.Audits {
		r, err := restoreAudit(a, j)
		if err != nil {
			return fmt.Errorf("restore: job %s: %w", sj.ID, err)
		}
		if _, dup := j.recs[r.rng.Start]; dup {
			return fmt.Errorf("restore: job %s: audit record %v twice", sj.ID, r.rng)
		}
		if r.step == stepAuditing || r.step == stepDisputed {
			b.inflight = append(b.inflight, inflightAudit{k: len(b.order), rng: r.rng, id: r.id})
			if _, dup := auditIx[r.id]; dup {
				return fmt.Errorf("restore: job %s: audit ID %d twice", sj.ID, r.id)
			}
			auditIx[r.id] = Chunk{Job: j.id, Range: r.rng}
		}
		j.recs[r.rng.Start] = r
		if r.step != stepCleared {
			j.open++
		}
		if r.step == stepCommitted {
			if j.waiting == nil {
				j.waiting = map[uint64]struct{}{}
			}
			j.waiting[r.rng.Start] = struct{}{}
		}
	}
	for _, n := range sj.Nodes {
		n := n
		j.nodes[n.Node] = &n
	}
	var err error
	if j.hist, err = decodeHistory(sj.History, j.total()); err != nil {
		return fmt.Errorf("restore: job %s: %w", sj.ID, err)
	}
	jobs[sj.ID] = j
	b.order = append(b.order, j)
	return nil
}

// finish runs the checks that need the header's own fields, once they are all read, in the
// order the jobs came.
func (b *headerBuilder) finish() error {
	h := &b.out.h
	if h.TotalPayload < 0 {
		return fmt.Errorf("restore: total payload %d bytes", h.TotalPayload)
	}
	a := 0
	for k, j := range b.order {
		if j.seq > h.Seq {
			return fmt.Errorf("restore: job %s: sequence %d after the state's %d", j.id, j.seq, h.Seq)
		}
		for ; a < len(b.inflight) && b.inflight[a].k == k; a++ {
			if r := b.inflight[a]; r.id == 0 || r.id > h.AuditSeq {
				// New audits take IDs after AuditSeq: one at or below it would be handed out again.
				return fmt.Errorf("restore: job %s: audit record %v has ID %d, the state's last is %d", j.id, r.rng, r.id, h.AuditSeq)
			}
		}
	}
	b.order, b.inflight = nil, nil
	return nil
}
