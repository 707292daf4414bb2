package child

import (
	"context"
	"os"
	"slices"
	"testing"

	"github.com/hydra-compute/hydra/compute"
)

// TestFreezeAfterTheKernelsEnded: a Mandelbrot task's counts are given back once its result is
// encoded (they were not: madvise refused the region's unaligned start, and the child kept the
// largest task's counts, 2 MiB, while it idled), and a pause that freezes the child after the
// kernels ended, while the result is on its way (the child at idle priority may wait seconds
// for the CPU to send it), hands in nothing read from the log, whose counts may be gone (zeros):
// it thaws the child and takes the result by message. The log is left here as it is in that
// window; freezeStop is what Run calls on a pause.
func TestFreezeAfterTheKernelsEnded(t *testing.T) {
	r := startRunner(t, "child", 2, 0)
	spec := mandelSpec(300, 200, 300, -0.5, 0, 3)
	task := Chunk{ID: 1, Spec: spec, Range: compute.Range{Start: 0, End: 200}}
	res, err := r.Run(context.Background(), task, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := mandelWant(t, spec, task.Range)
	if res.Done != task.Range || !slices.Equal(mandelGot(t, spec, res), ref) {
		t.Fatalf("done %s: the counts differ from MandelRows", res.Done)
	}
	r.mu.Lock()
	p := r.p
	r.mu.Unlock()
	h0, _ := r.Hello()
	if p == nil || !p.hello.BlockLog {
		t.Fatal("the child shares no finished-block log")
	}

	// The counts past the page they share with the records are given back: they read zero.
	page := os.Getpagesize()
	first := ((shmPixOff+page-1)/page*page - shmPixOff) / 4
	p.blockMu.Lock()
	pix := slices.Clone(p.blocks.pixels(uint64(len(ref))))
	p.blockMu.Unlock()
	if kept := len(pix[first:]) - countZeros(pix[first:]); kept > 0 || countZeros(ref[first:]) == len(ref[first:]) {
		t.Fatalf("%d of %d counts of the finished task still held in the log", kept, len(ref[first:]))
	}

	// A pause now: the result is the message's, not the log's.
	got, froze := r.freezeStop(p, task, r.seq)
	if froze {
		for _, pt := range append([]Part{{Done: got.Done, Payload: got.Payload}}, got.Also...) {
			if pt.Done.Empty() {
				continue
			}
			c, err := compute.DecodeMandelPayload(pt.Payload, int(pt.Done.Len())*spec.Mandel.Width, uint32(spec.Mandel.MaxIter))
			if err != nil || !slices.Equal(c, ref[pt.Done.Start*300:pt.Done.End*300]) {
				t.Fatalf("a freeze after the kernels ended handed in rows %s with wrong counts (%v)", pt.Done, err)
			}
		}
		t.Fatalf("a freeze after the kernels ended handed in %s and %d ranges from the log and killed the child", got.Done, len(got.Also))
	}
	// The child was thawed: it takes the next task.
	next := Chunk{ID: 2, Spec: spec, Range: compute.Range{Start: 3, End: 9}}
	res, err = r.Run(context.Background(), next, nil)
	if err != nil || res.Done != next.Range || !slices.Equal(mandelGot(t, spec, res), ref[3*300:9*300]) {
		t.Fatalf("the next task after the thaw: %s, %v", res.Done, err)
	}
	if h1, ok := r.Hello(); !ok || h1.PID != h0.PID {
		t.Fatalf("the child was replaced (pid %d → %d)", h0.PID, h1.PID)
	}
}

func countZeros(c []uint32) int {
	n := 0
	for _, v := range c {
		if v == 0 {
			n++
		}
	}
	return n
}
