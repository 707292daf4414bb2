package work

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/wire"
	"github.com/libp2p/go-libp2p/core/peer"
)

// mandelResult is a chunk result of rows [start, start+rows) of width
// counts each, random so that deflate cannot shrink them: the largest
// payload a chunk result can carry, about 3 bytes a count.
func mandelResult(rng *rand.Rand, job string, width, start, rows int) compute.ChunkResult {
	counts := make([]uint32, width*rows)
	for i := range counts {
		counts[i] = uint32(rng.IntN(compute.MaxMandelIter + 1))
	}
	return compute.ChunkResult{
		Chunk:   compute.Chunk{Job: job, Range: compute.Range{Start: uint64(start), End: uint64(start + rows)}},
		Node:    strings.Repeat("n", compute.MaxIDLen),
		Payload: compute.EncodeMandelPayload(counts),
	}
}

// Every part splitBatch makes encodes within one job-state command, even
// with the longest IDs, and the parts are the items in order.
func TestSplitBatch_EveryPartFitsACommand(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	job := strings.Repeat("j", compute.MaxIDLen)
	width := 16384
	rows := wire.MaxResultCounts / width
	big := mandelResult(rng, job, width, 0, rows)
	if len(big.Payload) > wire.MaxResult || len(big.Payload) < wire.MaxResult/2 {
		t.Fatalf("a result of %d counts has a %d-byte payload; want near wire.MaxResult %d", wire.MaxResultCounts, len(big.Payload), wire.MaxResult)
	}
	small := mandelResult(rng, job, 64, 0, 1)
	items := []compute.ChunkResult{small, big, small, small, big, big, small}
	for range 300 {
		items = append(items, small)
	}
	parts := splitBatch(items, wire.MaxBatch)
	n := 0
	for i, p := range parts {
		if len(p) == 0 {
			t.Fatalf("part %d is empty", i)
		}
		for j := range p {
			if &p[j] != &items[n+j] {
				t.Fatalf("part %d is not the next items in order", i)
			}
		}
		bigs := 0
		for _, it := range p {
			if len(it.Payload) == len(big.Payload) {
				bigs++
			}
		}
		if bigs > 1 {
			t.Fatalf("part %d holds %d results near wire.MaxResult: two cannot share a batch", i, bigs)
		}
		n += len(p)
		_, payload, err := compute.EncodeCommand(compute.Results{Time: time.Now(), Items: p})
		if err != nil {
			t.Fatalf("part %d (%d items): %v", i, len(p), err)
		}
		if len(payload) > wire.MaxBatch || 2+len(payload) > wire.MaxLogEntry {
			t.Fatalf("part %d encodes to %d bytes: over wire.MaxBatch %d", i, len(payload), wire.MaxBatch)
		}
	}
	if n != len(items) {
		t.Fatalf("parts hold %d items of %d", n, len(items))
	}
	if len(parts) < 3 {
		t.Fatalf("%d parts for three results near wire.MaxResult", len(parts))
	}
}

// A batch bigger than a raft log entry is committed as several entries, each
// within the cap, and every result is accepted. Before the split, such a
// batch could never commit (raft refuses the entry) and its workers resent it
// forever.
func TestApplyResults_SplitsBelowTheLogEntryCap(t *testing.T) {
	store := compute.NewJobStore(compute.NewMemResults())
	defer store.Close()
	width := 16384
	rows := wire.MaxResultCounts / width
	const chunks = 4
	spec := compute.JobSpec{Kind: compute.KindMandelbrot, Mandel: &compute.MandelParams{Width: width, Height: chunks * rows, Span: 3, MaxIter: compute.MaxMandelIter}}
	if res := store.ApplyCommand(compute.Submit{ID: "m", Spec: spec, Time: time.Now()}, 1); res != nil {
		t.Fatal(res)
	}
	var entries []int
	c := &leadership{log: discardLogger(), cfg: &CoordinatorConfig{Apply: func(_ context.Context, cmd any) (json.RawMessage, error) {
		op, payload, err := compute.EncodeCommand(cmd)
		if err != nil {
			return nil, err
		}
		if 2+len(payload) > wire.MaxLogEntry {
			return nil, fmt.Errorf("entry of %d bytes: over the log-entry cap %d", 2+len(payload), wire.MaxLogEntry)
		}
		entries = append(entries, 2+len(payload))
		res := store.Apply(op, payload, uint64(len(entries)+1))
		if err, ok := res.(error); ok {
			return nil, err
		}
		return json.Marshal(res)
	}}}
	rng := rand.New(rand.NewPCG(3, 4))
	var items []compute.ChunkResult
	total := 0
	for i := range chunks {
		items = append(items, mandelResult(rng, "m", width, i*rows, rows))
		total += len(items[i].Payload)
	}
	if total <= wire.MaxLogEntry {
		t.Fatalf("the batch (%d bytes) must exceed a log entry (%d) for this test", total, wire.MaxLogEntry)
	}
	out, _, err := c.applyResults(context.Background(), items, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.Accepted != chunks || len(out.Rejected) != 0 || len(out.Finished) != 1 {
		t.Fatalf("outcome %+v: want %d accepted and the job finished", out, chunks)
	}
	if len(entries) < 2 {
		t.Fatalf("%d entries for %d bytes of results", len(entries), total)
	}
	if j, _ := store.Job("m"); j.State != compute.StateDone {
		t.Fatalf("job %s, want done", j.State)
	}
	t.Logf("%d results, %d bytes, committed as entries of %v bytes", chunks, total, entries)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// syncAt is one exchange of node with leadership c in its term, as a worker's sync: the tests
// that drive a coordinator by hand fail at once on an error.
func syncAt(ctx context.Context, t *testing.T, c *leadership, node string, req *syncRequest) *syncResponse {
	t.Helper()
	req.Term = c.term
	resp, err := c.sync(ctx, peer.ID(node), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
