package webui

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/hydra-compute/hydra/compute"
)

// findingJobs is a JobBackend whose replica lags (JobFinder): a job in late is found only by
// FindJob, which adds it to the replica, as a node finds a job submitted through another node a
// moment ago once its replica has caught up; FindJob answers unavailable while down is set.
type findingJobs struct {
	*fakeJobs
	mu    sync.Mutex
	late  map[string]compute.Job
	down  bool
	finds []string // the IDs FindJob was asked for
}

func (f *findingJobs) FindJob(_ context.Context, id string) (compute.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.finds = append(f.finds, id)
	if f.down {
		return compute.Job{}, fmt.Errorf("job %s: %w: no leader", id, ErrUnavailable)
	}
	if j, ok := f.late[id]; ok {
		f.add(j)
		f.fakeJobs.mu.Lock()
		f.pi[id] = compute.PiResult{}
		f.fakeJobs.mu.Unlock()
		return j, nil
	}
	return compute.Job{}, fmt.Errorf("job %s: %w", id, compute.ErrNoSuchJob)
}

// Chunks serves an empty history of a job the replica holds (ChunkSource).
func (f *findingJobs) Chunks(id string, _ uint64, _ int) (compute.ChunkPage, error) {
	if _, ok := f.Job(id); !ok {
		return compute.ChunkPage{}, fmt.Errorf("job %s: %w", id, compute.ErrNoSuchJob)
	}
	return compute.ChunkPage{}, nil
}

// TestReadRoutesFindAJobTheReplicaDoesNotHoldYet: a job submitted through another node a moment
// ago is not in this node's replica yet. Every route that reads one job asks the backend to find
// it (JobFinder: the node catches up with the cluster's commits first) before answering 404;
// before, they answered 404 from the replica at once. No leader to catch up with: 503 with
// Retry-After. An ID no job can have (longer than any job ID) is 404 without asking.
func TestReadRoutesFindAJobTheReplicaDoesNotHoldYet(t *testing.T) {
	fj := &findingJobs{fakeJobs: newFakeJobs(), late: map[string]compute.Job{}}
	for _, id := range []string{"new", "new2", "new3"} {
		fj.late[id] = compute.Job{ID: id, Kind: compute.KindPi, State: compute.StateQueued, Spec: piSpec(10, 1)}
	}
	b := &fakeBackend{token: testToken}
	srv := httptest.NewServer(New(Config{Backend: b, Jobs: fj}))
	defer srv.Close()

	for _, path := range []string{"/api/v1/jobs/new", "/api/v1/jobs/new2/result", "/api/v1/jobs/new3/chunks", "/api/v1/jobs/new"} {
		resp, data := do(t, "GET", srv.URL+path, "", "")
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(data), `"new`) {
			t.Errorf("GET %s of a job only the cluster holds yet: %d %s, want 200 with the job", path, resp.StatusCode, data)
		}
	}
	resp, data := do(t, "GET", srv.URL+"/api/v1/jobs/gone", "", "")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(errMsg(t, data), "gone") {
		t.Errorf("GET of a job the cluster does not hold either: %d %s, want 404", resp.StatusCode, data)
	}
	fj.mu.Lock()
	fj.down = true
	fj.mu.Unlock()
	resp, data = do(t, "GET", srv.URL+"/api/v1/jobs/gone/result.png", "", "")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("GET with no leader to catch up with: %d (Retry-After %q) %s, want 503 with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"), data)
	}
	long := strings.Repeat("x", compute.MaxIDLen+1)
	if resp, _ := do(t, "GET", srv.URL+"/api/v1/jobs/"+long, "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET of an ID longer than any job's: %d, want 404", resp.StatusCode)
	}
	fj.mu.Lock()
	defer fj.mu.Unlock()
	if want := []string{"new", "new2", "new3", "gone", "gone"}; strings.Join(fj.finds, ",") != strings.Join(want, ",") {
		t.Errorf("FindJob was asked for %q, want %q (once each for a job found, which the replica holds after; never for an ID no job can have)", fj.finds, want)
	}
}
