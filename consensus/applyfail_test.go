package consensus

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/internal/resultstore"
	"github.com/hydra-compute/hydra/internal/testdisk"
)

func appLog(t *testing.T, index uint64, cmd any) *raft.Log {
	t.Helper()
	op, payload, err := compute.EncodeCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	data, err := EncodeCommand(Command{Op: Op(op), Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Type: raft.LogCommand, Data: data}
}

// A committed entry whose results cannot be written (the disk is full)
// stops the FSM: OnFatal gets the entry's index and the storage error, the
// state does not count the result, and nothing after it is applied (the
// replica stays at a state every other replica went through, and replays
// the log from there after a restart).
func Test_ApplyStopsOnFullDisk(t *testing.T) {
	dir := testdisk.Small(t, "2m")
	results, err := resultstore.Open(filepath.Join(dir, "jobs.db"))
	if err != nil {
		t.Fatal(err)
	}
	js := compute.NewJobStore(results)
	defer js.Close()
	fsm := NewFSM(js)
	fatal := make(chan *ApplyFailure, 1)
	fsm.onFatal = func(af *ApplyFailure) { fatal <- af }

	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1000, Seed: 3}}
	if res := fsm.Apply(appLog(t, 1, compute.Submit{ID: "j", Time: t0, Spec: spec})); res != nil {
		t.Fatalf("submit: %v", res)
	}
	testdisk.Fill(t, dir)
	chunk := func(start, end uint64) compute.ChunkResult {
		return compute.ChunkResult{Chunk: compute.Chunk{Job: "j", Range: compute.Range{Start: start, End: end}}, Node: "n", ComputeSeconds: 0.1,
			Payload: compute.EncodePiPayload(compute.PiHits(3, start, end))}
	}
	// bolt may find room in its free pages for the first writes: write
	// until the store fails, as a busy node would.
	var res any
	var idx uint64
	for i := uint64(0); i < 500; i++ {
		idx = 2 + i
		res = fsm.Apply(appLog(t, idx, compute.Results{Time: t0, Items: []compute.ChunkResult{chunk(i, i+1)}}))
		if _, ok := res.(error); ok {
			break
		}
	}
	af, ok := res.(*ApplyFailure)
	if !ok {
		t.Fatalf("apply on a full disk returned %T %v, want an *ApplyFailure", res, res)
	}
	var se *compute.StorageError
	if af.Index != idx || !errors.As(af, &se) || !errors.Is(af, syscall.ENOSPC) {
		t.Fatalf("failure %v (index %d), want entry %d failing with a StorageError wrapping ENOSPC", af, af.Index, idx)
	}
	select {
	case got := <-fatal:
		if got != af {
			t.Fatalf("OnFatal got %v, want %v", got, af)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnFatal was not called")
	}
	j, _ := js.Job("j")
	if j.DoneUnits != idx-2 {
		t.Fatalf("job counts %d units after %d stored chunks: the failed one was counted", j.DoneUnits, idx-2)
	}
	if fsm.Failure() != af {
		t.Fatal("Failure() does not report the failure")
	}
	// Nothing more is applied, not even what would fit.
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	if res := fsm.Apply(appLog(t, idx+1, compute.Cancel{Job: "j", Time: t0})); !errors.Is(res.(error), ErrApplyStopped) {
		t.Fatalf("apply after the failure: %v, want ErrApplyStopped", res)
	}
	if j, _ := js.Job("j"); j.State.Finished() {
		t.Fatal("an entry after the failure was applied")
	}
}
