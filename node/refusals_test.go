package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/webui"
)

// TestCluster_RefusalsKeepTheirMeaning: a job command the leader's apply refuses is recognised
// by its error (errors.Is), on the leader and through a follower whose refusal came back over
// the network: what CancelJob and DeleteJob propose once their check on the node's replica
// passed, when the job went or finished meanwhile (the API answered such a race 500 instead of
// 404 or 409), and a submit over the cluster's job cap (429).
func TestCluster_RefusalsKeepTheirMeaning(t *testing.T) {
	nodes, l, f := startLedCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	j, err := f.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1_000_000_000_000_000, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.applyJob(ctx, compute.Fail{Job: j.ID, Reason: "failed by the test", Time: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the job failed on every node", func() error {
		for _, n := range nodes {
			if got, _ := n.Job(j.ID); got.State != compute.StateFailed {
				return fmt.Errorf("%s: %s", n.cfg.Name, got.State)
			}
		}
		return nil
	})
	for _, via := range []*testNode{l, f} {
		tok := activeAdminToken(t, via)
		for _, tc := range []struct {
			cmd  any
			want error
		}{
			{compute.Cancel{Job: "gone", Time: time.Now().UTC()}, compute.ErrNoSuchJob},
			{compute.Delete{Job: "gone"}, compute.ErrNoSuchJob},
			{compute.Cancel{Job: j.ID, Time: time.Now().UTC()}, compute.ErrJobFinished},
		} {
			op, payload, err := compute.EncodeCommand(tc.cmd)
			if err != nil {
				t.Fatal(err)
			}
			_, err = via.raft.ApplyAs(ctx, consensus.Command{Op: consensus.Op(op), Payload: payload}, tok)
			if err = unavailable(err); !errors.Is(err, tc.want) || errors.Is(err, webui.ErrUnavailable) {
				t.Errorf("%T through %s (leader %v): %v, want %v", tc.cmd, via.cfg.Name, via == l, err, tc.want)
			}
		}
		_, err := via.applyJob(ctx, compute.Submit{ID: "over-" + via.cfg.Name, Spec: j.Spec, Submitter: "test", Time: time.Now().UTC(), MaxJobs: 1})
		if !errors.Is(err, compute.ErrTooManyJobs) {
			t.Errorf("a submit over the cap through %s (leader %v): %v, want %v", via.cfg.Name, via == l, err, compute.ErrTooManyJobs)
		}
	}
}

// TestSubmitWaitsForTheLocalApply: a submit the cluster committed is answered with the job's
// view once this node's replica holds it, however long after the commit (before, a replica that
// lagged beyond consensus's own wait answered 500 "committed but not yet applied here", and a
// client that submitted again made a second job); when the request's deadline comes first, the
// error is a webui.NotAppliedError carrying the job as submitted, which the API answers 202: the
// submit succeeded (it answered 500, "the server is broken").
func TestSubmitWaitsForTheLocalApply(t *testing.T) {
	misses := 3
	lookup := func(id string) (compute.Job, bool) {
		if misses > 0 {
			misses--
			return compute.Job{}, false
		}
		return compute.Job{ID: id}, true
	}
	j, err := appliedJob(context.Background(), compute.Submit{ID: "j1"}, lookup)
	if err != nil || j.ID != "j1" || misses != 0 {
		t.Fatalf("a replica that applies the job after 3 looks: %+v %v (%d looks left)", j, err, misses)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	spec := compute.JobSpec{Kind: compute.KindPi, Name: "p", Pi: &compute.PiParams{Samples: 5000, Seed: 2}}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	_, err = appliedJob(ctx, compute.Submit{ID: "j2", Spec: spec, Submitter: "n1", Time: at}, func(string) (compute.Job, bool) { return compute.Job{}, false })
	var na *webui.NotAppliedError
	if !errors.As(err, &na) || errors.Is(err, webui.ErrUnavailable) || !strings.Contains(err.Error(), "j2") {
		t.Fatalf("a replica that never applies it: %v, want a webui.NotAppliedError", err)
	}
	if j := na.Job; j.ID != "j2" || j.State != compute.StateQueued || j.Kind != compute.KindPi || j.Name != "p" ||
		j.TotalUnits != 5000 || j.Submitter != "n1" || !j.SubmittedAt.Equal(at) || j.Spec.Pi == nil || *j.Spec.Pi != *spec.Pi {
		t.Fatalf("the job the error carries: %+v", j)
	}
	// It is the view a replica shows once it has applied the submit.
	js := compute.NewJobStore(compute.NewMemResults())
	sub := compute.Submit{ID: "j2", Spec: spec, Submitter: "n1", Time: at}
	if err, _ := js.ApplyCommand(sub, 1).(error); err != nil {
		t.Fatal(err)
	}
	if applied, _ := js.Job("j2"); !reflect.DeepEqual(applied, submittedJob(sub)) {
		t.Fatalf("the view of the job as submitted:\n%+v\nonce applied:\n%+v", submittedJob(sub), applied)
	}
}

// TestCluster_UnknownNodeOrTokenIs404: a membership request naming no node or token the cluster
// knows answers 404 whatever the name says (one called "forbidden" answered 403: the codes were
// chosen by the error's text).
func TestCluster_UnknownNodeOrTokenIs404(t *testing.T) {
	n := startCluster(t, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := webui.NewClient(n.HTTPURL(), activeAdminToken(t, n))
	for _, req := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/api/v1/remove", map[string]string{"node": "forbidden"}},
		{"POST", "/api/v1/approve", map[string]string{"fingerprint": "forbidden"}},
		{"POST", "/api/v1/deny", map[string]string{"fingerprint": "forbidden"}},
		{"DELETE", "/api/v1/tokens/forbidden", nil},
	} {
		var ae *webui.APIError
		if err := c.Do(ctx, req.method, req.path, req.body, nil); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
			t.Errorf("%s %s naming nothing known: %v, want HTTP 404", req.method, req.path, err)
		}
	}
}

