package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/webui"
)

// TestCluster_AdminRefusalsKeepTheirKind: the trust reset and the settings change tell the API
// what went wrong by the errors webui maps to codes: a credential the cluster refuses is
// webui.ErrForbidden (403; the trust reset answered 400 and the settings change 500), an
// unknown node webui.ErrInvalid (400, as documented), and neither is taken for the server's
// own failure. Without a credential in the context the node's raft refuses the command as the
// leader does a revoked one.
func TestCluster_AdminRefusalsKeepTheirKind(t *testing.T) {
	n := startCluster(t, 1)[0]
	tok := activeAdminToken(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := n.TrustReset(ctx, n.cfg.Name); !errors.Is(err, webui.ErrForbidden) {
		t.Errorf("trust reset without an admin credential: %v, want webui.ErrForbidden", err)
	}
	if _, err := n.TrustReset(ctx, "no-such-node"); !errors.Is(err, webui.ErrInvalid) {
		t.Errorf("trust reset of an unknown node: %v, want webui.ErrInvalid", err)
	}
	if _, err := n.SetClusterConfig(ctx, []string{"max-jobs=7"}); !errors.Is(err, webui.ErrForbidden) {
		t.Errorf("settings change without an admin credential: %v, want webui.ErrForbidden", err)
	}
	// With the credential both go through.
	c := webui.NewClient(n.HTTPURL(), tok)
	if _, err := c.TrustReset(ctx, n.cfg.Name); err != nil {
		t.Errorf("trust reset with the credential: %v", err)
	}
}
