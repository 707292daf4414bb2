package child

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/compute/audit"
	"github.com/hydra-compute/hydra/wire"
)

// Wire format. Every message is one frame (wire.WriteFrame: uvarint length, then the bytes):
//
//	kind byte | uvarint n | n bytes of JSON header | raw payload (result only)
//
// The header is small JSON, easy to extend and to read in a debugger; the result payload (the
// encoded counts of a Mandelbrot stripe, possibly megabytes) travels raw after it, never
// base64-inflated.
const (
	kindHello    byte = 'h' // child → parent, first message: priority obtained, kernel path
	kindRun      byte = 'r' // parent → child: compute a task
	kindStop     byte = 's' // parent → child: stop the task, report its finished prefix
	kindConfig   byte = 'c' // parent → child: new --cpus / --cpu-limit, applied at once
	kindExit     byte = 'x' // parent → child: stop and exit
	kindProgress byte = 'p' // child → parent: finished prefix of the running task
	kindResult   byte = 'R' // child → parent: a task's finished prefix and its payload
	kindError    byte = 'e' // child → parent: a task (or a message) failed
)

// protocolVersion is carried in the hello; a parent refuses a child of another version (they
// are the same binary, so a mismatch means a botched upgrade in place).
const protocolVersion = 1

// Bounds. Parent → child messages are tiny; child → parent results carry at most
// wire.MaxResultCounts counts, a payload of at most wire.MaxResult bytes.
const (
	maxHeader      = 7*compute.MaxWasmParams + 64<<10 // a run's spec holds a wasm job's params, each byte up to 6 in JSON (\u003c)
	maxParentFrame = 1 << 20
	maxChildFrame  = wire.MaxResult + maxHeader + 1024
	maxCPUs        = MaxCPUs
	maxErrText     = 4096
)

// maxComputeSeconds bounds the compute seconds of a task's result: node/work's coordinator
// refuses a worker's whole exchange when one of its results claims more than 1e7 (or NaN,
// which does not even encode), and the worker sends its results again in every exchange until
// they are committed, so one such result would keep all of that node's results out for good. A
// task takes seconds on at most MaxCPUs cores: a child that claims this much is broken.
const maxComputeSeconds = 1e7

// MaxCPUs is the most cores a compute child runs on (--cpus).
const MaxCPUs = 1024

// header is the JSON part of every message; which fields are set depends on the kind.
type header struct {
	Task           uint64           `json:"task,omitempty"`
	Spec           *compute.JobSpec `json:"spec,omitempty"`
	Range          *compute.Range   `json:"range,omitempty"`
	CPUs           int              `json:"cpus,omitempty"`
	CPULimit       int              `json:"cpu_limit,omitempty"`
	Done           uint64           `json:"done,omitempty"`
	ComputeSeconds float64          `json:"compute_seconds,omitempty"`
	Err            string           `json:"err,omitempty"`
	Fault          bool             `json:"fault,omitempty"` // Err is the module's own failure (ModuleFault)
	Hello          *Hello           `json:"hello,omitempty"`
	// Parts (result only) cut the result of a job with chunk_units at its chunks: consecutive
	// ranges from Range.Start to Range.End, each with its payload's size; the payloads follow
	// one after the other.
	Parts []partHead `json:"parts,omitempty"`
	// Roots (result only, optional) are the commitments of the result (compute.Commitment),
	// one per part, or one without parts: the child has the counts in hand, so the node does
	// not decode the payload again to commit to it.
	Roots []audit.Hash `json:"roots,omitempty"`
	// Spans (run only, π only) make the task several disjoint spans of one job, computed one
	// after the other: Range is their cover, and the result has a part per span finished, in
	// order (the audits a node holds of one job run as one task: each a span, none a round trip
	// of its own to the child).
	Spans []compute.Range `json:"spans,omitempty"`
}

// partHead is one chunk of a result cut at a job's chunks.
type partHead struct {
	Range compute.Range `json:"range"`
	Bytes int           `json:"bytes"`
}

