package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hydra-compute/hydra/consensus"
	"github.com/hydra-compute/hydra/webui"
)

// TestCluster_RepeatedRemoveAnswersAsTheFirst: hydra remove by fingerprint, then the same
// request again (a retry whose first answer was lost) once the node has left the raft
// configuration, on the leader and through a follower: 200 with the same peer ID and
// fingerprint, as the first answer and as a repeat by peer ID. Before, the repeat by fingerprint
// answered 404 once the node had left the configuration (the removed node was no longer among
// those the fingerprint was looked up in) and 200 before that, an answer that flipped with
// time. A repeat by name is 404 from the first answer on (a removed node's name goes with it),
// and says to give the peer ID or fingerprint.
func TestCluster_RepeatedRemoveAnswersAsTheFirst(t *testing.T) {
	nodes, l, _ := startLedCluster(t, 3)
	waitFor(t, 60*time.Second, "3 voters", func() error { return wantVoters(l, 3) })
	rest := without(nodes, l)
	gone, other := rest[0], rest[1]
	leaderTok, otherTok := activeAdminToken(t, l), activeAdminToken(t, other)
	fp := consensus.Fingerprint(gone.ID())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	remove := func(via *testNode, tok, key string) (webui.PendingResult, error) {
		var res webui.PendingResult
		err := webui.NewClient(via.HTTPURL(), tok).Do(ctx, "POST", "/api/v1/remove", map[string]string{"node": key}, &res)
		return res, err
	}
	want := webui.PendingResult{ID: gone.ID().String(), Fingerprint: fp}
	if res, err := remove(l, leaderTok, fp); err != nil || res != want {
		t.Fatalf("removing %s by fingerprint: %+v, %v; want %+v", gone.cfg.Name, res, err, want)
	}
	gone.kill(t)
	waitFor(t, 60*time.Second, gone.cfg.Name+" leaves the configuration", func() error {
		for _, s := range l.Raft().Servers() {
			if s.ID == gone.ID() {
				return errors.New("still a server")
			}
		}
		return nil
	})
	for _, req := range []struct {
		what string
		via  *testNode
		tok  string
		key  string
	}{
		{"by fingerprint on the leader", l, leaderTok, fp},
		{"by fingerprint through a follower", other, otherTok, strings.ToLower(fp)},
		{"by peer ID through a follower", other, otherTok, gone.ID().String()},
	} {
		if res, err := remove(req.via, req.tok, req.key); err != nil || res != want {
			t.Errorf("repeating the removal %s: %+v, %v; want %+v as the first answer", req.what, res, err, want)
		}
	}
	var ae *webui.APIError
	if _, err := remove(other, otherTok, gone.cfg.Name); !errors.As(err, &ae) || ae.Status != http.StatusNotFound || !strings.Contains(ae.Msg, "fingerprint") {
		t.Errorf("repeating the removal by name: %v, want 404 that says to give the peer ID or fingerprint", err)
	}
	waitFor(t, 30*time.Second, "2 voters lead on", func() error {
		if err := wantVoters(l, 2); err != nil {
			return err
		}
		if _, err := leaderIn(without(nodes, gone)); err != nil {
			return fmt.Errorf("no agreed leader: %w", err)
		}
		return nil
	})
}