// TestCluster_CancelDeleteRaceOverHTTP: a cancel or a delete whose check on the node's replica
// passed, and that lost the race at the leader's apply (the job went or finished in between),
// answers as docs/api.md says: 404 when the job went, 409 when it failed (or was done), 200 when
// another cancel won (a cancel is idempotent, as Apply's retries need). On a follower the
// leader's refusal comes back over the network; with the refusal as text only the API answered
// 500. The hook between the check and the proposal makes the race happen every time.
func TestCluster_CancelDeleteRaceOverHTTP(t *testing.T) {
	_, l, f := startLedCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	leaderTok := activeAdminToken(t, l)
	race := func(cmd any) { // what another admin commits on the leader meanwhile
		op, payload, err := compute.EncodeCommand(cmd)
		if err == nil {
			_, err = l.raft.ApplyAs(ctx, consensus.Command{Op: consensus.Op(op), Payload: payload}, leaderTok)
		}
		if err != nil {
			t.Errorf("the racing %T: %v", cmd, err)
		}
	}
	for _, via := range []*testNode{f, l} {
		c := webui.NewClient(via.HTTPURL(), activeAdminToken(t, via))
		for _, tc := range []struct {
			name   string
			call   func(id string) error
			winner func(id string) any
			want   int
		}{
			{"cancel, the job deleted", func(id string) error { _, err := c.CancelJob(ctx, id); return err },
				func(id string) any { return compute.Delete{Job: id} }, http.StatusNotFound},
			{"cancel, the job failed", func(id string) error { _, err := c.CancelJob(ctx, id); return err },
				func(id string) any {
					return compute.Fail{Job: id, Reason: "failed by the test", Time: time.Now().UTC()}
				}, http.StatusConflict},
			{"cancel, the job cancelled (a cancel is idempotent)", func(id string) error { _, err := c.CancelJob(ctx, id); return err },
				func(id string) any { return compute.Cancel{Job: id, Time: time.Now().UTC()} }, http.StatusOK},
			{"delete, the job deleted", func(id string) error { return c.DeleteJob(ctx, id) },
				func(id string) any { return compute.Delete{Job: id} }, http.StatusNotFound},
		} {
			j, err := via.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1_000_000_000_000_000, Seed: 1}})
			if err != nil {
				t.Fatal(err)
			}
			var hits atomic.Int32 // the hook runs on the HTTP handler's goroutine
			hook := func(id string) {
				if id == j.ID {
					hits.Add(1)
					race(tc.winner(id))
				}
			}
			via.checkedHook.Store(&hook)
			err = tc.call(j.ID)
			via.checkedHook.Store(nil)
			got := http.StatusOK
			if ae := (*webui.APIError)(nil); errors.As(err, &ae) {
				got = ae.Status
			} else if err != nil {
				got = -1
			}
			if got != tc.want || hits.Load() != 1 {
				t.Errorf("%s, through %s (leader %v): %v (the race ran %d times), want HTTP %d", tc.name, via.cfg.Name, via == l, err, hits.Load(), tc.want)
			}
		}
	}
}

