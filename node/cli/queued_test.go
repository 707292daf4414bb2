package cli

import (
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/webui"
)

// pausedCluster is fakeCluster whose jobs stay queued for a few reads, with
// every node paused by its owner rules: what a user sees on a busy machine.
type pausedCluster struct {
	*fakeCluster
	mu     sync.Mutex
	queued int // reads left before a job moves on
}

func (p *pausedCluster) Status() webui.Status {
	return webui.Status{Nodes: []webui.NodeStatus{
		{ID: "peerA", Name: "alpha", Online: true, State: "paused", Reason: "owner cpu 69 %"},
		{ID: "peerB", Name: "beta", Online: false, State: "offline"},
	}}
}

func (p *pausedCluster) Job(id string) (compute.Job, bool) {
	p.mu.Lock()
	if p.queued > 0 {
		p.queued--
		p.mu.Unlock()
		p.fakeCluster.mu.Lock()
		defer p.fakeCluster.mu.Unlock()
		j := p.find(id)
		if j == nil {
			return compute.Job{}, false
		}
		return *j, true
	}
	p.mu.Unlock()
	return p.fakeCluster.Job(id)
}

// A job that stays queued because no node takes work: --wait says why
// (each node's state and reason) instead of "queued" alone for minutes.
func TestSubmitWaitSaysWhyAJobStaysQueued(t *testing.T) {
	_, api := newAPI(t) // the poll intervals of the tests
	p := &pausedCluster{fakeCluster: &fakeCluster{}, queued: 3}
	srv := httptest.NewServer(webui.New(webui.Config{Backend: p, Jobs: p}))
	t.Cleanup(srv.Close)
	old := queuedHintAfter
	queuedHintAfter = 0
	t.Cleanup(func() { queuedHintAfter = old })
	api[1] = srv.URL
	code, _, errs := run(append([]string{"submit", "pi", "--samples", "1000", "--seed", "1", "--wait"}, api...)...)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want := "queued  0s  no node takes work (alpha paused: owner cpu 69 %, beta offline; see 'hydra status')"
	if !strings.Contains(errs, want) {
		t.Fatalf("progress lines lack %q:\n%s", want, errs)
	}
	for line := range strings.SplitSeq(errs, "\n") {
		if strings.Contains(line, "running") && strings.Contains(line, "no node takes work") {
			t.Errorf("a running job's line still carries the hint: %s", line)
		}
	}
	// A node that takes work means the job only waits its turn: no hint.
	if h := noWorkerHint(webui.Status{Nodes: []webui.NodeStatus{{Name: "a", Online: true, State: "paused"}, {Name: "b", Online: true, State: "idle"}}}); h != "" {
		t.Errorf("hint with an idle node: %q", h)
	}
}
