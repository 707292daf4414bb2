package webui

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/hydra-compute/hydra/compute"
)

// TestSubmitCommittedNotAppliedIs202: a submit the cluster committed, that the node answering
// had not applied when the request's deadline came, is a success: 202 with the job as
// submitted and its Location. It answered 500, which a client takes for "the server is broken,
// nothing happened", and a second submit made a second job.
func TestSubmitCommittedNotAppliedIs202(t *testing.T) {
	srv, fj := newJobServer(t)
	spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1000, Seed: 1}}
	fj.mu.Lock()
	fj.submitErr = fmt.Errorf("submit job: %w", &NotAppliedError{
		Job: compute.Job{ID: "c0ffee", Kind: compute.KindPi, Spec: spec, State: compute.StateQueued, TotalUnits: 1000},
		Err: context.DeadlineExceeded,
	})
	fj.mu.Unlock()
	resp, data := do(t, "POST", srv.URL+"/api/v1/jobs", testToken, `{"kind":"pi","samples":1000,"seed":1}`)
	var v JobView
	if resp.StatusCode != 202 || json.Unmarshal(data, &v) != nil || v.ID != "c0ffee" || v.State != compute.StateQueued ||
		resp.Header.Get("Location") != "/api/v1/jobs/c0ffee" {
		t.Fatalf("a committed job not applied here yet: %d %s (Location %q), want 202 with the job", resp.StatusCode, data, resp.Header.Get("Location"))
	}
	// The client takes it as a success, with the job's ID.
	got, err := NewClient(srv.URL, testToken).SubmitJob(context.Background(), spec)
	if err != nil || got.ID != "c0ffee" {
		t.Fatalf("client: %+v %v", got, err)
	}
	// Without a job it names, the error is no success.
	fj.mu.Lock()
	fj.submitErr = &NotAppliedError{Err: context.DeadlineExceeded}
	fj.mu.Unlock()
	if resp, data := do(t, "POST", srv.URL+"/api/v1/jobs", testToken, `{"kind":"pi","samples":1000,"seed":1}`); resp.StatusCode/100 == 2 ||
		!strings.Contains(errMsg(t, data), "committed") {
		t.Fatalf("a not-applied error without its job: %d %s", resp.StatusCode, data)
	}
}
