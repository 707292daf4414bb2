package webui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
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

// trustFake is a Backend with TrustReset, answering by the node named.
type trustFake struct{ *fakeBackend }

func (trustFake) TrustReset(_ context.Context, node string) (string, error) {
	switch node {
	case "unknown":
		return "", fmt.Errorf("no node %q in this cluster: %w", node, ErrInvalid)
	case "revoked": // the leader refused the credential (revoked meanwhile)
		return "", fmt.Errorf("trust reset: %w: needs an admin credential", ErrForbidden)
	case "noleader":
		return "", fmt.Errorf("%w: not the leader", ErrUnavailable)
	case "broken":
		return "", errors.New("encode command: the server's own failure")
	}
	return "id-" + node, nil
}

// TestTrustResetCodes: POST /api/v1/nodes/{id}/trust/reset answers a refusal by the cluster 403
// and no leader 503 (both answered 400, "your request is wrong", which no retry or other
// credential mends), an unknown node 400 as documented, and the server's own failure 500.
func TestTrustResetCodes(t *testing.T) {
	srv := httptest.NewServer(New(Config{Backend: trustFake{&fakeBackend{token: testToken}}}))
	defer srv.Close()
	for node, want := range map[string]int{"alpha": 200, "unknown": 400, "revoked": 403, "noleader": 503, "broken": 500} {
		resp, data := do(t, "POST", srv.URL+"/api/v1/nodes/"+node+"/trust/reset", testToken, "")
		if resp.StatusCode != want {
			t.Errorf("trust reset of %s: %d %s, want %d", node, resp.StatusCode, data, want)
		}
	}
}

// refusingConfig is a ConfigBackend whose changes the leader refuses.
type refusingConfig struct{ *configFake }

func (refusingConfig) SetClusterConfig(context.Context, []string) (ClusterConfig, error) {
	return ClusterConfig{}, fmt.Errorf("set cluster settings: %w: settings needs an admin credential", ErrForbidden)
}

// TestConfigRefusedIs403: a settings change the cluster's leader refuses (the credential was
// revoked after this node checked it) answers 403, as cancel and delete do; it answered 500.
func TestConfigRefusedIs403(t *testing.T) {
	fb := refusingConfig{&configFake{fakeBackend: &fakeBackend{token: testToken}}}
	srv := httptest.NewServer(New(Config{Backend: fb}))
	defer srv.Close()
	if resp, data := do(t, "PUT", srv.URL+"/api/v1/config", testToken, `{"set": ["max-jobs=5"]}`); resp.StatusCode != 403 {
		t.Fatalf("a change the leader refused: %d %s, want 403", resp.StatusCode, data)
	}
}
