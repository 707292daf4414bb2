package node

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/p2p"
	"github.com/hydra-compute/hydra/webui"
)

// TestCluster_ModuleDeleteThroughALaggingFollowerAfterACancel: a user cancels a WebAssembly job
// through the leader, then at once deletes its module through a follower. The follower used to
// judge "a job uses it" on its own replica, which had not applied the cancel yet, and answered 409
// "module in use" (a moment later, 200). It now judges on a replica that has applied the leader's
// commit index of the time of the request (readBarrier). The follower's apply is held back from
// before the cancel until the delete has the leader's index, so the window is open every time: the
// delete succeeds and the module is gone from every member. A module truly in use still answers
// 409 naming the job, and a follower that cannot reach a leader answers 503 with Retry-After.
func TestCluster_ModuleDeleteThroughALaggingFollowerAfterACancel(t *testing.T) {
	nodes, l := barrierCluster(t)
	others := without(nodes, l)
	f, m := others[0], others[1]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	code, err := os.ReadFile("../compute/wasm/testdata/sum.wasm")
	if err != nil {
		t.Fatal(err)
	}
	lc := webui.NewClient(l.HTTPURL(), l.APIToken())
	fc := webui.NewClient(f.HTTPURL(), f.APIToken())
	info, err := lc.UploadModule(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	sha := info.SHA256
	waitFor(t, 30*time.Second, "every member holds the module", func() error {
		for _, n := range nodes {
			if !n.hasModule(sha) {
				return errors.New(n.cfg.Name + " lacks it")
			}
		}
		return nil
	})
	job, err := lc.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindWasm, Wasm: &compute.WasmParams{Module: sha, Items: 2_000_000_000, Reduce: compute.ReduceSum}})
	if err != nil {
		t.Fatal(err)
	}
	// Another job, whose cancel the follower applies just before it stops applying.
	other, err := lc.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1_000_000_000_000_000, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the follower's replica holds both jobs", func() error {
		for _, id := range []string{job.ID, other.ID} {
			if _, ok := f.jobs.Job(id); !ok {
				return errors.New("no job " + id)
			}
		}
		return nil
	})

	// In use: 409 naming the job, through the follower; the module stays everywhere.
	var ae *webui.APIError
	if err := fc.Do(ctx, http.MethodDelete, "/api/v1/modules/"+sha, nil, nil); !errors.As(err, &ae) ||
		ae.Status != http.StatusConflict || !strings.Contains(ae.Msg, "module in use") || !strings.Contains(ae.Msg, job.ID) {
		t.Fatalf("delete a module in use through a follower: %v, want 409 naming job %s", err, job.ID)
	}
	for _, n := range nodes {
		if !n.hasModule(sha) {
			t.Fatalf("a refused delete removed the module from %s", n.cfg.Name)
		}
	}

	// The follower stops applying after the other job's cancel: the job's cancel, committed by
	// the leader and the third member, waits in its log. The barrier hook lets it go once the
	// delete knows the leader's index, so only a delete that waits for that index sees it.
	var barrierIndex uint64
	held, free := holdApply(t, f, func(index uint64) { barrierIndex = index })
	if _, err := lc.CancelJob(ctx, other.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the follower never applied the other job's cancel")
	}
	if _, err := lc.CancelJob(ctx, job.ID); err != nil {
		t.Fatal(err)
	}
	if j, _ := l.jobs.Job(job.ID); j.State != compute.StateCancelled {
		t.Fatalf("the leader's replica after the cancel: job %s", j.State)
	}
	if j, _ := f.jobs.Job(job.ID); j.State.Finished() {
		t.Fatalf("the follower's replica applied the cancel while held: job %s", j.State)
	}
	cancelIndex := l.raft.AppliedIndex()
	// (Not over HTTP: the follower's FSM holds its state's lock while held, which the API's
	// credential check reads; the answer's HTTP code is webui's mapping of this error.)
	err = f.DeleteModule(ctx, sha)
	free()
	if err != nil {
		t.Fatalf("delete through the follower right after the cancel through the leader: %v (in use, 409: %v), want success",
			err, errors.Is(err, webui.ErrModuleInUse))
	}
	if barrierIndex < cancelIndex { // the leader had applied the cancel before the delete came
		t.Errorf("the follower waited for index %d, below the leader's applied index %d after the cancel", barrierIndex, cancelIndex)
	}
	for _, n := range nodes {
		if n.hasModule(sha) {
			t.Errorf("%s still holds the module after the delete answered", n.cfg.Name)
		}
	}
	if got := f.Modules(); len(got) != 0 {
		t.Errorf("the follower lists %+v after the delete", got)
	}

	// No leader to ask: 503 with Retry-After, within the barrier's bound.
	f.appliedHook.Store(nil)
	f.barrierHook.Store(nil)
	l.kill(t)
	m.kill(t)
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, f.HTTPURL()+"/api/v1/modules/"+sha, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.APIToken())
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("delete through a follower without a leader: HTTP %d, Retry-After %q; want 503 with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if d := time.Since(start); d > readBarrierWait+5*time.Second {
		t.Errorf("the delete without a leader took %s, past the barrier's bound %s", d, readBarrierWait)
	}
}