// TestCluster_RemovalLeavingNoQuorumIs409: three voters, one of them killed: removing a healthy
// voter answers 409 with a message that names the unreachable voter, on the leader (POST
// /api/v1/remove of the other follower) and through a follower (the leader's removal, which the
// follower forwards), and so does the healthy follower's own leave (POST /api/v1/leave); before,
// the removal committed and left two voters, one of them down, without a quorum.
func TestCluster_RemovalLeavingNoQuorumIs409(t *testing.T) {
	nodes, l, _ := startLedCluster(t, 3)
	waitFor(t, 60*time.Second, "3 voters", func() error { return wantVoters(l, 3) })
	rest := without(nodes, l)
	dead, healthy := rest[0], rest[1]
	leaderTok, healthyTok := activeAdminToken(t, l), activeAdminToken(t, healthy)
	dead.kill(t)
	waitFor(t, 60*time.Second, "the leader counts the killed voter unreachable", func() error {
		for _, p := range l.raft.Unreachable() {
			if p == dead.ID() {
				return nil
			}
		}
		return errors.New("not yet")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, req := range []struct {
		what string
		via  *testNode
		tok  string
		path string
		body any
	}{
		{"remove the healthy follower on the leader", l, leaderTok, "/api/v1/remove", map[string]string{"node": healthy.ID().String()}},
		{"remove the leader through the healthy follower", healthy, healthyTok, "/api/v1/remove", map[string]string{"node": l.ID().String()}},
		{"the healthy follower's leave", healthy, healthyTok, "/api/v1/leave", nil},
	} {
		var ae *webui.APIError
		err := webui.NewClient(req.via.HTTPURL(), req.tok).Do(ctx, "POST", req.path, req.body, nil)
		if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Msg, "without a quorum") || !strings.Contains(ae.Msg, dead.ID().String()) {
			t.Errorf("%s with a voter down: %v, want HTTP 409 naming %s", req.what, err, dead.ID())
		}
	}
	if err := wantVoters(l, 3); err != nil || !l.raft.IsLeader() {
		t.Fatalf("the configuration changed (%v) or the leader handed over (leads: %v)", err, l.raft.IsLeader())
	}
}

// TestSubmitRepeatedAfterItsCommitAnswersTheJob: consensus proposes a command again when its
// answer was lost (a leader that committed it stopped or was cut off before answering), so a
// submit can meet the job its own first attempt made. On the leader and through a follower, the
// repeat of a committed submit answers with that job (it answered 500, "job already exists");
// a submit whose ID names another job (another spec) is still refused.
func TestSubmitRepeatedAfterItsCommitAnswersTheJob(t *testing.T) {
	_, l, f := startLedCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, via := range []*testNode{l, f} {
		spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1_000_000_000_000_000, Seed: 7}}
		sub := compute.Submit{ID: "again-" + via.cfg.Name, Spec: spec, Submitter: via.cfg.Name, Time: time.Now().UTC(), MaxJobs: 100}
		if _, err := via.applyJob(ctx, sub); err != nil { // the first attempt: committed, its answer "lost"
			t.Fatal(err)
		}
		j, err := via.submit(ctx, sub) // the repeat
		if err != nil || j.ID != sub.ID {
			t.Fatalf("the repeat of a committed submit through %s (leader %v): job %q, %v; want the job %s", via.cfg.Name, via == l, j.ID, err, sub.ID)
		}
		other := sub
		other.Spec.Pi = &compute.PiParams{Samples: 1_000_000, Seed: 8}
		if _, err := via.submit(ctx, other); !errors.Is(err, compute.ErrJobExists) {
			t.Errorf("a submit through %s whose ID names another job: %v, want %v", via.cfg.Name, err, compute.ErrJobExists)
		}
	}
}
