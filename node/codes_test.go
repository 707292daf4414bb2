package node

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/hydra-compute/hydra/compute"
	"github.com/hydra-compute/hydra/consensus"
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

// TestCluster_LeaderUnreachableIs503: a write through a follower whose forward to the leader
// fails with a transport error on every retry (the leader resets the stream, as when it is cut
// off or killed right before the forward) answers 503 with Retry-After, on a job route and a
// membership route: the leader is unreachable for now, and a retry once a leader answers may
// succeed. Both answered as the server's failure (cancel 500) or the caller's (a token 400).
func TestCluster_LeaderUnreachableIs503(t *testing.T) {
	_, l, f := startLedCluster(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	j, err := f.SubmitJob(ctx, compute.JobSpec{Kind: compute.KindPi, Pi: &compute.PiParams{Samples: 1_000_000_000_000_000, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	// The leader stays the leader (raft's own streams go on) and resets every forwarded command.
	cut := func(string) {
		l.host.Host().SetStreamHandler(consensus.ProtocolApply, func(s network.Stream) { _ = s.Reset() })
	}
	f.checkedHook.Store(&cut)
	tok := activeAdminToken(t, f)
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/api/v1/jobs/" + j.ID + "/cancel", "{}"},
		{"POST", "/api/v1/tokens", `{"role":"viewer"}`},
	} {
		req, err := http.NewRequestWithContext(ctx, tc.method, f.HTTPURL()+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s with the leader unreachable: %d (Retry-After %q) %s, want 503 with Retry-After",
				tc.method, tc.path, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	if id, ok := f.raft.Leader(); !ok || id != l.host.ID() {
		t.Fatalf("the follower no longer names the leader (%v): the test did not cut the forward alone", id)
	}
}
