package node

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/webui"
)

// TestCluster_CancelThroughALaggingFollowerRightAfterASubmit: a user submits a job through the
// leader and cancels it at once through a follower whose replica has not applied the submit yet.
// The follower answered 404 "no such job" from its replica (a moment later, the cancel went
// through). It now catches up with the leader's commit index before it calls a job unknown
// (knownJob, readBarrier). The follower's apply is held from before the submit until the cancel
// has the leader's index, so the window is open every time.
func TestCluster_CancelThroughALaggingFollowerRightAfterASubmit(t *testing.T) {
	nodes, l := barrierCluster(t)
	f := without(nodes, l)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	lc := webui.NewClient(l.HTTPURL(), l.APIToken())
	// The follower acts for a user who showed its admin credential (read now: reading it takes
	// the state's lock, which the held apply below keeps).
	fctx := webui.WithCredential(ctx, f.APIToken())
	job, free := submitPastALaggingFollower(t, ctx, lc, f)
	// (Not over HTTP: the follower's FSM holds its state's lock while held, which the API's
	// credential check reads; the answer's HTTP code is webui's mapping of this error.)
	err := f.CancelJob(fctx, job.ID)
	free()
	if err != nil {
		t.Fatalf("cancel through the follower right after the submit through the leader: %v (no such job, 404: %v), want success",
			err, errors.Is(err, compute.ErrNoSuchJob))
	}
	waitFor(t, 30*time.Second, "every replica holds the job cancelled", func() error {
		for _, n := range nodes {
			if j, ok := n.jobs.Job(job.ID); !ok || j.State != compute.StateCancelled {
				return errors.New(n.cfg.Name + ": not cancelled yet")
			}
		}
		return nil
	})
	// A job no node ever held is still unknown once the replica has caught up.
	if err := f.CancelJob(fctx, "0123456789abcdef"); !errors.Is(err, compute.ErrNoSuchJob) {
		t.Fatalf("cancel of a job nobody submitted: %v, want no such job", err)
	}
}

// TestCluster_ReadThroughALaggingFollowerRightAfterASubmit: a user submits a job through the
// leader and reads it at once through a follower whose replica has not applied the submit yet
// (the page of another node, or `hydra status` pointed at it). The follower answered 404 "no such
// job" from its replica. Its API now finds the job through the node (webui.JobFinder), which
// catches up with the leader's commit index first; a job nobody submitted is still 404 after
// that. Without a leader, reads answer from the replica at once, as every read does then. The
// follower's apply is held from before the submit until its read barrier has the leader's index.
// (The read is made in-process while held: the API's read gate reads the cluster's settings,
// under the state lock the held apply keeps; the routes' use of JobFinder is webui's
// TestReadRoutesFindAJobTheReplicaDoesNotHoldYet.)
func TestCluster_ReadThroughALaggingFollowerRightAfterASubmit(t *testing.T) {
	nodes, l := barrierCluster(t)
	f := without(nodes, l)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	lc := webui.NewClient(l.HTTPURL(), l.APIToken())
	job, free := submitPastALaggingFollower(t, ctx, lc, f)
	var finder webui.JobFinder = f.Node // what the follower's API reads a job through
	j, err := finder.FindJob(ctx, job.ID)
	free()
	if err != nil || j.ID != job.ID {
		t.Fatalf("read through the follower right after the submit through the leader: %+v, %v; want the job", j, err)
	}
	fc := webui.NewClient(f.HTTPURL(), "")
	var ae *webui.APIError
	if _, err := fc.Job(ctx, "0123456789abcdef"); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Fatalf("read of a job nobody submitted, through the follower: %v, want 404", err)
	}

	// A node that knows no leader answers reads from its replica, an unknown job's too: 404 at
	// once, not 503 after the barrier's bound.
	for _, n := range without(nodes, f) {
		n.kill(t)
	}
	waitFor(t, 30*time.Second, "the follower knows no leader", func() error {
		if p, ok := f.raft.Leader(); ok {
			return errors.New("it follows " + p.String())
		}
		return nil
	})
	if v, err := fc.Job(ctx, job.ID); err != nil || v.ID != job.ID {
		t.Errorf("read of a job the replica holds, without a leader: %+v, %v; want the job", v, err)
	}
	if _, err := fc.Job(ctx, "0123456789abcdef"); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Errorf("read of a job nobody submitted, without a leader: %v, want 404 from the replica", err)
	}
}

// submitPastALaggingFollower submits two jobs through lc (the leader's API) and returns the
// second: f stops applying at the first one's submit (holdApply), so the second, committed by
// the leader and the third member, waits in f's log until f's read barrier knows the leader's
// index or free is called.
func submitPastALaggingFollower(t *testing.T, ctx context.Context, lc *webui.Client, f *testNode) (job webui.JobView, free func()) {
	t.Helper()
	pi := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1_000_000_000_000_000, Seed: 1}}
	held, free := holdApply(t, f, nil)
	if _, err := lc.SubmitJob(ctx, pi); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the follower never applied the first submit")
	}
	pi.Pi.Seed = 2
	job, err := lc.SubmitJob(ctx, pi)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.jobs.Job(job.ID); ok {
		t.Fatal("the follower's replica applied the submit while held")
	}
	return job, free
}
