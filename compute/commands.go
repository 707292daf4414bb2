package compute

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/hydra-compute/hydra/compute/audit"
	"github.com/hydra-compute/hydra/wire"
)

// Ops of the job-state commands in the raft log (the range 0x40+ is reserved for compute by
// docs/internals.md). consensus frames them (format version, op) and hands op and payload to
// [JobStore.Apply]. Every payload starts with its own format byte, so a command can grow fields.
const (
	OpSubmit  byte = 0x40 // Submit: a new job
	OpResults byte = 0x41 // Results: a batch of chunk results
	OpStarted byte = 0x42 // Started: the coordinator leased the job's first chunk
	OpCancel  byte = 0x43 // Cancel: stop a job; accepted results are kept
	OpDelete  byte = 0x44 // Delete: forget a job and its results (hydra rm)
	OpEvict   byte = 0x45 // Evict: drop finished jobs past retention or over the disk cap
	OpFail    byte = 0x46 // Fail: a job cannot finish (a chunk failed on too many nodes)
	OpFault   byte = 0x47 // Fault: a job's module failed a chunk on a node (faults.go)

	OpChallenge   byte = 0x50 // Challenge: the seed that picks which committed chunks are audited
	OpAudit       byte = 0x51 // Audit: an auditor's recomputation of a chunk's chosen blocks
	OpTrustReset  byte = 0x52 // TrustReset: an admin clears a node's failed audits and quarantine
	OpAuditPolicy byte = 0x53 // AuditPolicy: how often and how much the cluster audits
	OpAuditWaive  byte = 0x54 // AuditWaive: clear, unaudited, the audits no live node may run
)

// commandFormat is the format byte that starts every command payload. Results with
// commitments (Results.Audited) use resultsAuditedFormat.
const (
	commandFormat        = 1
	resultsAuditedFormat = 2
	// resultsChallengeFormat is audited Results followed by a Challenge for chunks of earlier
	// entries (Results.Challenge).
	resultsChallengeFormat = 3
	submitCappedFormat     = 2 // a Submit with MaxJobs
)

// Bounds enforced by the decoders: a hostile or corrupt log entry is rejected, never allocated.
const (
	MaxIDLen       = 128     // job IDs, node IDs, submitter names
	MaxBatchChunks = 100_000 // chunk results in one Results command
	// MaxComputeSeconds bounds a chunk result's or an audit's compute seconds, as the
	// coordinator bounds what a worker reports (node/work): a value past float32's range
	// would become +Inf in a job's history, and two near float64's would sum to +Inf in a
	// node's contribution, which a snapshot's JSON cannot hold. Sums of bounded terms stay
	// finite: reaching +Inf would take over 1e301 results.
	MaxComputeSeconds = 1e7
)

// Sizes the limits in wire must hold, checked at compile time (a negative constant does not
// convert to uint):
const (
	// An encoded chunk result takes its payload plus at most wire.ResultOverhead bytes (two IDs
	// of at most MaxIDLen bytes with their lengths, the range's ends, the seconds, the payload's
	// length, the commitment root): the coordinator sizes its batches by it, so that a batch
	// encodes within wire.MaxCommand.
	_ = uint(wire.ResultOverhead - (2*(MaxIDLen+binary.MaxVarintLen16) + 3*binary.MaxVarintLen64 + 8 + len(audit.Hash{})))
	// An Audit command (its leaves, a result's payload, IDs, root) fits a command.
	_ = uint(wire.MaxCommand - (audit.MaxLeaves*len(audit.Hash{}) + wire.MaxResult + wire.ResultOverhead + 64))
)

// ErrUnknownOp is wrapped by the error (an *UnknownOpError, a local failure) that DecodeCommand
// and Apply return for an op this build does not know.
var ErrUnknownOp = errors.New("unknown job-state op")

// Submit creates a job. ID is chosen by the leader (unique); Time is the leader's clock when it
// proposed the command, never the applying node's.
//
// MaxJobs is the cluster's job cap (the max-jobs setting) as the proposer read it from the
// replicated settings: the submit is refused with ErrTooManyJobs when the state already holds
// that many jobs. 0: no cap (commands written before the cap existed).
type Submit struct {
	ID        string
	Spec      JobSpec
	Submitter string
	Time      time.Time
	MaxJobs   int
}

// ChunkResult is one finished chunk: the job, its range, the encoded result (see
// EncodePiBlocksPayload, EncodeMandelPayload), which node computed it and for how long, and the
// worker's commitment to it (Commitment: the Merkle root of its blocks).
type ChunkResult struct {
	Chunk
	Node           string
	ComputeSeconds float64
	Payload        []byte
	Root           audit.Hash
}

