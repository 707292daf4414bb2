package compute

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Fault records that a chunk of a WebAssembly job failed on Node because of its module (a trap,
// an endless loop, memory past the cap). The coordinator proposes it once per node and job; the
// job state keeps the distinct nodes, so that a new leader continues the count and the job fails
// after faults on several different nodes however often the leadership changed (the coordinator
// then proposes Fail).
type Fault struct {
	Job  string
	Node string
	Msg  string // the failure, with the chunk's range
	Time time.Time
}

// JobFault is one node on which a job's module failed, with that node's first message.
type JobFault struct {
	Node string    `json:"node"`
	Msg  string    `json:"msg"`
	Time time.Time `json:"time"`
}

// Bounds of a job's recorded faults: enough nodes to decide any failure rule the coordinator
// applies (it fails a job after 3), and a message long enough for a trap and its range.
const (
	MaxJobFaults = 8
	MaxFaultMsg  = 1280
	// maxStoredFaultMsg bounds a fault's message as the job state keeps it: a command's message
	// (at most MaxFaultMsg bytes) is made valid UTF-8, which turns each run of invalid bytes
	// into U+FFFD's three, so "\xffa\xffa…" comes out twice as long. A snapshot holding such a
	// message must restore: refused at MaxFaultMsg, it made the state of every replica that
	// applied the fault unrestorable (TestFaultMessageMadeValidRestores).
	maxStoredFaultMsg = 3 * MaxFaultMsg
)

func (c *Fault) code(f fieldCoder) byte {
	f.str(&c.Job, MaxIDLen, "job id")
	f.str(&c.Node, MaxIDLen, "node id")
	f.str(&c.Msg, MaxFaultMsg, "fault message")
	f.time(&c.Time)
	return OpFault
}

// fault records a module fault: a node not yet recorded is added (up to MaxJobFaults); a node
// already recorded, or one past the bound, changes nothing.
func (s *JobStore) fault(c Fault) error {
	j, ok := s.jobs[c.Job]
	if !ok {
		return fmt.Errorf("fault %s: %w", c.Job, ErrNoSuchJob)
	}
	if j.spec.Kind != KindWasm {
		return fmt.Errorf("fault %s: a %s job has no module", c.Job, j.spec.Kind)
	}
	if j.state.Finished() {
		return fmt.Errorf("fault %s: %w", c.Job, ErrJobFinished)
	}
	if c.Node == "" {
		return errors.New("fault: empty node id")
	}
	if err := validText("node id", c.Node); err != nil {
		return fmt.Errorf("fault %s: %w", c.Job, err)
	}
	for _, f := range j.faults {
		if f.Node == c.Node {
			return nil
		}
	}
	if len(j.faults) >= MaxJobFaults {
		return nil
	}
	// Valid UTF-8, so that the message survives a snapshot's JSON unchanged.
	j.faults = append(j.faults, JobFault{Node: c.Node, Msg: strings.ToValidUTF8(c.Msg, "\uFFFD"), Time: c.Time})
	return nil
}

// validFaults checks a job's faults as restored from a snapshot: bounded, distinct nodes, and
// only on a WebAssembly job.
func validFaults(spec JobSpec, fs []JobFault) error {
	if len(fs) == 0 {
		return nil
	}
	if spec.Kind != KindWasm {
		return fmt.Errorf("%d module faults on a %s job", len(fs), spec.Kind)
	}
	if len(fs) > MaxJobFaults {
		return fmt.Errorf("%d module faults, at most %d", len(fs), MaxJobFaults)
	}
	seen := make(map[string]bool, len(fs))
	for _, f := range fs {
		switch {
		case f.Node == "" || len(f.Node) > MaxIDLen:
			return fmt.Errorf("module fault: node id of %d bytes", len(f.Node))
		case seen[f.Node]:
			return fmt.Errorf("module fault: node %s twice", f.Node)
		case len(f.Msg) > maxStoredFaultMsg:
			return fmt.Errorf("module fault on %s: message of %d bytes, at most %d", f.Node, len(f.Msg), maxStoredFaultMsg)
		}
		seen[f.Node] = true
	}
	return nil
}
