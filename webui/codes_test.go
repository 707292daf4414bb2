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

// leaveFake is a Backend whose Leave fails with err.
type leaveFake struct {
	*fakeBackend
	err error
}

func (f leaveFake) Leave(context.Context) error { return f.err }

// TestLeaveCodes: POST /api/v1/leave answers by the error's kind: no leader to ask (or the
// request's deadline) 503 with Retry-After, the only server of the cluster 409, anything else
// 500. It answered 500 whatever the error, so a client could not tell "retry" from "broken".
func TestLeaveCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("%w: not the leader", ErrUnavailable), 503},
		{fmt.Errorf("ask the leader to remove this node: %w", context.DeadlineExceeded), 503},
		{fmt.Errorf("this node is the only server of the cluster: %w", ErrConflict), 409},
		{errors.New("remove raft state: permission denied"), 500},
	} {
		srv := httptest.NewServer(New(Config{Backend: leaveFake{&fakeBackend{token: testToken}, tc.err}}))
		resp, data := do(t, "POST", srv.URL+"/api/v1/leave", testToken, "")
		srv.Close()
		if resp.StatusCode != tc.want || (tc.want == 503) != (resp.Header.Get("Retry-After") != "") {
			t.Errorf("leave failing with %q: %d (Retry-After %q) %s, want %d", tc.err, resp.StatusCode, resp.Header.Get("Retry-After"), data, tc.want)
		}
	}
}

// TestEvery503HasRetryAfter: every 503 of the API tells the client when to try again: no leader
// on a job route, a membership route or the settings, a node not in a cluster yet, a node
// without jobs, an unhealthy /healthz.
func TestEvery503HasRetryAfter(t *testing.T) {
	noLeader := fmt.Errorf("%w: not the leader", ErrUnavailable)
	srv, fj := newJobServer(t)
	fj.mu.Lock()
	fj.submitErr = noLeader
	fj.mu.Unlock()
	adm := httptest.NewServer(New(Config{Backend: &admissionFake{fakeBackend: &fakeBackend{token: testToken, healthy: noLeader}}}))
	defer adm.Close()
	fresh := httptest.NewServer(New(Config{Backend: &fakeBackend{}})) // not in a cluster yet
	defer fresh.Close()
	for _, tc := range []struct{ method, url, body string }{
		{"POST", srv.URL + "/api/v1/jobs", `{"kind":"pi","samples":1000,"seed":1}`},
		{"POST", adm.URL + "/api/v1/remove", `{"node":"noleader"}`},
		{"POST", adm.URL + "/api/v1/remove", `{"node":"slow"}`},
		{"GET", adm.URL + "/api/v1/jobs", ""}, // this node serves no jobs
		{"GET", adm.URL + "/healthz", ""},
		{"POST", fresh.URL + "/api/v1/approve", `{"fingerprint":"x"}`},
	} {
		resp, data := do(t, tc.method, tc.url, testToken, tc.body)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != fmt.Sprint(RetryAfter) {
			t.Errorf("%s %s: %d, Retry-After %q, %s; want 503 with Retry-After %d", tc.method, tc.url, resp.StatusCode,
				resp.Header.Get("Retry-After"), data, RetryAfter)
		}
	}
}

// TestErrorsNameTheOperationOnce: an error answer does not repeat the route's operation before
// the backend's message, which names it already, nor does the CLI's "hydra cancel: " then find
// it again ("hydra cancel: cancel: job … already finished", "admit: command rejected: admit: …").
func TestErrorsNameTheOperationOnce(t *testing.T) {
	srv, fj := newJobServer(t)
	fj.mu.Lock()
	fj.submitErr = fmt.Errorf("%w: the cluster holds 5 jobs", compute.ErrTooManyJobs)
	fj.mu.Unlock()
	fb := &admissionFake{fakeBackend: &fakeBackend{token: testToken}}
	adm := httptest.NewServer(New(Config{Backend: fb}))
	defer adm.Close()
	for _, tc := range []struct{ method, url, body, prefix string }{
		{"POST", srv.URL + "/api/v1/jobs", `{"kind":"pi","samples":1000,"seed":1}`, "submit:"},
		{"POST", adm.URL + "/api/v1/admit", `{"mode":"open"}`, "admit:"},
		{"POST", adm.URL + "/api/v1/approve", `{"fingerprint":"unknown"}`, "approve:"},
		{"POST", adm.URL + "/api/v1/remove", `{"node":"ambiguous"}`, "remove:"},
	} {
		resp, data := do(t, tc.method, tc.url, testToken, tc.body)
		if msg := errMsg(t, data); resp.StatusCode < 400 || strings.HasPrefix(msg, tc.prefix) {
			t.Errorf("%s %s: %d %q, want an error that does not start with %q", tc.method, tc.url, resp.StatusCode, msg, tc.prefix)
		}
	}
}

// TestWrongMethodOutsideAPIIsJSON405: /healthz, /metrics and the UI's files, asked with a method
// they do not take, answer 405 with Allow and a JSON error like the API's (it was Go's plain
// text), and a path that does not exist is a JSON 404.
func TestWrongMethodOutsideAPIIsJSON405(t *testing.T) {
	srv := newTestServer(t, &fakeBackend{token: "tok"})
	for _, path := range []string{"/healthz", "/metrics", "/", "/index.html"} {
		resp, data := do(t, "POST", srv.URL+path, "", "")
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") ||
			!strings.Contains(errMsg(t, data), "method not allowed") {
			t.Errorf("POST %s: %d, Allow %q, Content-Type %q, %s; want a JSON 405 with Allow GET", path, resp.StatusCode,
				resp.Header.Get("Allow"), resp.Header.Get("Content-Type"), data)
		}
	}
	resp, data := do(t, "GET", srv.URL+"/no-such-page", "", "")
	if resp.StatusCode != 404 || errMsg(t, data) == "" {
		t.Errorf("GET /no-such-page: %d %s, want a JSON 404", resp.StatusCode, data)
	}
	if resp, _ := do(t, "GET", srv.URL+"/healthz", "", ""); resp.StatusCode != 200 {
		t.Errorf("GET /healthz: %d", resp.StatusCode)
	}
}
