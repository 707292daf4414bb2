package cli

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/webui"
)

// skewedCluster is a node whose clock is an hour ahead of this machine's: it saw its peer 5 s
// ago by its own clock.
type skewedCluster struct {
	fakeCluster
	ahead time.Duration
}

func (s *skewedCluster) Status() webui.Status {
	now := time.Now().Add(s.ahead)
	return webui.Status{Self: webui.NodeRef{ID: "peerA", Name: "alpha"}, Nodes: []webui.NodeStatus{
		{ID: "peerA", Name: "alpha", Online: true, LastSeen: now.UTC()},
		{ID: "peerB", Name: "beta", Online: true, LastSeen: now.Add(-5 * time.Second).UTC()},
	}}
}

// skewedServer serves c's API with a Date header by c's clock.
func skewedServer(t *testing.T, c *skewedCluster) *httptest.Server {
	api := webui.New(webui.Config{Backend: c, Jobs: c})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", time.Now().Add(c.ahead).UTC().Format(http.TimeFormat))
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// agedAbout reports whether out holds an age of 29 to 34 s in the form before+"Ns"+after: a
// job submitted 30 s before the test asked, read through a Date header of 1 s resolution, on a
// machine that may take a few seconds between the two under -race.
func agedAbout(out, before, after string) bool {
	for s := 29; s <= 34; s++ {
		if strings.Contains(out, before+strconv.Itoa(s)+"s"+after) {
			return true
		}
	}
	return false
}

// TestStatusLastSeenUsesTheNodesClock: LAST SEEN is the answering node's time (its Date header)
// minus the time it stamped, whatever this machine's clock says: a node an hour ahead or
// behind still shows its peer as seen about 5 s ago, not "-59m55s ago" or "1h0m5s ago".
func TestStatusLastSeenUsesTheNodesClock(t *testing.T) {
	for _, ahead := range []time.Duration{time.Hour, -time.Hour} {
		c := &skewedCluster{ahead: ahead}
		srv := skewedServer(t, c)
		code, out, errs := run("status", "--api", srv.URL)
		if code != ExitOK {
			t.Fatalf("status: exit %d: %s", code, errs)
		}
		var beta, alpha string
		for _, l := range strings.Split(out, "\n") {
			switch {
			case strings.HasPrefix(l, "beta "):
				beta = l
			case strings.HasPrefix(l, "alpha "):
				alpha = l
			}
		}
		// The Date header has 1 s resolution: 4 to 6 s, and 0 or 1 s for the node itself.
		if !strings.HasSuffix(beta, " 4s ago") && !strings.HasSuffix(beta, " 5s ago") && !strings.HasSuffix(beta, " 6s ago") {
			t.Fatalf("node %v ahead: beta's LAST SEEN is not about 5 s ago:\n%s", ahead, out)
		}
		if !strings.HasSuffix(alpha, " 0s ago") && !strings.HasSuffix(alpha, " 1s ago") {
			t.Fatalf("node %v ahead: alpha's LAST SEEN is not about now:\n%s", ahead, out)
		}
	}
}

// TestJobsAgeUsesTheNodesClock: a job's AGE (hydra jobs) and "submitted … ago" (hydra job) are
// the answering node's time minus the submission the cluster stamped, not this machine's clock.
func TestJobsAgeUsesTheNodesClock(t *testing.T) {
	for _, ahead := range []time.Duration{time.Hour, -time.Hour} {
		c := &skewedCluster{ahead: ahead}
		spec := compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1000}}
		c.jobs = []*compute.Job{{ID: "job1", Kind: spec.Kind, Spec: spec, State: compute.StateRunning,
			SubmittedAt: time.Now().Add(ahead - 30*time.Second), TotalUnits: spec.TotalUnits(), Nodes: []compute.NodeContribution{}}}
		srv := skewedServer(t, c)
		code, out, errs := run("jobs", "--api", srv.URL)
		if code != ExitOK {
			t.Fatalf("jobs: exit %d: %s", code, errs)
		}
		if !agedAbout(out, " ", "\n") {
			t.Fatalf("node %v ahead: the job's AGE is not about 30 s:\n%s", ahead, out)
		}
		code, out, errs = run("job", "job1", "--api", srv.URL)
		if code != ExitOK {
			t.Fatalf("job: exit %d: %s", code, errs)
		}
		if !agedAbout(out, "(", " ago)") {
			t.Fatalf("node %v ahead: the job was not submitted about 30 s ago:\n%s", ahead, out)
		}
	}
}