// Results is a batch of chunk results, batched by the coordinator into one log entry. With
// Audited, every result must carry a commitment matching its payload and is counted in its job's
// answer only once a Challenge sampled it out or its audit passed (docs/design.md §4); without
// (logs written before audits, tools and tests), results count at once.
type Results struct {
	Time    time.Time
	Items   []ChunkResult
	Audited bool
	// Challenge, when set (audited results only), is a Challenge for chunks accepted by earlier
	// entries, carried along to save the log an entry per commit; its Time is the command's. It
	// is applied once the items are stored, before they are counted.
	Challenge *Challenge
}

// Challenge carries the randomness that decides which committed chunks are audited and which
// of their blocks: the coordinator draws Seed after the chunks' Results entry committed, so a
// worker cannot know in advance which part of its chunk will be checked.
type Challenge struct {
	Time  time.Time
	Seed  audit.Seed
	Items []ChunkRef
	// Unaudited clears every item without an audit (as if sampled out): the
	// coordinator sets it when no live node other than the chunks' own could
	// audit them (a cluster of one machine), which would otherwise wait
	// forever for an auditor. Encoded as one trailing byte only when set, so
	// entries written before it decode unchanged.
	Unaudited bool
}

// ChunkRef names an accepted chunk by its job and the start of its range.
type ChunkRef struct {
	Job   string
	Start uint64
}

// Audit is an auditor's answer to an AuditTask: for a block audit, its leaves of the chosen
// blocks, in order; for a full audit (a dispute), the whole chunk's result and commitment.
type Audit struct {
	Time    time.Time
	Job     string
	ID      uint64
	Auditor string
	Leaves  []audit.Hash
	Payload []byte
	Root    audit.Hash
	Seconds float64
}

// AuditPolicy sets the cluster's audit policy (zero fields: the defaults). The coordinator
// proposes it when its configuration differs from the replicated one; every replica then audits
// alike.
type AuditPolicy struct {
	Policy audit.Policy
}

// AuditWaive clears, without an audit, the block audits of Node's chunks in unfinished jobs:
// the coordinator proposes it when Node has been the only live node for a while (the other
// machine of a two-machine cluster left), since no other node may audit its chunks and its jobs
// would otherwise wait for ever. It is the same trade as Challenge.Unaudited, which clears the
// chunks committed while a node is alone, for the audits chosen before it was. Disputes are
// not waived: two nodes disagreed, and only a third may settle which one is right.
type AuditWaive struct {
	Node string
	Time time.Time
}

// TrustReset clears a node's failed audits and its quarantine (hydra trust reset NODE): it is
// new again, audited on every chunk.
type TrustReset struct {
	Node string
}

// Started marks a job running: the coordinator leased its first chunk at Time.
type Started struct {
	Job  string
	Time time.Time
}

// Cancel stops a job at Time; results accepted before stay readable.
type Cancel struct {
	Job  string
	Time time.Time
}

// Fail ends a job in state failed with Reason (a WebAssembly chunk that trapped or timed out on
// several different nodes: the module, not the nodes, is at fault). Accepted results stay.
type Fail struct {
	Job    string
	Reason string
	Time   time.Time
}

// MaxFailReason bounds a failed job's reason (bytes): the reason is replicated in the log and
// kept with the job for its whole retention, and it only has to say why (a trap's message, which
// nodes it failed on), so a long trap message cannot bloat every replica.
const MaxFailReason = 2048

// Delete removes a job and its stored results.
type Delete struct {
	Job string
}

// Evict drops finished (done or cancelled) jobs that finished before Now−Retention, then the
// oldest finished ones while stored payloads exceed DiskCap bytes (0: no cap). Queued and running
// jobs are never evicted.
type Evict struct {
	Now       time.Time
	Retention time.Duration
	DiskCap   int64
}