// maxParts bounds a result's parts: a task of a job with chunk_units covers at most
// compute.MaxLeaseChunks whole chunks, plus the end of the one it starts in.
const maxParts = compute.MaxLeaseChunks + 1

// message is one decoded frame.
type message struct {
	kind    byte
	h       header
	payload []byte // kindResult only
}

// Hello is what the child reports when it starts: which priority it obtained (so a node can
// show that compute really runs at idle priority) and which kernel it runs (so a user can see
// why one machine is faster than another).
type Hello struct {
	Protocol   int    `json:"protocol"`
	PID        int    `json:"pid"`
	Priority   string `json:"priority"`    // e.g. "SCHED_IDLE+nice19 on 9 threads"; what failed if anything
	KernelPath string `json:"kernel_path"` // compute.KernelPath(): avx512, avx2, portable, or pi=…,mandelbrot=…
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	NumCPU     int    `json:"num_cpu"`
	// BlockLog: the child logs finished blocks in the region the node shared with it, so a
	// pause may freeze it (SIGSTOP) and read what it finished (see shm.go).
	BlockLog bool `json:"block_log,omitempty"`
}

func encodeMessage(m message) ([]byte, error) {
	h, err := json.Marshal(m.h)
	if err != nil {
		return nil, fmt.Errorf("encode %q header: %w", m.kind, err)
	}
	if len(h) > maxHeader {
		return nil, fmt.Errorf("encode %q header: %d bytes, limit %d", m.kind, len(h), maxHeader)
	}
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(h)+len(m.payload))
	b = append(b, m.kind)
	b = binary.AppendUvarint(b, uint64(len(h)))
	b = append(b, h...)
	return append(b, m.payload...), nil
}

var errMalformed = errors.New("malformed message")

// decodeMessage parses and validates one frame. It is total: any input gives a message that
// passed validation or an error, never a panic, and it allocates no more than the input's size.
func decodeMessage(b []byte) (message, error) {
	if len(b) < 2 {
		return message{}, fmt.Errorf("%w: %d bytes", errMalformed, len(b))
	}
	m := message{kind: b[0]}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > maxHeader || n > uint64(len(b)-1-k) {
		return message{}, fmt.Errorf("%w: bad header length", errMalformed)
	}
	hb := b[1+k : 1+k+int(n)]
	if err := json.Unmarshal(hb, &m.h); err != nil {
		return message{}, fmt.Errorf("%w: kind %q: %v", errMalformed, m.kind, err)
	}
	if rest := b[1+k+int(n):]; len(rest) > 0 {
		if m.kind != kindResult {
			return message{}, fmt.Errorf("%w: kind %q carries %d payload bytes", errMalformed, m.kind, len(rest))
		}
		m.payload = rest
	}
	if err := m.validate(); err != nil {
		return message{}, fmt.Errorf("%w: kind %q: %v", errMalformed, m.kind, err)
	}
	return m, nil
}

