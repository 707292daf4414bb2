package consensus

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// recordedLog is a slog.Handler that keeps every message, for tests that
// assert what a node did or did not log.
type recordedLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *recordedLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *recordedLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *recordedLog) WithGroup(string) slog.Handler            { return l }
func (l *recordedLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}

// matching returns the messages that contain s.
func (l *recordedLog) matching(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, m := range l.msgs {
		if strings.Contains(m, s) {
			out = append(out, m)
		}
	}
	return out
}

// TestFastFailoverOnlyForVoters: a node without a vote whose connection to
// the leader closes does not enter fast failover (no shortened timeouts, no
// redial, no log line): only a voter can start the election it is for.
// Before, a non-voter, and a node just removed (no longer in the
// configuration, while it still remembered its leader), logged "connection
// to the leader closed: fast failover" and redialled the leader, which
// answered: "fast failover: the leader answered a redial" each time a
// removed node's connections closed.
func TestFastFailoverOnlyForVoters(t *testing.T) {
	logs := make([]*recordedLog, 2)
	nodes := startCluster(t, 2, "failover-voters", func(i int, c *Config) {
		logs[i] = &recordedLog{}
		c.Logger = slog.New(logs[i])
	})
	leader := settled(t, nodes, 1, true)
	nv, nvLog := nodes[0], logs[0]
	if nv == leader {
		nv, nvLog = nodes[1], logs[1]
	}
	if !nv.r.hasServer(nv.h.ID()) || nv.r.isVoter() {
		t.Fatalf("%s should be a non-voting server of the configuration", nv.name)
	}
	// No address left on either side: nothing dials the connection back
	// (raft's heartbeats would), so "no connection left to the leader"
	// holds while the node decides.
	nv.h.Peerstore().ClearAddrs(leader.h.ID())
	leader.h.Peerstore().ClearAddrs(nv.h.ID())
	if err := nv.h.Network().ClosePeer(leader.h.ID()); err != nil {
		t.Fatal(err)
	}
	if l, ok := nv.r.Leader(); !ok || l != leader.h.ID() {
		t.Fatalf("%s forgot its leader before the check (leader %s, known %v): the check below would prove nothing", nv.name, l, ok)
	}
	// Synchronous, beside the call the closed connection spawned: whichever
	// takes the failover flag first would log before it lets go of it.
	nv.r.leaderConnClosed(leader.h.ID())
	waitUntil(t, testDeadline, "no fast failover in progress", func() error {
		if nv.r.fastFailover.Load() {
			return errors.New("in progress")
		}
		return nil
	})
	if got := nvLog.matching("fast failover"); len(got) > 0 {
		t.Fatalf("a non-voter entered fast failover: %q", got)
	}
}
