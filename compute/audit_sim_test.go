package compute

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute/audit"
)

// The audit simulation drives the real job state (Results, Challenge, Audit commands, the
// default policy) with Mandelbrot chunks computed once by the reference kernel: nodes take
// chunks in turn, a cheater returns a wrong count in one random row of a share of its chunks,
// every chunk is challenged with fresh randomness, and audits and disputes are answered by honest
// nodes other than the chunk's. It measures what docs/audits.md reports: chunks until a cheater
// is caught, and the audit overhead without cheaters.

const (
	simWidth     = 8
	simHeight    = MaxMandelSide
	simChunkRows = 16
)

var simImage = sync.OnceValue(func() []uint32 {
	p := simParams()
	out := make([]uint32, simWidth*simHeight)
	if err := MandelRows(p, 0, simHeight, out); err != nil {
		panic(err)
	}
	return out
})

func simParams() MandelParams {
	return MandelParams{Width: simWidth, Height: simHeight, CenterX: -0.75, CenterY: 0, Span: 3, MaxIter: 64}
}

type auditSim struct {
	st       testState
	rng      *rand.Rand
	nodes    []string
	cheater  string
	rate     float64
	jobs     int
	job      string
	chunks   map[string]int // chunks submitted per node
	computed uint64         // units computed by workers (chunks)
	audited  uint64         // units recomputed by auditors
}

func newAuditSim(tb testing.TB, seed uint64, cheater string, rate float64) *auditSim {
	s := &auditSim{st: newTestState(tb), rng: rand.New(rand.NewPCG(seed, 1)), nodes: []string{"n1", "n2", "n3", "n4", "n5"},
		cheater: cheater, rate: rate, chunks: map[string]int{}}
	return s
}

func (s *auditSim) newJob(tb testing.TB) {
	s.jobs++
	s.job = fmt.Sprintf("j%d", s.jobs)
	s.st.mustApply(tb, Submit{ID: s.job, Time: t0, Spec: JobSpec{Kind: KindMandelbrot, Mandel: ptr(simParams())}})
}

func ptr[T any](v T) *T { return &v }

func (s *auditSim) result(tb testing.TB, r Range, node string, cheat bool) ([]byte, audit.Hash) {
	rows := slices.Clone(simImage()[int(r.Start)*simWidth : int(r.End)*simWidth])
	if cheat {
		i := s.rng.IntN(len(rows))
		rows[i] = (rows[i] + 1) % 65
	}
	p := EncodeMandelPayload(rows)
	root, err := Commitment(JobSpec{Kind: KindMandelbrot, Mandel: ptr(simParams())}, r, p)
	if err != nil {
		tb.Fatal(err)
	}
	return p, root
}

func (s *auditSim) seed() audit.Seed {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], s.rng.Uint64())
	return sha256.Sum256(b[:])
}

func (s *auditSim) honestOther(not ...string) string {
	for {
		n := s.nodes[s.rng.IntN(len(s.nodes))]
		if n != s.cheater && !slices.Contains(not, n) {
			return n
		}
	}
}

// round gives every live node one chunk, challenges them, and runs every audit to its end.
func (s *auditSim) round(tb testing.TB) {
	var items []ChunkResult
	for _, n := range s.nodes {
		if s.st.Quarantined(n) {
			continue
		}
		p, _ := s.st.Pending(s.job)
		if len(p) == 0 {
			break
		}
		r := Range{p[0].Start, min(p[0].End, p[0].Start+simChunkRows)}
		payload, root := s.result(tb, r, n, n == s.cheater && s.rng.Float64() < s.rate)
		// Accept it now, so the next node's pending range moves on.
		s.st.mustApply(tb, Results{Time: t0, Audited: true, Items: []ChunkResult{{Chunk: Chunk{Job: s.job, Range: r}, Node: n, Payload: payload, Root: root}}})
		items = append(items, ChunkResult{Chunk: Chunk{Job: s.job, Range: r}, Node: n})
		s.chunks[n]++
		s.computed += r.Len()
	}
	s.st.mustApply(tb, Challenge{Time: t0, Seed: s.seed(), Items: s.st.Unchallenged(1 << 20)})
	for range 3 {
		for _, tk := range s.st.AuditTasks() {
			a := Audit{Time: t0, Job: tk.Job, ID: tk.ID, Auditor: s.honestOther(tk.Node, tk.Auditor)}
			if tk.Full {
				a.Payload, a.Root = s.result(tb, tk.Chunk, a.Auditor, false)
				s.audited += tk.Chunk.Len()
			} else {
				var payloads [][]byte
				for _, sp := range tk.Spans {
					p, _ := s.result(tb, sp, a.Auditor, false)
					payloads = append(payloads, p)
					s.audited += sp.Len()
				}
				l, err := SpanLeaves(tk.Spec, tk.Spans, payloads)
				if err != nil {
					tb.Fatal(err)
				}
				a.Leaves = l
			}
			s.st.mustApply(tb, a)
		}
	}
	if t, ok := tb.(*testing.T); ok {
		checkAuditIndex(t, s.st.JobStore) // in tests only: it reads every chunk
	}
	if j, _ := s.st.Job(s.job); j.State == StateDone {
		s.st.mustApply(tb, Delete{Job: s.job})
		s.newJob(tb)
	}
}

