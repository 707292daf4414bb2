package compute

// Helpers of the audit tests (audits_test.go, snapshot_fuzz_test.go): chunk results with their
// commitments, honest or cheating audit answers, and a job to audit.

import (
	"testing"

	"github.com/hydra-compute/hydra/compute/audit"
)

// committedPi is a π chunk result with its commitment; cheat adds a hit to one block.
func committedPi(t testing.TB, job string, seed uint64, r Range, node string, cheat bool) ChunkResult {
	t.Helper()
	bh, err := PiBlocksHits(seed, r)
	if err != nil {
		t.Fatal(err)
	}
	if cheat {
		bh[len(bh)/2]++
	}
	p := EncodePiBlocksPayload(bh)
	root, err := Commitment(JobSpec{Kind: KindPi, Pi: &PiParams{Samples: r.End, Seed: seed}}, r, p)
	if err != nil {
		t.Fatal(err)
	}
	return ChunkResult{Chunk: Chunk{Job: job, Range: r}, Node: node, ComputeSeconds: 0.1, Payload: p, Root: root}
}

// answer computes an audit task honestly (or with one leaf wrong) as auditor.
func answer(t testing.TB, task AuditTask, auditor string, cheat bool) Audit {
	t.Helper()
	a := Audit{Time: t0, Job: task.Job, ID: task.ID, Auditor: auditor}
	if task.Full {
		c := committedPi(t, task.Job, task.Spec.Pi.Seed, task.Chunk, auditor, cheat)
		a.Payload, a.Root = c.Payload, c.Root
		return a
	}
	var payloads [][]byte
	for _, sp := range task.Spans {
		bh, _ := PiBlocksHits(task.Spec.Pi.Seed, sp)
		payloads = append(payloads, EncodePiBlocksPayload(bh))
	}
	leaves, err := SpanLeaves(task.Spec, task.Spans, payloads)
	if err != nil {
		t.Fatal(err)
	}
	if cheat {
		leaves[0][0] ^= 1
	}
	a.Leaves = leaves
	return a
}

func seedN(n byte) audit.Seed { var s audit.Seed; s[0] = n; return s }

const auditSeed = 11

func auditJob(t testing.TB, st testState, id string, blocks uint64) {
	st.mustApply(t, Submit{ID: id, Time: t0, Spec: JobSpec{Kind: KindPi, Pi: &PiParams{Samples: blocks*audit.PiBlock + 7, Seed: auditSeed}}})
}

func tasksFor(st testState, node string) []AuditTask {
	var out []AuditTask
	for _, a := range st.AuditTasks() {
		if a.Node == node {
			out = append(out, a)
		}
	}
	return out
}
