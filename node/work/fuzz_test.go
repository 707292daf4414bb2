package work

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/consensus"
)

// FuzzSync drives a coordinator over a real job state (compute.JobStore, every command encoded
// and applied in order as raft applies it) with three members whose exchanges the input
// chooses: honest results, prefixes of any length, results with a byte changed, results for
// another member's range, failed leases, progress and held chunks of any value, faults, raw
// request bodies through Serve, challenges, audit answers right and wrong, expiry, and leader
// changes (a new term over the same state, the members still holding the old leases). Whatever
// the sequence, nothing panics, every lease lies inside its job, and what the state counts is
// exact: every counted π chunk's hits and every counted Mandelbrot row equal the reference
// computation, and a finished job counts all of its units.
func FuzzSync(f *testing.F) {
	for _, s := range fuzzSyncSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fc := newFuzzCluster(t)
		in := fuzzInput(data)
		for step := 0; step < 256 && len(in) > 0; step++ {
			fc.step(t, &in)
		}
		fc.check(t)
	})
}

// Ops of FuzzSync: an input byte b makes member b%3 do op (b/3)%fuzzOps.
const (
	opSync       = iota // ask for 1 or 2 chunks
	opHandIn            // the right result of one of its leases
	opPrefix            // the right result of a prefix of one (any length, even past its end)
	opCorrupt           // a result with one byte of payload or commitment changed
	opFail              // give a lease back
	opProgress          // report any progress of a lease
	opHeld              // say it holds any chunk of any term
	opRaw               // a request body of any bytes, through Serve
	opPaused            // a paused exchange
	opForge             // the right result of a range leased to another member
	opChallenge         // the challenger's turn: challenge what was committed
	opTick              // time passes: leases expire
	opNewTerm           // a new coordinator over the same state
	opFault             // a lease failed by its module
	opWrongAudit        // a wrong answer to an audit it holds
	fuzzOps
)

// fuzzInput is what is left of a fuzz input; reads past its end give zeros.
type fuzzInput []byte

func (in *fuzzInput) byte() byte {
	if len(*in) == 0 {
		return 0
	}
	b := (*in)[0]
	*in = (*in)[1:]
	return b
}

func (in *fuzzInput) u32() uint32 {
	var b [4]byte
	n := copy(b[:], *in)
	*in = (*in)[n:]
	return binary.LittleEndian.Uint32(b[:])
}

// fuzzMember is a worker as the coordinator sees it: the leases it holds.
type fuzzMember struct {
	id     peer.ID
	term   uint64 // the last coordinator term it heard from
	leases []lease
}

// fuzzCluster is one coordinator term at a time over a real job state.
type fuzzCluster struct {
	mu      sync.Mutex // serialises applies, as raft does
	store   *compute.JobStore
	index   uint64
	co      *Coordinator
	c       *leadership
	stop    func() // ends the term's committer
	members [3]*fuzzMember
	jobs    map[string]compute.JobSpec
}

var fuzzSpecs = map[string]compute.JobSpec{
	"pi": {Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 3 << 18, Seed: 7}},
	"mandel": {Kind: compute.KindMandelbrot, Mandel: &compute.MandelParams{
		Width: 40, Height: 30, CenterX: -0.5, CenterY: 0, Span: 2, MaxIter: 200}},
	"tiny": {Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 5 << 16, Seed: 3}, ChunkUnits: 1 << 16},
}

func newFuzzCluster(t *testing.T) *fuzzCluster {
	fc := &fuzzCluster{store: compute.NewJobStore(compute.NewMemResults()), jobs: fuzzSpecs}
	members := map[peer.ID]bool{}
	for i := range fc.members {
		fc.members[i] = &fuzzMember{id: peer.ID(fmt.Sprintf("member-%d", i))}
		members[fc.members[i].id] = true
	}
	fc.co = NewCoordinator(CoordinatorConfig{
		Jobs: fc.store, Audits: fc.store, Apply: fc.apply, ApplyGroup: fc.applyGroup,
		IsMember: func(p peer.ID) bool { return members[p] },
		Logger:   slog.New(slog.DiscardHandler),
	})
	for _, id := range []string{"pi", "mandel", "tiny"} {
		if _, err := fc.apply(context.Background(), compute.Submit{ID: id, Spec: fc.jobs[id], Submitter: "fuzz", Time: time.Unix(1, 0)}); err != nil {
			t.Fatalf("submit %s: %v", id, err)
		}
	}
	fc.newTerm(2)
	t.Cleanup(func() { fc.stop() })
	return fc
}

