package consensus

import (
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hydra-compute/hydra/internal/syncbuf"
)

// Test_Security_RevokedTokenAdmittedHolder: a token holder that was
// admitted but lost its admission answer, and whose token was revoked
// before it asked again, is answered as the member it is (with the proof
// its allow-list entry kept the key for) and joins, under the role the
// token gave it (a worker: no vote, no admin credential); a peer that is
// not a member is still refused with the revoked token.
func Test_Security_RevokedTokenAdmittedHolder(t *testing.T) {
	t.Parallel()
	a := oneNodeCluster(t, "sec-revoked")
	id, secret, _ := addJoinToken(t, a, RoleWorker)
	j := newTestNode(t, "holder", "sec-revoked", func(c *Config) { c.JoinToken, c.Admit, c.NodeToken = secret, "", "holder-token" })
	jid := j.h.ID()

	// The first answer is lost, and the token revoked before the holder
	// asks again.
	var once sync.Once
	lost := make(chan error, 1)
	hook := func(peer.ID, membershipResponse) error {
		dropped := false
		once.Do(func() {
			dropped = true
			err := error(nil)
			if role := a.r.roleOf(jid); role != RoleWorker {
				err = errors.New("answered before the holder was admitted: role " + role)
			} else {
				cmd, _ := NewCommand(OpTokenRemove, SecretRemove{ID: id})
				_, err = a.r.ApplyAs(ctxT(t, testDeadline), cmd, testAdminToken)
			}
			lost <- err
		})
		if dropped {
			return errors.New("test: the admission answer was lost")
		}
		return nil
	}
	j.r.answerHook.Store(&hook)
	connectAll(t, []*testNode{a, j})
	j.run()
	select {
	case err := <-lost:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testDeadline):
		t.Fatal("the holder was never answered")
	}
	if _, ok := a.r.State().JoinTokens[id]; ok {
		t.Fatal("the token is not revoked")
	}
	waitUntil(t, testDeadline, "the admitted holder joins with its revoked token", func() error {
		if !a.r.hasServer(jid) || j.r.Role() != RoleWorker || !j.r.State().Initialized() {
			return errors.New("not yet")
		}
		return nil
	})
	if a.r.roleOf(jid) != RoleWorker || j.r.NodeTokenActive() {
		t.Fatalf("the holder rejoined as a %s (admin credential %v), not the worker it was admitted as", a.r.roleOf(jid), j.r.NodeTokenActive())
	}
	for _, s := range a.r.Servers() {
		if s.ID == jid && s.Voter {
			t.Fatal("a worker holds a vote")
		}
	}

	// A stranger with the same revoked token: refused, and no answer; its
	// node says so once, loud, and keeps asking (the refusal proves
	// nothing: anyone may claim the cluster's ID).
	var logs syncbuf.Buffer
	s := newTestNode(t, "stranger", "sec-revoked", func(c *Config) {
		c.JoinToken, c.Admit = secret, ""
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	connectAll(t, []*testNode{a, s})
	s.r.queryPeers(ctxT(t, 10*time.Second))
	resp, err := s.r.requestMembership(ctxT(t, 20*time.Second), a.h.ID(), false)
	if !isTokenRefusal(err) || resp.ClusterProof != "" {
		t.Fatalf("a stranger with a revoked token: %+v, %v", resp, err)
	}
	s.run()
	waitUntil(t, testDeadline, "the stranger logs that its token was refused", func() error {
		out := logs.String()
		const line = "level=ERROR msg=\"the cluster refused this node's join token"
		if strings.Count(out, line) != 1 {
			return errors.New("not logged once")
		}
		if strings.Count(out[strings.Index(out, line):], "join request failed") < 2 {
			return errors.New("not asked again")
		}
		return nil
	})
	if a.r.roleOf(s.h.ID()) != "" || a.r.hasServer(s.h.ID()) {
		t.Fatal("a stranger with a revoked token was admitted")
	}
}
