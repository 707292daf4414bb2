//go:build unix

package node

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
)

// Committed results survive a SIGKILL of every node at once, though the result store is never
// fsynced: only raft's log and snapshots are, and the store is rebuilt from them at start (it is
// removed first, whatever is in it: here one node's is overwritten with garbage). Jobs submitted
// together (group commit: they share raft entries) come back too, each exact.
func TestSystem_ResultsSurviveKillOfAllNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	ps, token := startProcCluster(t, 3, nil)
	params := compute.MandelParams{Width: 320, Height: 180, CenterX: -0.75, CenterY: 0.1, Span: 0.5, MaxIter: 500}
	mandel := submitJob(t, ps[1], token, map[string]any{"kind": "mandelbrot", "width": params.Width, "height": params.Height,
		"center_x": params.CenterX, "center_y": params.CenterY, "span": params.Span, "max_iter": params.MaxIter})
	const samples = 1 << 16
	pis := make([]string, 12)
	errs := make([]error, len(pis))
	var wg sync.WaitGroup
	for i := range pis {
		wg.Add(1)
		go func() { // at once, through every node
			defer wg.Done()
			var j jobInfo
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			errs[i] = ps[i%len(ps)].client(token).Do(ctx, "POST", "/api/v1/jobs", map[string]any{"kind": "pi", "samples": samples, "seed": 100 + i}, &j)
			pis[i] = j.ID
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
	}
	for _, id := range append([]string{mandel}, pis...) {
		waitDone(t, ps, id, 120*time.Second)
	}
	for _, p := range ps {
		p.kill()
	}
	if err := os.WriteFile(filepath.Join(ps[0].dir, "jobs.db"), []byte("not a bbolt file"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		p.start()
	}
	for _, id := range append([]string{mandel}, pis...) {
		waitDone(t, ps, id, 120*time.Second)
	}
	want := make([]uint32, params.Width*params.Height)
	if err := compute.MandelRows(params, 0, params.Height, want); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		checkMandelExact(t, p, mandel, want)
	}
	for i, id := range pis {
		checkPiExact(t, ps, id, uint64(100+i), samples)
	}
}

// A node killed just after it applied an entry serves that entry again when it restarts alone,
// before any leader can reach it: the state it had shown does not go back in time. The job here
// was listed by the node a moment before its SIGKILL; the stable store's record of the applied
// index lags by up to a second, so without the applied mark (consensus/appliedmark.go) the
// restarted node did not know the job until a leader caught it up (a page open on the job
// closed it meanwhile).
func TestSystem_KilledNodeServesWhatItShowed(t *testing.T) {
	if testing.Short() {
		t.Skip("system test")
	}
	ps, token := startProcCluster(t, 3, nil)
	leader := leaderOf(t, ps)
	f := alive(ps, leader)[0]
	id := submitJob(t, leader, token, map[string]any{"kind": "pi", "samples": uint64(1e14), "seed": 7})
	waitFor(t, 30*time.Second, "the follower lists the job", func() error {
		_, err := jobOn(f, id)
		return err
	})
	f.kill() // at once: well within the second the stable store's record lags by
	for _, p := range alive(ps) {
		p.kill()
	}
	f.start()
	waitFor(t, 30*time.Second, f.name+" answers again", func() error {
		_, err := f.status()
		return err
	})
	if st, err := f.status(); err != nil || st.Leader != "" {
		t.Fatalf("restarted alone, %s knows a leader (%q, %v): the test needs none", f.name, st.Leader, err)
	}
	if _, err := jobOn(f, id); err != nil {
		t.Fatalf("restarted alone, %s no longer serves job %s, which it listed before the kill: %v", f.name, id, err)
	}
}