// EncodeCommand returns the op and payload for a command value (Submit, Results, Started,
// Cancel, Delete, Evict, or pointers to them).
func EncodeCommand(cmd any) (op byte, payload []byte, err error) {
	e := &encoder{}
	e.byte1(commandFormat)
	switch c := deref(cmd).(type) {
	case Submit:
		op = OpSubmit
		e.str(c.ID)
		e.str(c.Submitter)
		e.time(c.Time)
		encodeSpec(e, c.Spec)
		if c.MaxJobs > 0 {
			e.b[0] = submitCappedFormat
			e.uvarint(uint64(c.MaxJobs))
		}
	case Results:
		op = OpResults
		if c.Challenge != nil && !c.Audited {
			return 0, nil, errors.New("encode results: a challenge rides on audited results only")
		}
		if c.Audited {
			e.b[0] = resultsAuditedFormat
		}
		if c.Challenge != nil {
			e.b[0] = resultsChallengeFormat
		}
		e.time(c.Time)
		e.uvarint(uint64(len(c.Items)))
		for _, it := range c.Items {
			e.str(it.Job)
			e.uvarint(it.Range.Start)
			e.uvarint(it.Range.End)
			e.str(it.Node)
			e.f64(it.ComputeSeconds)
			e.bytes(it.Payload)
			if c.Audited {
				e.b = append(e.b, it.Root[:]...)
			}
		}
		if c.Challenge != nil {
			encodeChallenge(e, *c.Challenge)
			e.b = append(e.b, boolByte(c.Challenge.Unaudited))
		}
	case Challenge:
		op = OpChallenge
		e.time(c.Time)
		encodeChallenge(e, c)
		if c.Unaudited {
			e.b = append(e.b, 1)
		}
	case Audit:
		op = OpAudit
		e.time(c.Time)
		e.str(c.Job)
		e.uvarint(c.ID)
		e.str(c.Auditor)
		e.f64(c.Seconds)
		e.uvarint(uint64(len(c.Leaves)))
		for _, h := range c.Leaves {
			e.b = append(e.b, h[:]...)
		}
		e.bytes(c.Payload)
		e.b = append(e.b, c.Root[:]...)
	default:
		f, ok := fixedOf(cmd)
		if !ok {
			return 0, nil, fmt.Errorf("encode command: unsupported type %T", cmd)
		}
		op = f.code(fieldCoder{e: e})
	}
	if len(e.b) > wire.MaxCommand {
		return 0, nil, fmt.Errorf("encode command %#x: %d bytes exceeds %d; split the batch", op, len(e.b), wire.MaxCommand)
	}
	return op, e.b, nil
}

func deref(v any) any {
	switch c := v.(type) {
	case *Submit:
		return *c
	case *Results:
		return *c
	case *Started:
		return *c
	case *Cancel:
		return *c
	case *Delete:
		return *c
	case *Evict:
		return *c
	case *Fail:
		return *c
	case *Fault:
		return *c
	case *Challenge:
		return *c
	case *Audit:
		return *c
	case *TrustReset:
		return *c
	case *AuditPolicy:
		return *c
	case *AuditWaive:
		return *c
	}
	return v
}

// DecodeCommand parses a payload into the command value of its op (Submit, Results, …, by
// value). It is bounded and total: any input gives a value or an error, never a panic. It does
// not validate semantics (a spec's ranges, a result's payload); Apply does.
func DecodeCommand(op byte, payload []byte) (any, error) {
	if OpLevel(op) == 0 {
		return nil, &UnknownOpError{Op: op} // whatever its payload: a newer build's op
	}
	if len(payload) > wire.MaxCommand {
		return nil, fmt.Errorf("decode op %#x: %d bytes exceeds %d", op, len(payload), wire.MaxCommand)
	}
	d := &decoder{b: payload}
	f := d.byte1()
	if d.err == nil && f != commandFormat && (op != OpResults || f != resultsAuditedFormat && f != resultsChallengeFormat) && (op != OpSubmit || f != submitCappedFormat) {
		return nil, fmt.Errorf("decode op %#x: unknown format %d", op, f)
	}
	var v any
	switch op {
	case OpSubmit:
		var c Submit
		c.ID = d.str(MaxIDLen, "job id")
		c.Submitter = d.str(MaxIDLen, "submitter")
		c.Time = d.time()
		c.Spec = decodeSpec(d)
		if f == submitCappedFormat {
			c.MaxJobs = clampInt(int64(min(d.uvarint(), 1<<31-1)))
			if d.err == nil && c.MaxJobs < 1 {
				d.fail(errors.New("submit: max jobs 0 in a capped submit"))
			}
		}
		v = c
	case OpResults:
		var c Results
		c.Audited = f == resultsAuditedFormat || f == resultsChallengeFormat
		c.Time = d.time()
		n := d.uvarint()
		if n > MaxBatchChunks {
			return nil, fmt.Errorf("decode results: %d chunks exceeds %d", n, MaxBatchChunks)
		}
		// Each item takes at least 13 bytes: a hostile count cannot force a large allocation.
		if d.err == nil && n > uint64(len(d.b)/13+1) {
			return nil, fmt.Errorf("decode results: %d chunks in %d bytes", n, len(d.b))
		}
		c.Items = make([]ChunkResult, 0, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			var it ChunkResult
			it.Job = d.str(MaxIDLen, "job id")
			it.Range.Start = d.uvarint()
			it.Range.End = d.uvarint()
			it.Node = d.str(MaxIDLen, "node id")
			it.ComputeSeconds = d.f64()
			it.Payload = d.bytes(wire.MaxCommand, "result payload")
			if c.Audited {
				it.Root = d.hash()
			}
			c.Items = append(c.Items, it)
		}
		if f == resultsChallengeFormat {
			ch := Challenge{Time: c.Time}
			if err := decodeChallenge(d, &ch); err != nil {
				return nil, fmt.Errorf("decode results: %w", err)
			}
			switch d.byte1() {
			case 0:
			case 1:
				ch.Unaudited = true
			default:
				return nil, errors.New("decode results: challenge's unaudited flag not 0 or 1")
			}
			c.Challenge = &ch
		}
		v = c
	case OpChallenge:
		var c Challenge
		c.Time = d.time()
		if err := decodeChallenge(d, &c); err != nil {
			return nil, err
		}
		if d.err == nil && len(d.b) > 0 {
			if f := d.byte1(); f != 1 {
				return nil, fmt.Errorf("decode challenge: unaudited flag %d", f)
			}
			c.Unaudited = true
		}
		v = c
	case OpAudit:
		var c Audit
		c.Time = d.time()
		c.Job = d.str(MaxIDLen, "job id")
		c.ID = d.uvarint()
		c.Auditor = d.str(MaxIDLen, "node id")
		c.Seconds = d.f64()
		n := d.uvarint()
		if n > audit.MaxLeaves || (d.err == nil && n > uint64(len(d.b)/32)) {
			return nil, fmt.Errorf("decode audit: %d leaves in %d bytes (at most %d)", n, len(d.b), audit.MaxLeaves)
		}
		for i := uint64(0); i < n && d.err == nil; i++ {
			c.Leaves = append(c.Leaves, d.hash())
		}
		c.Payload = d.bytes(wire.MaxCommand, "audit payload")
		c.Root = d.hash()
		v = c
	default:
		mk, ok := fixedCommands[op]
		if !ok { // an op in opLevels without a decoder: a slip of this build, not a newer op
			return nil, fmt.Errorf("decode op %#x: no decoder", op)
		}
		c := mk()
		c.code(fieldCoder{d: d})
		v = reflect.ValueOf(c).Elem().Interface() // by value, as the other commands
	}
	if err := d.done(fmt.Sprintf("op %#x", op)); err != nil {
		return nil, err
	}
	return v, nil
}

