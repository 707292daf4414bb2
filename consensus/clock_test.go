package consensus

import (
	"errors"
	"testing"
	"time"
)

// Test_JoinTokenExpiryByTheClusterClock: the leader checks a join token's expiry, and stamps the
// member it admits, by the cluster's clock (Config.Now), not by its machine's: a leader whose
// clock is two hours ahead of the cluster's still admits the holder of a token that has an hour
// left by the cluster's clock, and the replicas (which check the entry's time) agree.
func Test_JoinTokenExpiryByTheClusterClock(t *testing.T) {
	t.Parallel()
	behind := 2 * time.Hour // the cluster's clock minus this leader's machine's
	clusterNow := func() time.Time { return time.Now().Add(-behind) }
	a := newTestNode(t, "founder", "clock-join", func(c *Config) { c.Admit, c.Now = "", clusterNow })
	a.run()
	waitUntil(t, testDeadline, "founder leads an initialized cluster", func() error {
		if !a.r.Leading() || !a.r.State().Initialized() {
			return errors.New("not yet")
		}
		return nil
	})
	cid := a.r.State().ClusterID
	id, secret, rec := NewJoinToken(cid)
	rec.Role, rec.Created = RoleWorker, clusterNow()
	rec.Expires = rec.Created.Add(time.Hour) // an hour left by the cluster's clock; an hour ago by the leader's machine's
	tcmd, _ := NewCommand(OpTokenAdd, TokenAdd{ID: id, Token: rec})
	if _, err := a.r.ApplyAs(ctxT(t, testDeadline), tcmd, testAdminToken); err != nil {
		t.Fatal(err)
	}
	w := newTestNode(t, "worker", "clock-join", func(c *Config) { c.JoinToken, c.NodeToken = secret, "worker-token" })
	connectAll(t, []*testNode{a, w})
	w.run()
	waitUntil(t, testDeadline, "the token holder joins", func() error {
		if !a.r.hasServer(w.h.ID()) || w.r.Role() != RoleWorker || !w.r.State().Initialized() {
			return errors.New("not yet")
		}
		return nil
	})
	m := a.r.State().Members[w.h.ID().String()]
	if d := clusterNow().Sub(m.Added); d < 0 || d > time.Minute {
		t.Fatalf("member added at %s, want the cluster's time %s", m.Added, clusterNow())
	}
}