// validate checks what each kind needs, so the code after decoding can trust it.
func (m *message) validate() error {
	h := &m.h
	if h.CPUs < 0 || h.CPUs > maxCPUs {
		return fmt.Errorf("cpus %d outside 0–%d", h.CPUs, maxCPUs)
	}
	if h.CPULimit < 0 || h.CPULimit > 100 {
		return fmt.Errorf("cpu_limit %d outside 0–100", h.CPULimit)
	}
	if len(h.Err) > maxErrText {
		return fmt.Errorf("error text of %d bytes", len(h.Err))
	}
	if m.kind != kindResult && len(h.Roots) > 0 {
		return errors.New("roots outside a result")
	}
	if m.kind != kindRun && len(h.Spans) > 0 {
		return errors.New("spans outside a run")
	}
	switch m.kind {
	case kindHello:
		if h.Hello == nil {
			return errors.New("no hello")
		}
		if h.Hello.Protocol != protocolVersion {
			return fmt.Errorf("protocol %d, want %d", h.Hello.Protocol, protocolVersion)
		}
	case kindRun:
		if h.Task == 0 || h.Spec == nil || h.Range == nil {
			return errors.New("run needs task, spec and range")
		}
		if err := checkTask(*h.Spec, *h.Range); err != nil {
			return err
		}
		return checkSpans(*h.Spec, *h.Range, h.Spans)
	case kindStop, kindConfig, kindExit:
	case kindProgress:
		if h.Task == 0 {
			return errors.New("progress without task")
		}
	case kindResult:
		if h.Task == 0 || h.Range == nil || h.Range.End < h.Range.Start {
			return errors.New("result needs task and range")
		}
		if !(h.ComputeSeconds >= 0 && h.ComputeSeconds <= maxComputeSeconds) { // NaN too
			return fmt.Errorf("compute seconds %g", h.ComputeSeconds)
		}
		if n := max(1, len(h.Parts)); len(h.Roots) != 0 && len(h.Roots) != n {
			return fmt.Errorf("%d roots for %d parts", len(h.Roots), n)
		}
		return checkParts(h.Parts, *h.Range, len(m.payload))
	case kindError:
		if h.Err == "" {
			return errors.New("error without text")
		}
	default:
		return errors.New("unknown kind")
	}
	return nil
}

// checkTask reports whether a range of a job can be run: a valid spec and a non-empty range
// inside the job.
func checkTask(spec compute.JobSpec, r compute.Range) error {
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	if r.Empty() || r.End > spec.TotalUnits() {
		return fmt.Errorf("range %s outside the job's [0,%d) or empty", r, spec.TotalUnits())
	}
	return nil
}

// checkSpans reports whether a run's spans (if any) are at most maxParts disjoint non-empty
// ranges in order that r covers exactly, of a π job without chunk_units.
func checkSpans(spec compute.JobSpec, r compute.Range, spans []compute.Range) error {
	if len(spans) == 0 {
		return nil
	}
	if spec.Kind != compute.KindPi || spec.ChunkUnits != 0 {
		return errors.New("spans of a task other than π without chunk_units")
	}
	if len(spans) > maxParts {
		return fmt.Errorf("%d spans, at most %d", len(spans), maxParts)
	}
	at := r.Start
	for i, sp := range spans {
		if sp.Empty() || sp.Start < at || i == 0 && sp.Start != r.Start || sp.End > r.End {
			return fmt.Errorf("span %s not in order within %s", sp, r)
		}
		at = sp.End
	}
	if at != r.End {
		return fmt.Errorf("spans end at %d, the task at %d", at, r.End)
	}
	return nil
}

// checkParts reports whether a result's parts (if any) are non-empty ranges in order from the
// start to the end of r (consecutive for a job with chunk_units, with gaps between the spans of
// a task with spans: Runner.result checks them against the task) whose payloads add up to the n
// payload bytes.
func checkParts(parts []partHead, r compute.Range, n int) error {
	if len(parts) == 0 {
		return nil
	}
	if len(parts) > maxParts {
		return fmt.Errorf("%d parts, at most %d", len(parts), maxParts)
	}
	at, bytes := r.Start, 0
	for i, p := range parts {
		if p.Range.Start < at || i == 0 && p.Range.Start != at || p.Range.End <= p.Range.Start || p.Range.End > r.End {
			return fmt.Errorf("part %s does not follow on at %d within %s", p.Range, at, r)
		}
		if p.Bytes < 0 || p.Bytes > n-bytes {
			return fmt.Errorf("part %s: %d payload bytes, %d left", p.Range, p.Bytes, n-bytes)
		}
		at, bytes = p.Range.End, bytes+p.Bytes
	}
	if at != r.End || bytes != n {
		return fmt.Errorf("parts end at %d with %d bytes, the result at %d with %d", at, bytes, r.End, n)
	}
	return nil
}