// barrierCluster starts three nodes that compute nothing (the jobs only need to exist) and waits
// until each holds its API token and follows the same leader, which it returns.
func barrierCluster(t *testing.T) (nodes []*testNode, leader *testNode) {
	t.Helper()
	nodes = startClusterWith(t, 3, func(c *Config) { c.Compute = false })
	leader = waitLeader(t, nodes, 30*time.Second)
	waitFor(t, 30*time.Second, "every node's token and leader", func() error {
		for _, n := range nodes {
			if n.APIToken() == "" {
				return errors.New("no token on " + n.cfg.Name)
			}
			if p, ok := n.raft.Leader(); !ok || p != leader.ID() {
				return errors.New(n.cfg.Name + " does not follow " + leader.cfg.Name)
			}
		}
		return nil
	})
	return nodes, leader
}

// holdApply makes f's replica lag deterministically: f's FSM stops at the next job change it
// applies (held closes then), and the entries after it wait in f's log until free is called or
// f's read barrier knows the leader's index (barrierHook: at, if not nil, sees that index first).
// While held, f's state lock is taken: read what needs it (f.APIToken) before.
func holdApply(t *testing.T, f *testNode, at func(index uint64)) (held <-chan struct{}, free func()) {
	h, release := make(chan struct{}), make(chan struct{})
	var heldOnce, releaseOnce sync.Once
	free = func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(free) // before the nodes stop (cleanups run last first)
	hold := func() {
		heldOnce.Do(func() {
			close(h)
			<-release
		})
	}
	f.appliedHook.Store(&hold)
	barrier := func(index uint64) {
		if at != nil {
			at(index)
		}
		free()
	}
	f.barrierHook.Store(&barrier)
	return h, free
}

// TestReadIndexAskedByAdmittedNodesOnly: a worker's API takes a user's cancel (forwarded with the
// user's credential), so a worker may ask the leader for its read index as a member may; before,
// only members could, and a worker's cancel of a job its replica did not hold yet, or its module
// delete, waited the barrier's 5 s for nothing and answered 503. A peer not admitted is refused.
func TestReadIndexAskedByAdmittedNodesOnly(t *testing.T) {
	n, tok, ctx, _, _ := moduleNode(t)
	for _, role := range []string{consensus.RoleWorker, consensus.RoleMember} {
		h := admittedHost(t, ctx, n, tok, role)
		var resp readIndexResp
		if err := p2p.Call(ctx, h, n.ID(), ReadIndexProtocol, struct{}{}, &resp); err != nil || resp.Index == 0 {
			t.Errorf("a %s's ask for the read index: %+v, %v; want an index", role, resp, err)
		}
	}
	stranger, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	if err := stranger.Connect(ctx, n.info()); err != nil {
		t.Fatal(err)
	}
	var resp readIndexResp
	if err := p2p.Call(ctx, stranger, n.ID(), ReadIndexProtocol, struct{}{}, &resp); err == nil {
		t.Errorf("a peer not admitted was told the read index %d", resp.Index)
	}
}
