package child

import (
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hydra-compute/hydra/compute"
)

// TestComputeSecondsBounded: the compute seconds of a result, which the worker hands in with
// it, are never NaN nor over what the coordinator takes (1e7), whatever the child says, in a
// message or in its log. They were taken up to 1e9 from a message and unchecked from the log
// of a frozen child: one such result (NaN does not even encode as JSON) failed every exchange
// of the worker, whose results then never got committed.
func TestComputeSecondsBounded(t *testing.T) {
	b, err := encodeMessage(message{kind: kindResult, h: header{Task: 1, Range: &compute.Range{Start: 0, End: 10}, ComputeSeconds: 5e7},
		payload: compute.EncodePiPayload(3)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeMessage(b); err == nil {
		t.Fatal("a result claiming 5e7 compute seconds was accepted")
	}

	r := startRunner(t, "child", 2, 0)
	task := Chunk{ID: 1, Spec: piSpec(1<<45, 5), Range: compute.Range{Start: 0, End: 1 << 40}}
	ch := runUntilProgress(t, r, context.Background(), task, nil)
	r.mu.Lock()
	p := r.p
	r.mu.Unlock()
	if !p.hello.BlockLog {
		t.Fatal("the child shares no finished-block log")
	}
	// The child's CPU time at the task's start, as a broken child might log it.
	p.blockMu.Lock()
	if err := unix.Mprotect(p.blocks.b, unix.PROT_READ|unix.PROT_WRITE); err != nil {
		p.blockMu.Unlock()
		t.Fatal(err)
	}
	p.blocks.word(24).Store(math.Float64bits(math.NaN()))
	p.blockMu.Unlock()
	r.Pause()
	defer r.Resume()
	var o outcome
	select {
	case o = <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("the paused task did not return within 30 s")
	}
	if o.err != nil || o.res.Done.Empty() {
		t.Fatalf("pause: %s, %v", o.res.Done, o.err)
	}
	if s := o.res.ComputeSeconds; !(s >= 0 && s <= maxComputeSeconds) {
		t.Fatalf("the pause's result claims %g compute seconds", s)
	}
	if _, err := json.Marshal(o.res.ComputeSeconds); err != nil {
		t.Fatal(err)
	}
}