func encodeSpec(e *encoder, s JobSpec) {
	e.str(string(s.Kind))
	e.str(s.Name)
	e.varint(int64(s.Priority))
	// A job with chunk_units sets specChunked on the parameter tag and appends the units after
	// the parameters, so that specs written before the field existed decode unchanged.
	var chunked byte
	if s.ChunkUnits > 0 {
		chunked = specChunked
	}
	switch {
	case s.Pi != nil:
		e.byte1(1 | chunked)
		e.uvarint(s.Pi.Samples)
		e.u64(s.Pi.Seed)
	case s.Wasm != nil:
		e.byte1(3 | chunked)
		e.str(s.Wasm.Module)
		e.uvarint(s.Wasm.Items)
		e.str(string(s.Wasm.Reduce))
		e.str(s.Wasm.Params)
	case s.Mandel != nil:
		e.byte1(2 | chunked)
		m := s.Mandel
		e.varint(int64(m.Width))
		e.varint(int64(m.Height))
		e.varint(int64(m.MaxIter))
		e.f64(m.CenterX)
		e.f64(m.CenterY)
		e.f64(m.Span)
	default:
		e.byte1(0 | chunked)
	}
	if chunked != 0 {
		e.uvarint(s.ChunkUnits)
	}
}

// specChunked flags a spec's parameter tag: JobSpec.ChunkUnits follows the parameters.
const specChunked = 0x80

func decodeSpec(d *decoder) JobSpec {
	var s JobSpec
	s.Kind = Kind(d.str(32, "kind"))
	s.Name = d.str(MaxJobName, "name")
	s.Priority = clampInt(d.varint())
	tag := d.byte1()
	switch tag &^ specChunked {
	case 0:
	case 1:
		s.Pi = &PiParams{Samples: d.uvarint(), Seed: d.u64()}
	case 2:
		m := &MandelParams{}
		m.Width = clampInt(d.varint())
		m.Height = clampInt(d.varint())
		m.MaxIter = clampInt(d.varint())
		m.CenterX, m.CenterY, m.Span = d.f64(), d.f64(), d.f64()
		s.Mandel = m
	case 3:
		w := &WasmParams{Module: d.str(64, "module"), Items: d.uvarint()}
		w.Reduce = Reduce(d.str(16, "reduce"))
		w.Params = d.str(MaxWasmParams, "params")
		s.Wasm = w
	default:
		d.fail(errors.New("spec: unknown parameter tag"))
	}
	if tag&specChunked != 0 {
		s.ChunkUnits = d.uvarint()
	}
	return s
}

// clampInt keeps decoded ints within ±2³¹ so that 32-bit platforms decode the same values;
// validation rejects anything that large anyway.
func clampInt(v int64) int {
	return int(max(min(v, 1<<31-1), -(1 << 31)))
}
