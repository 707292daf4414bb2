package webui

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// JobView is the API's view of a job (GET /api/v1/jobs/{id}, list items,
// submit and cancel answers). Its JSON object carries the job's parameters
// flattened as in the submit body (kind, name, priority, samples and seed —
// the seed as a decimal string — or width … max_iter), then the fields below.
type JobView struct {
	Spec           compute.JobSpec    `json:"-"` // flattened into the object, Priority the effective one
	ID             string             `json:"id"`
	State          compute.JobState   `json:"state"`            // queued | running | done | cancelled | failed
	Reason         string             `json:"reason,omitempty"` // why a failed job failed
	Submitter      string             `json:"submitter,omitempty"`
	SubmittedAt    time.Time          `json:"submitted_at"`
	StartedAt      time.Time          `json:"started_at,omitzero"`
	FinishedAt     time.Time          `json:"finished_at,omitzero"`
	DoneUnits      uint64             `json:"done_units"`
	TotalUnits     uint64             `json:"total_units"`
	Unit           string             `json:"unit"`     // "samples" (π) or "rows" (Mandelbrot)
	Progress       float64            `json:"progress"` // done_units / total_units, 0–1
	ComputeSeconds float64            `json:"compute_seconds"`
	Nodes          []ContributionView `json:"nodes"`
	PayloadBytes   int64              `json:"payload_bytes"`
	// AuditedUnits is how many units auditors recomputed to check the job's
	// results; RedoneUnits how many were computed again after a failed
	// audit (docs/audits.md).
	AuditedUnits uint64 `json:"audited_units"`
	RedoneUnits  uint64 `json:"redone_units"`
	// ClearedUnits is how many of the done units count in the answer yet:
	// their audit passed or they were sampled out (done_units minus the
	// ones waiting for a challenge or an audit).
	ClearedUnits uint64 `json:"cleared_units"`
	// Disputes is how many chunks wait for a third node to settle an
	// auditor's disagreement with the chunk's node (docs/audits.md).
	Disputes int `json:"disputes,omitempty"`
}

// ContributionView is what one node did for a job, from its accepted chunks.
type ContributionView struct {
	compute.NodeContribution         // node (peer ID), units, chunks, compute_seconds
	Name                     string  `json:"name,omitempty"` // the node's name, when this node knows it
	Share                    float64 `json:"share"`          // units / the job's done units, 0–1
}

// jobViewFields is JobView without its custom methods, for encoding/json.
type jobViewFields JobView

// MarshalJSON writes the flattened parameters, then the other fields.
func (v JobView) MarshalJSON() ([]byte, error) {
	params, err := json.Marshal(flatParams(v.Spec))
	if err != nil {
		return nil, err
	}
	rest, err := json.Marshal(jobViewFields(v))
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Write(params[:len(params)-1])
	b.WriteByte(',')
	b.Write(rest[1:])
	return b.Bytes(), nil
}

// UnmarshalJSON reads a view written by MarshalJSON, leniently: fields it
// does not know are ignored.
func (v *JobView) UnmarshalJSON(data []byte) error {
	var f jobViewFields
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	spec, err := decodeJobFields(data, false)
	if err != nil {
		return err
	}
	*v = JobView(f)
	v.Spec = spec
	return nil
}

// newJobView shapes a job for the API; names maps node IDs to names.
func newJobView(j compute.Job, names map[string]string) JobView {
	spec := j.Spec
	spec.Kind, spec.Name, spec.Priority = j.Kind, j.Name, j.Priority
	v := JobView{
		Spec: spec, ID: j.ID, State: j.State, Submitter: j.Submitter,
		SubmittedAt: j.SubmittedAt, StartedAt: j.StartedAt, FinishedAt: j.FinishedAt, Reason: j.Reason,
		DoneUnits: j.DoneUnits, TotalUnits: j.TotalUnits, Unit: unitName(j.Kind),
		Nodes: make([]ContributionView, 0, len(j.Nodes)), PayloadBytes: j.PayloadBytes,
		AuditedUnits: j.AuditedUnits, RedoneUnits: j.RedoneUnits, ClearedUnits: j.ClearedUnits, Disputes: j.Disputes,
	}
	if j.TotalUnits > 0 {
		v.Progress = float64(j.DoneUnits) / float64(j.TotalUnits)
	}
	for _, c := range j.Nodes {
		cv := ContributionView{NodeContribution: c, Name: names[c.Node]}
		if j.DoneUnits > 0 {
			cv.Share = float64(c.Units) / float64(j.DoneUnits)
		}
		v.ComputeSeconds += c.ComputeSeconds
		v.Nodes = append(v.Nodes, cv)
	}
	return v
}

func unitName(k compute.Kind) string {
	switch k {
	case compute.KindPi:
		return "samples"
	case compute.KindMandelbrot:
		return "rows"
	case compute.KindWasm:
		return "items"
	}
	return "units"
}

// ResultView is the body of GET /api/v1/jobs/{id}/result: the π result
// (hits, samples, estimate, std_error over the accepted samples) or the
// Mandelbrot summary, after the job's id, kind and state. Complete is true
// once the job is done; before that (or after a cancel) the result covers
// what was accepted.
type ResultView struct {
	ID       string           `json:"id"`
	Kind     compute.Kind     `json:"kind"`
	State    compute.JobState `json:"state"`
	Complete bool             `json:"complete"`
	*compute.PiResult
	TotalSamples uint64 `json:"total_samples,omitempty"` // π: the job's samples
	*MandelSummary
	// wasm: reduce, value (a decimal string), items, done_items; concat output at ResultBin.
	*compute.WasmResult
	ResultBin string `json:"result_bin,omitempty"`
}

// MandelSummary describes a Mandelbrot job's image and where to fetch it.
type MandelSummary struct {
	Width     int             `json:"width"`
	Height    int             `json:"height"`
	MaxIter   int             `json:"max_iter"`
	DoneRows  uint64          `json:"done_rows"`
	TotalRows uint64          `json:"total_rows"`
	Accepted  []compute.Range `json:"accepted_rows"` // accepted rows as [start, end) ranges
	Links     ResultLinks     `json:"links"`
}

// ResultLinks are the paths of a Mandelbrot job's image.
type ResultLinks struct {
	Raw string `json:"raw"` // W×H uint32 little-endian counts; ?rows=A-B for rows [A, B)
	PNG string `json:"png"`
}