// catch runs until the cheater's first failed audit and its quarantine; it returns the cheater's
// chunks at each.
func catch(tb testing.TB, seed uint64, rate float64) (first, quarantined int) {
	s := newAuditSim(tb, seed, "n5", rate)
	s.newJob(tb)
	for first == 0 || quarantined == 0 {
		s.round(tb)
		na := s.st.NodeAudit("n5")
		if first == 0 && na.Failed > 0 {
			first = s.chunks["n5"]
		}
		if na.State == audit.StateQuarantined {
			quarantined = s.chunks["n5"]
		}
		for _, n := range s.nodes[:4] {
			if s.st.NodeAudit(n).Failed > 0 {
				tb.Fatalf("honest node %s failed an audit", n)
			}
		}
		if s.chunks["n5"] > 200_000 {
			tb.Fatalf("cheater at %g not caught in 200,000 chunks", rate)
		}
	}
	return first, quarantined
}

// TestAuditSimCatchesCheater is the simulation's quick check in CI: a cheater on 10 % of its
// chunks is caught, and quarantined, while honest nodes never fail.
func TestAuditSimCatchesCheater(t *testing.T) {
	first, q := catch(t, 1, 0.1)
	t.Logf("10 %% cheater: first failed audit after %d chunks, quarantined after %d", first, q)
}

func medianWorst(v []int) (int, int) {
	slices.Sort(v)
	return v[len(v)/2], v[len(v)-1]
}

// BenchmarkAuditCatch measures chunks until a cheater on 1 % and 10 % of its chunks fails its
// first audit and is quarantined: median and worst of AUDIT_RUNS runs (default 20), seeds
// 1000+AUDIT_FIRST … (default 0; a long measurement can be split into parts, each run's figures
// are logged).
func BenchmarkAuditCatch(b *testing.B) {
	runs, first := 20, 0
	if v := os.Getenv("AUDIT_RUNS"); v != "" {
		fmt.Sscan(v, &runs)
	}
	if v := os.Getenv("AUDIT_FIRST"); v != "" {
		fmt.Sscan(v, &first)
	}
	for _, rate := range []float64{0.10, 0.01} {
		b.Run(fmt.Sprintf("rate=%g", rate), func(b *testing.B) {
			for range b.N {
				var firsts, quars []int
				for i := range runs {
					f, q := catch(b, uint64(1000+first+i), rate)
					b.Logf("rate %g seed %d: first failed audit after %d chunks, quarantined after %d", rate, 1000+first+i, f, q)
					firsts, quars = append(firsts, f), append(quars, q)
				}
				fm, fw := medianWorst(firsts)
				qm, qw := medianWorst(quars)
				b.ReportMetric(float64(fm), "first-median-chunks")
				b.ReportMetric(float64(fw), "first-worst-chunks")
				b.ReportMetric(float64(qm), "quarantine-median-chunks")
				b.ReportMetric(float64(qw), "quarantine-worst-chunks")
			}
		})
	}
}

// BenchmarkAuditOverhead measures the share of work auditors recompute with five honest nodes:
// over the first 1,000 chunks of each node (nodes start new) and over chunks 10,000–20,000 of
// each (steady state).
func BenchmarkAuditOverhead(b *testing.B) {
	for range b.N {
		s := newAuditSim(b, 7, "", 0)
		s.newJob(b)
		start := time.Now()
		var warmComputed, warmAudited uint64
		for s.chunks["n1"] < 20_000 {
			s.round(b)
			switch s.chunks["n1"] {
			case 1000:
				b.ReportMetric(100*float64(s.audited)/float64(s.computed), "first-1000-overhead-%")
			case 10_000:
				warmComputed, warmAudited = s.computed, s.audited
			}
		}
		b.ReportMetric(100*float64(s.audited-warmAudited)/float64(s.computed-warmComputed), "steady-overhead-%")
		b.Logf("simulated %d chunks in %v", 5*s.chunks["n1"], time.Since(start))
	}
}