// apply applies a command as raft would: encoded, decoded and applied at the next index; an
// error the state returns is a refusal (consensus.ErrRejected).
func (fc *fuzzCluster) apply(_ context.Context, cmd any) (json.RawMessage, error) {
	op, body, err := compute.EncodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	fc.mu.Lock()
	fc.index++
	res := fc.store.Apply(op, body, fc.index)
	fc.mu.Unlock()
	if err, ok := res.(error); ok {
		return nil, fmt.Errorf("%w: %v", consensus.ErrRejected, err)
	}
	return json.Marshal(res)
}

func (fc *fuzzCluster) applyGroup(ctx context.Context, cmds []any) ([]json.RawMessage, []error) {
	raws, errs := make([]json.RawMessage, len(cmds)), make([]error, len(cmds))
	for i, cmd := range cmds {
		raws[i], errs[i] = fc.apply(ctx, cmd)
	}
	return raws, errs
}

// newTerm replaces the coordinator with one of term: the state is read again, leases are not.
func (fc *fuzzCluster) newTerm(term uint64) {
	if fc.stop != nil {
		fc.stop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := fc.co.newLeadership(ctx, term, time.Second)
	c.leaseAt = time.Time{} // no adoption grace: members that hold old leases say so below
	c.auditWait = time.Millisecond
	c.reconcile(time.Now())
	done := make(chan struct{})
	go func() { defer close(done); c.committer(ctx) }()
	fc.co.cur.Store(c)
	fc.c = c
	fc.stop = func() { cancel(); <-done; fc.co.cur.CompareAndSwap(c, nil) }
}

// refPayload is the right result of r of job spec, computed with the reference kernels and
// encoded as the compute child encodes it (the test runners of this package use it too).
func refPayload(spec compute.JobSpec, r compute.Range) ([]byte, error) {
	switch spec.Kind {
	case compute.KindPi:
		hits, err := compute.PiBlocksHits(spec.Pi.Seed, r)
		return compute.EncodePiBlocksPayload(hits), err
	case compute.KindMandelbrot:
		m := *spec.Mandel
		if r.End > uint64(m.Height) || r.Start > r.End {
			return nil, fmt.Errorf("rows %v outside the image", r)
		}
		counts := make([]uint32, int(r.Len())*m.Width)
		err := compute.MandelRows(m, int(r.Start), int(r.End), counts)
		return compute.EncodeMandelPayload(counts), err
	}
	return nil, fmt.Errorf("kind %s", spec.Kind)
}

// results is the right answer to l over r (within it, or past its end when the input says so):
// an audit's answer, or one result per chunk of a job with chunk_units.
func results(l lease, r compute.Range) []result {
	if l.Audit != nil {
		var payloads [][]byte
		for _, sp := range l.Audit.Spans {
			p, err := refPayload(l.Spec, sp)
			if err != nil {
				return nil
			}
			payloads = append(payloads, p)
		}
		ans, err := auditAnswerOf(l, payloads, 0.5)
		if err != nil {
			return nil
		}
		return []result{ans}
	}
	parts := []compute.Range{r}
	if cu := l.Spec.ChunkUnits; cu > 0 {
		parts = parts[:0]
		for s := r.Start; s < r.End; s = (s/cu + 1) * cu {
			parts = append(parts, compute.Range{Start: s, End: min(r.End, (s/cu+1)*cu)})
		}
	}
	var out []result
	for _, p := range parts {
		pl, err := refPayload(l.Spec, p)
		if err != nil {
			return out
		}
		root, _ := compute.Commitment(l.Spec, p, pl)
		out = append(out, result{Lease: l.ID, Term: l.Term, Chunk: compute.Chunk{Job: l.Job, Range: p}, Seconds: 0.5, Payload: pl, Root: root})
	}
	return out
}

// pick is one of m's leases, chosen by the input; ok is false when it holds none.
// It reads one byte of the input either way, so that a seed reads the same with or without it.
func (m *fuzzMember) pick(in *fuzzInput) (lease, bool) {
	k := int(in.byte())
	if len(m.leases) == 0 {
		return lease{}, false
	}
	return m.leases[k%len(m.leases)], true
}

// request is the exchange m makes: what it holds, and the chunks of an earlier term as held.
func (fc *fuzzCluster) request(m *fuzzMember) *syncRequest {
	req := &syncRequest{Term: m.term, Now: time.Now()}
	for _, l := range m.leases {
		req.Leases = append(req.Leases, l.ID)
		if l.Term != fc.c.term && l.Audit == nil && len(req.Held) < 8 {
			req.Held = append(req.Held, held{ID: l.ID, Term: l.Term, Chunk: l.Chunk})
		}
	}
	if len(req.Leases) > 64 {
		req.Leases = req.Leases[:64]
	}
	return req
}

func (fc *fuzzCluster) step(t *testing.T, in *fuzzInput) {
	b := in.byte()
	m := fc.members[int(b)%len(fc.members)]
	req := fc.request(m)
	op := int(b/3) % fuzzOps
	switch op {
	case opSync:
		req.Want = 1 + int(in.byte()%2)
	case opHandIn, opPrefix, opCorrupt, opForge:
		from := m
		if op == opForge {
			from = fc.members[(int(b)+1)%len(fc.members)]
		}
		l, ok := from.pick(in)
		var cut, spoilAt fuzzInput
		if op == opPrefix {
			cut = fuzzInput{in.byte(), in.byte(), in.byte(), in.byte()}
		}
		if op == opCorrupt {
			spoilAt = fuzzInput{in.byte()}
		}
		if !ok {
			return
		}
		r := l.Range
		if op == opPrefix {
			r.End = r.Start + uint64(cut.u32())%(r.Len()+2)
		}
		req.Results = results(l, r)
		if op == opCorrupt && len(req.Results) > 0 {
			spoil(&req.Results[0], &spoilAt)
		}
	case opFail:
		if l, ok := m.pick(in); ok {
			req.Failed = []uint64{l.ID}
		}
	case opProgress:
		l, ok := m.pick(in)
		done := uint64(in.u32())
		if ok {
			req.Progress = []leaseProgress{{Lease: l.ID, Done: done}}
		}
	case opHeld:
		job := []string{"pi", "mandel", "tiny", "none"}[in.byte()%4]
		start := uint64(in.u32())
		req.Held = append(req.Held[:min(len(req.Held), 7)], held{ID: uint64(in.byte()), Term: uint64(in.byte() % 4), Chunk: compute.Chunk{Job: job, Range: compute.Range{Start: start, End: start + uint64(in.u32())}}})
	case opRaw:
		n := int(in.byte())
		raw := []byte(*in)[:min(n, len(*in))]
		*in = (*in)[len(raw):]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if resp, err := fc.co.Serve(ctx, m.id, raw); err == nil {
			fc.absorb(t, m, req, resp.(*syncResponse))
		}
		return
	case opPaused:
		req.Paused, req.Want = true, 1
	case opChallenge:
		refs := fc.store.Unchallenged(challengeBatch)
		if len(refs) == 0 {
			return
		}
		seed := [32]byte{in.byte()}
		if _, err := fc.apply(context.Background(), compute.Challenge{Time: time.Now(), Seed: seed, Items: refs}); err != nil {
			t.Fatalf("challenge: %v", err)
		}
		fc.c.auditsDirty.Store(true)
		return
	case opTick:
		fc.c.tick(time.Now().Add(time.Duration(in.byte()) * time.Second))
		fc.c.reconcile(time.Now())
		return
	case opNewTerm:
		fc.newTerm(fc.c.term + 1 + uint64(in.byte()%2))
		return
	case opFault:
		if l, ok := m.pick(in); ok && l.Audit == nil {
			req.Failed = []uint64{l.ID}
			req.Faults = []fault{{Lease: l.ID, Chunk: l.Chunk, Msg: "trap: unreachable"}}
		}
	case opWrongAudit:
		spoilAt := fuzzInput{in.byte()}
		for _, l := range m.leases {
			if l.Audit != nil {
				req.Results = results(l, l.Range)
				if len(req.Results) > 0 {
					spoil(&req.Results[0], &spoilAt)
				}
				break
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := req.validate(); err != nil {
		return // the network handler refuses it before the coordinator sees it
	}
	resp, err := fc.c.sync(ctx, m.id, req)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	fc.absorb(t, m, req, resp)
}

// spoil changes one byte of r's payload, or of its commitment or audit leaves.
func spoil(r *result, in *fuzzInput) {
	i := int(in.byte())
	switch {
	case r.Audit != nil && len(r.Audit.Leaves) > 0:
		r.Audit.Leaves[i%len(r.Audit.Leaves)][i%32] ^= 1
	case len(r.Payload) > 0 && i%2 == 0:
		r.Payload = bytes.Clone(r.Payload)
		r.Payload[i%len(r.Payload)] ^= 1 << (i % 8)
	default:
		r.Root[i%32] ^= 1
	}
}

// absorb checks the answer to m's request and updates what m holds as a worker would.
func (fc *fuzzCluster) absorb(t *testing.T, m *fuzzMember, req *syncRequest, resp *syncResponse) {
	if resp.Term != fc.c.term {
		t.Fatalf("answer of term %d from the coordinator of term %d", resp.Term, fc.c.term)
	}
	m.term = resp.Term
	for _, l := range resp.Leases {
		spec, ok := fc.jobs[l.Job]
		if !ok || l.Range.Len() == 0 || l.End > spec.TotalUnits() || l.Term != resp.Term {
			t.Fatalf("lease %+v outside its job", l)
		}
		if l.Audit != nil {
			for _, sp := range l.Audit.Spans {
				if sp.Len() == 0 || sp.Start < l.Start || sp.End > l.End {
					t.Fatalf("audit %d: span %v outside its chunk %v", l.Audit.ID, sp, l.Range)
				}
			}
		}
	}
	m.leases = append(m.leases, resp.Leases...)
	for _, a := range resp.Adopted {
		for i := range m.leases {
			if m.leases[i].ID == a.Old && m.leases[i].Term == a.OldTerm {
				m.leases[i].ID, m.leases[i].Term = a.New, resp.Term
			}
		}
	}
	answered := map[uint64]bool{}
	for _, r := range req.Results {
		answered[r.Lease] = true
	}
	for _, id := range req.Failed {
		answered[id] = true
	}
	m.leases = slices.DeleteFunc(m.leases, func(l lease) bool {
		return answered[l.ID] || slices.Contains(resp.Cancel, l.ID) && l.Term == resp.Term
	})
}

// check compares what the state counts with the reference computation.
func (fc *fuzzCluster) check(t *testing.T) {
	fc.stop()
	fc.stop = func() {}
	for id, spec := range fc.jobs {
		j, ok := fc.store.Job(id)
		if !ok {
			t.Fatalf("job %s gone", id)
		}
		acc, err := fc.store.Accepted(id)
		if err != nil {
			t.Fatal(err)
		}
		var units uint64
		for _, r := range acc {
			if r.Len() == 0 || r.End > spec.TotalUnits() {
				t.Fatalf("job %s: accepted %v outside [0,%d)", id, r, spec.TotalUnits())
			}
			units += r.Len()
		}
		t.Logf("job %s: %s, %d of %d units accepted, %d counted", id, j.State, units, spec.TotalUnits(), j.DoneUnits)
		if j.State == compute.StateDone && units != spec.TotalUnits() {
			t.Fatalf("job %s done with %d of %d units accepted", id, units, spec.TotalUnits())
		}
		switch spec.Kind {
		case compute.KindPi:
			page, err := fc.store.Chunks(id, 0, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range page.Records {
				hits, err := compute.PiBlocksHits(spec.Pi.Seed, rec.Range)
				if err != nil {
					t.Fatal(err)
				}
				var want uint64
				for _, h := range hits {
					want += h
				}
				if rec.Hits != want {
					t.Fatalf("job %s: chunk %v counted with %d hits, the reference says %d", id, rec.Range, rec.Hits, want)
				}
			}
			if res, err := fc.store.PiResult(id); err != nil || res.Samples > spec.TotalUnits() {
				t.Fatalf("job %s: π result %+v, %v", id, res, err)
			}
		case compute.KindMandelbrot:
			img, err := fc.store.MandelImage(id)
			if err != nil {
				t.Fatal(err)
			}
			m := spec.Mandel
			want := make([]uint32, m.Width*m.Height)
			if err := compute.MandelRows(*m, 0, m.Height, want); err != nil {
				t.Fatal(err)
			}
			for row := range m.Height {
				got := img[row*m.Width : (row+1)*m.Width]
				if !slices.Equal(got, want[row*m.Width:(row+1)*m.Width]) && slices.ContainsFunc(got, func(v uint32) bool { return v != 0 }) {
					t.Fatalf("job %s: row %d counted as %v, the reference says %v", id, row, got, want[row*m.Width:(row+1)*m.Width])
				}
			}
		}
	}
}

// TestSyncSeedsFinishTheJobs: FuzzSync's first two seeds take every job to done (its fuzzing
// starts from runs that reach audits, challenges and the end of jobs, not only from refusals).
func TestSyncSeedsFinishTheJobs(t *testing.T) {
	for i, seed := range fuzzSyncSeeds()[:2] {
		fc := newFuzzCluster(t)
		in := fuzzInput(seed)
		for len(in) > 0 {
			fc.step(t, &in)
		}
		fc.check(t)
		for id := range fc.jobs {
			if j, _ := fc.store.Job(id); j.State != compute.StateDone {
				t.Errorf("seed %d: job %s %s, %d of %d units", i, id, j.State, j.DoneUnits, j.TotalUnits)
			}
		}
	}
}

// fuzzSyncSeeds are inputs that finish the jobs honestly, with audits, and the same with a leader
// change, a cheat, expiry and prefixes among the exchanges.
func fuzzSyncSeeds() [][]byte {
	op := func(member, o int) byte { return byte(o*3 + member) }
	var honest []byte
	for range 20 {
		for w := range 3 {
			honest = append(honest, op(w, opSync), 1, op(w, opHandIn), 0, op(w, opHandIn), 0)
		}
		honest = append(honest, op(0, opChallenge), 9)
	}
	mixed := slices.Clone(honest[:40])
	mixed = append(mixed, op(1, opNewTerm), 0, op(1, opSync), 1, op(2, opPrefix), 0, 0, 1, 0, 0,
		op(0, opCorrupt), 0, 3, op(2, opForge), 0, op(1, opTick), 200, op(0, opWrongAudit), 5,
		op(2, opHeld), 1, 0, 0, 0, 0, 2, 1, 8, 0, 0, 0, op(1, opFault), 0, op(0, opPaused))
	mixed = append(mixed, honest...)
	raw := []byte{op(0, opRaw), 40}
	raw = append(raw, `{"want":2,"results":[{"job":"pi","start":5,"end":1}]}`...)
	raw = append(raw, op(1, opRaw), 30)
	raw = append(raw, `{"want":1,"held":[{"id":1,"term":1,"job":"pi","start":0,"end":99999999999}]}`...)
	return [][]byte{honest, mixed, raw, {op(0, opProgress), 0, 255, 255, 255, 255}}
}
