package cli

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/hydra-compute/hydra/webui"
)

// auditCluster is a cluster whose nodes have audit records, and whose admin may clear one.
type auditCluster struct {
	fakeCluster
	mu    sync.Mutex
	reset []string
}

func (a *auditCluster) Status() webui.Status {
	return webui.Status{Nodes: []webui.NodeStatus{
		{ID: "peerA", Name: "alpha", Audit: webui.NodeAudit{Passed: 12, Failed: 0, State: "trusted"}},
		{ID: "peerB", Name: "beta", Audit: webui.NodeAudit{Passed: 4, Failed: 3, State: "quarantined"}},
	}}
}

func (a *auditCluster) TrustReset(ctx context.Context, node string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reset = append(a.reset, node)
	return "peerB", nil
}

// TestStatusShowsAuditsAndTrustResetClears: `hydra status` shows each node's audit standing
// with its passed and failed audits, and `hydra trust reset NODE` asks the cluster to clear it.
func TestStatusShowsAuditsAndTrustResetClears(t *testing.T) {
	a := &auditCluster{}
	srv := httptest.NewServer(webui.New(webui.Config{Backend: a, Jobs: a}))
	t.Cleanup(srv.Close)
	code, out, errs := run("status", "--api", srv.URL)
	if code != ExitOK {
		t.Fatalf("status: exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "AUDITS") || !strings.Contains(out, "trusted 12✓ 0✗") || !strings.Contains(out, "quarantined 4✓ 3✗") {
		t.Fatalf("status output lacks the audit standings:\n%s", out)
	}
	code, out, errs = run("trust", "reset", "beta", "--api", srv.URL, "--token", token)
	if code != ExitOK {
		t.Fatalf("trust reset: exit %d: %s", code, errs)
	}
	if len(a.reset) != 1 || a.reset[0] != "beta" || !strings.Contains(out, "peerB") {
		t.Fatalf("trust reset asked for %v, printed %q", a.reset, out)
	}
	if code, _, _ = run("trust", "reset", "beta", "--api", srv.URL); code == ExitOK {
		t.Fatal("trust reset without the admin token succeeded")
	}
}
